/*
 * tcp_peer.h — a scripted TCP peer for the protocol tests of TCP
 * (test_tcp*.c), over the in-memory test device (testdev.h).
 *
 * The peer is 192.0.2.1; we are 192.0.2.2. The peer's segments are built
 * here byte by byte (header, options, payload, a correct checksum over the
 * pseudo header) and injected; test_inject() runs the stack until idle, so
 * by the time it returns the stack has answered. What the stack sent is
 * parsed back into a struct tp_seg after checking the Ethernet addresses,
 * the IPv4 header and both checksums.
 *
 * No stack thread runs, so every socket here is non-blocking: connect()
 * says EINPROGRESS, accept() and recv() say EAGAIN until the segments that
 * satisfy them have been injected.
 *
 * Included by each test_tcp*.c after <cmocka.h>: everything is static
 * inline (the Makefile links every non-test .c of tests/proto into every
 * protocol test, so shared code lives in this header).
 *
 * Offsets in a frame: Ethernet 0..13, IPv4 at 14, TCP at 34 (0 sport,
 * 2 dport, 4 seq, 8 ack, 12 data offset, 13 flags, 14 window, 16 sum).
 */
#ifndef NETSTEP_TESTS_TCP_PEER_H
#define NETSTEP_TESTS_TCP_PEER_H

#include <errno.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <string.h>

#include "net.h"
#include "proto/ether.h"
#include "proto/ip.h"
#include "proto/sock.h"
#include "proto/tcp.h"
#include "testdev.h"
#include "util/byteorder.h"
#include "util/cksum.h"
#include "util/pbuf.h"
#include "util/stats.h"

#define TP_E ETHER_HDR_SIZE               /* IPv4 header in a frame */
#define TP_T (TP_E + IP_HDR_SIZE_MIN)     /* TCP header in a frame */
#define TP_FRAME_MAX (TP_E + 1500 + 64)
#define TP_MAX_SOCKS 64

#define FIN TCP_FLG_FIN
#define SYN TCP_FLG_SYN
#define RST TCP_FLG_RST
#define PSH TCP_FLG_PSH
#define ACK TCP_FLG_ACK

/* A segment the stack sent, parsed. */
struct tp_seg {
    uint16_t sport, dport;
    uint32_t seq, ack;
    uint8_t flg;
    uint16_t wnd;
    uint16_t mss;          /* MSS option, 0 if none */
    size_t optlen;
    uint8_t opt[40];
    size_t dlen;
    uint8_t data[1500];
};

/* One connection as the peer sees it. */
struct tp_conn {
    int sd;                /* our socket: accepted or connected */
    uint16_t lport, pport; /* our port, the peer's */
    uint32_t iss;          /* our initial sequence number */
    uint32_t irs;          /* the peer's */
    uint32_t pseq;         /* the peer's next sequence number to send */
    uint32_t pack;         /* what the peer acknowledges (our bytes it has) */
    uint16_t pwnd;         /* the window the peer advertises */
};

struct tp_state {
    struct net_config default_config;
    long pbufs_before_up, pbufs_baseline;
    int socks[TP_MAX_SOCKS];
    int nsocks;
    uint8_t frame[TP_FRAME_MAX];
    uint8_t seg[TP_FRAME_MAX];
};
static struct tp_state tp;

/* ---- small things ---------------------------------------------------------------------- */

static inline uint32_t tp_ip(const char *s)
{
    uint32_t a = 0;

    assert_int_equal(ip_addr_pton(s, &a), 0);
    return a;
}

static inline int64_t tp_counter(const char *dotted)
{
    int64_t v = stats_lookup(dotted);

    assert_true(v >= 0); /* the counter exists */
    return v;
}

#define expect_errno(call, e)                                                                      \
    do {                                                                                           \
        errno = 0;                                                                                 \
        assert_int_equal((call), -1);                                                              \
        assert_int_equal(errno, (e));                                                              \
    } while (0)

static inline void tp_fill(uint8_t *buf, size_t len, unsigned salt)
{
    for (size_t i = 0; i < len; i++)
        buf[i] = (uint8_t)((i + salt) * 131 + (i >> 8) * 7 + salt);
}

static inline struct sockaddr_in tp_sin(const char *addr, uint16_t port)
{
    struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons(port) };

    a.sin_addr.s_addr = addr ? tp_ip(addr) : INADDR_ANY;
    return a;
}

