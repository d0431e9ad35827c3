/*
 * echo-server — the Echo Protocol (RFC 862) served by netstep: every UDP
 * datagram to port 7 comes back to its sender unchanged.
 *
 *     build/bin/echo-server            # then, from the kernel side:
 *     echo hello | nc -u -w1 192.0.2.2 7
 *
 * One thread serves UDP; the main thread waits for SIGINT/SIGTERM and then
 * closes the socket, which wakes the server thread out of sock_recvfrom
 * with EBADF (docs/06-sockets-and-blocking-calls.md).
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "app/common.h"
#include "proto/sock.h"
#include "proto/udp.h"

#define ECHO_PORT 7

struct udp_server {
    int sd;
    unsigned long datagrams;
    unsigned long long bytes;
};

static void *udp_echo_main(void *arg)
{
    struct udp_server *u = arg;
    static uint8_t buf[UDP_PAYLOAD_MAX];

    thread_set_name("echo-udp");
    for (;;) {
        struct sockaddr_in peer;
        socklen_t plen = sizeof(peer);
        ssize_t n = sock_recvfrom(u->sd, buf, sizeof(buf), 0, (struct sockaddr *)&peer, &plen);
        if (n < 0) {
            if (errno == EBADF || errno == ESHUTDOWN)
                break; /* closed by main: we are done */
            continue;  /* e.g. a pending ICMP error: keep serving */
        }
        u->datagrams++;
        u->bytes += (unsigned long long)n;
        if (sock_sendto(u->sd, buf, (size_t)n, 0, (struct sockaddr *)&peer, plen) < 0 && errno == EBADF)
            break;
    }
    return NULL;
}

static int open_udp(const struct app_options *o, uint16_t port)
{
    struct sockaddr_in addr = { .sin_family = AF_INET, .sin_port = htons(port) };
    int sd = sock_open(AF_INET, SOCK_DGRAM, 0);

    addr.sin_addr.s_addr = app_iface()->unicast;
    if (sd < 0 || sock_bind(sd, (struct sockaddr *)&addr, sizeof(addr)) < 0) {
        fprintf(stderr, "%s: udp port %u: %s\n", o->prog, port, strerror(errno));
        exit(1);
    }
    return sd;
}

int main(int argc, char **argv)
{
    struct app_options o;
    struct udp_server u = { 0 };
    struct thread th;
    char a[IP_ADDR_STR_LEN];
    uint16_t port;

    app_parse_args(&o, argc, argv, NULL, "Echo every UDP datagram back to its sender (RFC 862).",
                   NULL, NULL, NULL);
    port = o.port > 0 ? (uint16_t)o.port : ECHO_PORT;
    app_signals_block();
    app_stack_up(&o);
    u.sd = open_udp(&o, port);
    if (thread_create(&th, "echo-udp", udp_echo_main, &u) < 0) {
        fprintf(stderr, "%s: cannot start a thread\n", o.prog);
        return 1;
    }
    printf("%s: listening on %s:%u (udp)\n", o.prog, ip_addr_ntop(app_iface()->unicast, a, sizeof(a)), port);
    fflush(stdout);
    app_wait_signal(-1);
    sock_close(u.sd); /* wakes the server thread */
    thread_join(&th);
    printf("%s: udp: echoed %lu datagrams, %llu bytes\n", o.prog, u.datagrams, u.bytes);
    app_stack_down(&o);
    return 0;
}
