/*
 * test_tcp_data.c — protocol tests of TCP's data path (RFC 9293 §3.8,
 * §3.10.7.4 steps 1 and 7; RFC 5681; RFC 1122 §4.2.3): data both ways
 * with the right acknowledgments, delayed ACKs, out-of-order, duplicate and
 * overlapping segments, the receive window (ours and the peer's, zero
 * windows and probes), the peer's MSS, Nagle and sender SWS avoidance,
 * fast retransmit, the initial window, and sequence numbers wrapping past
 * 2^32. Long randomized transfers are in test_tcp_random.c.
 *
 * The scripted peer is tcp_peer.h; see test_tcp.c for the handshake.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "tcp_peer.h"

#define PORT 8080

static uint8_t data[1 << 16];

/* Passive connection on PORT with peer ISN pisn and MSS 1460; rcvbuf set
 * on the listener if non-zero. */
static void open_conn(struct tp_conn *c, uint16_t pport, uint32_t pisn, int rcvbuf)
{
    int lsd = tp_listen(PORT, 8, rcvbuf);

    tp_open_passive(c, lsd, PORT, pport, pisn, 1460);
}

/* ---- in order, both ways --------------------------------------------------------------------- */

static void test_data_both_ways(void **state)
{
    struct tp_conn c;
    struct tp_seg s;
    size_t off = 0;

    (void)state;
    open_conn(&c, 50000, 1000, 0);
    /* peer -> 3 x 1000 bytes; every second segment is acked at once */
    tp_fill(data, 4000, 3);
    tp_send(&c, ACK | PSH, data, 1000);
    tp_expect_none();
    tp_send(&c, ACK | PSH, data + 1000, 1000);
    tp_expect_ack(&c, &s);
    assert_int_equal(s.seq, c.iss + 1);
    tp_read_exact(c.sd, data, 2000);
    tp_expect_none();
    tp_send(&c, ACK | PSH, data + 2000, 1000);
    /* us -> 4000 bytes in MSS-sized segments, in order, the pending ACK
     * riding on the first; the short last one waits for an ACK (Nagle) */
    assert_int_equal(sock_send(c.sd, data, 4000, 0), 4000);
    while (tp_take(&s)) {
        assert_int_equal(s.flg & ~PSH, ACK);
        assert_int_equal(s.seq, c.iss + 1 + off);
        assert_int_equal(s.ack, c.pseq);
        assert_int_equal(s.dlen, 1460);
        assert_memory_equal(s.data, data + off, s.dlen);
        off += s.dlen;
    }
    assert_int_equal(off, 2920);
    c.pack += 1460;
    tp_send(&c, ACK, NULL, 0);
    tp_expect_none(); /* 1460 still in flight */
    c.pack += 1460;
    tp_send(&c, ACK, NULL, 0);
    tp_expect(&s, ACK);
    assert_int_equal(s.seq, c.iss + 1 + 2920);
    assert_int_equal(s.dlen, 1080);
    assert_memory_equal(s.data, data + 2920, 1080);
    assert_true(s.flg & PSH); /* the last of what the app gave */
    c.pack += 1080;
    tp_send(&c, ACK, NULL, 0);
    tp_expect_none();
    tp_read_exact(c.sd, data + 2000, 1000);
    assert_true(tp_poll(c.sd, POLLOUT) & POLLOUT);
    tp_finish();
}

/* RFC 9293 §3.8.6.3, RFC 1122 §4.2.3.2: a lone segment is acked after the
 * delayed-ACK time, not at once; every second full segment at once. */
static void test_delayed_ack(void **state)
{
    struct tp_conn c;
    struct tp_seg s;

    (void)state;
    net_config.tcp_delack_ms = 100;
    open_conn(&c, 50100, 1000, 0);
    tp_send(&c, ACK | PSH, "one", 3);
    test_advance(90);
    tp_expect_none();
    test_advance(10);
    tp_expect_ack(&c, &s);
    assert_int_equal(tp_counter("tcp.delayed_acks"), 1);
    test_advance(1000);
    tp_expect_none(); /* once */
    /* two full segments: the second is acked at once */
    tp_fill(data, 2920, 5);
    tp_send(&c, ACK, data, 1460);
    tp_expect_none();
    tp_send(&c, ACK, data + 1460, 1460);
    tp_expect_ack(&c, &s);
    test_advance(200);
    tp_expect_none();
    tp_read_exact(c.sd, (const uint8_t *)"one", 3);
    tp_read_exact(c.sd, data, 2920);
    tp_finish();
}