#define TP_SA(x) ((struct sockaddr *)&(x))

static inline void tp_set_int(int sd, int level, int name, int v)
{
    assert_int_equal(sock_setsockopt(sd, level, name, &v, sizeof(v)), 0);
}

static inline int tp_so_error(int sd)
{
    int v = -1;
    socklen_t len = sizeof(v);

    assert_int_equal(sock_getsockopt(sd, SOL_SOCKET, SO_ERROR, &v, &len), 0);
    return v;
}

static inline short tp_poll(int sd, short events)
{
    struct pollfd p = { .fd = sd, .events = events };

    assert_true(sock_poll(&p, 1, 0) >= 0);
    return p.revents;
}

/* A non-blocking TCP socket the fixture closes at the end. */
static inline int tp_socket(void)
{
    int sd = sock_open(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);

    assert_true(sd >= 0);
    assert_true(tp.nsocks < TP_MAX_SOCKS);
    tp.socks[tp.nsocks++] = sd;
    return sd;
}

static inline void tp_track(int sd)
{
    assert_true(tp.nsocks < TP_MAX_SOCKS);
    tp.socks[tp.nsocks++] = sd;
}

static inline void tp_close_all(void)
{
    for (int i = 0; i < tp.nsocks; i++)
        sock_close(tp.socks[i]); /* EBADF for one a test closed itself: fine */
    tp.nsocks = 0;
}

/* ---- the pcb table (tcp_pcb_format) ---------------------------------------------------------- */

/* The state of the connection lport <-> peer:pport ("ESTABLISHED", ...),
 * into st; "" if there is none (CLOSED ones count as none). */
static inline const char *tp_state_of(uint16_t lport, uint16_t pport, char st[16])
{
    static char buf[1 << 20];
    char *line = buf;

    st[0] = '\0';
    tcp_pcb_format(buf, sizeof(buf));
    while (line && *line) {
        char s[16], la[32], ra[32];
        unsigned lp, rp;
        if (sscanf(line, "tcp %15s %31[^:]:%u %31[^:]:%u", s, la, &lp, ra, &rp) == 5 && lp == lport &&
            rp == pport && strcmp(s, "CLOSED") != 0 && strcmp(s, "LISTEN") != 0) {
            strcpy(st, s);
            break;
        }
        line = strchr(line, '\n');
        if (line)
            line++;
    }
    return st;
}

#define assert_state(c, name)                                                                      \
    do {                                                                                           \
        char st_[16];                                                                              \
        assert_string_equal(tp_state_of((c)->lport, (c)->pport, st_), (name));                     \
    } while (0)

/* Number of pcbs in the table (any state). */
static inline int tp_pcb_lines(void)
{
    static char buf[1 << 20];
    int n = 0;

    tcp_pcb_format(buf, sizeof(buf));
    for (char *p = buf; (p = strchr(p, '\n')); p++)
        n++;
    return n;
}

/* ---- the peer sends ------------------------------------------------------------------------------ */

/* A frame peer:sport -> us:dport into tp.frame, checksum right; returns
 * its length. */
static inline size_t tp_build(uint16_t sport, uint16_t dport, uint32_t seq, uint32_t ack, uint8_t flg,
                              uint16_t wnd, const void *opt, size_t optlen, const void *data, size_t dlen)
{
    uint8_t *s = tp.seg;
    size_t hlen = TCP_HDR_SIZE_MIN + optlen, n = hlen + dlen;

    assert_true(optlen % 4 == 0 && optlen <= 40);
    assert_true(n <= sizeof(tp.seg) - 64);
    memset(s, 0, TCP_HDR_SIZE_MIN);
    store16(s, sport);
    store16(s + 2, dport);
    store32(s + 4, seq);
    store32(s + 8, ack);
    s[12] = (uint8_t)((hlen / 4) << 4);
    s[13] = flg;
    store16(s + 14, wnd);
    if (optlen)
        memcpy(s + TCP_HDR_SIZE_MIN, opt, optlen);
    if (dlen)
        memcpy(s + hlen, data, dlen);
    store16(s + 16, cksum16(s, n, cksum_pseudo(ts.peer_ip, ts.our_ip, IP_PROTOCOL_TCP, (uint16_t)n)));
    return test_ip_frame(tp.frame, IP_PROTOCOL_TCP, ts.peer_ip, ts.our_ip, 0x1234, 0, s, n);
}

