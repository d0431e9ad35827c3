/*
 * echo-server — the Echo Protocol (RFC 862) served by netstep on TCP and
 * UDP port 7: every byte of a TCP connection, and every UDP datagram, comes
 * back to its sender unchanged.
 *
 *     build/bin/echo-server            # then, from the kernel side:
 *     echo hello | nc -u -w1 192.0.2.2 7
 *     echo hello | nc -N 192.0.2.2 7
 *
 * One thread serves UDP; TCP connections each get a thread (app/server.c).
 * The main thread waits for SIGINT/SIGTERM and then closes the sockets,
 * which wakes the server threads out of their blocking calls
 * (docs/06-sockets-and-blocking-calls.md).
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "app/common.h"
#include "app/server.h"
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

/* RFC 862: "any data received is sent back"; until the peer closes. */
static void tcp_echo(int sd, void *ctx)
{
    uint8_t buf[16384];

    (void)ctx;
    for (;;) {
        ssize_t n = sock_recv(sd, buf, sizeof(buf), 0);
        if (n <= 0 || app_send_all(sd, buf, (size_t)n) < 0)
            break;
    }
}

int main(int argc, char **argv)
{
    struct app_options o;
    struct udp_server u = { 0 };
    struct app_tcp_server tcp = { .name = "echo", .handler = tcp_echo };
    struct thread th;
    char a[IP_ADDR_STR_LEN];
    uint16_t port;

    app_parse_args(&o, argc, argv, NULL, "Echo TCP streams and UDP datagrams back to their senders (RFC 862).",
                   NULL, NULL, NULL);
    port = o.port > 0 ? (uint16_t)o.port : ECHO_PORT;
    app_signals_block();
    app_stack_up(&o);
    u.sd = app_udp_open(app_iface()->unicast, port);
    if (u.sd < 0) {
        fprintf(stderr, "%s: udp port %u: %s\n", o.prog, port, strerror(errno));
        return 1;
    }
    tcp.lsd = app_tcp_listen(app_iface()->unicast, port, 128);
    if (tcp.lsd < 0) {
        fprintf(stderr, "%s: tcp port %u: %s\n", o.prog, port, strerror(errno));
        return 1;
    }
    if (thread_create(&th, "echo-udp", udp_echo_main, &u) < 0 || app_tcp_server_start(&tcp) < 0) {
        fprintf(stderr, "%s: cannot start a thread\n", o.prog);
        return 1;
    }
    printf("%s: listening on %s:%u (tcp, udp)\n", o.prog, ip_addr_ntop(app_iface()->unicast, a, sizeof(a)), port);
    fflush(stdout);
    app_wait_signal(-1);
    app_tcp_server_stop(&tcp);
    sock_close(u.sd); /* wakes the server thread */
    thread_join(&th);
    printf("%s: tcp: served %lu connections\n", o.prog, tcp.served);
    printf("%s: udp: echoed %lu datagrams, %llu bytes\n", o.prog, u.datagrams, u.bytes);
    app_stack_down(&o);
    return 0;
}