/* ---- out of order, duplicates, overlaps ------------------------------------------------------------- */

static void test_out_of_order(void **state)
{
    struct tp_conn c;
    struct tp_seg s;
    uint32_t base;
    char b[8];

    (void)state;
    open_conn(&c, 50200, 1000, 0);
    base = c.pseq;
    tp_fill(data, 5000, 6);
    /* [0,1000) in order; then [2000,3000) and [4000,5000): each acked at
     * once with the same ACK (RFC 5681 §4.2: a duplicate ACK) */
    tp_send_at(&c, base, ACK, data, 1000);
    tp_send_at(&c, base + 2000, ACK, data + 2000, 1000);
    tp_expect(&s, ACK);
    assert_int_equal(s.ack, base + 1000);
    tp_send_at(&c, base + 4000, ACK | FIN, data + 4000, 1000);
    tp_expect(&s, ACK);
    assert_int_equal(s.ack, base + 1000);
    tp_expect_none();
    /* only the in-order part is readable, and no end of stream yet */
    tp_read_exact(c.sd, data, 1000);
    expect_errno(sock_recv(c.sd, b, sizeof(b), MSG_DONTWAIT), EAGAIN);
    /* [1000,2000) fills the first hole: ACK at once up to 3000 */
    tp_send_at(&c, base + 1000, ACK, data + 1000, 1000);
    tp_expect(&s, ACK);
    assert_int_equal(s.ack, base + 3000);
    /* [3000,4000) fills the last: everything and the FIN */
    tp_send_at(&c, base + 3000, ACK, data + 3000, 1000);
    tp_expect(&s, ACK);
    assert_int_equal(s.ack, base + 5001);
    tp_expect_none();
    tp_read_exact(c.sd, data + 1000, 4000);
    assert_int_equal(sock_recv(c.sd, b, sizeof(b), MSG_DONTWAIT), 0);
    assert_state(&c, "CLOSE-WAIT");
    assert_int_equal(tp_counter("tcp.in_ooo_segs"), 2);
    tp_finish();
}

/* RFC 5681 §4.2: an out-of-order segment is acked at once -- a bare FIN
 * ahead of a hole too; when the hole fills, the FIN counts. */
static void test_out_of_order_fin(void **state)
{
    struct tp_conn c;
    struct tp_seg s;
    uint32_t base;
    char b[8];

    (void)state;
    open_conn(&c, 50250, 1000, 0);
    base = c.pseq;
    tp_fill(data, 100, 20);
    tp_send_at(&c, base + 100, ACK | FIN, NULL, 0);
    if (!tp_take(&s))
        fail_msg("a FIN ahead of a 100-byte hole: no duplicate ACK");
    assert_int_equal(s.ack, base);
    tp_send_at(&c, base, ACK, data, 100);
    tp_expect(&s, ACK);
    assert_int_equal(s.ack, base + 101);
    tp_read_exact(c.sd, data, 100);
    assert_int_equal(sock_recv(c.sd, b, sizeof(b), MSG_DONTWAIT), 0);
    assert_state(&c, "CLOSE-WAIT");
    tp_finish();
}

