/*
 * test_sock_threads.c — blocking socket calls and what wakes them, with
 * real threads: the stack thread (net_run), the loopback device (127.0.0.1)
 * and application threads calling the socket API (sock.h). No test device,
 * no virtual clock.
 *
 * What is checked (architecture.md, "Locks and waiting"):
 *   - close() from another thread wakes every blocked reader (EBADF);
 *   - SO_RCVTIMEO ends a wait with EAGAIN;
 *   - readiness is level-triggered: a reader that drained its queue and
 *     waits again wakes for the next datagram;
 *   - net_shutdown() wakes blocked readers and pollers (ESHUTDOWN), also
 *     when its own clean-up closes their sockets at the same moment;
 *   - sock_poll() reports the right descriptor, times out, and says
 *     POLLNVAL for a closed one;
 *   - many threads sending and receiving at once lose nothing that the
 *     counters do not explain, and corrupt nothing (also with an input
 *     queue so small that sendto fails with ENOBUFS).
 *
 * Nothing here can hang the run: every thread sets a flag when it returns
 * and the main thread waits for the flags for a bounded time (WATCHDOG_MS)
 * before it joins; a thread that does not return fails the test.
 * Worker threads never call cmocka's assertions (they longjmp): they record
 * what they saw and the main thread asserts on it.
 *
 * NETSTEP_STRESS_SCALE (a number, default 1) scales the stress test, e.g.
 * 0.25 under ThreadSanitizer on a slow machine.
 */
#include <errno.h>
#include <sched.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "driver/loopback.h"
#include "net.h"
#include "platform.h"
#include "proto/sock.h"
#include "util/pbuf.h"
#include "util/stats.h"

#define WATCHDOG_MS 5000

static struct net_config default_config;
static long pbufs_before_up;

/* ---- helpers --------------------------------------------------------------------------- */

static int64_t counter(const char *dotted)
{
    int64_t v = stats_lookup(dotted);

    assert_true(v >= 0);
    return v;
}

static struct sockaddr_in lo_addr(uint16_t port)
{
    struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons(port) };

    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    return a;
}

#define SA(x) ((struct sockaddr *)&(x))

/* A UDP socket bound to 127.0.0.1 on an ephemeral port; its port in *port. */
static int open_lo(uint16_t *port)
{
    struct sockaddr_in a = lo_addr(0), name;
    socklen_t len = sizeof(name);
    int sd = sock_open(AF_INET, SOCK_DGRAM, 0);

    assert_true(sd >= 0);
    assert_int_equal(sock_bind(sd, SA(a), sizeof(a)), 0);
    assert_int_equal(sock_getsockname(sd, SA(name), &len), 0);
    if (port)
        *port = ntohs(name.sin_port);
    return sd;
}

static void set_rcvtimeo(int sd, unsigned ms)
{
    struct timeval tv = { .tv_sec = ms / 1000, .tv_usec = (ms % 1000) * 1000 };

    assert_int_equal(sock_setsockopt(sd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv)), 0);
}

/* One application thread and what it saw. */
struct worker {
    struct thread th;
    int sd, sd2;
    int index;
    void *(*fn)(struct worker *);
    _Atomic int entered;   /* about to make its blocking call */
    _Atomic int done;      /* returned (set last) */
    _Atomic int go;        /* main's permission for a second step */
    long ret;              /* what the call returned */
    int err;               /* errno after it */
    long ret2;             /* a second call's result */
    int err2;
    short revents[2];
};

static void *worker_main(void *arg)
{
    struct worker *w = arg;

    w->fn(w);
    atomic_store(&w->done, 1);
    return NULL;
}

static void start(struct worker *w, int index, void *(*fn)(struct worker *))
{
    w->index = index;
    w->fn = fn;
    atomic_store(&w->entered, 0);
    atomic_store(&w->done, 0);
    atomic_store(&w->go, 0);
    assert_int_equal(thread_create(&w->th, "worker", worker_main, w), 0);
}

