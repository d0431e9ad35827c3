/*
 * test_arp.c — protocol tests of ARP (RFC 826, RFC 1122 §2.3.2, RFC 5227)
 * through the in-memory test device (testdev.h).
 *
 * Each test reads as a packet trace: the peer (192.0.2.1, 02:..:01) sends
 * a frame with test_inject(), the stack answers on test0, and the test
 * takes the frames it sent and checks them byte by byte. Time moves only
 * when the test says so (test_advance on the virtual clock), so retries and
 * ageing take no real time.
 *
 * ARP packet for Ethernet/IPv4, as it sits in a frame (offsets in bytes):
 *   0 dst MAC | 6 src MAC | 12 type 0x0806 |
 *   14 hrd | 16 pro | 18 hln | 19 pln | 20 op | 22 sha | 28 spa | 32 tha | 38 tpa
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "net.h"
#include "proto/arp.h"
#include "proto/ether.h"
#include "proto/icmp.h"
#include "proto/ip.h"
#include "testdev.h"
#include "util/byteorder.h"
#include "util/pbuf.h"
#include "util/stats.h"

#define A 14 /* where the ARP packet starts in a frame */

static const uint8_t ZERO_MAC[6];
static const uint8_t OTHER_MAC[6] = { 0x02, 0, 0, 0, 0, 0x66 };

static struct net_config default_config; /* restored after every test */
static long pbufs_before_up;             /* outstanding before the stack */
static long pbufs_baseline;              /* outstanding once it is up */
static struct icmp_ping *ping;           /* closed in teardown */

struct frame {
    uint8_t b[ETHER_FRAME_SIZE_MAX];
    size_t len;
};

/* ---- helpers ------------------------------------------------------------- */

static uint32_t ip(const char *s)
{
    uint32_t a = 0;

    assert_int_equal(ip_addr_pton(s, &a), 0);
    return a;
}

static uint64_t arpstat(int idx)
{
    return stat_read(&arp_stats, idx);
}

/* Copy the next frame the stack sent into f and free it; 0 if none. The
 * test never owns a pbuf, so a failed assertion cannot leak one. */
static size_t take(struct frame *f)
{
    struct pbuf *pb = test_take();

    if (!pb)
        return f->len = 0;
    f->len = pb->len < sizeof(f->b) ? pb->len : sizeof(f->b);
    memcpy(f->b, pb->data, f->len);
    pbuf_free(pb);
    return f->len;
}

/* An ARP packet in an Ethernet frame from sha to eth_dst, padded to the
 * 60-byte minimum as a real NIC would. Returns the frame length. */
static size_t arp_frame(struct frame *f, const uint8_t *eth_dst, uint16_t op, const uint8_t *sha,
                        const char *spa, const uint8_t *tha, const char *tpa)
{
    uint8_t *m = f->b + A;
    uint32_t s = ip(spa), t = ip(tpa);

    memset(f->b, 0, ETHER_FRAME_SIZE_MIN);
    test_eth_frame(f->b, eth_dst, sha, ETHER_TYPE_ARP, NULL, 0);
    store16(m + 0, ARP_HRD_ETHER);
    store16(m + 2, ETHER_TYPE_IP);
    m[4] = 6;
    m[5] = 4;
    store16(m + 6, op);
    memcpy(m + 8, sha, 6);
    memcpy(m + 14, &s, 4);
    memcpy(m + 18, tha, 6);
    memcpy(m + 24, &t, 4);
    return f->len = ETHER_FRAME_SIZE_MIN;
}

/* The peer asks "who has tpa? tell 192.0.2.1". */
static size_t peer_request(struct frame *f, const char *tpa)
{
    return arp_frame(f, ETHER_ADDR_BROADCAST, ARP_OP_REQUEST, TEST_PEER_MAC, TEST_PEER_IP, ZERO_MAC, tpa);
}

/* The peer answers "192.0.2.1 is at 02:00:00:00:00:01" to us. */
static void inject_peer_reply(void)
{
    struct frame f;

    arp_frame(&f, TEST_OUR_MAC, ARP_OP_REPLY, TEST_PEER_MAC, TEST_PEER_IP, TEST_OUR_MAC, TEST_OUR_IP);
    test_inject(f.b, f.len);
}

