/*
 * test_util.c — unit tests of util/: the RFC 1071 checksum, byte order,
 * packet buffers, statistics, log configuration and the allocator's
 * failure switch.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "util/byteorder.h"
#include "util/cksum.h"
#include "util/log.h"
#include "util/mem.h"
#include "util/pbuf.h"
#include "util/stats.h"

/* ---- checksum (RFC 1071) ---- */

/* RFC 1071 §3's worked example: the sum of these bytes is 0xddf2. */
static const uint8_t rfc1071_bytes[] = {0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7};

/* A real IPv4 header whose checksum field holds 0xb861. */
static const uint8_t ip_header[20] = {
    0x45, 0x00, 0x00, 0x73, 0x00, 0x00, 0x40, 0x00, 0x40, 0x11,
    0xb8, 0x61, 0xc0, 0xa8, 0x00, 0x01, 0xc0, 0xa8, 0x00, 0xc7,
};

static void test_cksum_vectors(void **state)
{
    uint8_t h[20];

    (void)state;
    assert_int_equal(cksum_finish(cksum_partial(rfc1071_bytes, 8, 0)), (uint16_t)~0xddf2);
    assert_int_equal(cksum16(rfc1071_bytes, 8, 0), 0x220d);
    /* a header with a correct checksum sums to zero ... */
    assert_int_equal(cksum16(ip_header, sizeof(ip_header), 0), 0);
    /* ... and computing it over a zeroed field gives the stored value */
    memcpy(h, ip_header, sizeof(h));
    store16(h + 10, 0);
    assert_int_equal(cksum16(h, sizeof(h), 0), 0xb861);
    /* empty data and all-zero data */
    assert_int_equal(cksum16(NULL, 0, 0), 0xffff);
    memset(h, 0, sizeof(h));
    assert_int_equal(cksum16(h, sizeof(h), 0), 0xffff);
    /* end-around carry: 0xffff + 0x0001 folds to 0x0001 */
    assert_int_equal(cksum16((const uint8_t[]){0xff, 0xff, 0x00, 0x01}, 4, 0), 0xfffe);
}

static void test_cksum_odd_length(void **state)
{
    (void)state;
    /* a trailing byte counts as the high byte of a word padded with zero */
    assert_int_equal(cksum16((const uint8_t[]){0x01}, 1, 0), 0xfeff);
    assert_int_equal(cksum16((const uint8_t[]){0x12, 0x34, 0x56}, 3, 0),
                     cksum16((const uint8_t[]){0x12, 0x34, 0x56, 0x00}, 4, 0));
    assert_int_equal(cksum16(rfc1071_bytes, 7, 0),
                     cksum16((const uint8_t[]){0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0x00},
                             8, 0));
}

/* The word-at-a-time sum against the plain definition (big-endian 16-bit
 * words, odd byte padded with zero) for every length up to 1600 at every
 * alignment mod 8, on pseudo-random bytes, with and without a seed sum. */
static uint16_t cksum_reference(const uint8_t *p, size_t len, uint32_t seed)
{
    uint64_t acc = seed;

    for (size_t i = 0; i + 1 < len; i += 2)
        acc += (uint32_t)((p[i] << 8) | p[i + 1]);
    if (len & 1)
        acc += (uint32_t)(p[len - 1] << 8);
    while (acc >> 16)
        acc = (acc & 0xffff) + (acc >> 16);
    return (uint16_t)~acc;
}

static void test_cksum_matches_reference(void **state)
{
    static uint8_t buf[1600 + 8];
    uint32_t x = 12345;

    (void)state;
    for (size_t i = 0; i < sizeof(buf); i++) {
        x = x * 1103515245u + 12345u;
        buf[i] = (uint8_t)(x >> 16);
    }
    for (size_t off = 0; off < 8; off++)
        for (size_t len = 0; len <= 1600; len++) {
            uint32_t seed = (uint32_t)(len * 2654435761u) & 0x3ffff;
            assert_int_equal(cksum16(buf + off, len, 0), cksum_reference(buf + off, len, 0));
            assert_int_equal(cksum16(buf + off, len, seed), cksum_reference(buf + off, len, seed));
        }
    /* all-ones words: the end-around carry of every fold */
    memset(buf, 0xff, sizeof(buf));
    for (size_t len = 0; len <= 1600; len += 7)
        assert_int_equal(cksum16(buf, len, 0xffffffffu), cksum_reference(buf, len, 0xffffffffu));
}