/* Duplicates and overlaps are trimmed: the app reads every byte once. */
static void test_duplicate_and_overlap(void **state)
{
    struct tp_conn c;
    struct tp_seg s;
    uint32_t base;
    char b[8];

    (void)state;
    open_conn(&c, 50300, 1000, 0);
    base = c.pseq;
    tp_fill(data, 4000, 7);
    tp_send_at(&c, base, ACK, data, 1000);          /* [0,1000) */
    tp_send_at(&c, base + 500, ACK, data + 500, 1000); /* [500,1500) */
    tp_expect(&s, ACK);                              /* second segment: acked */
    assert_int_equal(s.ack, base + 1500);
    tp_send_at(&c, base, ACK, data, 1460);          /* [0,1460): old, all of it */
    tp_expect(&s, ACK);                              /* a duplicate: ACK at once */
    assert_int_equal(s.ack, base + 1500);
    tp_send_at(&c, base, ACK, data, 1000);          /* [0,1000) again */
    tp_expect(&s, ACK);
    assert_int_equal(s.ack, base + 1500);
    tp_read_exact(c.sd, data, 1500);
    expect_errno(sock_recv(c.sd, b, sizeof(b), MSG_DONTWAIT), EAGAIN);
    /* overlapping out-of-order ranges: [2500,3500), [2000,2800), [3400,4000) */
    tp_send_at(&c, base + 2500, ACK, data + 2500, 1000);
    tp_send_at(&c, base + 2000, ACK, data + 2000, 800);
    tp_send_at(&c, base + 3400, ACK, data + 3400, 600);
    while (tp_take(&s))
        assert_int_equal(s.ack, base + 1500);
    /* [1400,2100) fills the hole from behind rcv_nxt */
    tp_send_at(&c, base + 1400, ACK, data + 1400, 700);
    tp_expect(&s, ACK);
    assert_int_equal(s.ack, base + 4000);
    tp_read_exact(c.sd, data + 1500, 2500);
    expect_errno(sock_recv(c.sd, b, sizeof(b), MSG_DONTWAIT), EAGAIN);
    assert_true(tp_counter("tcp.in_dup_segs") >= 2);
    tp_finish();
}

/* Data beyond the receive window is cut off; a segment wholly beyond it is
 * not taken and is answered with an ACK (RFC 9293 §3.10.7.4, first). */
static void test_beyond_window_trimmed(void **state)
{
    struct tp_conn c;
    struct tp_seg s;
    uint32_t base;
    char b[8];

    (void)state;
    open_conn(&c, 50400, 1000, 2048);
    base = c.pseq;
    tp_fill(data, 4000, 8);
    tp_send_at(&c, base + 2048, ACK, data + 2048, 100); /* wholly beyond */
    tp_expect(&s, ACK);
    assert_int_equal(s.ack, base);
    tp_send_at(&c, base, ACK, data, 1460);
    tp_send_at(&c, base + 1460, ACK | FIN, data + 1460, 1460); /* 588 fit; the FIN does not */
    tp_expect(&s, ACK);
    assert_int_equal(s.ack, base + 2048);
    assert_int_equal(s.wnd, 0);
    tp_read_exact(c.sd, data, 2048);
    expect_errno(sock_recv(c.sd, b, sizeof(b), MSG_DONTWAIT), EAGAIN);
    assert_state(&c, "ESTABLISHED"); /* the FIN was cut off with the data */
    tp_finish();
}

/* ---- the peer's MSS --------------------------------------------------------------------------------- */

/* Take total bytes from the stack on c, acknowledging whenever it goes
 * quiet (Nagle holds a last short segment until then); no segment may
 * carry more than mss bytes. */
static void expect_segments_at_most(struct tp_conn *c, size_t total, size_t mss)
{
    struct tp_seg s;
    size_t off = 0;

    for (int quiet = 0; off < total && quiet < 2;) {
        if (!tp_take(&s)) {
            quiet++;
            c->pack = c->iss + 1 + (uint32_t)off;
            tp_send(c, ACK, NULL, 0);
            continue;
        }
        quiet = 0;
        if (s.dlen > mss)
            fail_msg("a segment of %zu bytes, peer MSS %zu", s.dlen, mss);
        assert_int_equal(s.seq, c->iss + 1 + off);
        assert_memory_equal(s.data, data + off, s.dlen);
        off += s.dlen;
    }
    assert_int_equal(off, total);
    c->pack = c->iss + 1 + (uint32_t)off;
    tp_send(c, ACK, NULL, 0);
    tp_expect_none();
}