/* Check that f is the ARP packet described, every field that matters. */
static void expect_arp(const struct frame *f, const uint8_t *eth_dst, uint16_t op, const char *spa,
                       const uint8_t *tha, const char *tpa)
{
    const uint8_t *m = f->b + A;
    uint32_t s = ip(spa), t = ip(tpa);

    assert_true(f->len >= ETHER_FRAME_SIZE_MIN);   /* padded to the minimum */
    assert_memory_equal(f->b, eth_dst, 6);          /* Ethernet dst */
    assert_memory_equal(f->b + 6, TEST_OUR_MAC, 6); /* Ethernet src: us */
    assert_int_equal(load16(f->b + 12), ETHER_TYPE_ARP);
    assert_int_equal(load16(m + 0), ARP_HRD_ETHER); /* hrd 1 */
    assert_int_equal(load16(m + 2), ETHER_TYPE_IP); /* pro 0x0800 */
    assert_int_equal(m[4], 6);                      /* hln */
    assert_int_equal(m[5], 4);                      /* pln */
    assert_int_equal(load16(m + 6), op);
    assert_memory_equal(m + 8, TEST_OUR_MAC, 6);    /* sha: us */
    assert_memory_equal(m + 14, &s, 4);
    assert_memory_equal(m + 18, tha, 6);
    assert_memory_equal(m + 24, &t, 4);
}

/* The next frame must be an ARP request from us for tpa. */
static void expect_request(const char *tpa)
{
    struct frame f;

    assert_true(take(&f) > 0);
    expect_arp(&f, ETHER_ADDR_BROADCAST, ARP_OP_REQUEST, TEST_OUR_IP, ZERO_MAC, tpa);
}

/* The next frame must be our echo request seq to the peer's MAC. */
static void expect_echo_to_peer(uint16_t seq)
{
    struct frame f;
    const uint8_t *iph = f.b + ETHER_HDR_SIZE, *icmp = iph + IP_HDR_SIZE_MIN;
    uint32_t peer = ip(TEST_PEER_IP);

    assert_true(take(&f) > 0);
    assert_memory_equal(f.b, TEST_PEER_MAC, 6);
    assert_int_equal(load16(f.b + 12), ETHER_TYPE_IP);
    assert_int_equal(iph[9], IP_PROTOCOL_ICMP);
    assert_memory_equal(iph + 16, &peer, 4);
    assert_int_equal(icmp[0], ICMP_TYPE_ECHO);
    assert_int_equal(load16(icmp + 4), icmp_ping_id(ping));
    assert_int_equal(load16(icmp + 6), seq);
}

static void assert_no_leaks(void)
{
    assert_int_equal(pbuf_outstanding(), pbufs_baseline);
}

/* ---- fixtures -------------------------------------------------------------- */

static int setup(void **state)
{
    (void)state;
    stats_reset_all(); /* before teststack_up: its gratuitous ARP counts */
    pbufs_before_up = pbuf_outstanding();
    if (teststack_up() < 0)
        return -1;
    pbufs_baseline = pbuf_outstanding();
    return 0;
}

static int setup_small_cache(void **state)
{
    net_config.arp_cache_max = 4;
    return setup(state);
}

static int setup_short_life(void **state)
{
    net_config.arp_reachable_ms = 5000;
    return setup(state);
}

static int teardown(void **state)
{
    (void)state;
    if (ping)
        icmp_ping_close(ping);
    ping = NULL;
    teststack_down();
    net_config = default_config;
    /* shutdown frees whatever the stack still held */
    return pbuf_outstanding() == pbufs_before_up ? 0 : -1;
}

/* ---- replies to requests ---------------------------------------------------------- */

static void test_request_for_us_gets_reply(void **state)
{
    struct frame f;
    uint8_t hw[6];

    (void)state;
    /* peer -> broadcast: who has 192.0.2.2? tell 192.0.2.1 */
    peer_request(&f, TEST_OUR_IP);
    test_inject(f.b, f.len);
    /* us -> peer: 192.0.2.2 is at 02:00:00:00:00:02, and nothing else */
    assert_int_equal(test_sent_count(), 1);
    take(&f);
    expect_arp(&f, TEST_PEER_MAC, ARP_OP_REPLY, TEST_OUR_IP, TEST_PEER_MAC, TEST_PEER_IP);
    /* RFC 826: the request taught us the asker's address */
    assert_int_equal(arp_cache_lookup(ip(TEST_PEER_IP), hw), ARP_STATE_RESOLVED);
    assert_memory_equal(hw, TEST_PEER_MAC, 6);
    assert_int_equal(arpstat(ARPSTAT_RX_REQUESTS), 1);
    assert_int_equal(arpstat(ARPSTAT_TX_REPLIES), 1);
    assert_no_leaks();
}

