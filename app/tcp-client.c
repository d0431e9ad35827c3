/*
 * tcp-client — like `nc`: connect to HOST PORT from netstep's stack, copy
 * stdin to the connection and the connection to stdout. At the end of
 * stdin it half-closes (sock_shutdown SHUT_WR, our FIN) and keeps reading
 * until the server closes too.
 *
 *     echo hello | build/bin/tcp-client 192.0.2.1 7777
 *
 * --timeout S bounds the connect and, after stdin ends, the wait for the
 * server to close. Exit status: 0 on a clean close, 1 on an error (which is
 * printed: "connection refused", "connection timed out", ...).
 */
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "app/common.h"
#include "app/server.h"
#include "proto/sock.h"

static const struct app_opt opts[] = {
    { "timeout", 1, 'w', "S      connect timeout, and how long to wait after stdin ends" },
    { 0 },
};

static int on_option(int key, const char *arg, void *ctx)
{
    double *timeout = ctx;
    char *end;

    if (key != 'w')
        return -1;
    *timeout = strtod(arg, &end);
    return (*end || *timeout <= 0) ? -1 : 0;
}

struct reader {
    int sd;
    int err;      /* errno that ended it, 0 at a clean end of stream */
    _Atomic int done;
};

/* Connection -> stdout, until the server closes or an error. */
static void *reader_main(void *arg)
{
    struct reader *r = arg;
    static uint8_t buf[65536];

    thread_set_name("tcp-rx");
    for (;;) {
        ssize_t n = sock_recv(r->sd, buf, sizeof(buf), 0);
        if (n <= 0) {
            r->err = n < 0 ? errno : 0;
            break;
        }
        if (fwrite(buf, 1, (size_t)n, stdout) != (size_t)n) {
            r->err = EIO;
            break;
        }
        fflush(stdout);
    }
    atomic_store(&r->done, 1);
    return NULL;
}

static void set_timeout(int sd, int opt, double secs)
{
    struct timeval tv = { .tv_sec = (time_t)secs, .tv_usec = (suseconds_t)((secs - (double)(time_t)secs) * 1e6) };

    sock_setsockopt(sd, SOL_SOCKET, opt, &tv, sizeof(tv));
}

/* stdin -> connection; returns 0 at EOF, 1 if told to stop, -errno. */
static int pump_stdin(int sd, struct reader *r)
{
    static uint8_t buf[65536];

    for (;;) {
        struct pollfd p = { .fd = 0, .events = POLLIN };
        ssize_t n;
        if (app_wait_signal(0))
            return 1;
        if (atomic_load(&r->done))
            return 0; /* the server closed first */
        if (poll(&p, 1, 50) <= 0)
            continue;
        n = read(0, buf, sizeof(buf));
        if (n <= 0)
            return 0;
        if (app_send_all(sd, buf, (size_t)n) < 0)
            return -errno;
    }
}

int main(int argc, char **argv)
{
    struct app_options o;
    struct sockaddr_in peer = { .sin_family = AF_INET };
    struct reader r = { 0 };
    struct thread th;
    double timeout = 10.0;
    int idx, err = 0;
    uint64_t deadline;

    idx = app_parse_args(&o, argc, argv, "HOST PORT", "Connect over TCP; copy stdin to it and it to stdout.",
                         opts, on_option, &timeout);
    if (idx != argc - 2 || ip_addr_pton(argv[idx], &peer.sin_addr.s_addr) < 0 || atoi(argv[idx + 1]) <= 0 ||
        atoi(argv[idx + 1]) > 65535) {
        fprintf(stderr, "%s: give HOST PORT, e.g. %s 192.0.2.1 7\n", o.prog, o.prog);
        return 2;
    }
    peer.sin_port = htons((uint16_t)atoi(argv[idx + 1]));
    app_signals_block();
    app_stack_up(&o);
    r.sd = sock_open(AF_INET, SOCK_STREAM, 0);
    set_timeout(r.sd, SO_SNDTIMEO, timeout);
    if (r.sd < 0 || sock_connect(r.sd, (struct sockaddr *)&peer, sizeof(peer)) < 0) {
        err = errno;
        fprintf(stderr, "%s: connect to %s port %s: %s\n", o.prog, argv[idx], argv[idx + 1], strerror(err));
        app_stack_down(&o);
        return 1;
    }
    set_timeout(r.sd, SO_SNDTIMEO, 0); /* from now on, sends may wait */
    if (thread_create(&th, "tcp-rx", reader_main, &r) < 0)
        return 1;
    err = pump_stdin(r.sd, &r);
    if (err == 0) {
        sock_shutdown(r.sd, SHUT_WR); /* our FIN: "no more from me" */
        deadline = platform_now_ms() + (uint64_t)(timeout * 1000);
        while (!atomic_load(&r.done) && platform_now_ms() < deadline && !app_wait_signal(20))
            ;
    }
    int server_closed = atomic_load(&r.done); /* before close wakes the reader */
    sock_close(r.sd); /* wakes the reader if it still waits */
    thread_join(&th);
    if (err < 0 || (r.err && r.err != EBADF)) {
        fprintf(stderr, "%s: %s\n", o.prog, strerror(err < 0 ? -err : r.err));
        err = 1;
    } else if (err == 0 && !server_closed) {
        fprintf(stderr, "%s: the server did not close within %.0f s\n", o.prog, timeout);
        err = 1;
    }
    app_stack_down(&o);
    return err ? 1 : 0;
}
