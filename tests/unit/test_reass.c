/*
 * test_reass.c — unit tests of IPv4 reassembly (proto/ip_reass.c).
 *
 * Fragments are crafted here, handed straight to ip_reass_input() (no
 * device, no ip_input), and the outcome checked three ways: the datagram
 * returned, the ip.reass_* counters, and that every pbuf is freed. Timeouts
 * run on the virtual clock, so they take no real time.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "net.h"
#include "proto/icmp.h"
#include "proto/ip.h"
#include "util/byteorder.h"
#include "util/cksum.h"
#include "util/log.h"
#include "util/mem.h"
#include "util/pbuf.h"
#include "util/stats.h"

#define PROTO IP_PROTOCOL_UDP
#define MAX_FRAGS 4096

static struct net_config saved_config;
static long pbufs_at_start;
static uint8_t pattern[IP_TOTAL_SIZE_MAX];

/* One fragment to craft: payload bytes [off, off+len) of the pattern. */
struct frag {
    size_t off, len;
    int mf;
};

static uint32_t src_addr(void)
{
    return hton32(0xc0000201); /* 192.0.2.1 */
}

static uint32_t dst_addr(void)
{
    return hton32(0xc0000202); /* 192.0.2.2 */
}

/* A fragment of datagram id with a header of hlen bytes (options are
 * NOPs), carrying pattern[off..off+len). */
static struct pbuf *make_frag_h(uint16_t id, size_t off, size_t len, int mf, size_t hlen)
{
    struct pbuf *pb = pbuf_alloc(PBUF_HEADROOM, hlen + len);
    uint8_t *h;

    assert_non_null(pb);
    h = pb->data;
    memset(h, 0, hlen);
    h[0] = (uint8_t)(0x40 | (hlen / 4));
    store16(h + 2, (uint16_t)(hlen + len));
    store16(h + 4, id);
    store16(h + 6, (uint16_t)((mf ? IP_FLAG_MF : 0) | (off / 8)));
    h[8] = 64;
    h[9] = PROTO;
    memcpy(h + 12, &(uint32_t){src_addr()}, 4);
    memcpy(h + 16, &(uint32_t){dst_addr()}, 4);
    memset(h + 20, 1, hlen - 20); /* NOP options */
    store16(h + 10, cksum16(h, hlen, 0));
    memcpy(h + hlen, pattern + off, len);
    pb->proto = 0x0800;
    pb->flags = PBUF_FLAG_NO_LINK;
    return pb;
}

static struct pbuf *make_frag(uint16_t id, size_t off, size_t len, int mf)
{
    return make_frag_h(id, off, len, mf, IP_HDR_SIZE_MIN);
}

static struct pbuf *feed(uint16_t id, size_t off, size_t len, int mf)
{
    return ip_reass_input(make_frag(id, off, len, mf));
}

/* Split a payload of total bytes into pieces of at most size (a multiple
 * of 8). Returns how many. */
static size_t split(struct frag *fr, size_t total, size_t size)
{
    size_t n = 0;

    for (size_t off = 0; off < total; off += size, n++) {
        fr[n].off = off;
        fr[n].len = total - off < size ? total - off : size;
        fr[n].mf = off + size < total;
    }
    return n;
}

/* Check pb is the whole datagram id with payload pattern[0..total). */
static void check_datagram(struct pbuf *pb, uint16_t id, size_t total)
{
    const uint8_t *h;

    assert_non_null(pb);
    h = pb->data;
    assert_int_equal(pb->len, IP_HDR_SIZE_MIN + total);
    assert_int_equal(h[0], 0x45);
    assert_int_equal(load16(h + 2), IP_HDR_SIZE_MIN + total);
    assert_int_equal(load16(h + 4), id);
    assert_int_equal(load16(h + 6), 0);
    assert_int_equal(h[9], PROTO);
    assert_int_equal(cksum16(h, IP_HDR_SIZE_MIN, 0), 0);
    assert_memory_equal(h + 12, &(uint32_t){src_addr()}, 4);
    assert_memory_equal(h + 16, &(uint32_t){dst_addr()}, 4);
    assert_memory_equal(h + IP_HDR_SIZE_MIN, pattern, total);
    assert_int_equal(pb->proto, 0x0800);
    assert_int_equal(pb->flags, PBUF_FLAG_NO_LINK);
}