static inline void tp_inject(uint16_t sport, uint16_t dport, uint32_t seq, uint32_t ack, uint8_t flg,
                             uint16_t wnd, const void *opt, size_t optlen, const void *data, size_t dlen)
{
    size_t len = tp_build(sport, dport, seq, ack, flg, wnd, opt, optlen, data, dlen);

    test_inject(tp.frame, len);
}

/* The peer on connection c sends flg with data at its next sequence
 * number, acknowledging c->pack, and advances. */
static inline void tp_send(struct tp_conn *c, uint8_t flg, const void *data, size_t dlen)
{
    tp_inject(c->pport, c->lport, c->pseq, c->pack, flg, c->pwnd, NULL, 0, data, dlen);
    c->pseq += (uint32_t)dlen + ((flg & SYN) ? 1 : 0) + ((flg & FIN) ? 1 : 0);
}

/* As tp_send but at sequence number seq, not moving c->pseq. */
static inline void tp_send_at(struct tp_conn *c, uint32_t seq, uint8_t flg, const void *data, size_t dlen)
{
    tp_inject(c->pport, c->lport, seq, c->pack, flg, c->pwnd, NULL, 0, data, dlen);
}

/* ---- the peer receives ------------------------------------------------------------------------------ */

/* The next frame the stack sent, parsed into s (any may be NULL to
 * discard); 0 if it sent nothing. Asserts that it is a valid IPv4 TCP
 * segment from us to the peer with right checksums. */
static inline int tp_take(struct tp_seg *s)
{
    struct tp_seg dummy;
    struct pbuf *pb = test_take();
    const uint8_t *b;
    size_t iplen, tlen, hlen;

    if (!s)
        s = &dummy;
    if (!pb)
        return 0;
    b = pb->data;
    assert_true(pb->len >= TP_T + TCP_HDR_SIZE_MIN);
    assert_memory_equal(b, TEST_PEER_MAC, 6);
    assert_memory_equal(b + 6, TEST_OUR_MAC, 6);
    assert_int_equal(load16(b + 12), ETHER_TYPE_IP);
    assert_int_equal(b[TP_E], 0x45);
    assert_int_equal(cksum16(b + TP_E, IP_HDR_SIZE_MIN, 0), 0);
    assert_int_equal(b[TP_E + 9], IP_PROTOCOL_TCP);
    assert_int_equal(load16(b + TP_E + 6) & 0x3fff, 0); /* never a fragment */
    assert_memory_equal(b + TP_E + 12, &ts.our_ip, 4);
    assert_memory_equal(b + TP_E + 16, &ts.peer_ip, 4);
    iplen = load16(b + TP_E + 2);
    assert_true(iplen <= 1500);
    assert_true(TP_E + iplen <= pb->len);
    tlen = iplen - IP_HDR_SIZE_MIN;
    assert_int_equal(cksum16(b + TP_T, tlen, cksum_pseudo(ts.our_ip, ts.peer_ip, IP_PROTOCOL_TCP, (uint16_t)tlen)), 0);
    hlen = (size_t)(b[TP_T + 12] >> 4) * 4;
    assert_true(hlen >= TCP_HDR_SIZE_MIN && hlen <= tlen);
    memset(s, 0, sizeof(*s));
    s->sport = load16(b + TP_T);
    s->dport = load16(b + TP_T + 2);
    s->seq = load32(b + TP_T + 4);
    s->ack = load32(b + TP_T + 8);
    s->flg = b[TP_T + 13];
    s->wnd = load16(b + TP_T + 14);
    s->optlen = hlen - TCP_HDR_SIZE_MIN;
    memcpy(s->opt, b + TP_T + TCP_HDR_SIZE_MIN, s->optlen);
    for (size_t i = 0; i < s->optlen;) { /* our options must be well formed */
        uint8_t kind = s->opt[i];
        if (kind == TCP_OPT_EOL)
            break;
        if (kind == TCP_OPT_NOP) {
            i++;
            continue;
        }
        assert_true(i + 1 < s->optlen && s->opt[i + 1] >= 2 && i + s->opt[i + 1] <= s->optlen);
        if (kind == TCP_OPT_MSS) {
            assert_int_equal(s->opt[i + 1], 4);
            s->mss = load16(s->opt + i + 2);
        }
        i += s->opt[i + 1];
    }
    s->dlen = tlen - hlen;
    assert_true(s->dlen <= sizeof(s->data));
    memcpy(s->data, b + TP_T + hlen, s->dlen);
    if (!(s->flg & ACK) && !(s->flg & RST))
        assert_true(s->flg & SYN); /* only a SYN goes without an ACK */
    pbuf_free(pb);
    return 1;
}