/* Wait (bounded) until every one of n workers has returned; 1 if they did. */
static int wait_done(struct worker *w, int n, unsigned timeout_ms)
{
    uint64_t deadline = platform_now_ms() + timeout_ms;

    for (;;) {
        int all = 1;
        for (int i = 0; i < n; i++)
            all &= atomic_load(&w[i].done);
        if (all)
            return 1;
        if (platform_now_ms() >= deadline)
            return 0;
        platform_sleep_ms(2);
    }
}

/* Wait (bounded) until every worker has entered its blocking call. */
static void wait_entered(struct worker *w, int n)
{
    uint64_t deadline = platform_now_ms() + WATCHDOG_MS;

    for (int i = 0; i < n; i++) {
        while (!atomic_load(&w[i].entered)) {
            assert_true(platform_now_ms() < deadline);
            platform_sleep_ms(1);
        }
    }
}

/* Every worker returned within the watchdog: join them all. Fails (and
 * leaves hung threads alone, never joining them) otherwise. */
static void join_all(struct worker *w, int n, unsigned timeout_ms)
{
    int ok = wait_done(w, n, timeout_ms);

    if (!ok) {
        int hung = 0;
        for (int i = 0; i < n; i++)
            hung += !atomic_load(&w[i].done);
        fail_msg("%d of %d threads still blocked after %u ms", hung, n, timeout_ms);
    }
    for (int i = 0; i < n; i++)
        assert_int_equal(thread_join(&w[i].th), 0);
}

/* ---- fixtures ------------------------------------------------------------------------- */

static int setup(void **state)
{
    (void)state;
    net_config = default_config;
    stats_reset_all();
    pbufs_before_up = pbuf_outstanding();
    if (net_init() < 0 || !loopback_init() || net_run() < 0)
        return -1;
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    net_shutdown(); /* returns at once if the test shut the stack down */
    net_config = default_config;
    return pbuf_outstanding() == pbufs_before_up ? 0 : -1;
}

/* ---- close wakes readers ------------------------------------------------------------------ */

static void *blocking_recvfrom(struct worker *w)
{
    char buf[64];
    struct sockaddr_in from;
    socklen_t len = sizeof(from);

    atomic_store(&w->entered, 1);
    errno = 0;
    w->ret = sock_recvfrom(w->sd, buf, sizeof(buf), 0, SA(from), &len);
    w->err = errno;
    return NULL;
}

static void test_close_wakes_all_readers(void **state)
{
    static struct worker w[16];
    int sd = open_lo(NULL);

    (void)state;
    for (int i = 0; i < 16; i++) {
        w[i].sd = sd;
        start(&w[i], i, blocking_recvfrom);
    }
    wait_entered(w, 16);
    platform_sleep_ms(100); /* let them reach cond_wait */
    for (int i = 0; i < 16; i++)
        assert_false(atomic_load(&w[i].done)); /* blocked: nothing to read */
    assert_int_equal(sock_close(sd), 0);
    join_all(w, 16, WATCHDOG_MS);
    for (int i = 0; i < 16; i++) {
        assert_int_equal(w[i].ret, -1);
        assert_int_equal(w[i].err, EBADF);
    }
}

/* ---- SO_RCVTIMEO -------------------------------------------------------------------------------- */

static void test_receive_timeout(void **state)
{
    char buf[16];
    int sd = open_lo(NULL);
    uint64_t t0, elapsed;

    (void)state;
    set_rcvtimeo(sd, 200);
    t0 = platform_now_ms();
    errno = 0;
    assert_int_equal(sock_recv(sd, buf, sizeof(buf), 0), -1);
    elapsed = platform_now_ms() - t0;
    assert_int_equal(errno, EAGAIN);
    print_message("  SO_RCVTIMEO 200 ms: returned after %llu ms\n", (unsigned long long)elapsed);
    assert_true(elapsed >= 200);
    assert_true(elapsed < 2000);

    /* again, in another thread, to check the wait is per call */
    {
        static struct worker w;
        w.sd = sd;
        t0 = platform_now_ms();
        start(&w, 0, blocking_recvfrom);
        join_all(&w, 1, WATCHDOG_MS);
        elapsed = platform_now_ms() - t0;
        assert_int_equal(w.ret, -1);
        assert_int_equal(w.err, EAGAIN);
        assert_true(elapsed >= 200);
    }
    assert_int_equal(sock_close(sd), 0);
}