static void test_cksum_pieces(void **state)
{
    uint8_t buf[1001];
    uint16_t whole;

    (void)state;
    for (size_t i = 0; i < sizeof(buf); i++)
        buf[i] = (uint8_t)(i * 37 + 11);
    whole = cksum16(buf, sizeof(buf), 0);
    /* pieces at even offsets, the last one odd, add up to the whole */
    for (size_t cut1 = 0; cut1 <= 40; cut1 += 2) {
        for (size_t cut2 = cut1; cut2 <= 200; cut2 += 34) {
            uint32_t sum = cksum_partial(buf, cut1, 0);
            sum = cksum_partial(buf + cut1, cut2 - cut1, sum);
            sum = cksum_partial(buf + cut2, sizeof(buf) - cut2, sum);
            assert_int_equal(cksum_finish(sum), whole);
        }
    }
    /* a large buffer (a whole 64 KiB datagram) cannot overflow the sum */
    {
        static uint8_t big[65535];
        memset(big, 0xff, sizeof(big));
        assert_int_equal(cksum16(big, sizeof(big), 0), 0x00ff);
    }
}

static void test_cksum_pseudo(void **state)
{
    /* 192.0.2.1 -> 192.0.2.2, UDP, 12 bytes, as the bytes RFC 768 lists */
    static const uint8_t ph[12] = {192, 0, 2, 1, 192, 0, 2, 2, 0, 17, 0, 12};
    uint32_t src, dst;
    uint8_t seg[12] = {0x04, 0x00, 0x00, 0x07, 0x00, 0x0c, 0x00, 0x00, 'h', 'e', 'l', 'o'};
    uint16_t sum;

    (void)state;
    memcpy(&src, ph, 4);
    memcpy(&dst, ph + 4, 4);
    assert_int_equal(cksum_finish(cksum_pseudo(src, dst, 17, 12)),
                     cksum_finish(cksum_partial(ph, sizeof(ph), 0)));
    /* a UDP segment checksummed with it verifies to zero */
    sum = cksum16(seg, sizeof(seg), cksum_pseudo(src, dst, 17, sizeof(seg)));
    store16(seg + 6, sum);
    assert_int_equal(cksum16(seg, sizeof(seg), cksum_pseudo(src, dst, 17, sizeof(seg))), 0);
}

/* ---- byte order ---- */

static void test_byteorder(void **state)
{
    uint8_t b[8] = {0};
    uint16_t v16 = hton16(0x1234);
    uint32_t v32 = hton32(0x0a0b0c0d);

    (void)state;
    assert_memory_equal(&v16, ((const uint8_t[]){0x12, 0x34}), 2);
    assert_memory_equal(&v32, ((const uint8_t[]){0x0a, 0x0b, 0x0c, 0x0d}), 4);
    assert_int_equal(ntoh16(hton16(0xbeef)), 0xbeef);
    assert_int_equal(ntoh32(hton32(0xdeadbeef)), 0xdeadbeef);
    /* unaligned stores and loads, big-endian on the wire */
    store16(b + 1, 0xabcd);
    assert_memory_equal(b, ((const uint8_t[]){0x00, 0xab, 0xcd, 0x00}), 4);
    assert_int_equal(load16(b + 1), 0xabcd);
    store32(b + 3, 0x01020304);
    assert_memory_equal(b + 3, ((const uint8_t[]){0x01, 0x02, 0x03, 0x04}), 4);
    assert_int_equal(load32(b + 3), 0x01020304);
    assert_int_equal(b[7], 0);
}

/* ---- packet buffers ---- */

