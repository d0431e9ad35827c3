/*
 * discard-server — the Discard Protocol (RFC 863): whatever arrives on TCP
 * or UDP port 9 is thrown away; the server counts it and reports bytes and
 * rate, for each TCP connection as it ends and for UDP at exit.
 *
 *     build/bin/discard-server          # then: nc -N 192.0.2.2 9 < somefile
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "app/common.h"
#include "app/server.h"
#include "proto/sock.h"
#include "proto/udp.h"

#define DISCARD_PORT 9

struct udp_counter {
    int sd;
    unsigned long datagrams;
    unsigned long long bytes;
    uint64_t first_ms, last_ms;
};

static void *udp_discard_main(void *arg)
{
    struct udp_counter *c = arg;
    static uint8_t buf[UDP_PAYLOAD_MAX];

    thread_set_name("discard-udp");
    for (;;) {
        ssize_t n = sock_recv(c->sd, buf, sizeof(buf), 0);
        if (n < 0) {
            if (errno == EBADF || errno == ESHUTDOWN)
                break;
            continue;
        }
        c->last_ms = platform_now_ms();
        if (c->datagrams++ == 0)
            c->first_ms = c->last_ms;
        c->bytes += (unsigned long long)n;
    }
    return NULL;
}

static const char *prog_name;

/* RFC 863: "simply throw away any data received"; report when it ends. */
static void tcp_discard(int sd, void *ctx)
{
    static _Thread_local uint8_t buf[65536];
    unsigned long long bytes = 0;
    uint64_t start = platform_now_ms(), end;
    struct sockaddr_in peer;
    socklen_t plen = sizeof(peer);
    char a[IP_ADDR_STR_LEN];
    ssize_t n;

    (void)ctx;
    while ((n = sock_recv(sd, buf, sizeof(buf), 0)) > 0)
        bytes += (unsigned long long)n;
    end = platform_now_ms();
    if (sock_getpeername(sd, (struct sockaddr *)&peer, &plen) < 0)
        peer.sin_addr.s_addr = 0, peer.sin_port = 0;
    printf("%s: tcp %s:%u: discarded %llu bytes in %.3f s (%.2f MB/s)%s\n", prog_name,
           ip_addr_ntop(peer.sin_addr.s_addr, a, sizeof(a)), ntohs(peer.sin_port), bytes,
           (double)(end - start) / 1000.0,
           end > start ? (double)bytes / ((double)(end - start) / 1000.0) / 1e6 : 0.0,
           n < 0 ? " (ended by an error)" : "");
    fflush(stdout);
}

static void report(const char *prog, const struct udp_counter *c)
{
    double secs = (double)(c->last_ms - c->first_ms) / 1000.0;

    printf("%s: udp: discarded %lu datagrams, %llu bytes", prog, c->datagrams, c->bytes);
    if (secs > 0)
        printf(" in %.3f s (%.2f MB/s)", secs, (double)c->bytes / secs / 1e6);
    printf("\n");
}

int main(int argc, char **argv)
{
    struct app_options o;
    struct udp_counter c = { 0 };
    struct app_tcp_server tcp = { .name = "discard", .handler = tcp_discard };
    struct thread th;
    char a[IP_ADDR_STR_LEN];
    uint16_t port;

    app_parse_args(&o, argc, argv, NULL, "Discard whatever arrives, and count it (RFC 863).",
                   NULL, NULL, NULL);
    port = o.port > 0 ? (uint16_t)o.port : DISCARD_PORT;
    prog_name = o.prog;
    app_signals_block();
    app_stack_up(&o);
    c.sd = app_udp_open(app_iface()->unicast, port);
    if (c.sd < 0) {
        fprintf(stderr, "%s: udp port %u: %s\n", o.prog, port, strerror(errno));
        return 1;
    }
    tcp.lsd = app_tcp_listen(app_iface()->unicast, port, 128);
    if (tcp.lsd < 0) {
        fprintf(stderr, "%s: tcp port %u: %s\n", o.prog, port, strerror(errno));
        return 1;
    }
    if (thread_create(&th, "discard-udp", udp_discard_main, &c) < 0 || app_tcp_server_start(&tcp) < 0)
        return 1;
    printf("%s: listening on %s:%u (tcp, udp)\n", o.prog, ip_addr_ntop(app_iface()->unicast, a, sizeof(a)), port);
    fflush(stdout);
    app_wait_signal(-1);
    app_tcp_server_stop(&tcp);
    sock_close(c.sd);
    thread_join(&th);
    report(o.prog, &c);
    app_stack_down(&o);
    return 0;
}