/* ---- level-triggered wake-ups ------------------------------------------------------------------- */

#define WAKE_ROUNDS 100

static _Atomic int reader_ready;  /* round the reader is about to block in */
static _Atomic int reader_got;    /* rounds completed */
static _Atomic int reader_errors; /* wrong data, wrong round, not drained */

static void *level_reader(struct worker *w)
{
    for (int i = 0; i < WAKE_ROUNDS; i++) {
        uint32_t v = 0;
        char buf[16];
        long n;

        atomic_store(&reader_ready, i + 1);
        errno = 0;
        n = sock_recv(w->sd, &v, sizeof(v), 0); /* blocks (SO_RCVTIMEO 5 s as a fuse) */
        if (n != (long)sizeof(v) || v != (uint32_t)i) {
            atomic_fetch_add(&reader_errors, 1);
            w->ret = n;
            w->err = errno;
            break;
        }
        /* drained: nothing more until the next round */
        errno = 0;
        if (sock_recv(w->sd, buf, sizeof(buf), MSG_DONTWAIT) != -1 || errno != EAGAIN)
            atomic_fetch_add(&reader_errors, 1);
        atomic_store(&reader_got, i + 1);
    }
    return NULL;
}

static void test_level_triggered_wakeup(void **state)
{
    static struct worker w;
    uint16_t port;
    int rx = open_lo(&port), tx = open_lo(NULL);
    struct sockaddr_in to = lo_addr(port);

    (void)state;
    set_rcvtimeo(rx, WATCHDOG_MS);
    atomic_store(&reader_ready, 0);
    atomic_store(&reader_got, 0);
    atomic_store(&reader_errors, 0);
    w.sd = rx;
    start(&w, 0, level_reader);
    for (int i = 0; i < WAKE_ROUNDS && !atomic_load(&reader_errors); i++) {
        uint32_t v = (uint32_t)i;
        uint64_t deadline = platform_now_ms() + WATCHDOG_MS;

        while (atomic_load(&reader_ready) != i + 1 && !atomic_load(&w.done)) {
            assert_true(platform_now_ms() < deadline);
            sched_yield();
        }
        /* usually already asleep in cond_wait by now; both orders must work */
        if (i % 2)
            platform_sleep_ms(1);
        assert_int_equal(sock_sendto(tx, &v, sizeof(v), 0, SA(to), sizeof(to)), sizeof(v));
        while (atomic_load(&reader_got) != i + 1 && !atomic_load(&w.done)) {
            assert_true(platform_now_ms() < deadline);
            sched_yield();
        }
    }
    join_all(&w, 1, WATCHDOG_MS);
    if (atomic_load(&reader_errors))
        print_message("  reader: recv returned %ld, errno %d\n", w.ret, w.err);
    assert_int_equal(atomic_load(&reader_errors), 0);
    assert_int_equal(atomic_load(&reader_got), WAKE_ROUNDS);
    assert_int_equal(sock_close(rx), 0);
    assert_int_equal(sock_close(tx), 0);
}

/* ---- net_shutdown wakes everybody ------------------------------------------------------------------ */

static void *recv_then_close(struct worker *w)
{
    blocking_recvfrom(w);
    atomic_store(&w->entered, 2);
    while (!atomic_load(&w->go))
        platform_sleep_ms(1);
    errno = 0;
    w->ret2 = sock_close(w->sd);
    w->err2 = errno;
    return NULL;
}

static void *poll_then_close(struct worker *w)
{
    struct pollfd p[2] = { { .fd = w->sd, .events = POLLIN }, { .fd = w->sd2, .events = POLLIN } };

    atomic_store(&w->entered, 1);
    errno = 0;
    w->ret = sock_poll(p, 2, -1);
    w->err = errno;
    w->revents[0] = p[0].revents;
    w->revents[1] = p[1].revents;
    atomic_store(&w->entered, 2);
    while (!atomic_load(&w->go))
        platform_sleep_ms(1);
    errno = 0;
    w->ret2 = sock_close(w->sd);
    w->err2 = errno;
    return NULL;
}