static void test_peer_mss_536(void **state)
{
    int lsd = tp_listen(PORT, 8, 0);
    struct tp_conn c, d, e;
    struct tp_seg sa;

    (void)state;
    tp_fill(data, 3000, 9);
    /* MSS 536 in the SYN */
    tp_syn_to_listener(&c, PORT, 50500, 1, 536, &sa);
    assert_int_equal(sa.mss, 1460); /* ours is still ours */
    tp_send(&c, ACK, NULL, 0);
    c.sd = sock_accept(lsd, NULL, NULL);
    assert_true(c.sd >= 0);
    tp_track(c.sd);
    assert_int_equal(sock_send(c.sd, data, 3000, 0), 3000);
    expect_segments_at_most(&c, 3000, 536);
    /* no MSS option at all: 536 (RFC 9293 §3.7.1) */
    tp_syn_to_listener(&d, PORT, 50501, 1, 0, &sa);
    tp_send(&d, ACK, NULL, 0);
    d.sd = sock_accept(lsd, NULL, NULL);
    assert_true(d.sd >= 0);
    tp_track(d.sd);
    assert_int_equal(sock_send(d.sd, data, 3000, 0), 3000);
    expect_segments_at_most(&d, 3000, 536);
    /* MSS 9000 in the SYN: our own MTU still bounds what we send */
    {
        struct tp_conn f;
        tp_syn_to_listener(&f, PORT, 50502, 1, 9000, &sa);
        tp_send(&f, ACK, NULL, 0);
        f.sd = sock_accept(lsd, NULL, NULL);
        assert_true(f.sd >= 0);
        tp_track(f.sd);
        assert_int_equal(sock_send(f.sd, data, 3000, 0), 3000);
        expect_segments_at_most(&f, 3000, 1460);
    }
    /* active open, MSS 536 in the SYN,ACK */
    tp_open_active(&e, 80, 77, 536, 0);
    assert_int_equal(sock_send(e.sd, data, 3000, 0), 3000);
    expect_segments_at_most(&e, 3000, 536);
    tp_finish();
}

/* ---- sequence numbers across 2^32 ----------------------------------------------------------------------- */

static void test_sequence_wraparound(void **state)
{
    struct tp_conn c;
    struct tp_seg s;
    uint32_t base;

    (void)state;
    open_conn(&c, 50600, 0xffffff00u, 0);
    base = c.pseq; /* 0xffffff01 */
    tp_fill(data, 900, 10);
    /* [200,400) crosses 2^32 (0xffffffc9..): out of order first */
    tp_send_at(&c, base + 200, ACK, data + 200, 200);
    tp_expect(&s, ACK);
    assert_int_equal(s.ack, base);
    tp_send_at(&c, base + 600, ACK, data + 600, 300);
    tp_expect(&s, ACK);
    assert_int_equal(s.ack, base);
    tp_send_at(&c, base, ACK, data, 200);
    tp_expect(&s, ACK);
    assert_int_equal(s.ack, base + 400);
    tp_send_at(&c, base + 400, ACK, data + 400, 200);
    tp_expect(&s, ACK);
    assert_int_equal(s.ack, base + 900);
    assert_int_equal(s.ack, 0x00000285u);
    tp_read_exact(c.sd, data, 900);
    c.pseq = base + 900;
    /* an old segment from before the wrap is a duplicate, not new data */
    tp_send_at(&c, base + 100, ACK, data + 100, 100);
    tp_expect(&s, ACK);
    assert_int_equal(s.ack, base + 900);
    {
        char b[8];
        expect_errno(sock_recv(c.sd, b, sizeof(b), MSG_DONTWAIT), EAGAIN);
    }
    tp_finish();
}

/* ---- the peer's window ------------------------------------------------------------------------------------ */

/* RFC 9293 §3.8.6.1: a zero window is probed with one byte, the probes
 * backing off (here unanswered: lost, or a silent peer). */
static void test_peer_zero_window_probes(void **state)
{
    struct tp_conn c;
    struct tp_seg s;
    long gaps[5];

    (void)state;
    open_conn(&c, 50700, 1000, 0);
    c.pwnd = 0;
    tp_send(&c, ACK, NULL, 0);
    tp_fill(data, 3000, 11);
    assert_int_equal(sock_send(c.sd, data, 3000, 0), 3000);
    tp_expect_none();
    for (int i = 0; i < 5; i++) {
        gaps[i] = tp_wait_send(130000);
        assert_true(gaps[i] > 0);
        tp_expect(&s, ACK);
        assert_int_equal(s.dlen, 1);
        assert_int_equal(s.seq, c.iss + 1);
        assert_int_equal(s.data[0], data[0]);
        tp_expect_none();
    }
    print_message("  probes after %ld, %ld, %ld, %ld, %ld ms\n", gaps[0], gaps[1], gaps[2], gaps[3], gaps[4]);
    assert_int_equal(gaps[0], 1000); /* the RTO: no RTT measured yet */
    for (int i = 1; i < 5; i++)
        assert_int_equal(gaps[i], 2 * gaps[i - 1]);
    assert_int_equal(tp_counter("tcp.persist_probes"), 5);
    assert_state(&c, "ESTABLISHED");
    c.pwnd = 65535; /* the peer is back: everything goes */
    tp_send(&c, ACK, NULL, 0);
    expect_segments_at_most(&c, 3000, 1460);
    tp_finish();
}

