/*
 * test_udp.c — protocol tests of UDP (RFC 768, RFC 1122 §4.1) and of the
 * socket-like API in front of it (sock.h), through the in-memory test
 * device (testdev.h). No stack thread runs: test_inject() has delivered a
 * datagram to its socket by the time it returns, so every receive here uses
 * MSG_DONTWAIT (or a non-blocking socket) and never sleeps.
 *
 * The peer 192.0.2.1 is in the ARP cache (teststack_up_resolved), so every
 * datagram the stack sends leaves at once as a frame to 02:..:01.
 *
 * Offsets used below, in a frame: Ethernet 0..13, IPv4 header at 14
 * (2 total, 4 id, 6 flags+offset, 8 ttl, 9 protocol, 12 src, 16 dst), the
 * UDP header at 34 (0 source port, 2 destination port, 4 length,
 * 6 checksum), UDP data at 42. An ICMP error starts at 34 too (0 type,
 * 1 code) and quotes the offending IP header at 42.
 */
#include <errno.h>
#include <limits.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "net.h"
#include "proto/ether.h"
#include "proto/icmp.h"
#include "proto/ip.h"
#include "proto/sock.h"
#include "proto/udp.h"
#include "testdev.h"
#include "util/byteorder.h"
#include "util/cksum.h"
#include "util/pbuf.h"
#include "util/stats.h"

#define E ETHER_HDR_SIZE           /* IPv4 header offset in a frame */
#define U (E + IP_HDR_SIZE_MIN)    /* UDP (or ICMP) header offset in a frame */
#define D (U + UDP_HDR_SIZE)       /* UDP data offset in a frame */
#define FRAME_MAX (E + IP_TOTAL_SIZE_MAX)
#define PEER_PORT 9999
#define MAX_SOCKS 16

static struct net_config default_config;
static long pbufs_before_up, pbufs_baseline;

struct frame {
    uint8_t b[FRAME_MAX];
    size_t len;
};
static struct frame f, out; /* what we inject, what the stack sent */
static uint8_t seg[IP_TOTAL_SIZE_MAX], data[IP_TOTAL_SIZE_MAX], got[IP_TOTAL_SIZE_MAX];

static int socks[MAX_SOCKS]; /* opened by the test, closed by close_all() */
static int nsocks;

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

static struct sockaddr_in sin_of(const char *addr, uint16_t port)
{
    struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons(port) };

    a.sin_addr.s_addr = addr ? ip(addr) : INADDR_ANY;
    return a;
}

#define SA(x) ((struct sockaddr *)&(x))

static int open_udp_flags(int type_flags)
{
    int sd = sock_open(AF_INET, SOCK_DGRAM | type_flags, 0);

    assert_true(sd >= 0);
    assert_true(nsocks < MAX_SOCKS);
    socks[nsocks++] = sd;
    return sd;
}

static int open_udp(void)
{
    return open_udp_flags(0);
}

static int open_bound(const char *addr, uint16_t port)
{
    int sd = open_udp();
    struct sockaddr_in a = sin_of(addr, port);

    assert_int_equal(sock_bind(sd, SA(a), sizeof(a)), 0);
    return sd;
}

static void close_all(void)
{
    for (int i = 0; i < nsocks; i++)
        sock_close(socks[i]); /* EBADF for one a test closed itself: fine */
    nsocks = 0;
}

static void set_int(int sd, int level, int name, int v)
{
    assert_int_equal(sock_setsockopt(sd, level, name, &v, sizeof(v)), 0);
}