static void test_request_for_other_host_ignored(void **state)
{
    struct frame f;

    (void)state;
    /* peer -> broadcast: who has 192.0.2.3? (not us) */
    peer_request(&f, "192.0.2.3");
    test_inject(f.b, f.len);
    /* silence, and the sender is not cached: it was not talking to us */
    assert_int_equal(test_sent_count(), 0);
    assert_int_equal(arpstat(ARPSTAT_RX_NOT_FOR_US), 1);
    assert_int_equal(arp_cache_lookup(ip(TEST_PEER_IP), NULL), ARP_STATE_FREE);
    assert_int_equal(arp_cache_count(), 0);
    assert_no_leaks();
}

/* A valid request for us, then one field broken: each is dropped with
 * its own counter, answered by nothing, and cached nowhere. */
static void test_malformed_dropped(void **state)
{
    static const uint8_t GROUP_MAC[6] = { 0x01, 0x00, 0x5e, 0x00, 0x00, 0x01 };
    static const struct {
        const char *what;
        size_t len;            /* frame length, 0: the padded 60 */
        int at, width;         /* field offset in the ARP packet, 1/2/6 bytes */
        uint16_t value;
        const uint8_t *mac;    /* for width 6 */
        int stat;
    } cases[] = {
        { "truncated to 27 bytes", A + 27, 0, 0, 0, NULL, ARPSTAT_RX_TOO_SHORT },
        { "hrd 6 (IEEE 802)", 0, 0, 2, 6, NULL, ARPSTAT_RX_BAD_FORMAT },
        { "pro 0x86dd (IPv6)", 0, 2, 2, 0x86dd, NULL, ARPSTAT_RX_BAD_FORMAT },
        { "hln 8", 0, 4, 1, 8, NULL, ARPSTAT_RX_BAD_FORMAT },
        { "pln 16", 0, 5, 1, 16, NULL, ARPSTAT_RX_BAD_FORMAT },
        { "op 3 (RARP)", 0, 6, 2, 3, NULL, ARPSTAT_RX_BAD_OP },
        { "group sender MAC", 0, 8, 6, 0, GROUP_MAC, ARPSTAT_RX_BAD_SENDER },
        { "zero sender MAC", 0, 8, 6, 0, ZERO_MAC, ARPSTAT_RX_BAD_SENDER },
    };

    (void)state;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct frame f;
        uint8_t *field;

        stats_reset_all();
        peer_request(&f, TEST_OUR_IP);
        field = f.b + A + cases[i].at;
        if (cases[i].len)
            f.len = cases[i].len;
        if (cases[i].width == 1)
            *field = (uint8_t)cases[i].value;
        else if (cases[i].width == 2)
            store16(field, cases[i].value);
        else if (cases[i].width == 6)
            memcpy(field, cases[i].mac, 6);
        test_inject(f.b, f.len);
        print_message("  %s\n", cases[i].what);
        assert_int_equal(arpstat(cases[i].stat), 1);
        assert_int_equal(arpstat(ARPSTAT_TX_REPLIES), 0);
        assert_int_equal(test_sent_count(), 0);
        assert_int_equal(arp_cache_count(), 0);
    }
    assert_no_leaks();
}

/* ---- resolution ----------------------------------------------------------------------- */

static void test_resolution_holds_then_releases(void **state)
{
    uint8_t hw[6];

    (void)state;
    assert_int_equal(arp_cache_count(), 0);
    assert_int_equal(icmp_ping_open(&ping), 0);
    /* app: ping 192.0.2.1 -> ip_output -> arp_output: nobody known there */
    assert_int_equal(icmp_ping_send(ping, ip(TEST_PEER_IP), 1, "hello", 5), 0);
    /* us -> broadcast: who has 192.0.2.1? tell 192.0.2.2 */
    expect_request(TEST_PEER_IP);
    assert_int_equal(test_sent_count(), 0);
    assert_int_equal(arp_cache_lookup(ip(TEST_PEER_IP), NULL), ARP_STATE_INCOMPLETE);
    assert_int_equal(pbuf_outstanding(), pbufs_baseline + 1); /* the echo, held */
    /* peer -> us: 192.0.2.1 is at 02:..:01 */
    inject_peer_reply();
    /* us -> peer: the held echo request, now with the peer's MAC */
    expect_echo_to_peer(1);
    assert_int_equal(test_sent_count(), 0); /* a reply is not answered */
    assert_int_equal(arp_cache_lookup(ip(TEST_PEER_IP), hw), ARP_STATE_RESOLVED);
    assert_memory_equal(hw, TEST_PEER_MAC, 6);
    assert_int_equal(arpstat(ARPSTAT_TX_REQUESTS), 1);
    assert_int_equal(arpstat(ARPSTAT_RX_REPLIES), 1);
    assert_no_leaks();
}