/* A peer that shut its window and then went silent: probes that nobody
 * answers must not keep the connection (and, once the app closed it, the
 * pcb and its buffers) forever. RFC 9293 §3.8.6.1 only requires the
 * connection to stay open "as long as the receiving TCP continues to send
 * acknowledgments in response to the probe segments"; RFC 1122 §4.2.2.17
 * likewise. tcp_retries unanswered probes end it with ETIMEDOUT. */
static void test_zero_window_dead_peer(void **state)
{
    struct tp_conn c;
    char b[8];

    (void)state;
    net_config.tcp_retries = 3;
    open_conn(&c, 50720, 1000, 0);
    c.pwnd = 0;
    tp_send(&c, ACK, NULL, 0);
    tp_fill(data, 3000, 11);
    assert_int_equal(sock_send(c.sd, data, 3000, 0), 3000);
    for (int i = 0; i < 60; i++) { /* ten minutes, nobody answering */
        test_advance(10000);
        test_flush();
    }
    if (tp_counter("tcp.persist_probes") > (int64_t)net_config.tcp_retries + 1) {
        char st[16];
        fail_msg("%lld unanswered zero-window probes in 10 minutes and the connection is still %s",
                 (long long)tp_counter("tcp.persist_probes"), tp_state_of(c.lport, c.pport, st));
    }
    assert_state(&c, "");
    expect_errno(sock_recv(c.sd, b, sizeof(b), MSG_DONTWAIT), ETIMEDOUT);
    tp_finish();
}

/* The peer answers each probe, its window still shut: <ACK=SND.UNA,
 * WND=0>. Those answers are not duplicate ACKs of lost data (RFC 5681
 * §3.2 fast retransmit is for a hole in an open window): nothing but the
 * one-byte probes may go out while the window stays shut. */
static void test_zero_window_probe_answers(void **state)
{
    struct tp_conn c;
    struct tp_seg s;

    (void)state;
    open_conn(&c, 50750, 1000, 0);
    c.pwnd = 0;
    tp_send(&c, ACK, NULL, 0);
    tp_fill(data, 3000, 11);
    assert_int_equal(sock_send(c.sd, data, 3000, 0), 3000);
    for (int i = 0; i < 5; i++) {
        assert_true(tp_wait_send(130000) > 0);
        tp_expect(&s, ACK);
        assert_int_equal(s.dlen, 1);
        tp_send(&c, ACK, NULL, 0); /* still shut: the byte is not taken */
        if (tp_take(&s))
            fail_msg("window shut, probe %d answered: we sent %zu bytes at seq %u (snd_una %u), flags 0x%02x; "
                     "%lld fast retransmits",
                     i + 1, s.dlen, s.seq, c.iss + 1, s.flg, (long long)tp_counter("tcp.fast_retransmits"));
    }
    assert_int_equal(tp_counter("tcp.fast_retransmits"), 0);
    tp_finish();
}

/* A window update opens the flow again: everything arrives, in order. */
static void test_peer_window_update(void **state)
{
    struct tp_conn c;
    struct tp_seg s;

    (void)state;
    open_conn(&c, 50800, 1000, 0);
    c.pwnd = 0;
    tp_send(&c, ACK, NULL, 0);
    tp_fill(data, 3000, 12);
    assert_int_equal(sock_send(c.sd, data, 3000, 0), 3000);
    tp_expect_none();
    assert_true(tp_wait_send(5000) > 0);
    tp_expect(&s, ACK); /* one probe */
    assert_int_equal(s.dlen, 1);
    tp_send(&c, ACK, NULL, 0);
    c.pwnd = 65535; /* the window opens */
    tp_send(&c, ACK, NULL, 0);
    expect_segments_at_most(&c, 3000, 1460);
    test_advance(10000); /* no probe and no retransmission after it */
    tp_expect_none();
    tp_finish();
}