static void test_shutdown_wakes_blocked_calls(void **state)
{
    static struct worker w[10];
    int a = open_lo(NULL), b = open_lo(NULL);

    (void)state;
    for (int i = 0; i < 8; i++) {
        w[i].sd = i % 2 ? a : b;
        start(&w[i], i, recv_then_close);
    }
    for (int i = 8; i < 10; i++) {
        w[i].sd = a;
        w[i].sd2 = b;
        start(&w[i], i, poll_then_close);
    }
    wait_entered(w, 10);
    platform_sleep_ms(100);
    for (int i = 0; i < 10; i++)
        assert_false(atomic_load(&w[i].done));

    net_shutdown();
    assert_true(net_is_shutting_down());
    /* every blocked call returns (entered becomes 2) before any closes */
    {
        uint64_t deadline = platform_now_ms() + WATCHDOG_MS;
        for (int i = 0; i < 10; i++) {
            while (atomic_load(&w[i].entered) != 2) {
                if (platform_now_ms() >= deadline)
                    fail_msg("thread %d still blocked %d ms after net_shutdown", i, WATCHDOG_MS);
                platform_sleep_ms(1);
            }
        }
    }
    for (int i = 0; i < 10; i++)
        atomic_store(&w[i].go, 1);
    join_all(w, 10, WATCHDOG_MS);
    for (int i = 0; i < 8; i++)
        if (w[i].ret != -1 || w[i].err != ESHUTDOWN)
            print_message("  reader %d: %ld, errno %d (%s)\n", i, w[i].ret, w[i].err, strerror(w[i].err));
    for (int i = 8; i < 10; i++)
        if (w[i].ret != -1 || w[i].err != ESHUTDOWN)
            print_message("  poller %d: %ld, errno %d, revents 0x%x 0x%x\n", i, w[i].ret, w[i].err,
                          (unsigned)w[i].revents[0], (unsigned)w[i].revents[1]);
    for (int i = 0; i < 10; i++) {
        assert_int_equal(w[i].ret, -1);
        assert_int_equal(w[i].err, ESHUTDOWN);
    }
    /* closing afterwards: the stack closed them already; EBADF or 0 */
    for (int i = 0; i < 10; i++)
        assert_true(w[i].ret2 == 0 || (w[i].ret2 == -1 && w[i].err2 == EBADF));
    /* and nothing new can be opened */
    errno = 0;
    assert_int_equal(sock_open(AF_INET, SOCK_DGRAM, 0), -1);
    assert_int_equal(errno, ESHUTDOWN);
}

/* The same race made likely: 64 readers and 16 pollers, each on its own
 * socket, five times over. A call blocked when net_shutdown() begins must
 * fail with ESHUTDOWN, even when the stack's own clean-up (sock_cleanup)
 * closes its socket before the caller has run again. */
static void *poll_one(struct worker *w)
{
    struct pollfd p = { .fd = w->sd, .events = POLLIN };

    atomic_store(&w->entered, 1);
    errno = 0;
    w->ret = sock_poll(&p, 1, -1);
    w->err = errno;
    w->revents[0] = p.revents;
    return NULL;
}