static void test_pbuf_push_pull_trim(void **state)
{
    long start = pbuf_outstanding();
    struct pbuf *pb = pbuf_alloc(10, 20);

    (void)state;
    assert_non_null(pb);
    assert_int_equal(pbuf_outstanding(), start + 1);
    assert_int_equal(pbuf_headroom(pb), 10);
    assert_int_equal(pb->len, 20);
    assert_true(pb->cap >= 30); /* a pooled buffer: PBUF_POOL_SIZE */
    assert_null(pb->next);
    assert_int_equal(pb->flags, 0);
    /* push into the headroom, and no further */
    assert_ptr_equal(pbuf_push(pb, 4), pb->buf + 6);
    assert_int_equal(pb->len, 24);
    assert_null(pbuf_push(pb, 7));
    assert_int_equal(pb->len, 24);
    assert_ptr_equal(pbuf_push(pb, 6), pb->buf);
    assert_int_equal(pbuf_headroom(pb), 0);
    /* pull a header off, never more than there is */
    assert_ptr_equal(pbuf_pull(pb, 14), pb->buf + 14);
    assert_int_equal(pb->len, 16);
    assert_null(pbuf_pull(pb, 17));
    assert_int_equal(pb->len, 16);
    assert_non_null(pbuf_pull(pb, 16));
    assert_int_equal(pb->len, 0);
    assert_non_null(pbuf_push(pb, 16));
    /* trim shortens only */
    pbuf_trim(pb, 100);
    assert_int_equal(pb->len, 16);
    pbuf_trim(pb, 5);
    assert_int_equal(pb->len, 5);
    pbuf_free(pb);
    pbuf_free(NULL);
    assert_int_equal(pbuf_outstanding(), start);
}

/* Frame-sized buffers are recycled through the pool: a freed one comes
 * back on the next allocation, the limit bounds what is kept, and the
 * failure switch still makes a pooled allocation fail. */
static void test_pbuf_pool(void **state)
{
    struct pbuf *a, *b, *big;
    unsigned long hits;

    (void)state;
    pbuf_pool_drain();
    pbuf_pool_limit(2);
    a = pbuf_alloc(PBUF_HEADROOM, 1514);
    assert_non_null(a);
    assert_int_equal(a->cap, PBUF_POOL_SIZE);
    pbuf_free(a);
    assert_int_equal(pbuf_pool_idle(), 1);
    hits = pbuf_pool_hits();
    b = pbuf_alloc(0, 1);
    assert_ptr_equal(b, a); /* the same memory, reused */
    assert_int_equal(pbuf_pool_hits(), hits + 1);
    assert_int_equal(pbuf_pool_idle(), 0);
    assert_int_equal(b->len, 1);
    assert_int_equal(pbuf_headroom(b), 0);
    assert_null(b->next);
    /* larger than a pool buffer: malloc, never pooled */
    big = pbuf_alloc(PBUF_HEADROOM, PBUF_POOL_SIZE);
    assert_non_null(big);
    assert_true(big->cap > PBUF_POOL_SIZE);
    pbuf_free(big);
    assert_int_equal(pbuf_pool_idle(), 0);
    /* at most `limit` idle buffers are kept */
    {
        struct pbuf *p[4];
        for (int i = 0; i < 4; i++)
            assert_non_null(p[i] = pbuf_alloc(PBUF_HEADROOM, 100));
        for (int i = 0; i < 4; i++)
            pbuf_free(p[i]);
    }
    assert_int_equal(pbuf_pool_idle(), 2);
    /* an injected failure fails a pooled allocation too */
    mem_fail_after(1);
    assert_null(pbuf_alloc(PBUF_HEADROOM, 100));
    assert_int_equal(pbuf_pool_idle(), 2);
    pbuf_free(b);
    pbuf_pool_limit(0); /* no pool: everything goes back to malloc */
    assert_int_equal(pbuf_pool_idle(), 0);
    a = pbuf_alloc(PBUF_HEADROOM, 100);
    pbuf_free(a);
    assert_int_equal(pbuf_pool_idle(), 0);
    pbuf_pool_limit(1024);
}

static void test_pbuf_from_clone_chain(void **state)
{
    long start = pbuf_outstanding();
    struct pbuf *a, *b, *c;

    (void)state;
    a = pbuf_from("hello", 5);
    assert_non_null(a);
    assert_int_equal(pbuf_headroom(a), PBUF_HEADROOM);
    assert_memory_equal(a->data, "hello", 5);
    pbuf_pull(a, 2);
    a->proto = 0x0800;
    a->flags = PBUF_FLAG_LINK_BCAST;
    a->dev = (struct net_device *)&start; /* any non-NULL pointer */
    b = pbuf_clone(a);
    assert_non_null(b);
    assert_int_equal(b->len, 3);
    assert_memory_equal(b->data, "llo", 3);
    assert_int_equal(pbuf_headroom(b), PBUF_HEADROOM);
    assert_int_equal(b->proto, 0x0800);
    assert_int_equal(b->flags, PBUF_FLAG_LINK_BCAST);
    assert_ptr_equal(b->dev, a->dev);
    c = pbuf_alloc(0, 0);
    assert_non_null(c);
    assert_int_equal(pbuf_outstanding(), start + 3);
    a->next = b;
    b->next = c;
    pbuf_free_chain(a);
    assert_int_equal(pbuf_outstanding(), start);
    /* a failed allocation is not counted */
    mem_fail_after(1);
    assert_null(pbuf_alloc(PBUF_HEADROOM, 10));
    assert_int_equal(pbuf_outstanding(), start);
}