/* A probe byte the peer does take is acknowledged, and sending goes on. */
static void test_peer_takes_probe_byte(void **state)
{
    struct tp_conn c;
    struct tp_seg s;

    (void)state;
    open_conn(&c, 50850, 1000, 0);
    c.pwnd = 0;
    tp_send(&c, ACK, NULL, 0);
    tp_fill(data, 100, 13);
    assert_int_equal(sock_send(c.sd, data, 100, 0), 100);
    assert_true(tp_wait_send(5000) > 0);
    tp_expect(&s, ACK);
    assert_int_equal(s.dlen, 1);
    c.pack += 1;
    c.pwnd = 200;
    tp_send(&c, ACK, NULL, 0);
    tp_expect(&s, ACK);
    assert_int_equal(s.seq, c.iss + 2);
    assert_int_equal(s.dlen, 99);
    assert_memory_equal(s.data, data + 1, 99);
    tp_finish();
}

/* RFC 9293 §3.8.6.2.1: sender SWS avoidance holds a small segment back
 * while it is under half the largest window the peer offered -- but only
 * until the override timeout (0.1 to 1 s), or a peer whose window stays
 * small (its app waiting for our bytes) deadlocks the connection. */
static void test_sender_sws_override(void **state)
{
    struct tp_conn c;
    struct tp_seg s;
    long t;

    (void)state;
    open_conn(&c, 50900, 1000, 0); /* the SYN offered 65535 */
    c.pwnd = 1000;
    tp_send(&c, ACK, NULL, 0);
    tp_fill(data, 3000, 14);
    assert_int_equal(sock_send(c.sd, data, 3000, 0), 3000);
    t = tp_wait_send(5000);
    print_message("  window 1000 of a largest 65535, 3000 bytes queued: first segment after %ld ms\n", t);
    if (t < 0)
        fail_msg("nothing sent in 5 s into an open window of 1000 bytes: no SWS override timeout");
    assert_true(t <= 1000);
    tp_expect(&s, ACK);
    assert_int_equal(s.dlen, 1000);
    tp_finish();
}

/* ---- our window -------------------------------------------------------------------------------------------- */

/* Fill a 2048-byte receive buffer: we advertise 0, a probe is answered
 * without taking its byte, and reading at least min(RCV.BUFF/2, MSS)
 * bytes sends a window update (RFC 9293 §3.8.6.2.2). */
static void our_zero_window(uint32_t pisn)
{
    struct tp_conn c;
    struct tp_seg s;

    open_conn(&c, 51000, pisn, 2048);
    tp_fill(data, 3000, 15);
    tp_send(&c, ACK, data, 1460);
    tp_send(&c, ACK, data + 1460, 588);
    tp_expect_ack(&c, &s);
    print_message("  peer ISN %08x: buffer full, we advertise %u\n", pisn, s.wnd);
    assert_int_equal(s.wnd, 0);
    /* the peer's probe: one byte beyond the window; not taken */
    tp_send_at(&c, c.pseq, ACK, data + 2048, 1);
    tp_expect_ack(&c, &s);
    assert_int_equal(s.wnd, 0);
    /* reading 1000 (< 1024) opens no window worth announcing */
    tp_read_exact(c.sd, data, 1000);
    tp_expect_none();
    tp_read_exact(c.sd, data + 1000, 48);
    tp_expect_ack(&c, &s);
    assert_int_equal(s.wnd, 1048);
    tp_send(&c, ACK, data + 2048, 952);
    tp_read_exact(c.sd, data + 1048, 1952);
    tp_finish();
}

static void test_our_zero_window(void **state)
{
    (void)state;
    our_zero_window(1000);
}

/* The same with a peer whose ISN is in the upper half of the sequence space
 * (half of all peers). */
static void test_our_zero_window_high_isn(void **state)
{
    (void)state;
    our_zero_window(0x90000000u);
}

