/*
 * test_tcp_threads.c — TCP with real threads over the loopback device:
 * many threads opening, using and closing connections at once (run it
 * under `make tsan test` and `make asan test`), a close from another
 * thread waking a blocked recv, and net_shutdown waking blocked accept,
 * recv and send.
 *
 * The stack thread runs for real here (net_run), with the real clock.
 * NETSTEP_STRESS_SCALE multiplies the amount of work (default 1).
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "driver/loopback.h"
#include "net.h"
#include "proto/sock.h"
#include "util/log.h"

#define PORT 7007
#define CLIENTS 8

static struct sockaddr_in lo_addr(uint16_t port)
{
    struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons(port) };

    a.sin_addr.s_addr = htonl(0x7f000001);
    return a;
}

static int scale(void)
{
    const char *s = getenv("NETSTEP_STRESS_SCALE");
    int v = s ? atoi(s) : 1;

    return v > 0 ? v : 1;
}

static int setup(void **state)
{
    (void)state;
    log_configure_from_env(); /* NETSTEP_LOG=tcp=debug to watch */
    if (net_init() < 0 || !loopback_init() || net_run() < 0)
        return -1;
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    net_shutdown();
    return 0;
}

/* ---- an echo server: one thread accepting, one per connection ---------- */

struct server {
    int lsd;
    struct thread acceptor;
    struct thread conn[256];
    int csd[256];
    int nconn;
};

static void *echo_conn(void *arg)
{
    int sd = *(int *)arg;
    uint8_t buf[8192];
    ssize_t n;

    while ((n = sock_recv(sd, buf, sizeof(buf), 0)) > 0) {
        for (ssize_t off = 0; off < n;) {
            ssize_t w = sock_send(sd, buf + off, (size_t)(n - off), 0);
            if (w < 0)
                return NULL;
            off += w;
        }
    }
    /* the client finished: our FIN too (server_stop closes the descriptor,
     * so no other thread can be handed the same number meanwhile) */
    sock_shutdown(sd, SHUT_WR);
    return NULL;
}

static void *acceptor_main(void *arg)
{
    struct server *srv = arg;

    for (;;) {
        int sd = sock_accept(srv->lsd, NULL, NULL);
        if (sd < 0) {
            if (errno == EBADF || errno == ESHUTDOWN)
                break;
            continue;
        }
        if (srv->nconn == (int)(sizeof(srv->csd) / sizeof(srv->csd[0]))) {
            sock_close(sd);
            continue;
        }
        srv->csd[srv->nconn] = sd;
        thread_create(&srv->conn[srv->nconn], "echo", echo_conn, &srv->csd[srv->nconn]);
        srv->nconn++;
    }
    return NULL;
}

