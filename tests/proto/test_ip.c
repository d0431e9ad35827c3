/*
 * test_ip.c — protocol tests of IPv4 input and output (RFC 791, RFC 1122
 * §3.2.1, §3.3) and the ICMP the stack answers with (RFC 792, RFC 1122
 * §3.2.2), through the in-memory test device (testdev.h).
 *
 * The peer 192.0.2.1 is in the ARP cache (teststack_up_resolved), so every
 * datagram the stack sends leaves at once as a frame to 02:..:01. Each test
 * injects crafted frames and checks the frames test0 sent, the counters,
 * and that no pbuf is left behind.
 *
 * Offsets used below, in a frame: Ethernet 0..13, IPv4 header at 14
 * (0 vhl, 2 total, 4 id, 6 flags+offset, 8 ttl, 9 protocol, 10 checksum,
 * 12 src, 16 dst), ICMP at 34 (0 type, 1 code, 2 checksum, 4 id, 6 seq).
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "net.h"
#include "proto/arp.h"
#include "proto/ether.h"
#include "proto/icmp.h"
#include "proto/ip.h"
#include "testdev.h"
#include "util/byteorder.h"
#include "util/cksum.h"
#include "util/pbuf.h"
#include "util/stats.h"

#define E ETHER_HDR_SIZE           /* IPv4 header offset in a frame */
#define I (E + IP_HDR_SIZE_MIN)    /* ICMP offset in a frame */
#define BIG 3000                   /* echo data that needs fragments */
#define FRAME_MAX (E + IP_TOTAL_SIZE_MAX)

static struct net_config default_config;
static long pbufs_before_up, pbufs_baseline;
static struct icmp_ping *ping;

struct frame {
    uint8_t b[FRAME_MAX];
    size_t len;
};
static struct frame f, out; /* what we inject, what the stack sent */
static uint8_t msg[IP_TOTAL_SIZE_MAX], data[IP_TOTAL_SIZE_MAX];

/* ---- helpers --------------------------------------------------------------------- */

static uint32_t ip(const char *s)
{
    uint32_t a = 0;

    assert_int_equal(ip_addr_pton(s, &a), 0);
    return a;
}

static int64_t counter(const char *dotted)
{
    int64_t v = stats_lookup(dotted);

    assert_true(v >= 0); /* the counter exists */
    return v;
}

/* Copy the next frame the stack sent into out and free it; 0 if none. */
static size_t take(void)
{
    struct pbuf *pb = test_take();

    if (!pb)
        return out.len = 0;
    out.len = pb->len < sizeof(out.b) ? pb->len : sizeof(out.b);
    memcpy(out.b, pb->data, out.len);
    pbuf_free(pb);
    return out.len;
}

/* Bytes 0, 1, 2, ... as echo data, so any reordering shows. */
static void fill_data(size_t len)
{
    for (size_t i = 0; i < len; i++)
        data[i] = (uint8_t)(i * 7 + 3);
}

/* An echo request id/seq with len bytes of data, in msg; its length. */
static size_t make_echo(uint16_t id, uint16_t seq, size_t len)
{
    fill_data(len);
    return test_icmp_echo(msg, ICMP_TYPE_ECHO, id, seq, data, len);
}

/* The frame peer -> dst carrying payload, unfragmented, into f. */
static void make_frame(uint8_t proto, const char *src, const char *dst, const void *payload, size_t len)
{
    f.len = test_ip_frame(f.b, proto, ip(src), ip(dst), 0x4242, 0, payload, len);
}

/* Recompute the IP header checksum of f after a change. */
static void fix_ip_sum(void)
{
    size_t hlen = (size_t)(f.b[E] & 0x0f) * 4;

    store16(f.b + E + 10, 0);
    store16(f.b + E + 10, cksum16(f.b + E, hlen, 0));
}

/* out is a valid IPv4 frame from us to the peer's MAC and address. */
static void expect_ip_to_peer(uint8_t proto)
{
    uint32_t our = ip(TEST_OUR_IP), peer = ip(TEST_PEER_IP);

    assert_true(out.len >= ETHER_FRAME_SIZE_MIN);
    assert_memory_equal(out.b, TEST_PEER_MAC, 6);
    assert_memory_equal(out.b + 6, TEST_OUR_MAC, 6);
    assert_int_equal(load16(out.b + 12), ETHER_TYPE_IP);
    assert_int_equal(out.b[E], 0x45);
    assert_true((size_t)E + load16(out.b + E + 2) <= out.len);
    assert_int_equal(cksum16(out.b + E, IP_HDR_SIZE_MIN, 0), 0);
    assert_int_equal(out.b[E + 9], proto);
    assert_memory_equal(out.b + E + 12, &our, 4);
    assert_memory_equal(out.b + E + 16, &peer, 4);
}