/* RFC 9293 §3.8.6.2.2 (MUST-39): the receiver moves the right edge of its
 * window only by min(RCV.BUFF/2, MSS) or more. The app reading 100 bytes
 * must not make a window update that moves it by 100; the delayed ACK
 * goes when its timer says. */
static void test_no_tiny_window_update(void **state)
{
    struct tp_conn c;
    struct tp_seg s;

    (void)state;
    net_config.tcp_delack_ms = 100;
    open_conn(&c, 51050, 1000, 0);
    tp_send(&c, ACK | PSH, "0123456789", 10);
    tp_expect_none();
    tp_read_exact(c.sd, (const uint8_t *)"0123456789", 10);
    if (tp_take(&s))
        fail_msg("reading 10 bytes sent at once an ACK with window %u (right edge moved by %u)", s.wnd,
                 s.wnd - (65535 - 10));
    test_advance(100);
    tp_expect_ack(&c, &s);
    tp_finish();
}

/* RFC 9293 §3.10.7.4, first: "If the RCV.WND is zero, no segments will be
 * acceptable, but special allowance should be made to accept valid ACKs".
 * Our window is shut (the app stopped reading); the peer's next segment
 * carries a byte we cannot take and the ACK of the data we sent: that ACK
 * counts, and nothing is retransmitted. */
static void test_zero_window_still_takes_acks(void **state)
{
    struct tp_conn c;
    struct tp_seg s;

    (void)state;
    open_conn(&c, 51060, 1000, 2048);
    tp_fill(data, 2100, 21);
    tp_send(&c, ACK, data, 1460);
    tp_send(&c, ACK, data + 1460, 588);
    tp_expect_ack(&c, &s);
    assert_int_equal(s.wnd, 0);
    assert_int_equal(sock_send(c.sd, "request", 7, 0), 7);
    tp_expect(&s, ACK);
    assert_int_equal(s.dlen, 7);
    c.pack += 7;
    tp_send_at(&c, c.pseq, ACK, data + 2048, 1); /* its probe, acking our 7 bytes */
    tp_expect_ack(&c, &s);
    assert_int_equal(s.wnd, 0);
    if (tp_wait_send(3000) > 0) {
        tp_take(&s);
        fail_msg("the ACK on the peer's probe was ignored: %zu bytes resent at seq %u", s.dlen, s.seq);
    }
    tp_finish();
}

/* ---- Nagle --------------------------------------------------------------------------------------------------- */

static void test_nagle_and_nodelay(void **state)
{
    struct tp_conn c;
    struct tp_seg s;

    (void)state;
    open_conn(&c, 51100, 1000, 0);
    assert_int_equal(sock_send(c.sd, "a", 1, 0), 1);
    tp_expect(&s, ACK); /* nothing in flight: goes at once */
    assert_int_equal(s.dlen, 1);
    assert_int_equal(sock_send(c.sd, "b", 1, 0), 1);
    assert_int_equal(sock_send(c.sd, "c", 1, 0), 1);
    tp_expect_none(); /* RFC 896: held while "a" is unacknowledged */
    c.pack += 1;
    tp_send(&c, ACK, NULL, 0);
    tp_expect(&s, ACK);
    assert_int_equal(s.dlen, 2);
    assert_memory_equal(s.data, "bc", 2);
    tp_set_int(c.sd, IPPROTO_TCP, TCP_NODELAY, 1);
    assert_int_equal(sock_send(c.sd, "d", 1, 0), 1);
    tp_expect(&s, ACK);
    assert_int_equal(s.dlen, 1);
    assert_int_equal(s.data[0], 'd');
    tp_finish();
}

/* ---- fast retransmit ------------------------------------------------------------------------------------------ */

/* RFC 5681 §3.2: the third duplicate ACK resends the missing segment at
 * once, long before the retransmission timer. */