static void server_start(struct server *srv)
{
    struct sockaddr_in a = lo_addr(PORT);
    int one = 1;

    memset(srv, 0, sizeof(*srv));
    srv->lsd = sock_open(AF_INET, SOCK_STREAM, 0);
    assert_true(srv->lsd >= 0);
    sock_setsockopt(srv->lsd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    assert_int_equal(sock_bind(srv->lsd, (struct sockaddr *)&a, sizeof(a)), 0);
    assert_int_equal(sock_listen(srv->lsd, 64), 0);
    assert_int_equal(thread_create(&srv->acceptor, "accept", acceptor_main, srv), 0);
}

static void server_stop(struct server *srv)
{
    sock_close(srv->lsd);
    thread_join(&srv->acceptor);
    for (int i = 0; i < srv->nconn; i++) {
        thread_join(&srv->conn[i]);
        sock_close(srv->csd[i]);
    }
}

/* ---- clients ----------------------------------------------------------------- */

struct client {
    int id, rounds, ok, failed;
    struct thread th;
};

static uint8_t pattern_byte(int id, int round, size_t i)
{
    return (uint8_t)(id * 31 + round * 7 + i * 13 + (i >> 8));
}

/* One round: connect, send len bytes while reading them back, half-close,
 * read to the end, check every byte, close. */
static int client_round(int id, int round, size_t len)
{
    struct sockaddr_in a = lo_addr(PORT);
    uint8_t out[4096], in[4096];
    size_t sent = 0, got = 0;
    int sd = sock_open(AF_INET, SOCK_STREAM, 0), bad = 0;
    struct timeval tv = { .tv_sec = 10 };

    if (sd < 0)
        return -1;
    sock_setsockopt(sd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    if (sock_connect(sd, (struct sockaddr *)&a, sizeof(a)) < 0) {
        sock_close(sd);
        return -1;
    }
    while (sent < len) { /* chunks smaller than the buffers: no deadlock */
        size_t n = len - sent < sizeof(out) ? len - sent : sizeof(out);
        for (size_t i = 0; i < n; i++)
            out[i] = pattern_byte(id, round, sent + i);
        if (sock_send(sd, out, n, 0) != (ssize_t)n)
            break;
        sent += n;
        while (got < sent) {
            ssize_t r = sock_recv(sd, in, sizeof(in), 0);
            if (r <= 0)
                goto done;
            for (ssize_t i = 0; i < r; i++)
                bad += in[i] != pattern_byte(id, round, got + (size_t)i);
            got += (size_t)r;
        }
    }
    sock_shutdown(sd, SHUT_WR);
    while (sock_recv(sd, in, sizeof(in), 0) > 0) /* the server closes too */
        ;
done:
    sock_close(sd);
    return (got == len && !bad) ? 0 : -1;
}

static void *client_main(void *arg)
{
    struct client *c = arg;

    for (int r = 0; r < c->rounds; r++) {
        if (client_round(c->id, r, 1000 + (size_t)((c->id * 7919 + r * 104729) % 60000)) == 0)
            c->ok++;
        else
            c->failed++;
    }
    return NULL;
}

static void test_many_threads_many_connections(void **state)
{
    struct server srv;
    struct client cl[CLIENTS];
    int rounds = 10 * scale(), ok = 0;

    (void)state;
    server_start(&srv);
    for (int i = 0; i < CLIENTS; i++) {
        cl[i] = (struct client){ .id = i, .rounds = rounds };
        assert_int_equal(thread_create(&cl[i].th, "client", client_main, &cl[i]), 0);
    }
    for (int i = 0; i < CLIENTS; i++) {
        thread_join(&cl[i].th);
        ok += cl[i].ok;
        assert_int_equal(cl[i].failed, 0);
    }
    assert_int_equal(ok, CLIENTS * rounds);
    server_stop(&srv);
}

/* ---- waking blocked callers ------------------------------------------------------ */

struct blocked {
    int sd;
    int op; /* 0 recv, 1 accept */
    int ret, err;
    _Atomic int done;
    struct thread th;
};

static void *blocked_main(void *arg)
{
    struct blocked *b = arg;
    uint8_t buf[64];

    if (b->op == 0)
        b->ret = (int)sock_recv(b->sd, buf, sizeof(buf), 0);
    else
        b->ret = sock_accept(b->sd, NULL, NULL);
    b->err = errno;
    atomic_store(&b->done, 1);
    return NULL;
}

/* Wait (bounded) for every b[i].done; fail rather than hang. */
static void wait_done(struct blocked *b, int n)
{
    for (int tries = 0; tries < 1000; tries++) {
        int all = 1;
        for (int i = 0; i < n; i++)
            all &= atomic_load(&b[i].done);
        if (all)
            break;
        platform_sleep_ms(5);
    }
    for (int i = 0; i < n; i++) {
        assert_true(atomic_load(&b[i].done));
        thread_join(&b[i].th);
    }
}

static int connected_pair(int *client, int *accepted, uint16_t port)
{
    struct sockaddr_in a = lo_addr(port);
    int lsd = sock_open(AF_INET, SOCK_STREAM, 0);

    if (lsd < 0 || sock_bind(lsd, (struct sockaddr *)&a, sizeof(a)) < 0 || sock_listen(lsd, 4) < 0)
        return -1;
    *client = sock_open(AF_INET, SOCK_STREAM, 0);
    if (sock_connect(*client, (struct sockaddr *)&a, sizeof(a)) < 0)
        return -1;
    *accepted = sock_accept(lsd, NULL, NULL);
    sock_close(lsd);
    return *accepted >= 0 ? 0 : -1;
}

static void test_close_wakes_blocked_recv(void **state)
{
    struct blocked b[4];
    int c, s;

    (void)state;
    assert_int_equal(connected_pair(&c, &s, PORT + 1), 0);
    for (int i = 0; i < 4; i++) {
        b[i] = (struct blocked){ .sd = s, .op = 0 };
        thread_create(&b[i].th, "recv", blocked_main, &b[i]);
    }
    platform_sleep_ms(50); /* let them block */
    sock_close(s);
    wait_done(b, 4);
    for (int i = 0; i < 4; i++) {
        assert_int_equal(b[i].ret, -1);
        assert_int_equal(b[i].err, EBADF);
    }
    sock_close(c);
}

static void test_reset_wakes_blocked_recv(void **state)
{
    struct blocked b = { 0 };
    struct linger l = { .l_onoff = 1, .l_linger = 0 };
    int c, s;

    (void)state;
    assert_int_equal(connected_pair(&c, &s, PORT + 2), 0);
    b.sd = s;
    thread_create(&b.th, "recv", blocked_main, &b);
    platform_sleep_ms(50);
    sock_setsockopt(c, SOL_SOCKET, SO_LINGER, &l, sizeof(l));
    sock_close(c); /* RST */
    wait_done(&b, 1);
    assert_int_equal(b.ret, -1);
    assert_int_equal(b.err, ECONNRESET);
    sock_close(s);
}

static void test_shutdown_wakes_tcp_callers(void **state)
{
    struct sockaddr_in a = lo_addr(PORT + 3);
    struct blocked b[3];
    int lsd, c, s;

    (void)state;
    assert_int_equal(connected_pair(&c, &s, PORT + 4), 0);
    lsd = sock_open(AF_INET, SOCK_STREAM, 0);
    assert_int_equal(sock_bind(lsd, (struct sockaddr *)&a, sizeof(a)), 0);
    assert_int_equal(sock_listen(lsd, 4), 0);
    b[0] = (struct blocked){ .sd = lsd, .op = 1 };
    b[1] = (struct blocked){ .sd = s, .op = 0 };
    b[2] = (struct blocked){ .sd = c, .op = 0 };
    for (int i = 0; i < 3; i++)
        thread_create(&b[i].th, "blocked", blocked_main, &b[i]);
    platform_sleep_ms(50);
    net_shutdown();
    wait_done(b, 3);
    for (int i = 0; i < 3; i++) {
        assert_int_equal(b[i].ret, -1);
        assert_int_equal(b[i].err, ESHUTDOWN);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_many_threads_many_connections, setup, teardown),
        cmocka_unit_test_setup_teardown(test_close_wakes_blocked_recv, setup, teardown),
        cmocka_unit_test_setup_teardown(test_reset_wakes_blocked_recv, setup, teardown),
        cmocka_unit_test_setup_teardown(test_shutdown_wakes_tcp_callers, setup, teardown),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