/* out is an ICMP error type/code quoting the datagram in f (header and
 * at least the first 8 bytes of its payload, RFC 792). */
static void expect_icmp_error(uint8_t type, uint8_t code)
{
    size_t ilen;

    assert_true(take() > 0);
    expect_ip_to_peer(IP_PROTOCOL_ICMP);
    ilen = load16(out.b + E + 2) - IP_HDR_SIZE_MIN;
    assert_int_equal(cksum16(out.b + I, ilen, 0), 0);
    assert_int_equal(out.b[I], type);
    assert_int_equal(out.b[I + 1], code);
    assert_true(ilen >= ICMP_HDR_SIZE + IP_HDR_SIZE_MIN + 8);
    assert_memory_equal(out.b + I + ICMP_HDR_SIZE, f.b + E, IP_HDR_SIZE_MIN + 8);
}

static void assert_no_leaks(void)
{
    assert_int_equal(pbuf_outstanding(), pbufs_baseline);
}

/* ---- fixtures ------------------------------------------------------------------------ */

static int setup(void **state)
{
    (void)state;
    stats_reset_all();
    pbufs_before_up = pbuf_outstanding();
    if (teststack_up_resolved() < 0)
        return -1;
    pbufs_baseline = pbuf_outstanding();
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    if (ping)
        icmp_ping_close(ping);
    ping = NULL;
    teststack_down();
    net_config = default_config;
    return pbuf_outstanding() == pbufs_before_up ? 0 : -1;
}

/* ---- echo ------------------------------------------------------------------------------ */

static void test_echo_reply(void **state)
{
    size_t len = make_echo(0x1234, 7, 56);

    (void)state;
    /* peer -> us: echo request id 0x1234 seq 7, 56 bytes */
    make_frame(IP_PROTOCOL_ICMP, TEST_PEER_IP, TEST_OUR_IP, msg, len);
    test_inject(f.b, f.len);
    /* us -> peer: echo reply, same id, seq and data */
    assert_int_equal(test_sent_count(), 1);
    take();
    expect_ip_to_peer(IP_PROTOCOL_ICMP);
    assert_int_equal(load16(out.b + E + 2), IP_HDR_SIZE_MIN + len);
    assert_int_equal(cksum16(out.b + I, len, 0), 0);
    assert_int_equal(out.b[I], ICMP_TYPE_ECHOREPLY);
    assert_int_equal(out.b[I + 1], 0);
    assert_int_equal(load16(out.b + I + 4), 0x1234);
    assert_int_equal(load16(out.b + I + 6), 7);
    assert_memory_equal(out.b + I + 8, data, 56);
    assert_int_equal(counter("icmp.out_echo_replies"), 1);
    assert_no_leaks();
}

/* 4 bytes of echo data: IP total 32, in a frame padded to 60 with junk
 * that must not be taken for data. */
static void test_padding_trimmed(void **state)
{
    size_t len = make_echo(1, 1, 4);

    (void)state;
    make_frame(IP_PROTOCOL_ICMP, TEST_PEER_IP, TEST_OUR_IP, msg, len);
    memset(f.b + f.len, 0xa5, ETHER_FRAME_SIZE_MIN - f.len);
    f.len = ETHER_FRAME_SIZE_MIN;
    test_inject(f.b, f.len);
    assert_true(take() > 0);
    expect_ip_to_peer(IP_PROTOCOL_ICMP);
    assert_int_equal(load16(out.b + E + 2), load16(f.b + E + 2)); /* 32 */
    assert_int_equal(cksum16(out.b + I, len, 0), 0);
    assert_memory_equal(out.b + I + 8, data, 4);
    assert_no_leaks();
}

static void test_echo_to_broadcast_ignored(void **state)
{
    size_t len = make_echo(1, 1, 8);

    (void)state;
    /* peer -> 192.0.2.255: echo request. RFC 1122 §3.2.2.6: may be dropped */
    make_frame(IP_PROTOCOL_ICMP, TEST_PEER_IP, "192.0.2.255", msg, len);
    test_inject(f.b, f.len);
    assert_int_equal(test_sent_count(), 0);
    assert_int_equal(counter("icmp.in_broadcast_echo"), 1);
    assert_no_leaks();
}