/* The next segment must exist and carry exactly these flags (PSH aside). */
static inline void tp_expect(struct tp_seg *s, uint8_t flg)
{
    struct tp_seg dummy;

    if (!s)
        s = &dummy;
    if (!tp_take(s))
        fail_msg("expected a segment with flags 0x%02x, the stack sent nothing", flg);
    if ((s->flg & (uint8_t)~PSH) != flg)
        fail_msg("expected flags 0x%02x, got 0x%02x (seq %u ack %u len %zu)", flg, s->flg, s->seq, s->ack, s->dlen);
}

static inline void tp_expect_none(void)
{
    struct tp_seg s;

    if (tp_take(&s))
        fail_msg("expected silence, got flags 0x%02x seq %u ack %u win %u len %zu", s.flg, s.seq, s.ack, s.wnd,
                 s.dlen);
}

/* The next segment is a bare ACK on c acknowledging everything the peer sent. */
static inline void tp_expect_ack(struct tp_conn *c, struct tp_seg *s)
{
    struct tp_seg dummy;

    if (!s)
        s = &dummy;
    tp_expect(s, ACK);
    assert_int_equal(s->sport, c->lport);
    assert_int_equal(s->dport, c->pport);
    assert_int_equal(s->ack, c->pseq);
    assert_int_equal(s->dlen, 0);
}

/* Advance the clock in 10 ms steps until the stack sends something, for at
 * most max_ms; returns the time waited, or -1 if nothing came. */
static inline long tp_wait_send(uint64_t max_ms)
{
    for (uint64_t t = 0; t < max_ms;) {
        test_advance(10);
        t += 10;
        if (test_sent_count() > 0)
            return (long)t;
    }
    return -1;
}

/* ---- opening ---------------------------------------------------------------------------------------- */

/* MSS option (4 bytes). */
static inline size_t tp_opt_mss(uint8_t *opt, uint16_t mss)
{
    opt[0] = TCP_OPT_MSS;
    opt[1] = 4;
    store16(opt + 2, mss);
    return 4;
}

/* A listening non-blocking socket on port; rcvbuf 0 keeps the default. */
static inline int tp_listen(uint16_t port, int backlog, int rcvbuf)
{
    int sd = tp_socket();
    struct sockaddr_in a = tp_sin(NULL, port);

    tp_set_int(sd, SOL_SOCKET, SO_REUSEADDR, 1);
    if (rcvbuf)
        tp_set_int(sd, SOL_SOCKET, SO_RCVBUF, rcvbuf);
    assert_int_equal(sock_bind(sd, TP_SA(a), sizeof(a)), 0);
    assert_int_equal(sock_listen(sd, backlog), 0);
    return sd;
}

/* The peer sends a SYN (MSS option if mss) to the listener on lport; the
 * stack must answer with a SYN-ACK. Fills c (but not c->sd). */
static inline void tp_syn_to_listener(struct tp_conn *c, uint16_t lport, uint16_t pport, uint32_t pisn,
                                      uint16_t mss, struct tp_seg *synack)
{
    uint8_t opt[4];

    memset(c, 0, sizeof(*c));
    c->sd = -1;
    c->lport = lport;
    c->pport = pport;
    c->irs = pisn;
    c->pwnd = 65535;
    tp_inject(pport, lport, pisn, 0, SYN, c->pwnd, opt, mss ? tp_opt_mss(opt, mss) : 0, NULL, 0);
    tp_expect(synack, SYN | ACK);
    assert_int_equal(synack->sport, lport);
    assert_int_equal(synack->dport, pport);
    assert_int_equal(synack->ack, pisn + 1);
    c->iss = synack->seq;
    c->pseq = pisn + 1;
    c->pack = c->iss + 1;
}