static void test_shutdown_many_waiters(void **state)
{
    enum { READERS = 64, POLLERS = 16, ALL = READERS + POLLERS, ROUNDS = 5 };
    static struct worker w[ALL];
    int rd_badf = 0, rd_other = 0, pl_ready = 0, pl_other = 0;

    (void)state;
    for (int round = 0; round < ROUNDS; round++) {
        if (round > 0 && (net_init() < 0 || !loopback_init() || net_run() < 0))
            fail_msg("stack did not come up again");
        for (int i = 0; i < ALL; i++) {
            w[i].sd = open_lo(NULL);
            start(&w[i], i, i < READERS ? blocking_recvfrom : poll_one);
        }
        wait_entered(w, ALL);
        platform_sleep_ms(50);
        net_shutdown();
        join_all(w, ALL, WATCHDOG_MS);
        for (int i = 0; i < ALL; i++) {
            int ok = w[i].ret == -1 && w[i].err == ESHUTDOWN;
            if (i < READERS) {
                rd_badf += w[i].ret == -1 && w[i].err == EBADF;
                rd_other += !ok && !(w[i].ret == -1 && w[i].err == EBADF);
            } else {
                pl_ready += w[i].ret == 1 && (w[i].revents[0] & (POLLNVAL | POLLHUP));
                pl_other += !ok && !(w[i].ret == 1 && (w[i].revents[0] & (POLLNVAL | POLLHUP)));
            }
        }
    }
    if (rd_badf || pl_ready)
        print_message("  blocked at net_shutdown: %d of %d recvfrom got EBADF, %d of %d sock_poll "
                      "returned 1 with POLLNVAL/POLLHUP; ESHUTDOWN expected\n",
                      rd_badf, READERS * ROUNDS, pl_ready, POLLERS * ROUNDS);
    assert_int_equal(rd_other, 0);
    assert_int_equal(pl_other, 0);
    assert_int_equal(rd_badf, 0);
    assert_int_equal(pl_ready, 0);
}

/* ---- close racing with waiters --------------------------------------------------------------------- */

static void *plain_recv(struct worker *w)
{
    char buf[8];

    atomic_store(&w->entered, 1);
    errno = 0;
    w->ret = sock_recv(w->sd, buf, sizeof(buf), 0);
    w->err = errno;
    return NULL;
}

static void test_close_races_waiters(void **state)
{
    static struct worker w[4];
    int bad = 0;

    (void)state;
    for (int iter = 0; iter < 200; iter++) {
        int sd = sock_open(AF_INET, SOCK_DGRAM, 0);

        assert_true(sd >= 0);
        for (int i = 0; i < 4; i++) {
            w[i].sd = sd;
            w[i].ret = 0;
            w[i].err = 0;
            start(&w[i], i, plain_recv);
        }
        /* close at different moments: at once, after a yield, after they blocked */
        switch (iter % 4) {
        case 0: break;
        case 1: sched_yield(); break;
        case 2: wait_entered(w, 4); break;
        case 3: wait_entered(w, 4); platform_sleep_ms(1); break;
        }
        assert_int_equal(sock_close(sd), 0);
        join_all(w, 4, WATCHDOG_MS);
        for (int i = 0; i < 4; i++)
            bad += !(w[i].ret == -1 && w[i].err == EBADF);
    }
    assert_int_equal(bad, 0);
    assert_int_equal(counter("udp.in_datagrams"), 0);
}

/* ---- sock_poll ------------------------------------------------------------------------------------------ */

static void *send_later(struct worker *w)
{
    struct sockaddr_in to = lo_addr((uint16_t)w->index);

    atomic_store(&w->entered, 1);
    platform_sleep_ms(50);
    w->ret = sock_sendto(w->sd, "late", 4, 0, SA(to), sizeof(to));
    w->err = errno;
    return NULL;
}