/* Feed frags in the order given by idx; only the last may complete. */
static void feed_order(uint16_t id, const struct frag *fr, const size_t *order, size_t n,
                       size_t total)
{
    struct pbuf *pb = NULL;

    for (size_t i = 0; i < n; i++) {
        const struct frag *x = &fr[order[i]];
        pb = feed(id, x->off, x->len, x->mf);
        if (i + 1 < n)
            assert_null(pb);
    }
    check_datagram(pb, id, total);
    pbuf_free(pb);
}

static void assert_usage(unsigned datagrams, size_t bytes)
{
    unsigned d = 99;
    size_t b = 99;

    ip_reass_usage(&d, &b);
    assert_int_equal(d, datagrams);
    assert_int_equal(b, bytes);
}

static uint64_t st(int idx)
{
    return stat_read(&ip_stats, idx);
}

/* ---- fixtures ---- */

static int setup(void **state)
{
    (void)state;
    saved_config = net_config;
    net_config.ip_reass_timeout_ms = 30000;
    net_clock_set_virtual(1000000);
    stats_register(&ip_stats);
    stats_reset_all();
    pbufs_at_start = pbuf_outstanding();
    return ip_reass_init();
}

static int teardown(void **state)
{
    (void)state;
    ip_reass_cleanup();
    mem_fail_after(0);
    net_config = saved_config;
    assert_int_equal(pbuf_outstanding(), pbufs_at_start);
    return 0;
}

/* ---- tests ---- */

static struct frag f[MAX_FRAGS]; /* fragments of the current test */
static size_t idx[MAX_FRAGS];     /* the order to feed them in */

static void test_in_order(void **state)
{
    size_t n = split(f, 4000, 1480);

    (void)state;
    assert_int_equal(n, 3);
    for (size_t i = 0; i < n; i++)
        idx[i] = i;
    feed_order(1, f, idx, n, 4000);
    assert_int_equal(st(IPSTAT_REASS_FRAGMENTS), 3);
    assert_int_equal(st(IPSTAT_REASS_OK), 1);
    assert_usage(0, 0);
}

static void test_reverse_order(void **state)
{
    size_t n = split(f, 5000, 1000);

    (void)state;
    for (size_t i = 0; i < n; i++)
        idx[i] = n - 1 - i;
    feed_order(2, f, idx, n, 5000);
    assert_int_equal(st(IPSTAT_REASS_OK), 1);
    assert_usage(0, 0);
}

/* xorshift32: the same shuffle on every run and host */
static uint32_t rnd(uint32_t *s)
{
    *s ^= *s << 13;
    *s ^= *s >> 17;
    *s ^= *s << 5;
    return *s;
}

static void test_random_order(void **state)
{
    (void)state;
    for (uint32_t seed = 1; seed <= 16; seed++) {
        uint32_t s = seed * 2654435761u;
        size_t total = 1 + rnd(&s) % 30000, size = 8 * (1 + rnd(&s) % 200);
        size_t n = split(f, total, size);

        assert_true(n <= MAX_FRAGS);
        for (size_t i = 0; i < n; i++)
            idx[i] = i;
        for (size_t i = n - 1; i > 0; i--) { /* Fisher-Yates */
            size_t j = rnd(&s) % (i + 1), t = idx[i];
            idx[i] = idx[j];
            idx[j] = t;
        }
        feed_order((uint16_t)(100 + seed), f, idx, n, total);
        assert_usage(0, 0);
    }
    assert_int_equal(st(IPSTAT_REASS_OK), 16);
}

/* Datagrams with the same id but another key stay apart. */
static void test_interleaved(void **state)
{
    struct pbuf *a, *b;

    (void)state;
    assert_null(feed(7, 0, 800, 1));
    b = make_frag(7, 0, 800, 1);
    b->data[9] = IP_PROTOCOL_TCP; /* another protocol: another datagram */
    store16(b->data + 10, 0);
    store16(b->data + 10, cksum16(b->data, IP_HDR_SIZE_MIN, 0));
    assert_null(ip_reass_input(b));
    assert_usage(2, 1600);
    a = feed(7, 800, 100, 0);
    check_datagram(a, 7, 900);
    pbuf_free(a);
    assert_usage(1, 800);
}