static void test_retries_then_host_unreachable(void **state)
{
    const unsigned queued = 2;
    struct icmp_ping_reply r;
    struct frame f;
    unsigned requests = 0;

    (void)state;
    assert_int_equal(icmp_ping_open(&ping), 0);
    /* two echo requests for 192.0.2.1, which never answers */
    for (unsigned seq = 1; seq <= queued; seq++)
        assert_int_equal(icmp_ping_send(ping, ip(TEST_PEER_IP), (uint16_t)seq, "x", 1), 0);
    /* one request now, then one per arp_retry_ms until arp_retries in all;
     * keep going two periods longer to see that nothing more is sent */
    for (unsigned tick = 0; tick <= net_config.arp_retries + 2; tick++) {
        if (tick)
            test_advance(net_config.arp_retry_ms);
        while (take(&f)) {
            expect_arp(&f, ETHER_ADDR_BROADCAST, ARP_OP_REQUEST, TEST_OUR_IP, ZERO_MAC, TEST_PEER_IP);
            requests++;
        }
    }
    assert_int_equal(requests, net_config.arp_retries);
    assert_int_equal(arpstat(ARPSTAT_TX_REQUESTS), net_config.arp_retries);
    /* given up: both datagrams dropped, the entry gone */
    assert_int_equal(arpstat(ARPSTAT_RESOLVE_FAILED), 1);
    assert_int_equal(arpstat(ARPSTAT_DROPPED_UNRESOLVED), queued);
    assert_int_equal(arp_cache_lookup(ip(TEST_PEER_IP), NULL), ARP_STATE_FREE);
    /* RFC 1122 §2.3.2.2: the sender hears "host unreachable", once per echo */
    for (unsigned seq = 1; seq <= queued; seq++) {
        assert_int_equal(icmp_ping_recv(ping, &r, NULL, 0, 0), 0);
        assert_int_equal(r.type, ICMP_TYPE_DEST_UNREACH);
        assert_int_equal(r.code, ICMP_CODE_HOST_UNREACH);
        assert_int_equal(r.seq, seq);
    }
    assert_int_equal(icmp_ping_recv(ping, &r, NULL, 0, 0), -ETIMEDOUT);
    assert_no_leaks();
}

static void test_pending_queue_bound(void **state)
{
    unsigned max = net_config.arp_pending_max;

    (void)state;
    assert_int_equal(icmp_ping_open(&ping), 0);
    /* max + 5 echo requests while 192.0.2.1 is unresolved: the last 5 are
     * refused at once */
    for (unsigned seq = 1; seq <= max + 5; seq++) {
        int err = icmp_ping_send(ping, ip(TEST_PEER_IP), (uint16_t)seq, "q", 1);
        assert_int_equal(err, seq <= max ? 0 : -ENOBUFS);
    }
    assert_int_equal(arpstat(ARPSTAT_QUEUE_FULL), 5);
    expect_request(TEST_PEER_IP); /* one request, however many wait */
    assert_int_equal(test_sent_count(), 0);
    /* peer -> us: is-at; the held ones leave in the order they were sent */
    inject_peer_reply();
    for (unsigned seq = 1; seq <= max; seq++)
        expect_echo_to_peer((uint16_t)seq);
    assert_int_equal(test_sent_count(), 0);
    assert_no_leaks();
}

/* ---- the cache -------------------------------------------------------------------------- */

/* arp_cache_max = 4; six hosts ask for us, 10 ms apart. */
static void test_cache_bound(void **state)
{
    char spa[IP_ADDR_STR_LEN];

    (void)state;
    for (int host = 10; host <= 15; host++) {
        uint8_t sha[6] = { 0x02, 0, 0, 0, 1, (uint8_t)host };
        struct frame f;

        /* 192.0.2.<host> -> broadcast: who has 192.0.2.2? */
        snprintf(spa, sizeof(spa), "192.0.2.%d", host);
        arp_frame(&f, ETHER_ADDR_BROADCAST, ARP_OP_REQUEST, sha, spa, ZERO_MAC, TEST_OUR_IP);
        test_inject(f.b, f.len);
        test_flush(); /* our reply */
        assert_true(arp_cache_count() <= 4);
        test_advance(10);
    }
    assert_int_equal(arp_cache_count(), 4);
    /* the newest sender has an entry; the oldest was evicted */
    assert_int_equal(arp_cache_lookup(ip("192.0.2.15"), NULL), ARP_STATE_RESOLVED);
    assert_int_equal(arp_cache_lookup(ip("192.0.2.10"), NULL), ARP_STATE_FREE);
    assert_int_equal(arpstat(ARPSTAT_TX_REPLIES), 6);
    assert_no_leaks();
}