static void test_poll(void **state)
{
    static struct worker w;
    uint16_t p1, p2;
    int s1 = open_lo(&p1), s2 = open_lo(&p2), tx = open_lo(NULL), s3 = open_lo(NULL);
    struct sockaddr_in to2 = lo_addr(p2);
    struct pollfd p[3];
    char buf[16];
    uint64_t t0, elapsed;

    (void)state;
    /* nothing to read; both writable */
    p[0] = (struct pollfd){ .fd = s1, .events = POLLIN };
    p[1] = (struct pollfd){ .fd = s2, .events = POLLIN };
    assert_int_equal(sock_poll(p, 2, 0), 0);
    p[0].events = p[1].events = POLLOUT;
    assert_int_equal(sock_poll(p, 2, 0), 2);
    assert_int_equal(p[0].revents, POLLOUT);

    /* a datagram for the second: poll waits for the stack thread to queue it */
    assert_int_equal(sock_sendto(tx, "two", 3, 0, SA(to2), sizeof(to2)), 3);
    p[0] = (struct pollfd){ .fd = s1, .events = POLLIN };
    p[1] = (struct pollfd){ .fd = s2, .events = POLLIN };
    assert_int_equal(sock_poll(p, 2, WATCHDOG_MS), 1);
    assert_int_equal(p[0].revents, 0);
    assert_int_equal(p[1].revents, POLLIN);
    assert_int_equal(sock_recv(s2, buf, sizeof(buf), MSG_DONTWAIT), 3);

    /* poll blocked (no timeout) while another thread sends 50 ms later */
    w.sd = tx;
    t0 = platform_now_ms();
    start(&w, p1, send_later);
    p[0] = (struct pollfd){ .fd = s1, .events = POLLIN };
    p[1] = (struct pollfd){ .fd = s2, .events = POLLIN };
    assert_int_equal(sock_poll(p, 2, -1), 1);
    elapsed = platform_now_ms() - t0;
    join_all(&w, 1, WATCHDOG_MS);
    assert_int_equal(w.ret, 4);
    assert_int_equal(p[0].revents, POLLIN);
    assert_int_equal(p[1].revents, 0);
    assert_true(elapsed < 2000);
    assert_int_equal(sock_recv(s1, buf, sizeof(buf), MSG_DONTWAIT), 4);

    /* 100 ms with nothing: 0, after about 100 ms */
    t0 = platform_now_ms();
    assert_int_equal(sock_poll(p, 2, 100), 0);
    elapsed = platform_now_ms() - t0;
    print_message("  poll 100 ms: returned after %llu ms\n", (unsigned long long)elapsed);
    assert_true(elapsed >= 100);
    assert_true(elapsed < 2000);
    assert_int_equal(p[0].revents, 0);
    assert_int_equal(p[1].revents, 0);

    /* a closed descriptor: POLLNVAL, whatever was asked; fd < 0 is skipped */
    assert_int_equal(sock_close(s3), 0);
    p[0] = (struct pollfd){ .fd = s3, .events = POLLIN };
    p[1] = (struct pollfd){ .fd = -1, .events = POLLIN };
    p[2] = (struct pollfd){ .fd = s1, .events = POLLIN };
    assert_int_equal(sock_poll(p, 3, 1000), 1);
    assert_int_equal(p[0].revents, POLLNVAL);
    assert_int_equal(p[1].revents, 0);
    assert_int_equal(p[2].revents, 0);

    assert_int_equal(sock_close(s1), 0);
    assert_int_equal(sock_close(s2), 0);
    assert_int_equal(sock_close(tx), 0);
}

/* ---- stress ------------------------------------------------------------------------------------------- */

#define STRESS_THREADS 8
#define STRESS_PER_THREAD 2000
#define STRESS_MAX 1400
#define STRESS_WINDOW 64
#define STRESS_HDR 6 /* seq (4) + checksum of the rest (2) */

struct stress {
    int count;        /* datagrams to send */
    long sent_ok, send_failed, received, timeouts, corrupt, dup_or_order;
    int last_errno;
};
static struct stress st[STRESS_THREADS];

static uint32_t mix(uint32_t x)
{
    x ^= x >> 16;
    x *= 0x7feb352dU;
    x ^= x >> 15;
    x *= 0x846ca68bU;
    x ^= x >> 16;
    return x;
}

static size_t stress_size(int tid, uint32_t seq)
{
    return 1 + mix(((uint32_t)tid << 24) ^ seq ^ 0x5bd1e995U) % STRESS_MAX;
}

static uint16_t sum16(const uint8_t *p, size_t n)
{
    uint32_t s = 0;

    for (size_t i = 0; i < n; i++)
        s = s * 31 + p[i];
    return (uint16_t)(s ^ (s >> 16));
}