static int get_int(int sd, int level, int name)
{
    int v = -12345;
    socklen_t len = sizeof(v);

    assert_int_equal(sock_getsockopt(sd, level, name, &v, &len), 0);
    assert_int_equal(len, sizeof(int));
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

static void fill_data(size_t len, unsigned salt)
{
    for (size_t i = 0; i < len; i++)
        data[i] = (uint8_t)(i * 7 + 3 + salt);
}

/* A UDP datagram sport -> dport with payload, into seg; the checksum right
 * for the pseudo header src -> dst. Returns its length. */
static size_t make_udp(uint32_t src, uint32_t dst, uint16_t sport, uint16_t dport, const void *payload,
                       size_t len)
{
    size_t n = UDP_HDR_SIZE + len;
    uint16_t sum;

    store16(seg, sport);
    store16(seg + 2, dport);
    store16(seg + 4, (uint16_t)n);
    store16(seg + 6, 0);
    if (len)
        memcpy(seg + UDP_HDR_SIZE, payload, len);
    sum = cksum16(seg, n, cksum_pseudo(src, dst, IP_PROTOCOL_UDP, (uint16_t)n));
    store16(seg + 6, sum ? sum : 0xffff);
    return n;
}

/* The frame peer -> dst carrying seg[0..len), into f. */
static void frame_of_seg(const char *src, const char *dst, size_t len)
{
    f.len = test_ip_frame(f.b, IP_PROTOCOL_UDP, ip(src), ip(dst), 0x4242, 0, seg, len);
}

/* peer:sport -> dst:dport carrying payload, valid in every field, into f. */
static void make_frame(const char *dst, uint16_t sport, uint16_t dport, const void *payload, size_t len)
{
    size_t n = make_udp(ip(TEST_PEER_IP), ip(dst), sport, dport, payload, len);

    frame_of_seg(TEST_PEER_IP, dst, n);
}

static void inject_udp(const char *dst, uint16_t sport, uint16_t dport, const void *payload, size_t len)
{
    make_frame(dst, sport, dport, payload, len);
    test_inject(f.b, f.len);
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

/* The UDP datagram in out (not a fragment) sums to zero over its pseudo
 * header: the checksum it carries is right. */
static void expect_udp_sum_ok(void)
{
    uint32_t src, dst;
    size_t n = load16(out.b + E + 2) - IP_HDR_SIZE_MIN;

    memcpy(&src, out.b + E + 12, 4);
    memcpy(&dst, out.b + E + 16, 4);
    assert_int_equal(load16(out.b + U + 4), n);
    assert_int_not_equal(load16(out.b + U + 6), 0); /* we always send one */
    assert_int_equal(cksum16(out.b + U, n, cksum_pseudo(src, dst, IP_PROTOCOL_UDP, (uint16_t)n)), 0);
}

/* out is the datagram sport -> peer:dport carrying data[0..len). */
static void expect_udp_to_peer(uint16_t sport, uint16_t dport, size_t len)
{
    expect_ip_to_peer(IP_PROTOCOL_UDP);
    assert_int_equal(load16(out.b + E + 2), IP_HDR_SIZE_MIN + UDP_HDR_SIZE + len);
    assert_int_equal(load16(out.b + E + 6) & (IP_FLAG_MF | IP_OFFSET_MASK), 0);
    assert_int_equal(load16(out.b + U), sport);
    assert_int_equal(load16(out.b + U + 2), dport);
    expect_udp_sum_ok();
    if (len)
        assert_memory_equal(out.b + D, data, len);
}

/* out is an ICMP error type/code quoting the datagram in f: its IP header
 * and at least its UDP header (RFC 792, RFC 1122 §3.2.2). */
static void expect_icmp_error(uint8_t type, uint8_t code)
{
    size_t ilen;

    expect_ip_to_peer(IP_PROTOCOL_ICMP);
    ilen = load16(out.b + E + 2) - IP_HDR_SIZE_MIN;
    assert_int_equal(cksum16(out.b + U, ilen, 0), 0);
    assert_int_equal(out.b[U], type);
    assert_int_equal(out.b[U + 1], code);
    assert_true(ilen >= ICMP_HDR_SIZE + IP_HDR_SIZE_MIN + UDP_HDR_SIZE);
    assert_memory_equal(out.b + U + ICMP_HDR_SIZE, f.b + E, IP_HDR_SIZE_MIN + UDP_HDR_SIZE);
}

/* Inject, from the peer, an ICMP error type/code about the datagram we sent
 * that is now in out (quoting its IP header and first 8 payload bytes). */
static void inject_icmp_error_about_out(uint8_t type, uint8_t code)
{
    static uint8_t icmp[ICMP_HDR_SIZE + IP_HDR_SIZE_MIN + 8];
    static struct frame e;

    memset(icmp, 0, sizeof(icmp));
    icmp[0] = type;
    icmp[1] = code;
    memcpy(icmp + ICMP_HDR_SIZE, out.b + E, IP_HDR_SIZE_MIN + 8);
    store16(icmp + 2, cksum16(icmp, sizeof(icmp), 0));
    e.len = test_ip_frame(e.b, IP_PROTOCOL_ICMP, ip(TEST_PEER_IP), ip(TEST_OUR_IP), 0x77, 0, icmp,
                          sizeof(icmp));
    test_inject(e.b, e.len);
}

/* Receive without waiting; returns what sock_recvfrom returned, errno in
 * *err (0 on success). */
static ssize_t recv_now(int sd, void *buf, size_t len, int flags, struct sockaddr_in *from, int *err)
{
    socklen_t flen = sizeof(*from);
    ssize_t n;

    errno = 0;
    n = sock_recvfrom(sd, buf, len, flags | MSG_DONTWAIT, from ? SA(*from) : NULL, from ? &flen : NULL);
    *err = n < 0 ? errno : 0;
    if (n >= 0 && from)
        assert_int_equal(flen, sizeof(*from));
    return n;
}

static void expect_empty(int sd)
{
    int err;

    assert_int_equal(recv_now(sd, got, sizeof(got), 0, NULL, &err), -1);
    assert_int_equal(err, EAGAIN);
}

#define expect_errno(call, e)                                                                      \
    do {                                                                                           \
        errno = 0;                                                                                 \
        assert_int_equal((call), -1);                                                              \
        assert_int_equal(errno, (e));                                                              \
    } while (0)

static void assert_no_leaks(void)
{
    assert_int_equal(pbuf_outstanding(), pbufs_baseline);
}

/* ---- fixtures ------------------------------------------------------------------------ */

static int setup(void **state)
{
    (void)state;
    stats_reset_all();
    nsocks = 0;
    pbufs_before_up = pbuf_outstanding();
    if (teststack_up_resolved() < 0)
        return -1;
    pbufs_baseline = pbuf_outstanding();
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    close_all();
    teststack_down();
    net_config = default_config;
    return pbuf_outstanding() == pbufs_before_up ? 0 : -1;
}

/* ---- receiving ------------------------------------------------------------------------ */

static void test_receive(void **state)
{
    struct sockaddr_in from;
    int sd = open_bound(TEST_OUR_IP, 7), err;

    (void)state;
    fill_data(100, 0);
    /* peer:9999 -> 192.0.2.2:7, 100 bytes */
    inject_udp(TEST_OUR_IP, PEER_PORT, 7, data, 100);
    assert_int_equal(test_sent_count(), 0); /* UDP never answers by itself */
    memset(&from, 0, sizeof(from));
    assert_int_equal(recv_now(sd, got, sizeof(got), 0, &from, &err), 100);
    assert_memory_equal(got, data, 100);
    assert_int_equal(from.sin_family, AF_INET);
    assert_int_equal(from.sin_addr.s_addr, ip(TEST_PEER_IP));
    assert_int_equal(ntohs(from.sin_port), PEER_PORT);
    expect_empty(sd);
    assert_int_equal(counter("udp.in_datagrams"), 1);

    /* an empty datagram is a datagram: recv returns 0, not EAGAIN */
    inject_udp(TEST_OUR_IP, PEER_PORT, 7, NULL, 0);
    assert_int_equal(recv_now(sd, got, sizeof(got), 0, &from, &err), 0);
    expect_empty(sd);

    /* two datagrams keep their boundaries and their order */
    fill_data(30, 1);
    inject_udp(TEST_OUR_IP, PEER_PORT, 7, data, 10);
    inject_udp(TEST_OUR_IP, PEER_PORT + 1, 7, data + 10, 20);
    assert_int_equal(recv_now(sd, got, sizeof(got), 0, &from, &err), 10);
    assert_memory_equal(got, data, 10);
    assert_int_equal(recv_now(sd, got, sizeof(got), 0, &from, &err), 20);
    assert_memory_equal(got, data + 10, 20);
    assert_int_equal(ntohs(from.sin_port), PEER_PORT + 1);
    close_all();
    assert_no_leaks();
}

/* A socket bound to INADDR_ANY gets datagrams to our address and to the
 * subnet broadcast; only the best match of two sockets gets a unicast one. */
static void test_receive_wildcard_and_broadcast(void **state)
{
    struct sockaddr_in from;
    int any = open_bound(NULL, 7), err;

    (void)state;
    fill_data(16, 2);
    inject_udp("192.0.2.255", PEER_PORT, 7, data, 16);
    assert_int_equal(recv_now(any, got, sizeof(got), 0, &from, &err), 16);
    assert_memory_equal(got, data, 16);
    inject_udp(TEST_OUR_IP, PEER_PORT, 7, data, 16);
    assert_int_equal(recv_now(any, got, sizeof(got), 0, &from, &err), 16);
    assert_int_equal(test_sent_count(), 0);
    close_all();
    assert_no_leaks();
}

static void test_zero_checksum_accepted(void **state)
{
    struct sockaddr_in from;
    int sd = open_bound(TEST_OUR_IP, 7), err;

    (void)state;
    fill_data(33, 3);
    make_frame(TEST_OUR_IP, PEER_PORT, 7, data, 33);
    /* RFC 768: an all-zero checksum means the sender computed none */
    store16(f.b + U + 6, 0);
    test_inject(f.b, f.len);
    assert_int_equal(counter("udp.in_no_checksum"), 1);
    assert_int_equal(recv_now(sd, got, sizeof(got), 0, &from, &err), 33);
    assert_memory_equal(got, data, 33);
    close_all();
    assert_no_leaks();
}

/* Each malformed datagram to a bound port: dropped, counted by reason,
 * nothing queued, nothing sent. */
static void mut_sum(void) { f.b[U + 6] ^= 0x01; }
static void mut_payload(void) { f.b[D + 3] ^= 0x40; } /* the checksum no longer covers it */
static void mut_len_long(void) { store16(f.b + U + 4, (uint16_t)(load16(f.b + U + 4) + 1)); }
static void mut_len_short(void) { store16(f.b + U + 4, (uint16_t)(load16(f.b + U + 4) - 1)); }
static void mut_len_tiny(void) { store16(f.b + U + 4, 4); }

/* Rewrite the datagram in f with a new length field and a checksum that is
 * right for that length, so only the length is wrong. */
static void fix_sum_for_len_field(void)
{
    uint16_t ulen = load16(f.b + U + 4);
    size_t n = load16(f.b + E + 2) - IP_HDR_SIZE_MIN;
    uint16_t sum;

    store16(f.b + U + 6, 0);
    sum = cksum16(f.b + U, n, cksum_pseudo(ip(TEST_PEER_IP), ip(TEST_OUR_IP), IP_PROTOCOL_UDP, ulen));
    store16(f.b + U + 6, sum ? sum : 0xffff);
}
static void mut_len_long_sum(void) { mut_len_long(); fix_sum_for_len_field(); }
static void mut_len_short_sum(void) { mut_len_short(); fix_sum_for_len_field(); }

/* Only 4 bytes of UDP after the IP header: shorter than a UDP header. */
static void mut_short(void)
{
    store16(f.b + E + 2, IP_HDR_SIZE_MIN + 4);
    store16(f.b + E + 10, 0);
    store16(f.b + E + 10, cksum16(f.b + E, IP_HDR_SIZE_MIN, 0));
    f.len = U + 4;
}

static void test_malformed_dropped(void **state)
{
    static const struct {
        const char *what;
        void (*mutate)(void);
        const char *stat;
    } cases[] = {
        { "bad checksum", mut_sum, "udp.in_bad_checksum" },
        { "payload changed after the checksum", mut_payload, "udp.in_bad_checksum" },
        { "length field 1 more than the datagram", mut_len_long, "udp.in_bad_length" },
        { "length field 1 less than the datagram", mut_len_short, "udp.in_bad_length" },
        { "length field longer, checksum right for it", mut_len_long_sum, "udp.in_bad_length" },
        { "length field shorter, checksum right for it", mut_len_short_sum, "udp.in_bad_length" },
        { "length field 4 (< 8)", mut_len_tiny, "udp.in_bad_length" },
        { "4 bytes of UDP (< 8)", mut_short, "udp.in_too_short" },
    };
    int sd = open_bound(TEST_OUR_IP, 7);

    (void)state;
    fill_data(40, 4);
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        make_frame(TEST_OUR_IP, PEER_PORT, 7, data, 40);
        cases[i].mutate();
        stats_reset_all();
        test_inject(f.b, f.len);
        print_message("  %s -> %s\n", cases[i].what, cases[i].stat);
        assert_int_equal(counter("udp.in_datagrams"), 1);
        assert_int_equal(counter(cases[i].stat), 1);
        assert_int_equal(counter("udp.no_port"), 0);
        assert_int_equal(counter("icmp.out_msgs"), 0);
        assert_int_equal(test_sent_count(), 0);
        expect_empty(sd);
    }
    /* the same datagram unharmed is taken */
    make_frame(TEST_OUR_IP, PEER_PORT, 7, data, 40);
    test_inject(f.b, f.len);
    {
        int err;
        assert_int_equal(recv_now(sd, got, sizeof(got), 0, NULL, &err), 40);
    }
    close_all();
    assert_no_leaks();
}

/* A datagram reassembled from fragments is received whole. */
static void test_receive_fragmented(void **state)
{
    struct sockaddr_in from;
    size_t n, chunk = 1480;
    int sd = open_bound(TEST_OUR_IP, 7), err;

    (void)state;
    fill_data(3000, 20);
    n = make_udp(ip(TEST_PEER_IP), ip(TEST_OUR_IP), PEER_PORT, 7, data, 3000);
    /* peer -> us: 3008 bytes of UDP as fragments of 1480, 1480, 48, last first */
    for (int i = 2; i >= 0; i--) {
        size_t off = (size_t)i * chunk, part = n - off < chunk ? n - off : chunk;
        uint16_t ff = (uint16_t)((off + part < n ? IP_FLAG_MF : 0) | (off / 8));
        f.len = test_ip_frame(f.b, IP_PROTOCOL_UDP, ip(TEST_PEER_IP), ip(TEST_OUR_IP), 0x5151, ff,
                              seg + off, part);
        test_inject(f.b, f.len);
    }
    assert_int_equal(counter("ip.reass_ok"), 1);
    assert_int_equal(recv_now(sd, got, sizeof(got), 0, &from, &err), 3000);
    assert_memory_equal(got, data, 3000);
    assert_int_equal(ntohs(from.sin_port), PEER_PORT);
    expect_empty(sd);
    close_all();
    assert_no_leaks();
}

/* To our own address: the datagram goes round the input queue and never
 * touches test0; from a closed port comes back port unreachable, which
 * the connected sender hears of. */
static void test_send_to_self(void **state)
{
    struct sockaddr_in self = sin_of(TEST_OUR_IP, 7), from, closed = sin_of(TEST_OUR_IP, 4444), name;
    socklen_t len = sizeof(name);
    int rx = open_bound(NULL, 7), tx = open_udp(), err;
    uint64_t tx_frames = stat_read(&ts.dev->stats, DEVSTAT_TX_FRAMES); /* the gratuitous ARP */

    (void)state;
    fill_data(200, 21);
    assert_int_equal(sock_sendto(tx, data, 200, 0, SA(self), sizeof(self)), 200);
    assert_int_equal(test_sent_count(), 0); /* runs the stack: delivered */
    assert_int_equal(recv_now(rx, got, sizeof(got), 0, &from, &err), 200);
    assert_memory_equal(got, data, 200);
    assert_int_equal(sock_getsockname(tx, SA(name), &len), 0);
    assert_int_equal(from.sin_addr.s_addr, ip(TEST_OUR_IP));
    assert_int_equal(from.sin_port, name.sin_port);

    assert_int_equal(sock_connect(tx, SA(closed), sizeof(closed)), 0);
    assert_int_equal(sock_send(tx, data, 10, 0), 10);
    assert_int_equal(test_sent_count(), 0);
    assert_int_equal(counter("udp.no_port"), 1);
    assert_int_equal(recv_now(tx, got, sizeof(got), 0, NULL, &err), -1);
    assert_int_equal(err, ECONNREFUSED);
    assert_int_equal(stat_read(&ts.dev->stats, DEVSTAT_TX_FRAMES), tx_frames);
    close_all();
    assert_no_leaks();
}

/* RFC 1122 §3.2.1.3: a host MUST silently discard a datagram whose source
 * is not valid; 127.0.0.0/8 never arrives from a network (Linux counts it
 * as a martian). Delivering it would let anyone on the link pose as a
 * local process. */
static void test_loopback_source_from_wire_dropped(void **state)
{
    int sd = open_bound(NULL, 7), err;

    (void)state;
    fill_data(4, 22);
    make_udp(ip("127.0.0.1"), ip(TEST_OUR_IP), PEER_PORT, 7, data, 4);
    frame_of_seg("127.0.0.1", TEST_OUR_IP, UDP_HDR_SIZE + 4);
    test_inject(f.b, f.len);
    assert_int_equal(recv_now(sd, got, sizeof(got), 0, NULL, &err), -1);
    assert_int_equal(err, EAGAIN);
    assert_int_equal(test_sent_count(), 0);
    close_all();
    assert_no_leaks();
}

/* ---- port unreachable ------------------------------------------------------------------ */

static void test_closed_port_unreachable(void **state)
{
    (void)state;
    open_bound(TEST_OUR_IP, 7); /* a socket on another port changes nothing */
    fill_data(64, 5);
    /* peer:9999 -> 192.0.2.2:4444, nobody there */
    inject_udp(TEST_OUR_IP, PEER_PORT, 4444, data, 64);
    /* us -> peer: one destination unreachable, port unreachable, quoting
     * the IP header and (at least) the UDP header */
    assert_int_equal(test_sent_count(), 1);
    assert_true(take() > 0);
    expect_icmp_error(ICMP_TYPE_DEST_UNREACH, ICMP_CODE_PORT_UNREACH);
    assert_int_equal(load16(out.b + U + ICMP_HDR_SIZE + IP_HDR_SIZE_MIN), PEER_PORT);
    assert_int_equal(load16(out.b + U + ICMP_HDR_SIZE + IP_HDR_SIZE_MIN + 2), 4444);
    assert_int_equal(counter("udp.no_port"), 1);
    assert_int_equal(counter("icmp.out_dest_unreachs"), 1);

    /* a closed socket's port is closed again */
    {
        int sd = open_bound(TEST_OUR_IP, 4444);
        assert_int_equal(sock_close(sd), 0);
    }
    inject_udp(TEST_OUR_IP, PEER_PORT, 4444, data, 8);
    assert_true(take() > 0);
    expect_icmp_error(ICMP_TYPE_DEST_UNREACH, ICMP_CODE_PORT_UNREACH);
    assert_int_equal(counter("udp.no_port"), 2);

    /* destination port 0: dropped, no error */
    inject_udp(TEST_OUR_IP, PEER_PORT, 0, data, 8);
    assert_int_equal(test_sent_count(), 0);
    assert_int_equal(counter("udp.in_bad_port"), 1);
    close_all();
    assert_no_leaks();
}

static void test_broadcast_closed_port_silent(void **state)
{
    (void)state;
    fill_data(20, 6);
    /* RFC 1122 §3.2.2: no ICMP error about a datagram to a broadcast */
    inject_udp("192.0.2.255", PEER_PORT, 4444, data, 20);
    assert_int_equal(test_sent_count(), 0);
    inject_udp("255.255.255.255", PEER_PORT, 4444, data, 20);
    assert_int_equal(test_sent_count(), 0);
    /* nor about one sent to the link broadcast address */
    make_frame(TEST_OUR_IP, PEER_PORT, 4444, data, 20);
    memset(f.b, 0xff, 6);
    test_inject(f.b, f.len);
    assert_int_equal(test_sent_count(), 0);
    assert_int_equal(counter("udp.no_port"), 3);
    assert_int_equal(counter("icmp.out_msgs"), 0);
    assert_no_leaks();
}

static void test_icmp_rate_limited(void **state)
{
    unsigned limit = net_config.icmp_ratelimit_per_s;
    size_t n = 0;

    (void)state;
    fill_data(8, 7);
    /* 300 datagrams to a closed port in one virtual millisecond */
    for (int i = 0; i < 300; i++) {
        inject_udp(TEST_OUR_IP, PEER_PORT, 4444, data, 8);
        while (take()) {
            expect_icmp_error(ICMP_TYPE_DEST_UNREACH, ICMP_CODE_PORT_UNREACH);
            n++;
        }
    }
    print_message("  %zu ICMP errors for 300 datagrams (limit %u/s)\n", n, limit);
    assert_true(n > 0);
    assert_true(n <= limit);
    assert_int_equal(counter("udp.no_port"), 300);
    assert_true(counter("icmp.out_ratelimited") > 0);
    assert_int_equal(counter("icmp.out_ratelimited"), 300 - (int64_t)n);
    /* a second later the bucket is full again */
    test_advance(1000);
    inject_udp(TEST_OUR_IP, PEER_PORT, 4444, data, 8);
    assert_true(take() > 0);
    expect_icmp_error(ICMP_TYPE_DEST_UNREACH, ICMP_CODE_PORT_UNREACH);
    assert_no_leaks();
}

/* RFC 1122 §4.1.3.3: an ICMP error about a datagram a connected socket
 * sent is reported to it: once, by the next call or by SO_ERROR. */
static void test_icmp_error_connected(void **state)
{
    struct sockaddr_in peer = sin_of(TEST_PEER_IP, 9);
    struct pollfd pfd;
    int sd = open_bound(TEST_OUR_IP, 5000), err;

    (void)state;
    assert_int_equal(sock_connect(sd, SA(peer), sizeof(peer)), 0);
    fill_data(4, 8);
    assert_int_equal(sock_send(sd, data, 4, 0), 4);
    assert_true(take() > 0);
    expect_udp_to_peer(5000, 9, 4);

    /* peer -> us: port unreachable about it; the next recv fails */
    inject_icmp_error_about_out(ICMP_TYPE_DEST_UNREACH, ICMP_CODE_PORT_UNREACH);
    assert_int_equal(counter("udp.in_icmp_errors"), 1);
    pfd = (struct pollfd){ .fd = sd, .events = POLLIN };
    assert_int_equal(sock_poll(&pfd, 1, 0), 1);
    assert_true(pfd.revents & POLLERR);
    assert_int_equal(recv_now(sd, got, sizeof(got), 0, NULL, &err), -1);
    assert_int_equal(err, ECONNREFUSED);
    expect_empty(sd); /* reported once */
    assert_int_equal(get_int(sd, SOL_SOCKET, SO_ERROR), 0);

    /* again; this time the next send fails, and sends nothing */
    inject_icmp_error_about_out(ICMP_TYPE_DEST_UNREACH, ICMP_CODE_PORT_UNREACH);
    expect_errno(sock_send(sd, data, 4, 0), ECONNREFUSED);
    assert_int_equal(test_sent_count(), 0);
    assert_int_equal(sock_send(sd, data, 4, 0), 4); /* and only once */
    assert_true(take() > 0);

    /* again; SO_ERROR reads it and clears it */
    inject_icmp_error_about_out(ICMP_TYPE_DEST_UNREACH, ICMP_CODE_PORT_UNREACH);
    assert_int_equal(get_int(sd, SOL_SOCKET, SO_ERROR), ECONNREFUSED);
    assert_int_equal(get_int(sd, SOL_SOCKET, SO_ERROR), 0);
    expect_empty(sd);
    assert_int_equal(sock_send(sd, data, 4, 0), 4);
    assert_true(take() > 0);

    /* host unreachable maps to EHOSTUNREACH */
    inject_icmp_error_about_out(ICMP_TYPE_DEST_UNREACH, ICMP_CODE_HOST_UNREACH);
    assert_int_equal(recv_now(sd, got, sizeof(got), 0, NULL, &err), -1);
    assert_int_equal(err, EHOSTUNREACH);
    assert_int_equal(test_sent_count(), 0); /* ICMP errors are never answered */
    close_all();
    assert_no_leaks();
}

/* BSD and Linux: an unconnected socket cannot tell which destination an
 * error is about, so it does not hear of it. */
static void test_icmp_error_unconnected_ignored(void **state)
{
    struct sockaddr_in peer = sin_of(TEST_PEER_IP, 9);
    int sd = open_bound(TEST_OUR_IP, 5001), err;

    (void)state;
    fill_data(4, 9);
    assert_int_equal(sock_sendto(sd, data, 4, 0, SA(peer), sizeof(peer)), 4);
    assert_true(take() > 0);
    expect_udp_to_peer(5001, 9, 4);
    inject_icmp_error_about_out(ICMP_TYPE_DEST_UNREACH, ICMP_CODE_PORT_UNREACH);
    assert_int_equal(counter("udp.in_icmp_errors"), 0);
    assert_int_equal(recv_now(sd, got, sizeof(got), 0, NULL, &err), -1);
    assert_int_equal(err, EAGAIN);
    assert_int_equal(get_int(sd, SOL_SOCKET, SO_ERROR), 0);
    assert_int_equal(sock_sendto(sd, data, 4, 0, SA(peer), sizeof(peer)), 4);
    assert_true(take() > 0);

    /* a socket connected elsewhere does not hear of it either */
    {
        struct sockaddr_in other = sin_of(TEST_PEER_IP, 10);
        assert_int_equal(sock_connect(sd, SA(other), sizeof(other)), 0);
        inject_icmp_error_about_out(ICMP_TYPE_DEST_UNREACH, ICMP_CODE_PORT_UNREACH);
        assert_int_equal(counter("udp.in_icmp_errors"), 0);
        assert_int_equal(get_int(sd, SOL_SOCKET, SO_ERROR), 0);
    }
    close_all();
    assert_no_leaks();
}

/* ---- sending ------------------------------------------------------------------------------ */

static void test_send_frame(void **state)
{
    struct sockaddr_in peer = sin_of(TEST_PEER_IP, 9);
    int sd = open_bound(TEST_OUR_IP, 7);

    (void)state;
    fill_data(123, 10);
    assert_int_equal(sock_sendto(sd, data, 123, 0, SA(peer), sizeof(peer)), 123);
    assert_int_equal(test_sent_count(), 1);
    assert_true(take() > 0);
    expect_udp_to_peer(7, 9, 123);
    assert_int_equal(out.b[E + 8], net_config.ip_default_ttl);
    assert_int_equal(counter("udp.out_datagrams"), 1);

    /* IP_TTL is used */
    set_int(sd, IPPROTO_IP, IP_TTL, 5);
    assert_int_equal(get_int(sd, IPPROTO_IP, IP_TTL), 5);
    assert_int_equal(sock_sendto(sd, data, 1, 0, SA(peer), sizeof(peer)), 1);
    assert_true(take() > 0);
    expect_udp_to_peer(7, 9, 1);
    assert_int_equal(out.b[E + 8], 5);

    /* sendmsg gathers an iovec array into one datagram */
    {
        struct iovec iov[3] = { { data, 10 }, { NULL, 0 }, { data + 10, 50 } };
        struct msghdr m = { .msg_name = &peer, .msg_namelen = sizeof(peer), .msg_iov = iov,
                            .msg_iovlen = 3 };
        assert_int_equal(sock_sendmsg(sd, &m, 0), 60);
        assert_true(take() > 0);
        expect_udp_to_peer(7, 9, 60);
    }
    /* an empty datagram */
    assert_int_equal(sock_sendto(sd, data, 0, 0, SA(peer), sizeof(peer)), 0);
    assert_true(take() > 0);
    expect_udp_to_peer(7, 9, 0);
    assert_int_equal(test_sent_count(), 0);
    close_all();
    assert_no_leaks();
}

/* RFC 768: "If the computed checksum is zero, it is transmitted as all
 * ones". Choose two bytes of payload that make the sum come out zero. */
static void test_send_zero_checksum_as_ffff(void **state)
{
    struct sockaddr_in peer = sin_of(TEST_PEER_IP, 9);
    int sd = open_bound(TEST_OUR_IP, 5002);
    uint32_t sum;
    uint16_t folded;

    (void)state;
    /* 10 bytes of payload: 8 fixed, the last 2 to fix the sum */
    fill_data(10, 11);
    store16(seg, 5002);
    store16(seg + 2, 9);
    store16(seg + 4, UDP_HDR_SIZE + 10);
    store16(seg + 6, 0);
    memcpy(seg + UDP_HDR_SIZE, data, 8);
    sum = cksum_partial(seg, UDP_HDR_SIZE + 8,
                        cksum_pseudo(ip(TEST_OUR_IP), ip(TEST_PEER_IP), IP_PROTOCOL_UDP, UDP_HDR_SIZE + 10));
    /* fold, then the word that brings the ones' complement sum to 0xffff */
    while (sum >> 16)
        sum = (sum & 0xffff) + (sum >> 16);
    folded = (uint16_t)sum;
    store16(data + 8, (uint16_t)(0xffff - folded));
    memcpy(seg + UDP_HDR_SIZE + 8, data + 8, 2);
    assert_int_equal(cksum16(seg, UDP_HDR_SIZE + 10,
                             cksum_pseudo(ip(TEST_OUR_IP), ip(TEST_PEER_IP), IP_PROTOCOL_UDP,
                                          UDP_HDR_SIZE + 10)),
                     0); /* the computed checksum is zero */

    assert_int_equal(sock_sendto(sd, data, 10, 0, SA(peer), sizeof(peer)), 10);
    assert_true(take() > 0);
    expect_udp_to_peer(5002, 9, 10);
    assert_int_equal(load16(out.b + U + 6), 0xffff);
    close_all();
    assert_no_leaks();
}

static void test_send_max_fragments(void **state)
{
    static uint8_t whole[IP_TOTAL_SIZE_MAX];
    struct sockaddr_in peer = sin_of(TEST_PEER_IP, 9);
    int sd = open_bound(TEST_OUR_IP, 7);
    size_t n = 0, total = 0, ulen = UDP_HDR_SIZE + UDP_PAYLOAD_MAX;
    uint16_t id = 0;

    (void)state;
    fill_data(UDP_PAYLOAD_MAX + 1, 12);
    /* 65,508 bytes: the IP datagram would exceed 65,535 */
    expect_errno(sock_sendto(sd, data, UDP_PAYLOAD_MAX + 1, 0, SA(peer), sizeof(peer)), EMSGSIZE);
    assert_int_equal(test_sent_count(), 0);
    /* 65,507 bytes: 65,515 of UDP in 45 fragments of at most 1480 */
    assert_int_equal(sock_sendto(sd, data, UDP_PAYLOAD_MAX, 0, SA(peer), sizeof(peer)), UDP_PAYLOAD_MAX);
    while (take()) {
        size_t plen;
        uint16_t ff;

        expect_ip_to_peer(IP_PROTOCOL_UDP);
        plen = load16(out.b + E + 2) - IP_HDR_SIZE_MIN;
        ff = load16(out.b + E + 6);
        if (n == 0)
            id = load16(out.b + E + 4);
        assert_int_equal(load16(out.b + E + 4), id);
        assert_int_equal((size_t)(ff & IP_OFFSET_MASK) * 8, total);
        assert_true(plen <= 1480);
        memcpy(whole + total, out.b + U, plen);
        total += plen;
        n++;
        assert_int_equal(!!(ff & IP_FLAG_MF), total < ulen);
    }
    assert_int_equal(n, 45);
    assert_int_equal(total, ulen);
    /* put back together: a valid UDP datagram with our data */
    assert_int_equal(load16(whole), 7);
    assert_int_equal(load16(whole + 2), 9);
    assert_int_equal(load16(whole + 4), ulen);
    assert_int_equal(cksum16(whole, ulen, cksum_pseudo(ip(TEST_OUR_IP), ip(TEST_PEER_IP), IP_PROTOCOL_UDP,
                                                        (uint16_t)ulen)),
                     0);
    assert_memory_equal(whole + UDP_HDR_SIZE, data, UDP_PAYLOAD_MAX);
    close_all();
    assert_no_leaks();
}

static void test_send_broadcast(void **state)
{
    struct sockaddr_in bc = sin_of("192.0.2.255", 9), all = sin_of("255.255.255.255", 9);
    int sd = open_bound(NULL, 5003);
    uint32_t our = ip(TEST_OUR_IP), dst = ip("192.0.2.255");

    (void)state;
    fill_data(12, 13);
    /* without SO_BROADCAST: EACCES, as in BSD and Linux, and nothing sent */
    assert_int_equal(get_int(sd, SOL_SOCKET, SO_BROADCAST), 0);
    expect_errno(sock_sendto(sd, data, 12, 0, SA(bc), sizeof(bc)), EACCES);
    expect_errno(sock_sendto(sd, data, 12, 0, SA(all), sizeof(all)), EACCES);
    assert_int_equal(test_sent_count(), 0);

    /* with it: one frame to ff:ff:ff:ff:ff:ff, IP 192.0.2.2 -> 192.0.2.255 */
    set_int(sd, SOL_SOCKET, SO_BROADCAST, 1);
    assert_int_equal(get_int(sd, SOL_SOCKET, SO_BROADCAST), 1);
    assert_int_equal(sock_sendto(sd, data, 12, 0, SA(bc), sizeof(bc)), 12);
    assert_int_equal(test_sent_count(), 1);
    assert_true(take() > 0);
    assert_memory_equal(out.b, ETHER_ADDR_BROADCAST, 6);
    assert_memory_equal(out.b + 6, TEST_OUR_MAC, 6);
    assert_int_equal(out.b[E + 9], IP_PROTOCOL_UDP);
    assert_memory_equal(out.b + E + 12, &our, 4);
    assert_memory_equal(out.b + E + 16, &dst, 4);
    assert_int_equal(load16(out.b + U), 5003);
    assert_int_equal(load16(out.b + U + 2), 9);
    expect_udp_sum_ok();
    assert_memory_equal(out.b + D, data, 12);

    /* and to 255.255.255.255 */
    assert_int_equal(sock_sendto(sd, data, 12, 0, SA(all), sizeof(all)), 12);
    assert_true(take() > 0);
    assert_memory_equal(out.b, ETHER_ADDR_BROADCAST, 6);
    dst = IP_ADDR_BROADCAST;
    assert_memory_equal(out.b + E + 16, &dst, 4);
    expect_udp_sum_ok();
    assert_int_equal(test_sent_count(), 0);
    close_all();
    assert_no_leaks();
}

/* RFC 1122 §3.2.1.3 (g): 127.0.0.0/8 "MUST NOT appear outside a host".
 * This stack has no loopback device here, so there is nowhere to send it:
 * the datagram must not leave by test0 (towards the default gateway). */
static void test_send_loopback_dst_never_on_wire(void **state)
{
    struct sockaddr_in lo = sin_of("127.0.0.1", 9);
    int sd = open_udp();
    ssize_t n;

    (void)state;
    errno = 0;
    n = sock_sendto(sd, "x", 1, 0, SA(lo), sizeof(lo));
    print_message("  sendto 127.0.0.1:9 -> %zd (%s), %zu frame(s) on test0\n", n, n < 0 ? strerror(errno) : "ok",
                  test_sent_count());
    assert_int_equal(test_sent_count(), 0);
    close_all();
    assert_no_leaks();
}

/* ---- receive flags ---------------------------------------------------------------------------- */

static void test_msg_trunc_and_peek(void **state)
{
    struct sockaddr_in from;
    struct iovec iov = { got, 10 };
    struct msghdr m = { .msg_name = &from, .msg_namelen = sizeof(from), .msg_iov = &iov, .msg_iovlen = 1 };
    int sd = open_bound(TEST_OUR_IP, 7), err;

    (void)state;
    fill_data(100, 14);
    inject_udp(TEST_OUR_IP, PEER_PORT, 7, data, 100);
    inject_udp(TEST_OUR_IP, PEER_PORT, 7, data, 100);
    inject_udp(TEST_OUR_IP, PEER_PORT, 7, data, 100);

    /* MSG_PEEK: the datagram stays */
    assert_int_equal(recv_now(sd, got, sizeof(got), MSG_PEEK, &from, &err), 100);
    assert_memory_equal(got, data, 100);
    assert_int_equal(ntohs(from.sin_port), PEER_PORT);
    memset(got, 0, 100);
    assert_int_equal(recv_now(sd, got, 5, MSG_PEEK, NULL, &err), 5);
    assert_memory_equal(got, data, 5);

    /* 100 bytes into 10: 10 returned, MSG_TRUNC in msg_flags, rest gone */
    memset(got, 0, 100);
    m.msg_flags = 0;
    assert_int_equal(sock_recvmsg(sd, &m, MSG_DONTWAIT), 10);
    assert_true(m.msg_flags & MSG_TRUNC);
    assert_memory_equal(got, data, 10);
    assert_int_equal(got[10], 0);
    assert_int_equal(m.msg_namelen, sizeof(from));
    assert_int_equal(from.sin_addr.s_addr, ip(TEST_PEER_IP));

    /* with the MSG_TRUNC flag: the real length is returned */
    m.msg_flags = 0;
    m.msg_namelen = sizeof(from);
    assert_int_equal(sock_recvmsg(sd, &m, MSG_DONTWAIT | MSG_TRUNC), 100);
    assert_true(m.msg_flags & MSG_TRUNC);
    assert_memory_equal(got, data, 10);

    /* a datagram that fits: no MSG_TRUNC */
    iov.iov_len = 100;
    m.msg_flags = MSG_TRUNC; /* stale on entry: must be cleared */
    m.msg_namelen = sizeof(from);
    assert_int_equal(sock_recvmsg(sd, &m, MSG_DONTWAIT), 100);
    assert_false(m.msg_flags & MSG_TRUNC);
    expect_empty(sd);
    close_all();
    assert_no_leaks();
}

static void test_rcvbuf_limit(void **state)
{
    int sd = open_bound(TEST_OUR_IP, 7), err, injected = 0, received = 0;

    (void)state;
    set_int(sd, SOL_SOCKET, SO_RCVBUF, 0);
    assert_int_equal(get_int(sd, SOL_SOCKET, SO_RCVBUF), (int)net_config.sock_buf_min);
    fill_data(100, 15);
    while (counter("udp.rcvbuf_errors") == 0 && injected < 1000) {
        inject_udp(TEST_OUR_IP, PEER_PORT, 7, data, 100);
        injected++;
    }
    print_message("  SO_RCVBUF %u: queue full after %d datagrams\n", net_config.sock_buf_min, injected);
    assert_true(counter("udp.rcvbuf_errors") > 0);
    assert_true(injected > 1);
    assert_int_equal(test_sent_count(), 0); /* a full queue is not a closed port */
    inject_udp(TEST_OUR_IP, PEER_PORT, 7, data, 100);
    injected++;
    while (recv_now(sd, got, sizeof(got), 0, NULL, &err) == 100)
        received++;
    assert_int_equal(err, EAGAIN);
    assert_int_equal(received + counter("udp.rcvbuf_errors"), injected);
    assert_no_leaks(); /* the dropped ones were freed */
    /* after draining there is room again */
    inject_udp(TEST_OUR_IP, PEER_PORT, 7, data, 100);
    assert_int_equal(recv_now(sd, got, sizeof(got), 0, NULL, &err), 100);
    close_all();
    assert_no_leaks();
}

/* Datagrams still queued when the socket closes are freed. */
static void test_close_frees_queue(void **state)
{
    int sd = open_bound(TEST_OUR_IP, 7);

    (void)state;
    fill_data(500, 16);
    for (int i = 0; i < 10; i++)
        inject_udp(TEST_OUR_IP, PEER_PORT, 7, data, 500);
    assert_true(pbuf_outstanding() > pbufs_baseline);
    assert_int_equal(sock_close(sd), 0);
    assert_no_leaks();
    expect_errno(sock_close(sd), EBADF);
    nsocks = 0;
}

/* ---- addresses and ports -------------------------------------------------------------------------- */

static void test_bind_conflicts(void **state)
{
    struct sockaddr_in a = sin_of(TEST_OUR_IP, 6000), any = sin_of(NULL, 6000), far = sin_of("192.0.2.99", 6001);
    int s1 = open_udp(), s2 = open_udp(), s3, s4;

    (void)state;
    assert_int_equal(sock_bind(s1, SA(a), sizeof(a)), 0);
    expect_errno(sock_bind(s2, SA(a), sizeof(a)), EADDRINUSE);
    expect_errno(sock_bind(s2, SA(any), sizeof(any)), EADDRINUSE); /* the wildcard overlaps */
    expect_errno(sock_bind(s1, SA(any), sizeof(any)), EINVAL);     /* already bound */

    /* SO_REUSEADDR on both: allowed */
    s3 = open_udp();
    s4 = open_udp();
    set_int(s3, SOL_SOCKET, SO_REUSEADDR, 1);
    set_int(s4, SOL_SOCKET, SO_REUSEADDR, 1);
    assert_int_equal(get_int(s4, SOL_SOCKET, SO_REUSEADDR), 1);
    a.sin_port = htons(6002);
    assert_int_equal(sock_bind(s3, SA(a), sizeof(a)), 0);
    assert_int_equal(sock_bind(s4, SA(a), sizeof(a)), 0);
    /* on one only (the new one): refused, as BSD requires both */
    a.sin_port = htons(6000);
    expect_errno(sock_bind(s2, SA(a), sizeof(a)), EADDRINUSE);

    /* an address that is not ours */
    far.sin_port = htons(6003);
    expect_errno(sock_bind(s2, SA(far), sizeof(far)), EADDRNOTAVAIL);
    far = sin_of("203.0.113.5", 6003);
    expect_errno(sock_bind(s2, SA(far), sizeof(far)), EADDRNOTAVAIL);

    /* after close the port is free */
    assert_int_equal(sock_close(s1), 0);
    assert_int_equal(sock_bind(s2, SA(a), sizeof(a)), 0);
    close_all();
    assert_no_leaks();
}

static void test_ephemeral_port(void **state)
{
    struct sockaddr_in peer = sin_of(TEST_PEER_IP, 9), name;
    socklen_t len = sizeof(name);
    int sd = open_udp();
    unsigned port;

    (void)state;
    fill_data(4, 17);
    assert_int_equal(sock_sendto(sd, data, 4, 0, SA(peer), sizeof(peer)), 4);
    assert_int_equal(sock_getsockname(sd, SA(name), &len), 0);
    assert_int_equal(len, sizeof(name));
    assert_int_equal(name.sin_family, AF_INET);
    port = ntohs(name.sin_port);
    print_message("  ephemeral port %u\n", port);
    assert_true(port >= net_config.port_ephemeral_lo && port <= net_config.port_ephemeral_hi);
    assert_true(take() > 0);
    expect_udp_to_peer((uint16_t)port, 9, 4);
    /* the port stays */
    assert_int_equal(sock_sendto(sd, data, 4, 0, SA(peer), sizeof(peer)), 4);
    assert_true(take() > 0);
    expect_udp_to_peer((uint16_t)port, 9, 4);

    /* bind to port 0 picks one from the range as well, and a different one */
    {
        struct sockaddr_in zero = sin_of(NULL, 0), n2;
        socklen_t l2 = sizeof(n2);
        int s2 = open_udp();
        assert_int_equal(sock_bind(s2, SA(zero), sizeof(zero)), 0);
        assert_int_equal(sock_getsockname(s2, SA(n2), &l2), 0);
        assert_true(ntohs(n2.sin_port) >= net_config.port_ephemeral_lo);
        assert_true(ntohs(n2.sin_port) <= net_config.port_ephemeral_hi);
        assert_int_not_equal(ntohs(n2.sin_port), port);
    }

    /* a range of two ports: two sockets get them, the third EADDRINUSE */
    net_config.port_ephemeral_lo = 40000;
    net_config.port_ephemeral_hi = 40001;
    {
        struct sockaddr_in zero = sin_of(NULL, 0);
        int a = open_udp(), b = open_udp(), c = open_udp();
        assert_int_equal(sock_bind(a, SA(zero), sizeof(zero)), 0);
        assert_int_equal(sock_bind(b, SA(zero), sizeof(zero)), 0);
        expect_errno(sock_bind(c, SA(zero), sizeof(zero)), EADDRINUSE);
    }
    close_all();
    assert_no_leaks();
}

static void test_connect_names(void **state)
{
    struct sockaddr_in peer = sin_of(TEST_PEER_IP, 9), name;
    socklen_t len = sizeof(name);
    int sd = open_udp(), err;

    (void)state;
    /* unconnected: ENOTCONN */
    expect_errno(sock_getpeername(sd, SA(name), &len), ENOTCONN);
    expect_errno(sock_send(sd, "x", 1, 0), EDESTADDRREQ);

    assert_int_equal(sock_connect(sd, SA(peer), sizeof(peer)), 0);
    len = sizeof(name);
    assert_int_equal(sock_getpeername(sd, SA(name), &len), 0);
    assert_int_equal(len, sizeof(name));
    assert_int_equal(name.sin_family, AF_INET);
    assert_int_equal(name.sin_addr.s_addr, ip(TEST_PEER_IP));
    assert_int_equal(ntohs(name.sin_port), 9);
    /* connecting fixed our address too */
    len = sizeof(name);
    assert_int_equal(sock_getsockname(sd, SA(name), &len), 0);
    assert_int_equal(name.sin_addr.s_addr, ip(TEST_OUR_IP));
    assert_true(ntohs(name.sin_port) >= net_config.port_ephemeral_lo);

    /* a connected socket takes datagrams from its peer only */
    fill_data(8, 18);
    inject_udp(TEST_OUR_IP, 10, ntohs(name.sin_port), data, 8); /* wrong port: nobody */
    assert_int_equal(test_sent_count(), 1);
    test_flush();
    inject_udp(TEST_OUR_IP, 9, ntohs(name.sin_port), data, 8);
    assert_int_equal(recv_now(sd, got, sizeof(got), 0, NULL, &err), 8);
    assert_memory_equal(got, data, 8);

    /* send goes to the peer */
    assert_int_equal(sock_send(sd, data, 8, 0), 8);
    assert_true(take() > 0);
    expect_udp_to_peer(ntohs(name.sin_port), 9, 8);

    /* connect to port 0 or INADDR_ANY: EINVAL */
    peer.sin_port = 0;
    expect_errno(sock_connect(sd, SA(peer), sizeof(peer)), EINVAL);
    close_all();
    assert_no_leaks();
}

/* ---- errors of usage ------------------------------------------------------------------------------- */

static void test_bad_usage_errno(void **state)
{
    struct sockaddr_in a = sin_of(TEST_OUR_IP, 7), name;
    struct sockaddr_in6 a6;
    socklen_t len = sizeof(name);
    int sd = open_udp(), closed, v = 1;

    (void)state;
    /* bad descriptors */
    closed = sock_open(AF_INET, SOCK_DGRAM, 0);
    assert_true(closed >= 0);
    assert_int_equal(sock_close(closed), 0);
    expect_errno(sock_close(closed), EBADF);
    expect_errno(sock_close(-1), EBADF);
    expect_errno(sock_close(100000), EBADF);
    expect_errno(sock_bind(closed, SA(a), sizeof(a)), EBADF);
    expect_errno(sock_connect(-1, SA(a), sizeof(a)), EBADF);
    expect_errno(sock_sendto(999, "x", 1, 0, SA(a), sizeof(a)), EBADF);
    expect_errno(sock_recvfrom(999, got, 10, MSG_DONTWAIT, NULL, NULL), EBADF);
    expect_errno(sock_recv(closed, got, 10, 0), EBADF);
    expect_errno(sock_getsockname(closed, SA(name), &len), EBADF);
    expect_errno(sock_setsockopt(closed, SOL_SOCKET, SO_BROADCAST, &v, sizeof(v)), EBADF);
    expect_errno(sock_listen(closed, 1), EBADF);

    /* NULL addresses and buffers */
    expect_errno(sock_bind(sd, NULL, sizeof(a)), EFAULT);
    expect_errno(sock_connect(sd, NULL, sizeof(a)), EFAULT);
    expect_errno(sock_sendto(sd, NULL, 1, 0, SA(a), sizeof(a)), EFAULT);
    expect_errno(sock_recvfrom(sd, NULL, 1, MSG_DONTWAIT, NULL, NULL), EFAULT);
    expect_errno(sock_getsockname(sd, NULL, &len), EFAULT);
    expect_errno(sock_getsockname(sd, SA(name), NULL), EFAULT);
    expect_errno(sock_setsockopt(sd, SOL_SOCKET, SO_BROADCAST, NULL, sizeof(int)), EFAULT);
    expect_errno(sock_sendmsg(sd, NULL, 0), EFAULT);
    expect_errno(sock_recvmsg(sd, NULL, MSG_DONTWAIT), EFAULT);

    /* an IPv6 address */
    memset(&a6, 0, sizeof(a6));
    a6.sin6_family = AF_INET6;
    a6.sin6_port = htons(7);
    expect_errno(sock_bind(sd, SA(a6), sizeof(a6)), EAFNOSUPPORT);
    expect_errno(sock_connect(sd, SA(a6), sizeof(a6)), EAFNOSUPPORT);
    expect_errno(sock_sendto(sd, "x", 1, 0, SA(a6), sizeof(a6)), EAFNOSUPPORT);

    /* an address length too short */
    expect_errno(sock_bind(sd, SA(a), sizeof(a) - 1), EINVAL);
    expect_errno(sock_sendto(sd, "x", 1, 0, SA(a), 2), EINVAL);
    /* a destination of port 0 or 0.0.0.0 */
    {
        struct sockaddr_in p0 = sin_of(TEST_PEER_IP, 0), a0 = sin_of(NULL, 9);
        expect_errno(sock_sendto(sd, "x", 1, 0, SA(p0), sizeof(p0)), EINVAL);
        expect_errno(sock_sendto(sd, "x", 1, 0, SA(a0), sizeof(a0)), EINVAL);
    }

    /* families, types and protocols we do not have */
    expect_errno(sock_open(AF_INET6, SOCK_DGRAM, 0), EAFNOSUPPORT);
    expect_errno(sock_open(AF_UNIX, SOCK_DGRAM, 0), EAFNOSUPPORT);
    expect_errno(sock_open(AF_INET, SOCK_RAW, 0), EPROTONOSUPPORT);
    expect_errno(sock_open(AF_INET, SOCK_DGRAM, IPPROTO_TCP), EPROTONOSUPPORT);
    assert_int_equal(get_int(sd, SOL_SOCKET, SO_TYPE), SOCK_DGRAM);
    assert_int_equal(get_int(sd, SOL_SOCKET, SO_PROTOCOL), IPPROTO_UDP);

    /* options we do not have (0x7ffe: no such SOL_SOCKET option anywhere) */
    expect_errno(sock_setsockopt(sd, SOL_SOCKET, 0x7ffe, &v, sizeof(v)), ENOPROTOOPT);
    expect_errno(sock_setsockopt(sd, 12345, 1, &v, sizeof(v)), ENOPROTOOPT);
    expect_errno(sock_setsockopt(sd, SOL_NETSTEP, 99, &v, sizeof(v)), ENOPROTOOPT);
    len = sizeof(v);
    expect_errno(sock_getsockopt(sd, SOL_SOCKET, 0x7ffe, &v, &len), ENOPROTOOPT);
    expect_errno(sock_getsockopt(sd, 12345, 1, &v, &len), ENOPROTOOPT);
    /* an option value too short */
    expect_errno(sock_setsockopt(sd, SOL_SOCKET, SO_RCVBUF, &v, 2), EINVAL);
    v = 300;
    expect_errno(sock_setsockopt(sd, IPPROTO_IP, IP_TTL, &v, sizeof(v)), EINVAL);

    /* no listen or accept on a datagram socket */
    expect_errno(sock_listen(sd, 5), EOPNOTSUPP);
    len = sizeof(name);
    expect_errno(sock_accept(sd, SA(name), &len), EOPNOTSUPP);

    /* nothing queued: MSG_DONTWAIT says EAGAIN at once */
    expect_errno(sock_recv(sd, got, sizeof(got), MSG_DONTWAIT), EAGAIN);
    assert_int_equal(test_sent_count(), 0);
    close_all();
    assert_no_leaks();
}

static void test_buffer_options(void **state)
{
    int sd = open_udp();

    (void)state;
    assert_int_equal(get_int(sd, SOL_SOCKET, SO_RCVBUF), (int)net_config.sock_rcvbuf_default);
    assert_int_equal(get_int(sd, SOL_SOCKET, SO_SNDBUF), (int)net_config.sock_sndbuf_default);
    set_int(sd, SOL_SOCKET, SO_RCVBUF, 100000);
    assert_int_equal(get_int(sd, SOL_SOCKET, SO_RCVBUF), 100000);
    set_int(sd, SOL_SOCKET, SO_RCVBUF, 1);
    assert_int_equal(get_int(sd, SOL_SOCKET, SO_RCVBUF), (int)net_config.sock_buf_min);
    set_int(sd, SOL_SOCKET, SO_RCVBUF, -5);
    assert_int_equal(get_int(sd, SOL_SOCKET, SO_RCVBUF), (int)net_config.sock_buf_min);
    set_int(sd, SOL_SOCKET, SO_RCVBUF, INT_MAX);
    assert_int_equal(get_int(sd, SOL_SOCKET, SO_RCVBUF), (int)net_config.sock_buf_max);
    set_int(sd, SOL_SOCKET, SO_SNDBUF, 1);
    assert_int_equal(get_int(sd, SOL_SOCKET, SO_SNDBUF), (int)net_config.sock_buf_min);
    set_int(sd, SOL_SOCKET, SO_SNDBUF, INT_MAX);
    assert_int_equal(get_int(sd, SOL_SOCKET, SO_SNDBUF), (int)net_config.sock_buf_max);

    /* a getsockopt buffer too small: EINVAL */
    {
        int v;
        socklen_t len = 2;
        expect_errno(sock_getsockopt(sd, SOL_SOCKET, SO_RCVBUF, &v, &len), EINVAL);
    }
    /* timeouts read back as set */
    {
        struct timeval tv = { .tv_sec = 1, .tv_usec = 250000 }, rd = { 0 };
        socklen_t len = sizeof(rd);
        assert_int_equal(sock_setsockopt(sd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv)), 0);
        assert_int_equal(sock_getsockopt(sd, SOL_SOCKET, SO_RCVTIMEO, &rd, &len), 0);
        assert_int_equal(rd.tv_sec, 1);
        assert_int_equal(rd.tv_usec, 250000);
        tv.tv_usec = 1000000;
        expect_errno(sock_setsockopt(sd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv)), EDOM);
    }
    close_all();
}