/* ---- statistics ---- */

enum { T_ALPHA, T_BETA, T_GAMMA, T_COUNT };
static const char *const t_names[T_COUNT] = {"alpha", "beta", "gamma"};
static struct stats_group t_stats = STATS_GROUP("utest", t_names);

static void test_stats(void **state)
{
    char buf[4096], small[8];
    size_t need;

    (void)state;
    assert_int_equal(t_stats.count, 3);
    stats_register(&t_stats);
    stats_register(&t_stats); /* idempotent */
    stats_reset_all();
    STAT_INC(&t_stats, T_ALPHA);
    stat_add(&t_stats, T_GAMMA, 41);
    STAT_INC(&t_stats, T_GAMMA);
    assert_int_equal(stat_read(&t_stats, T_GAMMA), 42);
    assert_int_equal(stats_lookup("utest.alpha"), 1);
    assert_int_equal(stats_lookup("utest.beta"), 0);
    assert_int_equal(stats_lookup("utest.gamma"), 42);
    assert_int_equal(stats_lookup("utest.delta"), -1);
    assert_int_equal(stats_lookup("utes.alpha"), -1);
    assert_int_equal(stats_lookup("utest"), -1);
    assert_int_equal(stats_lookup("utestx.alpha"), -1);
    /* format: every counter, or only the non-zero ones; registered once */
    need = stats_format(buf, sizeof(buf), 0);
    assert_int_equal(need, strlen(buf));
    assert_non_null(strstr(buf, "utest.alpha 1\n"));
    assert_non_null(strstr(buf, "utest.beta 0\n"));
    assert_non_null(strstr(buf, "utest.gamma 42\n"));
    assert_null(strstr(strstr(buf, "utest.alpha") + 1, "utest.alpha"));
    stats_format(buf, sizeof(buf), 1);
    assert_null(strstr(buf, "utest.beta"));
    assert_non_null(strstr(buf, "utest.gamma 42\n"));
    /* truncation: NUL-terminated, and the length needed is returned */
    assert_int_equal(stats_format(small, sizeof(small), 1), strlen(buf));
    assert_int_equal(strlen(small), sizeof(small) - 1);
    assert_memory_equal(small, buf, sizeof(small) - 1);
    stats_reset_all();
    assert_int_equal(stats_lookup("utest.gamma"), 0);
    stats_unregister(&t_stats);
    assert_int_equal(stats_lookup("utest.alpha"), -1);
}

/* ---- log configuration ---- */

static unsigned char saved_levels[LOG_MODULE_COUNT];

static int save_levels(void **state)
{
    (void)state;
    for (int i = 0; i < LOG_MODULE_COUNT; i++)
        saved_levels[i] = log_levels[i];
    return 0;
}

static int restore_levels(void **state)
{
    (void)state;
    for (int i = 0; i < LOG_MODULE_COUNT; i++)
        log_levels[i] = saved_levels[i];
    return 0;
}

static void assert_levels(const unsigned char *want)
{
    for (int i = 0; i < LOG_MODULE_COUNT; i++)
        assert_int_equal(log_levels[i], want[i]);
}