/* ---- malformed input: each dropped, counted by reason, never answered ------------------- */

static void mut_eth_short(void) { f.len = 10; }
static void mut_ip_short(void) { f.len = E + 19; }
static void mut_version6(void) { f.b[E] = 0x65; fix_ip_sum(); }
static void mut_ihl4(void) { f.b[E] = 0x44; }
static void mut_ihl_past_end(void) { f.b[E] = 0x4f; } /* 60 > 36 bytes */
static void mut_total_long(void) { store16(f.b + E + 2, (uint16_t)(f.len - E + 1)); fix_ip_sum(); }
static void mut_total_short(void) { store16(f.b + E + 2, 19); fix_ip_sum(); }
static void mut_ip_sum(void) { f.b[E + 10] ^= 0x01; }
static void mut_src(const char *s) { uint32_t a = ip(s); memcpy(f.b + E + 12, &a, 4); fix_ip_sum(); }
static void mut_src_bcast(void) { mut_src("255.255.255.255"); }
static void mut_src_subnet_bcast(void) { mut_src("192.0.2.255"); }
static void mut_src_multicast(void) { mut_src("224.0.0.1"); }
static void mut_dst_other(void) { uint32_t a = ip("192.0.2.99"); memcpy(f.b + E + 16, &a, 4); fix_ip_sum(); }
static void mut_icmp_sum(void) { f.b[I + 2] ^= 0x01; }

static void test_malformed_dropped(void **state)
{
    static const struct {
        const char *what;
        void (*mutate)(void);
        const char *stat;
    } cases[] = {
        { "frame shorter than 14", mut_eth_short, "ether.rx_too_short" },
        { "IP shorter than 20", mut_ip_short, "ip.in_too_short" },
        { "version 6", mut_version6, "ip.in_bad_version" },
        { "IHL 4", mut_ihl4, "ip.in_bad_hdr_len" },
        { "IHL*4 beyond the frame", mut_ihl_past_end, "ip.in_bad_hdr_len" },
        { "total length beyond the frame", mut_total_long, "ip.in_bad_total_len" },
        { "total length < IHL*4", mut_total_short, "ip.in_bad_total_len" },
        { "bad IP checksum", mut_ip_sum, "ip.in_bad_checksum" },
        { "source 255.255.255.255", mut_src_bcast, "ip.in_bad_source" },
        { "source 224.0.0.1", mut_src_multicast, "ip.in_bad_source" },
        { "destination 192.0.2.99", mut_dst_other, "ip.in_not_for_us" },
        { "bad ICMP checksum", mut_icmp_sum, "icmp.in_bad_checksum" },
    };

    (void)state;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        /* a valid 36-byte echo request, then one thing broken */
        size_t len = make_echo(9, (uint16_t)i, 8);

        make_frame(IP_PROTOCOL_ICMP, TEST_PEER_IP, TEST_OUR_IP, msg, len);
        cases[i].mutate();
        stats_reset_all();
        test_inject(f.b, f.len);
        print_message("  %s -> %s\n", cases[i].what, cases[i].stat);
        assert_int_equal(counter(cases[i].stat), 1);
        assert_int_equal(counter("icmp.out_msgs"), 0);
        assert_int_equal(test_sent_count(), 0);
    }
    assert_no_leaks();
}

/* RFC 1122 §3.2.1.3: a host MUST silently discard a datagram whose source
 * is a broadcast, the subnet-directed one {<net>, -1} included. Answering
 * would send the echo reply to every host on the link (a "smurf"
 * amplifier). */
static void test_subnet_broadcast_source_dropped(void **state)
{
    size_t len = make_echo(9, 1, 8);

    (void)state;
    /* "192.0.2.255" -> us: echo request */
    make_frame(IP_PROTOCOL_ICMP, TEST_PEER_IP, TEST_OUR_IP, msg, len);
    mut_src_subnet_bcast();
    test_inject(f.b, f.len);
    /* dropped as a bad source; in particular no reply to ff:ff:ff:ff:ff:ff */
    assert_int_equal(test_sent_count(), 0);
    assert_int_equal(counter("ip.in_bad_source"), 1);
    assert_no_leaks();
}

/* ---- protocol unreachable ---------------------------------------------------------------- */