/* A whole passive open: SYN, SYN-ACK, ACK, accept. */
static inline void tp_open_passive(struct tp_conn *c, int lsd, uint16_t lport, uint16_t pport, uint32_t pisn,
                                   uint16_t mss)
{
    struct tp_seg sa;
    struct sockaddr_in peer;
    socklen_t len = sizeof(peer);

    tp_syn_to_listener(c, lport, pport, pisn, mss, &sa);
    tp_send(c, ACK, NULL, 0);
    tp_expect_none();
    c->sd = sock_accept(lsd, TP_SA(peer), &len);
    assert_true(c->sd >= 0);
    tp_track(c->sd);
    assert_int_equal(peer.sin_addr.s_addr, ts.peer_ip);
    assert_int_equal(ntohs(peer.sin_port), pport);
    assert_state(c, "ESTABLISHED");
}

/* connect() on a fresh non-blocking socket: EINPROGRESS and a SYN. Fills c
 * with our side; the peer's fields are set by tp_open_active. */
static inline void tp_connect_start(struct tp_conn *c, uint16_t pport, int rcvbuf, struct tp_seg *syn)
{
    struct sockaddr_in a = tp_sin(TEST_PEER_IP, pport);

    memset(c, 0, sizeof(*c));
    c->sd = tp_socket();
    c->pport = pport;
    c->pwnd = 65535;
    if (rcvbuf)
        tp_set_int(c->sd, SOL_SOCKET, SO_RCVBUF, rcvbuf);
    expect_errno(sock_connect(c->sd, TP_SA(a), sizeof(a)), EINPROGRESS);
    tp_expect(syn, SYN);
    assert_int_equal(syn->dport, pport);
    assert_int_equal(syn->ack, 0);
    c->lport = syn->sport;
    c->iss = syn->seq;
}

/* A whole active open: connect, SYN, SYN-ACK (MSS mss if non-zero), ACK. */
static inline void tp_open_active(struct tp_conn *c, uint16_t pport, uint32_t pisn, uint16_t mss, int rcvbuf)
{
    struct tp_seg syn, ack;
    uint8_t opt[4];

    tp_connect_start(c, pport, rcvbuf, &syn);
    c->irs = pisn;
    c->pack = c->iss + 1;
    tp_inject(c->pport, c->lport, pisn, c->pack, SYN | ACK, c->pwnd, opt, mss ? tp_opt_mss(opt, mss) : 0, NULL, 0);
    c->pseq = pisn + 1;
    tp_expect_ack(c, &ack);
    assert_int_equal(ack.seq, c->iss + 1);
    assert_state(c, "ESTABLISHED");
}

/* Read exactly len bytes now (non-blocking) and compare with want. */
static inline void tp_read_exact(int sd, const uint8_t *want, size_t len)
{
    static uint8_t got[1 << 18];
    size_t done = 0;

    assert_true(len <= sizeof(got));
    while (done < len) {
        ssize_t n = sock_recv(sd, got + done, len - done, MSG_DONTWAIT);
        if (n <= 0)
            fail_msg("recv after %zu of %zu bytes: %zd (errno %d)", done, len, n, errno);
        done += (size_t)n;
    }
    assert_memory_equal(got, want, len);
}

/* ---- fixture ---------------------------------------------------------------------------------------- */

static inline void tp_assert_no_leaks(void)
{
    test_flush();
    assert_int_equal(pbuf_outstanding(), tp.pbufs_baseline);
}

static inline int tp_setup(void **state)
{
    (void)state;
    stats_reset_all();
    tp.nsocks = 0;
    tp.pbufs_before_up = pbuf_outstanding();
    if (teststack_up_resolved() < 0)
        return -1;
    tp.pbufs_baseline = pbuf_outstanding();
    return 0;
}

static inline int tp_teardown(void **state)
{
    (void)state;
    tp_close_all();
    test_flush();
    teststack_down();
    net_config = tp.default_config;
    return pbuf_outstanding() == tp.pbufs_before_up ? 0 : -1;
}

/* Close everything, let TIME-WAIT and every timer run out, and check that
 * no pcb and no pbuf is left. */
static inline void tp_finish(void)
{
    net_config.tcp_retries = 2; /* unanswered FINs give up soon */
    net_config.tcp_syn_retries = 1;
    net_config.tcp_fin_wait2_ms = 1000;
    tp_close_all();
    test_flush();
    test_advance(2ull * net_config.tcp_msl_ms + 200);
    test_flush();
    for (int i = 0; i < 300 && tp_pcb_lines() > 0; i++) { /* retransmissions of FINs, and so on */
        test_advance(1000);
        test_flush();
    }
    assert_int_equal(tp_pcb_lines(), 0);
    tp_assert_no_leaks();
}

#endif