/* Datagram seq of thread tid into buf; returns its size. */
static size_t stress_fill(int tid, uint32_t seq, uint8_t *buf)
{
    size_t n = stress_size(tid, seq);
    uint32_t x = mix(((uint32_t)tid << 20) ^ (seq * 2654435761U)) | 1;

    for (size_t i = 0; i < n; i++) {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        buf[i] = (uint8_t)x;
    }
    if (n >= STRESS_HDR) {
        buf[0] = (uint8_t)(seq >> 24);
        buf[1] = (uint8_t)(seq >> 16);
        buf[2] = (uint8_t)(seq >> 8);
        buf[3] = (uint8_t)seq;
        uint16_t s = sum16(buf + STRESS_HDR, n - STRESS_HDR);
        buf[4] = (uint8_t)(s >> 8);
        buf[5] = (uint8_t)s;
    }
    return n;
}

/* Which datagram is this? Datagrams on loopback arrive in order (one input
 * queue, one stack thread), so a short one with no room for a sequence
 * number is the first after *last whose size and bytes match. Returns the
 * seq, or -1 if it matches nothing we sent (corrupt). */
static long stress_identify(int tid, const uint8_t *got, size_t n, long last, int count, uint8_t *scratch)
{
    if (n >= STRESS_HDR) {
        uint32_t seq = (uint32_t)got[0] << 24 | (uint32_t)got[1] << 16 | (uint32_t)got[2] << 8 | got[3];
        uint16_t s = (uint16_t)(got[4] << 8 | got[5]);
        if (seq >= (uint32_t)count || stress_size(tid, seq) != n || s != sum16(got + STRESS_HDR, n - STRESS_HDR))
            return -1;
        if (stress_fill(tid, seq, scratch) != n || memcmp(scratch, got, n) != 0)
            return -1;
        return seq;
    }
    for (long seq = last + 1; seq < count && seq <= last + 2 * STRESS_WINDOW; seq++) {
        if (stress_size(tid, (uint32_t)seq) == n && stress_fill(tid, (uint32_t)seq, scratch) == n &&
            memcmp(scratch, got, n) == 0)
            return seq;
    }
    return -1;
}

static void *stress_main(struct worker *w)
{
    static _Thread_local uint8_t out[STRESS_MAX], in[STRESS_MAX + 1], scratch[STRESS_MAX];
    struct stress *s = &st[w->index];
    struct sockaddr_in to = lo_addr((uint16_t)w->ret); /* partner's port */
    long last = -1;

    for (int base = 0; base < s->count; base += STRESS_WINDOW) {
        int end = base + STRESS_WINDOW < s->count ? base + STRESS_WINDOW : s->count;
        long expect = 0;

        for (int seq = base; seq < end; seq++) {
            size_t n = stress_fill(w->index, (uint32_t)seq, out);
            if (sock_sendto(w->sd, out, n, 0, SA(to), sizeof(to)) == (ssize_t)n) {
                s->sent_ok++;
                expect++;
            } else {
                s->send_failed++;
                s->last_errno = errno;
            }
        }
        /* take this window's datagrams (a lost one costs one SO_RCVTIMEO) */
        while (expect > 0) {
            ssize_t n = sock_recv(w->sd2, in, sizeof(in), 0);
            long seq;
            if (n < 0) {
                s->timeouts++;
                s->last_errno = errno;
                break;
            }
            seq = stress_identify(w->index, in, (size_t)n, last, s->count, scratch);
            if (seq < 0) {
                s->corrupt++;
            } else {
                if (seq <= last)
                    s->dup_or_order++;
                last = seq;
                s->received++;
            }
            expect--;
        }
    }
    /* anything that straggled in after a timeout */
    for (;;) {
        ssize_t n = sock_recv(w->sd2, in, sizeof(in), MSG_DONTWAIT);
        long seq;
        if (n < 0)
            break;
        seq = stress_identify(w->index, in, (size_t)n, last, s->count, scratch);
        if (seq < 0) {
            s->corrupt++;
        } else {
            if (seq <= last)
                s->dup_or_order++;
            last = seq;
            s->received++;
        }
    }
    return NULL;
}

static double stress_scale(void)
{
    const char *e = getenv("NETSTEP_STRESS_SCALE");
    double v = e ? atof(e) : 1.0;

    return v > 0 ? v : 1.0;
}