/* RFC 791 §3.2: options of the first fragment are not kept in the result. */
static void test_options_dropped(void **state)
{
    struct pbuf *pb;

    (void)state;
    assert_null(ip_reass_input(make_frag_h(3, 0, 16, 1, 28)));
    pb = ip_reass_input(make_frag_h(3, 16, 5, 0, 24));
    check_datagram(pb, 3, 21);
    pbuf_free(pb);
}

static void test_duplicate(void **state)
{
    struct pbuf *pb;

    (void)state;
    assert_null(feed(4, 0, 1480, 1));
    assert_null(feed(4, 0, 1480, 1));
    assert_int_equal(st(IPSTAT_REASS_DUPLICATE), 1);
    assert_usage(1, 1480);
    assert_null(feed(4, 2960, 100, 0));
    assert_null(feed(4, 2960, 100, 0)); /* a repeated last fragment too */
    assert_int_equal(st(IPSTAT_REASS_DUPLICATE), 2);
    assert_usage(1, 1580);
    assert_null(feed(4, 3064, 8, 1)); /* beyond the known end */
    assert_int_equal(st(IPSTAT_REASS_OVERSIZE), 1);
    assert_usage(0, 0);
    /* a fresh train with the same id works */
    assert_null(feed(4, 1480, 100, 0));
    assert_null(feed(4, 1480, 100, 0));
    pb = feed(4, 0, 1480, 1);
    check_datagram(pb, 4, 1580);
    pbuf_free(pb);
    assert_int_equal(st(IPSTAT_REASS_DUPLICATE), 3);
    assert_int_equal(st(IPSTAT_REASS_FRAGMENTS), 8);
}

static void test_overlap(void **state)
{
    (void)state;
    /* a fragment starting inside a held one */
    assert_null(feed(5, 0, 1480, 1));
    assert_null(feed(5, 1472, 8, 1));
    assert_int_equal(st(IPSTAT_REASS_OVERLAP), 1);
    assert_usage(0, 0);
    /* same offset, other length */
    assert_null(feed(5, 0, 1480, 1));
    assert_null(feed(5, 0, 16, 1));
    assert_int_equal(st(IPSTAT_REASS_OVERLAP), 2);
    assert_usage(0, 0);
    /* a fragment running into the next held one */
    assert_null(feed(5, 800, 80, 0));
    assert_null(feed(5, 0, 808, 1));
    assert_int_equal(st(IPSTAT_REASS_OVERLAP), 3);
    assert_usage(0, 0);
    /* one covering a held one entirely; the rest of the train then starts
     * a new context that can never be confused with the dropped one */
    assert_null(feed(5, 80, 8, 1));
    assert_null(feed(5, 0, 800, 1));
    assert_int_equal(st(IPSTAT_REASS_OVERLAP), 4);
    assert_null(feed(5, 800, 8, 0));
    assert_usage(1, 8);
    assert_int_equal(st(IPSTAT_REASS_OK), 0);
}

static void test_oversize(void **state)
{
    (void)state;
    /* offset*8 + length > 65535 - 20 drops the train */
    assert_null(feed(6, 0, 1480, 1));
    assert_null(feed(6, 65512, 8, 1));
    assert_int_equal(st(IPSTAT_REASS_OVERSIZE), 1);
    assert_usage(0, 0);
    /* the largest legal last fragment is fine */
    assert_null(feed(6, 65512, 3, 0));
    assert_usage(1, 3);
    assert_null(feed(6, 65512, 4, 0));
    assert_int_equal(st(IPSTAT_REASS_OVERSIZE), 2);
    assert_usage(0, 0);
    /* a last fragment ending before data already held */
    assert_null(feed(6, 1480, 1480, 1));
    assert_null(feed(6, 800, 8, 0));
    assert_int_equal(st(IPSTAT_REASS_OVERSIZE), 3);
    assert_usage(0, 0);
    /* two last fragments that disagree */
    assert_null(feed(6, 1480, 100, 0));
    assert_null(feed(6, 2960, 100, 0));
    assert_int_equal(st(IPSTAT_REASS_BAD_FRAGMENT), 1);
    assert_usage(0, 0);
}