static void test_unknown_protocol(void **state)
{
    static const uint8_t payload[16] = "protocol 253...";

    (void)state;
    /* peer -> us: protocol 253 (RFC 3692 experimentation), 16 bytes */
    make_frame(253, TEST_PEER_IP, TEST_OUR_IP, payload, sizeof(payload));
    test_inject(f.b, f.len);
    /* us -> peer: destination unreachable, protocol unreachable */
    expect_icmp_error(ICMP_TYPE_DEST_UNREACH, ICMP_CODE_PROTO_UNREACH);
    assert_int_equal(test_sent_count(), 0);
    assert_int_equal(counter("ip.in_unknown_protocol"), 1);

    /* the same to 192.0.2.255: RFC 1122 §3.2.2, no error about a broadcast */
    make_frame(253, TEST_PEER_IP, "192.0.2.255", payload, sizeof(payload));
    test_inject(f.b, f.len);
    assert_int_equal(test_sent_count(), 0);
    assert_int_equal(counter("ip.in_unknown_protocol"), 2);
    assert_no_leaks();
}

/* ---- fragments ------------------------------------------------------------------------------- */

/* Inject msg[0..len) as fragments of at most chunk bytes (a multiple of
 * 8), IP id id; only the first `count` of them (all when count is 0). */
static void inject_fragments(uint16_t id, size_t len, size_t chunk, size_t count)
{
    size_t n = 0;

    for (size_t off = 0; off < len && (!count || n < count); off += chunk, n++) {
        size_t part = len - off < chunk ? len - off : chunk;
        uint16_t frag = (uint16_t)((off + part < len ? IP_FLAG_MF : 0) | (off / 8));

        f.len = test_ip_frame(f.b, IP_PROTOCOL_ICMP, ip(TEST_PEER_IP), ip(TEST_OUR_IP), id, frag,
                              msg + off, part);
        test_inject(f.b, f.len);
    }
}

static void test_fragmented_echo(void **state)
{
    static uint8_t whole[IP_TOTAL_SIZE_MAX];
    size_t len = make_echo(0x77, 3, BIG); /* 3008 bytes of ICMP */
    uint16_t id = 0;

    (void)state;
    /* peer -> us: three fragments, 1480 + 1480 + 48 */
    inject_fragments(0xbeef, len, 1480, 0);
    assert_int_equal(counter("ip.reass_ok"), 1);
    /* us -> peer: the 3008-byte reply in three fragments, offsets 0/185/370 */
    for (int i = 0; i < 3; i++) {
        static const uint16_t offs[3] = { 0, 185, 370 };
        size_t plen;
        uint16_t ff;

        assert_true(take() > 0);
        expect_ip_to_peer(IP_PROTOCOL_ICMP);
        plen = load16(out.b + E + 2) - IP_HDR_SIZE_MIN;
        ff = load16(out.b + E + 6);
        if (i == 0)
            id = load16(out.b + E + 4);
        assert_int_equal(load16(out.b + E + 4), id);      /* one id for all */
        assert_int_equal(ff & IP_OFFSET_MASK, offs[i]);
        assert_int_equal(!!(ff & IP_FLAG_MF), i < 2);     /* MF but on the last */
        assert_int_equal(plen, i < 2 ? 1480 : 48);
        memcpy(whole + (size_t)offs[i] * 8, out.b + I, plen);
    }
    assert_int_equal(test_sent_count(), 0);
    /* put back together, it is the echo reply */
    assert_int_equal(cksum16(whole, len, 0), 0);
    assert_int_equal(whole[0], ICMP_TYPE_ECHOREPLY);
    assert_int_equal(load16(whole + 4), 0x77);
    assert_int_equal(load16(whole + 6), 3);
    assert_memory_equal(whole + 8, data, BIG);
    assert_int_equal(counter("ip.out_fragments"), 3);
    assert_no_leaks();
}