static void test_fast_retransmit(void **state)
{
    struct tp_conn c;
    struct tp_seg s;
    int n = 0;

    (void)state;
    open_conn(&c, 51200, 1000, 0);
    tp_fill(data, 5 * 1460, 16);
    assert_int_equal(sock_send(c.sd, data, 5 * 1460, 0), 5 * 1460);
    while (tp_take(&s))
        n++;
    assert_int_equal(n, 5);
    c.pack += 1460; /* the second segment was lost */
    tp_send(&c, ACK, NULL, 0);
    tp_send(&c, ACK, NULL, 0);
    tp_send(&c, ACK, NULL, 0);
    tp_expect_none();
    tp_send(&c, ACK, NULL, 0); /* third duplicate */
    tp_expect(&s, ACK);
    assert_int_equal(s.seq, c.iss + 1 + 1460);
    assert_int_equal(s.dlen, 1460);
    assert_memory_equal(s.data, data + 1460, 1460);
    assert_int_equal(tp_counter("tcp.fast_retransmits"), 1);
    c.pack = c.iss + 1 + 5 * 1460;
    tp_send(&c, ACK, NULL, 0);
    test_advance(5000);
    tp_expect_none();
    tp_finish();
}

/* RFC 5681 §3.1: the initial window is 10 segments here (RFC 6928, 14600
 * bytes at MSS 1460), and in slow start each ACK grows it by at most one
 * MSS, however much it acknowledges. */
static void test_initial_window_and_slow_start(void **state)
{
    struct tp_conn c;
    struct tp_seg s;
    int n = 0;

    (void)state;
    open_conn(&c, 51500, 1000, 0);
    tp_fill(data, 30 * 1460, 19);
    assert_int_equal(sock_send(c.sd, data, 30 * 1460, 0), 30 * 1460);
    while (tp_take(&s))
        n++;
    assert_int_equal(n, 10);
    c.pack += 2 * 1460; /* two segments in one ACK: cwnd 11 MSS, 8 in flight */
    tp_send(&c, ACK, NULL, 0);
    n = 0;
    while (tp_take(&s)) {
        assert_int_equal(s.seq, c.iss + 1 + (uint32_t)(10 + n) * 1460);
        n++;
    }
    assert_int_equal(n, 3);
    tp_finish();
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_data_both_ways, tp_setup, tp_teardown),
        cmocka_unit_test_setup_teardown(test_delayed_ack, tp_setup, tp_teardown),
        cmocka_unit_test_setup_teardown(test_out_of_order, tp_setup, tp_teardown),
        cmocka_unit_test_setup_teardown(test_out_of_order_fin, tp_setup, tp_teardown),
        cmocka_unit_test_setup_teardown(test_duplicate_and_overlap, tp_setup, tp_teardown),
        cmocka_unit_test_setup_teardown(test_beyond_window_trimmed, tp_setup, tp_teardown),
        cmocka_unit_test_setup_teardown(test_peer_mss_536, tp_setup, tp_teardown),
        cmocka_unit_test_setup_teardown(test_sequence_wraparound, tp_setup, tp_teardown),
        cmocka_unit_test_setup_teardown(test_peer_zero_window_probes, tp_setup, tp_teardown),
        cmocka_unit_test_setup_teardown(test_zero_window_probe_answers, tp_setup, tp_teardown),
        cmocka_unit_test_setup_teardown(test_zero_window_dead_peer, tp_setup, tp_teardown),
        cmocka_unit_test_setup_teardown(test_peer_window_update, tp_setup, tp_teardown),
        cmocka_unit_test_setup_teardown(test_peer_takes_probe_byte, tp_setup, tp_teardown),
        cmocka_unit_test_setup_teardown(test_sender_sws_override, tp_setup, tp_teardown),
        cmocka_unit_test_setup_teardown(test_our_zero_window, tp_setup, tp_teardown),
        cmocka_unit_test_setup_teardown(test_our_zero_window_high_isn, tp_setup, tp_teardown),
        cmocka_unit_test_setup_teardown(test_no_tiny_window_update, tp_setup, tp_teardown),
        cmocka_unit_test_setup_teardown(test_zero_window_still_takes_acks, tp_setup, tp_teardown),
        cmocka_unit_test_setup_teardown(test_nagle_and_nodelay, tp_setup, tp_teardown),
        cmocka_unit_test_setup_teardown(test_fast_retransmit, tp_setup, tp_teardown),
        cmocka_unit_test_setup_teardown(test_initial_window_and_slow_start, tp_setup, tp_teardown),
    };

    tp.default_config = net_config;
    return cmocka_run_group_tests(tests, NULL, NULL);
}