static void test_log_configure_valid(void **state)
{
    (void)state;
    assert_int_equal(log_configure("info"), 0);
    for (int i = 0; i < LOG_MODULE_COUNT; i++)
        assert_int_equal(log_levels[i], LOG_LEVEL_INFO);
    assert_int_equal(log_configure("ip=debug,arp=trace"), 0);
    assert_int_equal(log_levels[LOG_IP], LOG_LEVEL_DEBUG);
    assert_int_equal(log_levels[LOG_ARP], LOG_LEVEL_TRACE);
    assert_int_equal(log_levels[LOG_TCP], LOG_LEVEL_INFO);
    assert_int_equal(log_configure("warn,tcp=debug"), 0);
    assert_int_equal(log_levels[LOG_TCP], LOG_LEVEL_DEBUG);
    assert_int_equal(log_levels[LOG_IP], LOG_LEVEL_WARN);
    assert_int_equal(log_levels[LOG_ARP], LOG_LEVEL_WARN);
    assert_true(log_enabled(LOG_TCP, LOG_LEVEL_DEBUG));
    assert_false(log_enabled(LOG_TCP, LOG_LEVEL_TRACE));
    assert_false(log_enabled(LOG_IP, LOG_LEVEL_INFO));
    assert_int_equal(log_configure("off"), 0);
    assert_false(log_enabled(LOG_NET, LOG_LEVEL_ERROR));
    assert_int_equal(log_configure("error,timer=off,app=info"), 0);
    assert_int_equal(log_levels[LOG_TIMER], LOG_LEVEL_OFF);
    assert_int_equal(log_levels[LOG_APP], LOG_LEVEL_INFO);
    assert_int_equal(log_levels[LOG_NET], LOG_LEVEL_ERROR);
    /* nothing to do is not an error */
    assert_int_equal(log_configure(""), 0);
    assert_int_equal(log_levels[LOG_APP], LOG_LEVEL_INFO);
    assert_string_equal(log_module_name(LOG_IP), "ip");
    assert_string_equal(log_module_name(LOG_TIMER), "timer");
}

static void test_log_configure_invalid(void **state)
{
    static const char *const bad[] = {
        "loud", "ip=loud", "nosuch=debug", "ip=debug,nosuch=info", "ip=debug,loud",
        "info,ip=", "=debug", "ip==debug",
    };
    unsigned char before[LOG_MODULE_COUNT];

    (void)state;
    assert_int_equal(log_configure("warn,udp=trace"), 0);
    for (int i = 0; i < LOG_MODULE_COUNT; i++)
        before[i] = log_levels[i];
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        assert_int_equal(log_configure(bad[i]), -EINVAL);
        assert_levels(before); /* nothing changed, not even a valid prefix */
    }
}

/* ---- allocator failure switch ---- */

static void test_mem_fail_after(void **state)
{
    void *p[6];
    long failures = mem_failures();

    (void)state;
    mem_fail_after(3);
    for (int i = 0; i < 6; i++)
        p[i] = mem_alloc(16);
    assert_non_null(p[0]);
    assert_non_null(p[1]);
    assert_null(p[2]);
    assert_non_null(p[3]);
    assert_non_null(p[4]);
    assert_non_null(p[5]);
    assert_int_equal(mem_failures(), failures + 1);
    for (int i = 0; i < 6; i++)
        mem_free(p[i]);
    /* mem_calloc counts too, and zeroes */
    mem_fail_after(2);
    p[0] = mem_calloc(4, 8);
    p[1] = mem_calloc(4, 8);
    assert_non_null(p[0]);
    assert_null(p[1]);
    for (int i = 0; i < 32; i++)
        assert_int_equal(((uint8_t *)p[0])[i], 0);
    mem_free(p[0]);
    /* 0 turns it off before it fires */
    mem_fail_after(1);
    mem_fail_after(0);
    p[0] = mem_alloc(1);
    assert_non_null(p[0]);
    mem_free(p[0]);
    assert_int_equal(mem_failures(), failures + 2);
    /* fail every allocation while on */
    mem_fail_all(1);
    assert_null(mem_alloc(1));
    assert_null(mem_calloc(1, 1));
    mem_fail_all(0);
    p[0] = mem_alloc(1);
    assert_non_null(p[0]);
    mem_free(p[0]);
    assert_int_equal(mem_failures(), failures + 4);
}

static int mem_reset(void **state)
{
    (void)state;
    mem_fail_after(0);
    mem_fail_all(0);
    return 0;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_cksum_vectors),
        cmocka_unit_test(test_cksum_odd_length),
        cmocka_unit_test(test_cksum_pieces),
        cmocka_unit_test(test_cksum_matches_reference),
        cmocka_unit_test(test_cksum_pseudo),
        cmocka_unit_test(test_byteorder),
        cmocka_unit_test_teardown(test_pbuf_push_pull_trim, mem_reset),
        cmocka_unit_test_teardown(test_pbuf_from_clone_chain, mem_reset),
        cmocka_unit_test_teardown(test_pbuf_pool, mem_reset),
        cmocka_unit_test(test_stats),
        cmocka_unit_test_setup_teardown(test_log_configure_valid, save_levels, restore_levels),
        cmocka_unit_test_setup_teardown(test_log_configure_invalid, save_levels, restore_levels),
        cmocka_unit_test_teardown(test_mem_fail_after, mem_reset),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
