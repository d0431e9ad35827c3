/*
 * chargen-server — the Character Generator Protocol (RFC 864) over TCP
 * port 19: on each connection, send lines of 72 printable characters, each
 * line starting one character further along, until the client closes.
 * With --bytes N, send exactly N bytes, then close gracefully.
 *
 *     build/bin/chargen-server --bytes 1000000    # then: nc 192.0.2.2 19 | wc -c
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "app/common.h"
#include "app/server.h"
#include "proto/sock.h"

#define CHARGEN_PORT 19
#define LINE_CHARS 72
#define LINE_LEN (LINE_CHARS + 2) /* CR LF */
#define PRINTABLE 95              /* ' ' .. '~' */

static unsigned long long limit; /* 0: until the client closes */

static const struct app_opt opts[] = {
    { "bytes", 1, 'n', "N        send N bytes per connection, then close" },
    { 0 },
};

static int on_option(int key, const char *arg, void *ctx)
{
    char *end;

    (void)ctx;
    if (key != 'n')
        return -1;
    limit = strtoull(arg, &end, 10);
    return *end ? -1 : 0;
}

/* The RFC 864 pattern: PRINTABLE lines, each a rotation, then it repeats. */
static void build_pattern(uint8_t *buf)
{
    for (int line = 0; line < PRINTABLE; line++) {
        uint8_t *p = buf + line * LINE_LEN;
        for (int i = 0; i < LINE_CHARS; i++)
            p[i] = (uint8_t)(' ' + (line + i) % PRINTABLE);
        p[LINE_CHARS] = '\r';
        p[LINE_CHARS + 1] = '\n';
    }
}

static void tcp_chargen(int sd, void *ctx)
{
    const uint8_t *pattern = ctx;
    const size_t period = (size_t)PRINTABLE * LINE_LEN;
    unsigned long long sent = 0;
    size_t off = 0;
    uint8_t sink[4096];

    for (;;) {
        size_t len = period - off;
        ssize_t n;
        if (len > 16384)
            len = 16384;
        if (limit && len > limit - sent)
            len = (size_t)(limit - sent);
        if (len == 0)
            break;
        n = sock_send(sd, pattern + off, len, 0);
        if (n < 0)
            return; /* the client went away (EPIPE, ECONNRESET) or we stop */
        sent += (unsigned long long)n;
        off = (off + (size_t)n) % period;
    }
    /* N bytes sent: close our half, and read until the client closes too,
     * so nothing it sent makes our close a reset that could cost it data. */
    sock_shutdown(sd, SHUT_WR);
    while (sock_recv(sd, sink, sizeof(sink), 0) > 0)
        ;
}

int main(int argc, char **argv)
{
    struct app_options o;
    static uint8_t pattern[PRINTABLE * LINE_LEN];
    struct app_tcp_server tcp = { .name = "chargen", .handler = tcp_chargen, .ctx = pattern };
    char a[IP_ADDR_STR_LEN];
    uint16_t port;

    app_parse_args(&o, argc, argv, NULL, "Send the RFC 864 character pattern on each TCP connection.",
                   opts, on_option, NULL);
    port = o.port > 0 ? (uint16_t)o.port : CHARGEN_PORT;
    build_pattern(pattern);
    app_signals_block();
    app_stack_up(&o);
    tcp.lsd = app_tcp_listen(app_iface()->unicast, port, 128);
    if (tcp.lsd < 0 || app_tcp_server_start(&tcp) < 0) {
        fprintf(stderr, "%s: tcp port %u: %s\n", o.prog, port, strerror(errno));
        return 1;
    }
    printf("%s: listening on %s:%u (tcp)\n", o.prog, ip_addr_ntop(app_iface()->unicast, a, sizeof(a)), port);
    fflush(stdout);
    app_wait_signal(-1);
    app_tcp_server_stop(&tcp);
    printf("%s: tcp: served %lu connections\n", o.prog, tcp.served);
    app_stack_down(&o);
    return 0;
}