static void test_reassembly_timeout(void **state)
{
    size_t len = make_echo(0x78, 1, BIG);

    (void)state;
    /* peer -> us: only the first fragment (offset 0, MF) of the train */
    inject_fragments(0xcafe, len, 1480, 1);
    assert_int_equal(test_sent_count(), 0);
    /* nothing until the reassembly timer runs out ... */
    test_advance(net_config.ip_reass_timeout_ms - 10);
    assert_int_equal(test_sent_count(), 0);
    test_advance(20);
    /* ... then us -> peer: time exceeded, fragment reassembly time exceeded,
     * quoting the first fragment's header and 8 bytes */
    expect_icmp_error(ICMP_TYPE_TIME_EXCEEDED, ICMP_CODE_REASS_EXCEEDED);
    assert_int_equal(test_sent_count(), 0);
    assert_int_equal(counter("ip.reass_timeout"), 1);

    /* again with only the second fragment: without the first there is no
     * header to quote, so the train times out in silence (RFC 1122 §3.3.2) */
    f.len = test_ip_frame(f.b, IP_PROTOCOL_ICMP, ip(TEST_PEER_IP), ip(TEST_OUR_IP), 0xcaff,
                          IP_FLAG_MF | 185, msg + 1480, 1480);
    test_inject(f.b, f.len);
    test_advance(net_config.ip_reass_timeout_ms + 10);
    assert_int_equal(test_sent_count(), 0);
    assert_int_equal(counter("ip.reass_timeout"), 2);
    assert_no_leaks();
}

/* ---- routing ------------------------------------------------------------------------------------ */

static void expect_route(const char *dst, const char *nexthop)
{
    struct ip_iface *iface = NULL;
    uint32_t nh = 0;

    assert_int_equal(ip_route_lookup(ip(dst), &iface, &nh), 0);
    assert_ptr_equal(iface, ts.iface);
    assert_int_equal(nh, ip(nexthop));
}

static void test_route_longest_prefix(void **state)
{
    uint32_t net, mask;

    (void)state;
    /* 192.0.2.0/24 on-link and 0/0 via 192.0.2.1 come from teststack_up */
    ip_prefix_pton("198.51.100.0/24", &net, &mask);
    assert_int_equal(ip_route_add(net, mask, ip("192.0.2.9"), ts.iface), 0);
    ip_prefix_pton("198.51.100.128/25", &net, &mask);
    assert_int_equal(ip_route_add(net, mask, ip("192.0.2.10"), ts.iface), 0);
    expect_route("198.51.100.5", "192.0.2.9");
    expect_route("198.51.100.200", "192.0.2.10");
    expect_route("203.0.113.1", TEST_PEER_IP);  /* default */
    expect_route("192.0.2.77", "192.0.2.77");   /* on-link: itself */
}

/* A bare stack, built here: test0-like device, address, no default route. */
static int null_transmit(struct net_device *dev, struct pbuf *pb)
{
    (void)dev;
    pbuf_free(pb);
    return 0;
}

static const struct net_device_ops null_ops = { .transmit = null_transmit };

static int setup_no_default(void **state)
{
    uint32_t addr, mask;
    struct net_device *dev;

    (void)state;
    stats_reset_all();
    pbufs_before_up = pbuf_outstanding();
    net_clock_set_virtual(1000);
    if (net_init() < 0 || !(dev = net_device_alloc()))
        return -1;
    ether_setup_device(dev);
    memcpy(dev->addr, TEST_OUR_MAC, 6);
    dev->ops = &null_ops;
    net_device_register(dev, "bare0");
    ip_prefix_pton(TEST_OUR_IP "/24", &addr, &mask);
    if (!ip_iface_add(dev, addr, mask, NULL) || net_run_polled() < 0)
        return -1;
    net_poll();
    pbufs_baseline = pbuf_outstanding();
    return 0;
}

static void test_no_default_route(void **state)
{
    struct ip_iface *iface;
    uint32_t nh;
    struct pbuf *pb;

    (void)state;
    assert_int_equal(ip_route_lookup(ip("203.0.113.1"), &iface, &nh), -ENETUNREACH);
    assert_int_equal(ip_route_lookup(ip("192.0.2.7"), &iface, &nh), 0);
    assert_int_equal(nh, ip("192.0.2.7"));
    /* ip_output has nowhere to send it: -ENETUNREACH, counted, pb freed */
    pb = pbuf_alloc(PBUF_HEADROOM, 8);
    assert_non_null(pb);
    memset(pb->data, 0, 8);
    assert_int_equal(ip_output(253, pb, IP_ADDR_ANY, ip("203.0.113.1")), -ENETUNREACH);
    assert_int_equal(counter("ip.out_no_route"), 1);
    assert_no_leaks();
}

/* ---- output limits -------------------------------------------------------------------------------- */

/* A datagram of len payload bytes for protocol 253 (contents: zeros). */
static struct pbuf *payload_of(size_t len)
{
    struct pbuf *pb = pbuf_alloc(PBUF_HEADROOM, len);

    assert_non_null(pb);
    memset(pb->data, 0, len);
    return pb;
}