/* 8 threads, each sending count datagrams to its own partner socket and
 * taking them back; returns nothing, asserts the totals. min_pct: the share
 * that must arrive. */
static void run_stress(int count, int min_pct)
{
    static struct worker w[STRESS_THREADS];
    long attempted = 0, sent_ok = 0, send_failed = 0, received = 0, timeouts = 0, corrupt = 0, disorder = 0;
    int64_t qfull, rcvbuf;
    uint64_t t0 = platform_now_ms();

    for (int i = 0; i < STRESS_THREADS; i++) {
        uint16_t port;
        memset(&st[i], 0, sizeof(st[i]));
        st[i].count = count;
        w[i].sd = open_lo(NULL);
        w[i].sd2 = open_lo(&port);
        w[i].ret = port;
        set_rcvtimeo(w[i].sd2, 2000);
    }
    for (int i = 0; i < STRESS_THREADS; i++)
        start(&w[i], i, stress_main);
    /* generous: only a stack that lost nearly everything takes this long */
    join_all(w, STRESS_THREADS, 300000);
    for (int i = 0; i < STRESS_THREADS; i++) {
        attempted += st[i].count;
        sent_ok += st[i].sent_ok;
        send_failed += st[i].send_failed;
        received += st[i].received;
        timeouts += st[i].timeouts;
        corrupt += st[i].corrupt;
        disorder += st[i].dup_or_order;
        if (st[i].send_failed && st[i].last_errno != ENOBUFS)
            print_message("  thread %d: last error %s\n", i, strerror(st[i].last_errno));
        sock_close(w[i].sd);
        sock_close(w[i].sd2);
    }
    qfull = counter("net.input_queue_full");
    rcvbuf = counter("udp.rcvbuf_errors");
    print_message("  %d threads x %d datagrams in %llu ms: %ld sent, %ld send errors, %ld received, "
                  "%ld timeouts; input_queue_full %lld, rcvbuf_errors %lld\n",
                  STRESS_THREADS, count, (unsigned long long)(platform_now_ms() - t0), sent_ok,
                  send_failed, received, timeouts, (long long)qfull, (long long)rcvbuf);
    assert_int_equal(corrupt, 0);
    assert_int_equal(disorder, 0);
    assert_int_equal(sent_ok + send_failed, attempted);
    /* every loss is explained by a counter: a full input queue fails the
     * sendto (loopback hands the datagram to net_input inside it), a full
     * socket drops it later */
    assert_int_equal(send_failed, qfull);
    assert_int_equal(received + rcvbuf, sent_ok);
    assert_int_equal(received + qfull + rcvbuf, attempted);
    assert_true(received * 100 >= attempted * min_pct);
}

static int stress_count(int base)
{
    int count = (int)(base * stress_scale());

    return count < 50 ? 50 : count;
}

static void test_stress(void **state)
{
    (void)state;
    run_stress(stress_count(STRESS_PER_THREAD), 90);
}

/* The same with an input queue of 16 frames: sendto fails with ENOBUFS
 * now and then, and the accounting must still add up. */
static void test_stress_small_input_queue(void **state)
{
    (void)state;
    net_config.input_queue_max = 16; /* read by net_input at run time */
    run_stress(stress_count(STRESS_PER_THREAD / 4), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_close_wakes_all_readers, setup, teardown),
        cmocka_unit_test_setup_teardown(test_receive_timeout, setup, teardown),
        cmocka_unit_test_setup_teardown(test_level_triggered_wakeup, setup, teardown),
        cmocka_unit_test_setup_teardown(test_shutdown_wakes_blocked_calls, setup, teardown),
        cmocka_unit_test_setup_teardown(test_shutdown_many_waiters, setup, teardown),
        cmocka_unit_test_setup_teardown(test_close_races_waiters, setup, teardown),
        cmocka_unit_test_setup_teardown(test_poll, setup, teardown),
        cmocka_unit_test_setup_teardown(test_stress, setup, teardown),
        cmocka_unit_test_setup_teardown(test_stress_small_input_queue, setup, teardown),
    };

    default_config = net_config;
    return cmocka_run_group_tests(tests, NULL, NULL);
}
