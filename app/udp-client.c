/*
 * udp-client — like `nc -u`: each chunk read from stdin goes out as one
 * datagram to HOST PORT, and every datagram that comes back is written to
 * stdout. After stdin ends it waits --timeout seconds (default 1) for the
 * last replies, then exits 0. An ICMP port unreachable from the peer makes
 * the next call fail with ECONNREFUSED: it prints so and exits 1.
 *
 *     echo hello | build/bin/udp-client 192.0.2.1 7777
 */
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "app/common.h"
#include "proto/sock.h"
#include "proto/udp.h"

static const struct app_opt opts[] = {
    { "timeout", 1, 'w', "S      after stdin ends, wait S seconds for replies (default 1)" },
    { 0 },
};

static int on_option(int key, const char *arg, void *ctx)
{
    double *timeout = ctx;
    char *end;

    if (key != 'w')
        return -1;
    *timeout = strtod(arg, &end);
    return (*end || *timeout < 0) ? -1 : 0;
}

/* Write every datagram waiting on sd to stdout. Returns -errno on a
 * socket error, else the number of datagrams written. */
static int drain(int sd, uint8_t *buf, size_t size)
{
    int n = 0;

    for (;;) {
        ssize_t r = sock_recv(sd, buf, size, MSG_DONTWAIT);
        if (r < 0)
            return errno == EAGAIN ? n : -errno;
        if (fwrite(buf, 1, (size_t)r, stdout) != (size_t)r)
            return -EIO;
        fflush(stdout);
        n++;
    }
}

/* Read one chunk of stdin if it is ready within 20 ms and send it. Returns
 * 1 if sent, 0 if nothing yet, -1 at EOF, or -errno. */
static int forward_stdin(int sd, uint8_t *buf, size_t size)
{
    struct pollfd pfd = { .fd = 0, .events = POLLIN };
    ssize_t n;

    if (poll(&pfd, 1, 20) <= 0)
        return 0;
    n = read(0, buf, size);
    if (n <= 0)
        return -1;
    if (sock_send(sd, buf, (size_t)n, 0) < 0)
        return -errno;
    return 1;
}

int main(int argc, char **argv)
{
    struct app_options o;
    struct sockaddr_in peer = { .sin_family = AF_INET };
    double timeout = 1.0;
    static uint8_t buf[UDP_PAYLOAD_MAX];
    uint64_t idle_since = 0;
    int idx, sd, err = 0, stdin_open = 1;

    idx = app_parse_args(&o, argc, argv, "HOST PORT", "Send stdin as UDP datagrams; print the replies.",
                         opts, on_option, &timeout);
    if (idx != argc - 2 || ip_addr_pton(argv[idx], &peer.sin_addr.s_addr) < 0 || atoi(argv[idx + 1]) <= 0 ||
        atoi(argv[idx + 1]) > 65535) {
        fprintf(stderr, "%s: give HOST PORT, e.g. %s 192.0.2.1 7\n", o.prog, o.prog);
        return 2;
    }
    peer.sin_port = htons((uint16_t)atoi(argv[idx + 1]));
    app_signals_block();
    app_stack_up(&o);
    sd = sock_open(AF_INET, SOCK_DGRAM, 0);
    if (sd < 0 || sock_connect(sd, (struct sockaddr *)&peer, sizeof(peer)) < 0) {
        fprintf(stderr, "%s: %s\n", o.prog, strerror(errno));
        return 1;
    }
    while (!err && !app_wait_signal(0)) {
        if (stdin_open) {
            int r = forward_stdin(sd, buf, sizeof(buf));
            if (r == -1) {
                stdin_open = 0;
                idle_since = platform_now_ms();
            } else if (r < 0) {
                err = r;
            }
        } else {
            struct pollfd p = { .fd = sd, .events = POLLIN };
            sock_poll(&p, 1, 20);
        }
        int got = drain(sd, buf, sizeof(buf));
        if (got < 0)
            err = got;
        else if (got > 0 && !stdin_open)
            idle_since = platform_now_ms();
        if (!stdin_open && platform_now_ms() - idle_since >= (uint64_t)(timeout * 1000))
            break;
    }
    if (err)
        fprintf(stderr, "%s: %s\n", o.prog, err == -ECONNREFUSED ? "connection refused (ICMP port unreachable)"
                                                                  : strerror(-err));
    sock_close(sd);
    app_stack_down(&o);
    return err ? 1 : 0;
}