static void test_bad_fragment_length(void **state)
{
    (void)state;
    assert_null(feed(8, 0, 1480, 1));
    assert_null(feed(8, 1480, 100, 1)); /* MF and not a multiple of 8 */
    assert_null(feed(8, 1480, 0, 1));   /* MF and empty */
    assert_int_equal(st(IPSTAT_REASS_BAD_FRAGMENT), 2);
    assert_usage(1, 1480); /* the train survives */
    assert_null(feed(9, 8, 7, 1));
    assert_int_equal(st(IPSTAT_REASS_BAD_FRAGMENT), 3);
    assert_usage(1, 1480);
}

static void test_context_limit(void **state)
{
    struct pbuf *pb;

    (void)state;
    net_config.ip_reass_max_datagrams = 3;
    for (uint16_t id = 10; id < 13; id++)
        assert_null(feed(id, 0, 8, 1));
    assert_null(feed(13, 0, 8, 1));
    assert_int_equal(st(IPSTAT_REASS_NO_MEMORY), 1);
    assert_usage(3, 24);
    /* fragments of datagrams already held are still taken */
    pb = feed(10, 8, 8, 0);
    check_datagram(pb, 10, 16);
    pbuf_free(pb);
    assert_null(feed(13, 0, 8, 1));
    assert_usage(3, 24);
    assert_int_equal(st(IPSTAT_REASS_NO_MEMORY), 1);
}

static void test_byte_limit(void **state)
{
    struct pbuf *pb;

    (void)state;
    net_config.ip_reass_max_bytes = 3000;
    assert_null(feed(20, 0, 1480, 1));
    assert_null(feed(21, 0, 1480, 1));
    assert_null(feed(20, 1480, 100, 0)); /* 3060 > 3000 */
    assert_null(feed(22, 1480, 48, 0));  /* 3008 > 3000: no new context */
    assert_int_equal(st(IPSTAT_REASS_NO_MEMORY), 2);
    assert_usage(2, 2960);
    assert_null(feed(22, 1480, 40, 0)); /* exactly 3000 */
    assert_usage(3, 3000);
    net_config.ip_reass_max_bytes = 4000;
    pb = feed(20, 1480, 100, 0);
    check_datagram(pb, 20, 1580);
    pbuf_free(pb);
    assert_usage(2, 1520);
}

static void test_no_memory(void **state)
{
    struct pbuf *frag;

    (void)state;
    /* the context allocation fails */
    frag = make_frag(30, 0, 8, 1);
    mem_fail_after(1);
    assert_null(ip_reass_input(frag));
    assert_int_equal(st(IPSTAT_REASS_NO_MEMORY), 1);
    assert_usage(0, 0);
    /* the whole datagram's allocation fails: everything is freed */
    assert_null(feed(30, 0, 8, 1));
    frag = make_frag(30, 8, 8, 0);
    mem_fail_after(1);
    assert_null(ip_reass_input(frag));
    assert_int_equal(st(IPSTAT_REASS_NO_MEMORY), 2);
    assert_int_equal(st(IPSTAT_REASS_OK), 0);
    assert_usage(0, 0);
}

/* The ICMP errors icmp_error() has agreed to send. */
static uint64_t icmp_time_exceeded(void)
{
    return stat_read(&icmp_stats, ICMPSTAT_OUT_TIME_EXCEEDS);
}

static void test_timeout(void **state)
{
    uint64_t icmp_before = icmp_time_exceeded();

    (void)state;
    net_config.ip_reass_timeout_ms = 1000;
    assert_null(feed(40, 1480, 100, 0)); /* no first fragment: no ICMP */
    net_clock_advance(500);
    assert_null(feed(41, 8, 8, 1));
    assert_null(feed(41, 16, 8, 1)); /* later fragments do not extend it */
    net_clock_advance(499);
    net_timer_run_due();
    assert_int_equal(st(IPSTAT_REASS_TIMEOUT), 0);
    assert_usage(2, 116);
    net_clock_advance(1);
    assert_int_equal(net_timer_run_due(), 1);
    assert_int_equal(st(IPSTAT_REASS_TIMEOUT), 1);
    assert_usage(1, 16);
    /* the expired datagram is forgotten: its last fragment starts anew */
    assert_null(feed(40, 0, 1480, 1));
    net_clock_advance(499);
    net_timer_run_due();
    assert_usage(2, 1496);
    net_clock_advance(1);
    net_timer_run_due();
    assert_int_equal(st(IPSTAT_REASS_TIMEOUT), 2);
    assert_usage(1, 1480);
    assert_int_equal(icmp_time_exceeded(), icmp_before);
    /* RFC 1122 §3.3.2: with the first fragment, a Time Exceeded goes out */
    net_clock_advance(500);
    net_timer_run_due();
    assert_int_equal(st(IPSTAT_REASS_TIMEOUT), 3);
    assert_usage(0, 0);
    assert_int_equal(icmp_time_exceeded(), icmp_before + 1);
    /* nothing left: the timer is not armed any more */
    net_clock_advance(100000);
    assert_int_equal(net_timer_run_due(), 0);
}