/* A non-blocking socket never waits. A SO_RCVTIMEO is set as well so that
 * a socket that wrongly blocks fails the test instead of hanging it (there
 * is no stack thread that could ever wake it). */
static void expect_nonblocking(int sd)
{
    struct timeval tv = { .tv_sec = 0, .tv_usec = 500000 };
    uint64_t t0;

    assert_int_equal(sock_setsockopt(sd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv)), 0);
    t0 = platform_now_ms();
    expect_errno(sock_recv(sd, got, sizeof(got), 0), EAGAIN);
    assert_true(platform_now_ms() - t0 < 250);
}

static void test_nonblock(void **state)
{
    struct sockaddr_in a = sin_of(TEST_OUR_IP, 7);
    int sd = open_udp(), nb = open_udp_flags(SOCK_NONBLOCK), err;

    (void)state;
    assert_int_equal(get_int(sd, SOL_NETSTEP, NETSTEP_NONBLOCK), 0);
    set_int(sd, SOL_NETSTEP, NETSTEP_NONBLOCK, 1);
    assert_int_equal(get_int(sd, SOL_NETSTEP, NETSTEP_NONBLOCK), 1);
    expect_nonblocking(sd);

    /* SOCK_NONBLOCK in sock_open, and SOCK_CLOEXEC is accepted */
    assert_int_equal(get_int(nb, SOL_NETSTEP, NETSTEP_NONBLOCK), 1);
    assert_int_equal(get_int(nb, SOL_SOCKET, SO_TYPE), SOCK_DGRAM);
    expect_nonblocking(nb);
    open_udp_flags(SOCK_CLOEXEC);

    /* non-blocking, data there: it is returned */
    assert_int_equal(sock_bind(nb, SA(a), sizeof(a)), 0);
    fill_data(9, 19);
    inject_udp(TEST_OUR_IP, PEER_PORT, 7, data, 9);
    assert_int_equal(sock_recv(nb, got, sizeof(got), 0), 9);
    assert_memory_equal(got, data, 9);

    /* switched back off, SO_RCVTIMEO applies: EAGAIN after it (real time) */
    set_int(nb, SOL_NETSTEP, NETSTEP_NONBLOCK, 0);
    {
        struct timeval tv = { .tv_sec = 0, .tv_usec = 50000 };
        uint64_t t0;
        assert_int_equal(sock_setsockopt(nb, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv)), 0);
        t0 = platform_now_ms();
        assert_int_equal(recv_now(nb, got, sizeof(got), 0, NULL, &err), -1); /* DONTWAIT: at once */
        errno = 0;
        assert_int_equal(sock_recv(nb, got, sizeof(got), 0), -1);
        assert_int_equal(errno, EAGAIN);
        assert_true(platform_now_ms() - t0 >= 50);
    }
    close_all();
    assert_no_leaks();
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_receive, setup, teardown),
        cmocka_unit_test_setup_teardown(test_receive_wildcard_and_broadcast, setup, teardown),
        cmocka_unit_test_setup_teardown(test_zero_checksum_accepted, setup, teardown),
        cmocka_unit_test_setup_teardown(test_malformed_dropped, setup, teardown),
        cmocka_unit_test_setup_teardown(test_receive_fragmented, setup, teardown),
        cmocka_unit_test_setup_teardown(test_send_to_self, setup, teardown),
        cmocka_unit_test_setup_teardown(test_loopback_source_from_wire_dropped, setup, teardown),
        cmocka_unit_test_setup_teardown(test_closed_port_unreachable, setup, teardown),
        cmocka_unit_test_setup_teardown(test_broadcast_closed_port_silent, setup, teardown),
        cmocka_unit_test_setup_teardown(test_icmp_rate_limited, setup, teardown),
        cmocka_unit_test_setup_teardown(test_icmp_error_connected, setup, teardown),
        cmocka_unit_test_setup_teardown(test_icmp_error_unconnected_ignored, setup, teardown),
        cmocka_unit_test_setup_teardown(test_send_frame, setup, teardown),
        cmocka_unit_test_setup_teardown(test_send_zero_checksum_as_ffff, setup, teardown),
        cmocka_unit_test_setup_teardown(test_send_max_fragments, setup, teardown),
        cmocka_unit_test_setup_teardown(test_send_broadcast, setup, teardown),
        cmocka_unit_test_setup_teardown(test_send_loopback_dst_never_on_wire, setup, teardown),
        cmocka_unit_test_setup_teardown(test_msg_trunc_and_peek, setup, teardown),
        cmocka_unit_test_setup_teardown(test_rcvbuf_limit, setup, teardown),
        cmocka_unit_test_setup_teardown(test_close_frees_queue, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bind_conflicts, setup, teardown),
        cmocka_unit_test_setup_teardown(test_ephemeral_port, setup, teardown),
        cmocka_unit_test_setup_teardown(test_connect_names, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bad_usage_errno, setup, teardown),
        cmocka_unit_test_setup_teardown(test_buffer_options, setup, teardown),
        cmocka_unit_test_setup_teardown(test_nonblock, setup, teardown),
    };

    default_config = net_config;
    return cmocka_run_group_tests(tests, NULL, NULL);
}