static void test_output_too_big(void **state)
{
    struct ip_tx_opts df = { .dont_fragment = 1 };
    size_t n = 0;

    (void)state;
    /* 65516 payload bytes + 20 of header > 65535: refused */
    assert_int_equal(ip_output(253, payload_of(IP_PAYLOAD_SIZE_MAX + 1), IP_ADDR_ANY, ip(TEST_PEER_IP)),
                     -EMSGSIZE);
    assert_int_equal(test_sent_count(), 0);
    /* 65515 is the largest: 45 fragments of at most 1480 bytes */
    assert_int_equal(ip_output(253, payload_of(IP_PAYLOAD_SIZE_MAX), IP_ADDR_ANY, ip(TEST_PEER_IP)), 0);
    while (take())
        n++;
    assert_int_equal(n, (IP_PAYLOAD_SIZE_MAX + 1479) / 1480);
    /* DF and one byte above the MTU: refused */
    assert_int_equal(ip_output_opt(253, payload_of(1481), IP_ADDR_ANY, ip(TEST_PEER_IP), &df), -EMSGSIZE);
    assert_int_equal(test_sent_count(), 0);
    assert_int_equal(counter("ip.out_too_big"), 2);
    /* DF and exactly the MTU: one frame, DF set */
    assert_int_equal(ip_output_opt(253, payload_of(1480), IP_ADDR_ANY, ip(TEST_PEER_IP), &df), 0);
    assert_true(take() > 0);
    expect_ip_to_peer(253);
    assert_int_equal(load16(out.b + E + 2), 1500);
    assert_int_equal(load16(out.b + E + 6), IP_FLAG_DF);
    assert_no_leaks();
}

/* ---- loopback ------------------------------------------------------------------------------------- */

static void test_ping_self_looped_back(void **state)
{
    static uint8_t got[BIG];
    struct icmp_ping_reply r;

    (void)state;
    fill_data(BIG);
    stats_reset_all();
    assert_int_equal(icmp_ping_open(&ping), 0);
    /* app: ping 192.0.2.2 (ourselves), small then fragmented */
    assert_int_equal(icmp_ping_send(ping, ip(TEST_OUR_IP), 1, data, 56), 0);
    assert_int_equal(icmp_ping_send(ping, ip(TEST_OUR_IP), 2, data, BIG), 0);
    /* it never touches test0: request and reply go round the input queue */
    assert_int_equal(test_sent_count(), 0);
    assert_int_equal(icmp_ping_recv(ping, &r, got, sizeof(got), 0), 0);
    assert_int_equal(r.type, ICMP_TYPE_ECHOREPLY);
    assert_int_equal(r.seq, 1);
    assert_int_equal(r.from, ip(TEST_OUR_IP));
    assert_int_equal(r.len, 56);
    assert_memory_equal(got, data, 56);
    assert_int_equal(icmp_ping_recv(ping, &r, got, sizeof(got), 0), 0);
    assert_int_equal(r.type, ICMP_TYPE_ECHOREPLY);
    assert_int_equal(r.seq, 2);
    assert_int_equal(r.len, BIG);
    assert_memory_equal(got, data, BIG);
    assert_int_equal(stat_read(&ts.dev->stats, DEVSTAT_TX_FRAMES), 0);
    assert_no_leaks();
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_echo_reply, setup, teardown),
        cmocka_unit_test_setup_teardown(test_padding_trimmed, setup, teardown),
        cmocka_unit_test_setup_teardown(test_echo_to_broadcast_ignored, setup, teardown),
        cmocka_unit_test_setup_teardown(test_malformed_dropped, setup, teardown),
        cmocka_unit_test_setup_teardown(test_subnet_broadcast_source_dropped, setup, teardown),
        cmocka_unit_test_setup_teardown(test_unknown_protocol, setup, teardown),
        cmocka_unit_test_setup_teardown(test_fragmented_echo, setup, teardown),
        cmocka_unit_test_setup_teardown(test_reassembly_timeout, setup, teardown),
        cmocka_unit_test_setup_teardown(test_route_longest_prefix, setup, teardown),
        cmocka_unit_test_setup_teardown(test_no_default_route, setup_no_default, teardown),
        cmocka_unit_test_setup_teardown(test_output_too_big, setup, teardown),
        cmocka_unit_test_setup_teardown(test_ping_self_looped_back, setup, teardown),
    };

    default_config = net_config;
    return cmocka_run_group_tests(tests, NULL, NULL);
}