/* arp_reachable_ms = 5000: a learned entry is forgotten, a static one not. */
static void test_entry_ages_out(void **state)
{
    struct frame f;

    (void)state;
    assert_int_equal(arp_cache_add_static(ts.iface, ip("192.0.2.50"), OTHER_MAC), 0);
    /* peer -> us: who has 192.0.2.2?  (we learn 192.0.2.1) */
    peer_request(&f, TEST_OUR_IP);
    test_inject(f.b, f.len);
    test_flush();
    assert_int_equal(arp_cache_lookup(ip(TEST_PEER_IP), NULL), ARP_STATE_RESOLVED);
    /* just before its time it is still there */
    test_advance(net_config.arp_reachable_ms - 1);
    assert_int_equal(arp_cache_lookup(ip(TEST_PEER_IP), NULL), ARP_STATE_RESOLVED);
    /* the ageing pass runs every arp_retry_ms: one period later it is gone */
    test_advance(net_config.arp_retry_ms + 1);
    assert_int_equal(arp_cache_lookup(ip(TEST_PEER_IP), NULL), ARP_STATE_FREE);
    assert_int_equal(arpstat(ARPSTAT_EXPIRED), 1);
    assert_int_equal(arp_cache_lookup(ip("192.0.2.50"), NULL), ARP_STATE_STATIC);
    assert_int_equal(test_sent_count(), 0);
    assert_no_leaks();
}

/* ---- announcements and conflicts ------------------------------------------------------ */

static void test_gratuitous_on_up(void **state)
{
    (void)state;
    /* teststack_up brought test0 up, which announced 192.0.2.2 (RFC 5227
     * §2.3); testdev discarded the frame, the counter remains */
    assert_int_equal(arpstat(ARPSTAT_TX_GRATUITOUS), 1);
    assert_int_equal(arpstat(ARPSTAT_TX_REQUESTS), 0);
}

static void test_address_conflict(void **state)
{
    struct frame f;

    (void)state;
    /* 02:..:66 -> broadcast: "192.0.2.2 is at 02:..:66" (someone else's
     * announcement of our own address) */
    arp_frame(&f, ETHER_ADDR_BROADCAST, ARP_OP_REQUEST, OTHER_MAC, TEST_OUR_IP, ZERO_MAC, TEST_OUR_IP);
    test_inject(f.b, f.len);
    assert_int_equal(arpstat(ARPSTAT_RX_CONFLICT), 1);
    assert_int_equal(test_sent_count(), 0);
    assert_int_equal(arp_cache_lookup(ip(TEST_OUR_IP), NULL), ARP_STATE_FREE);
    /* the same as a reply to us: still a conflict, still silence */
    arp_frame(&f, TEST_OUR_MAC, ARP_OP_REPLY, OTHER_MAC, TEST_OUR_IP, TEST_OUR_MAC, TEST_OUR_IP);
    test_inject(f.b, f.len);
    assert_int_equal(arpstat(ARPSTAT_RX_CONFLICT), 2);
    assert_int_equal(test_sent_count(), 0);
    assert_no_leaks();
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_request_for_us_gets_reply, setup, teardown),
        cmocka_unit_test_setup_teardown(test_request_for_other_host_ignored, setup, teardown),
        cmocka_unit_test_setup_teardown(test_malformed_dropped, setup, teardown),
        cmocka_unit_test_setup_teardown(test_resolution_holds_then_releases, setup, teardown),
        cmocka_unit_test_setup_teardown(test_retries_then_host_unreachable, setup, teardown),
        cmocka_unit_test_setup_teardown(test_pending_queue_bound, setup, teardown),
        cmocka_unit_test_setup_teardown(test_cache_bound, setup_small_cache, teardown),
        cmocka_unit_test_setup_teardown(test_entry_ages_out, setup_short_life, teardown),
        cmocka_unit_test_setup_teardown(test_gratuitous_on_up, setup, teardown),
        cmocka_unit_test_setup_teardown(test_address_conflict, setup, teardown),
    };

    default_config = net_config;
    return cmocka_run_group_tests(tests, NULL, NULL);
}