/* Cleanup frees held trains; init works again afterwards. */
static void test_cleanup_reinit(void **state)
{
    struct pbuf *pb;

    (void)state;
    assert_null(feed(50, 0, 8, 1));
    assert_null(feed(51, 8, 8, 0));
    ip_reass_cleanup();
    assert_usage(0, 0);
    assert_int_equal(pbuf_outstanding(), pbufs_at_start);
    assert_int_equal(ip_reass_init(), 0);
    assert_null(feed(50, 8, 8, 0));
    pb = feed(50, 0, 8, 1);
    check_datagram(pb, 50, 16);
    pbuf_free(pb);
}

/* Several threads reassembling their own datagrams at once (run it under
 * `make tsan` too): each thread's fragments interleave with the others'. */
#define THREADS 4
#define PER_THREAD 200

struct worker {
    struct thread th;
    uint16_t base; /* first datagram id */
    int ok;        /* datagrams it got back whole */
};

static void *reass_worker(void *arg)
{
    struct worker *w = arg;

    for (uint16_t i = 0; i < PER_THREAD; i++) {
        struct pbuf *a = feed((uint16_t)(w->base + i), 1480, 520, 0);
        struct pbuf *b = feed((uint16_t)(w->base + i), 0, 1480, 1);
        if (!a && b && b->len == IP_HDR_SIZE_MIN + 2000 &&
            memcmp(b->data + IP_HDR_SIZE_MIN, pattern, 2000) == 0)
            w->ok++;
        pbuf_free(b);
    }
    return NULL;
}

static void test_threads(void **state)
{
    struct worker w[THREADS] = {0};

    (void)state;
    for (int i = 0; i < THREADS; i++) {
        w[i].base = (uint16_t)(1000 * (i + 1));
        assert_int_equal(thread_create(&w[i].th, "reass", reass_worker, &w[i]), 0);
    }
    for (int i = 0; i < THREADS; i++) {
        assert_int_equal(thread_join(&w[i].th), 0);
        assert_int_equal(w[i].ok, PER_THREAD);
    }
    assert_int_equal(st(IPSTAT_REASS_OK), THREADS * PER_THREAD);
    assert_usage(0, 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_in_order, setup, teardown),
        cmocka_unit_test_setup_teardown(test_reverse_order, setup, teardown),
        cmocka_unit_test_setup_teardown(test_random_order, setup, teardown),
        cmocka_unit_test_setup_teardown(test_interleaved, setup, teardown),
        cmocka_unit_test_setup_teardown(test_options_dropped, setup, teardown),
        cmocka_unit_test_setup_teardown(test_duplicate, setup, teardown),
        cmocka_unit_test_setup_teardown(test_overlap, setup, teardown),
        cmocka_unit_test_setup_teardown(test_oversize, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bad_fragment_length, setup, teardown),
        cmocka_unit_test_setup_teardown(test_context_limit, setup, teardown),
        cmocka_unit_test_setup_teardown(test_byte_limit, setup, teardown),
        cmocka_unit_test_setup_teardown(test_no_memory, setup, teardown),
        cmocka_unit_test_setup_teardown(test_timeout, setup, teardown),
        cmocka_unit_test_setup_teardown(test_cleanup_reinit, setup, teardown),
        cmocka_unit_test_setup_teardown(test_threads, setup, teardown),
    };

    log_configure_from_env(); /* NETSTEP_LOG=ip=debug shows each drop */
    for (size_t i = 0; i < sizeof(pattern); i++)
        pattern[i] = (uint8_t)(i * 7 + i / 251);
    return cmocka_run_group_tests(tests, NULL, NULL);
}
