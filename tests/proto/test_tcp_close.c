/*
 * test_tcp_close.c — protocol tests of closing TCP connections (RFC 9293
 * §3.6, §3.10.4, §3.10.7.4 step 8): a FIN in every state that can receive
 * one, our FIN after the queued data, simultaneous close, half-close,
 * TIME-WAIT (its 2 MSL, the retransmitted FIN it answers, what comes
 * after it), aborts with RST (unread data, SO_LINGER {1, 0}, a listener
 * closed with connections queued), resets in the closing states, and the
 * retransmission of a FIN.
 *
 * The scripted peer is tcp_peer.h.
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

static uint8_t data[16384];
static int lsd;

static void open_conn(struct tp_conn *c, uint16_t pport)
{
    if (lsd < 0)
        lsd = tp_listen(PORT, 8, 0);
    tp_open_passive(c, lsd, PORT, pport, 1000, 1460);
}

static int setup(void **state)
{
    lsd = -1;
    return tp_setup(state);
}

/* Our FIN: the next segment is a bare FIN,ACK at seq. */
static void expect_fin(struct tp_conn *c, uint32_t seq)
{
    struct tp_seg s;

    tp_expect(&s, FIN | ACK);
    assert_int_equal(s.seq, seq);
    assert_int_equal(s.ack, c->pseq);
    assert_int_equal(s.dlen, 0);
}

/* ---- the peer closes first ---------------------------------------------------------------------------- */

/* ESTABLISHED -> CLOSE-WAIT on the peer's FIN; we still send; our close
 * sends our FIN (LAST-ACK) and its ACK ends the connection. */
static void test_fin_in_established(void **state)
{
    struct tp_conn c;
    struct tp_seg s;
    char b[16];

    (void)state;
    open_conn(&c, 53000);
    tp_send(&c, ACK | PSH | FIN, "bye", 3);
    tp_expect_ack(&c, &s); /* at once, the FIN included */
    assert_int_equal(s.ack, c.irs + 1 + 3 + 1);
    assert_state(&c, "CLOSE-WAIT");
    assert_true(tp_poll(c.sd, POLLIN) & POLLIN);
    tp_read_exact(c.sd, (const uint8_t *)"bye", 3);
    assert_int_equal(sock_recv(c.sd, b, sizeof(b), MSG_DONTWAIT), 0);
    assert_int_equal(sock_recv(c.sd, b, sizeof(b), MSG_DONTWAIT), 0); /* and again */
    assert_true(tp_poll(c.sd, POLLIN) & POLLIN);
    /* the other direction is still open */
    assert_int_equal(sock_send(c.sd, "reply", 5, 0), 5);
    tp_expect(&s, ACK);
    assert_int_equal(s.dlen, 5);
    c.pack += 5;
    tp_send(&c, ACK, NULL, 0);
    /* the peer's FIN again (our ACK was lost): acked again */
    tp_send_at(&c, c.pseq - 1, ACK | FIN, NULL, 0);
    tp_expect_ack(&c, NULL);
    assert_int_equal(sock_close(c.sd), 0);
    expect_fin(&c, c.iss + 1 + 5);
    assert_state(&c, "LAST-ACK");
    c.pack += 1;
    tp_send(&c, ACK, NULL, 0);
    tp_expect_none();
    assert_state(&c, "");
    tp_finish();
}

/* LAST-ACK: our FIN is resent by the retransmission timer. */
static void test_last_ack_fin_retransmitted(void **state)
{
    struct tp_conn c;

    (void)state;
    open_conn(&c, 53050);
    tp_send(&c, ACK | FIN, NULL, 0);
    tp_expect_ack(&c, NULL);
    assert_int_equal(sock_close(c.sd), 0);
    expect_fin(&c, c.iss + 1);
    assert_int_equal(tp_wait_send(5000), 1000);
    expect_fin(&c, c.iss + 1);
    assert_int_equal(tp_wait_send(5000), 2000);
    expect_fin(&c, c.iss + 1);
    c.pack += 1;
    tp_send(&c, ACK, NULL, 0);
    assert_state(&c, "");
    assert_int_equal(tp_wait_send(10000), -1);
    tp_finish();
}

/* A FIN on the ACK that completes the handshake: SYN-RECEIVED ->
 * ESTABLISHED -> CLOSE-WAIT; the app accepts a connection at its end. */
static void test_fin_in_syn_received(void **state)
{
    struct tp_conn c;
    struct tp_seg sa;
    char b[8];
    int sd;

    (void)state;
    lsd = tp_listen(PORT, 8, 0);
    tp_syn_to_listener(&c, PORT, 53100, 1000, 1460, &sa);
    tp_send(&c, ACK | FIN, "x", 1);
    tp_expect_ack(&c, NULL);
    assert_state(&c, "CLOSE-WAIT");
    sd = sock_accept(lsd, NULL, NULL);
    assert_true(sd >= 0);
    tp_track(sd);
    assert_int_equal(sock_recv(sd, b, sizeof(b), MSG_DONTWAIT), 1);
    assert_int_equal(sock_recv(sd, b, sizeof(b), MSG_DONTWAIT), 0);
    tp_finish();
}

/* ---- we close first ----------------------------------------------------------------------------------- */

/* close() with data queued behind a small window: every byte goes first,
 * then the FIN, with the sequence number right after the last byte. Then
 * FIN-WAIT-1 -> FIN-WAIT-2 -> TIME-WAIT. */
static void test_close_fin_after_data(void **state)
{
    struct tp_conn c;
    struct tp_seg s;
    uint32_t off = 0;
    int fin = 0;

    (void)state;
    /* the peer's window is 1000 from its SYN on (a larger one in the SYN
     * would bring in sender SWS avoidance: see test_sender_sws_override) */
    lsd = tp_listen(PORT, 8, 0);
    memset(&c, 0, sizeof(c));
    c.lport = PORT;
    c.pport = 53200;
    c.pwnd = 1000;
    tp_inject(c.pport, PORT, 1000, 0, SYN, 1000, NULL, 0, NULL, 0);
    tp_expect(&s, SYN | ACK);
    c.iss = s.seq;
    c.pseq = 1001;
    c.pack = c.iss + 1;
    tp_send(&c, ACK, NULL, 0);
    c.sd = sock_accept(lsd, NULL, NULL);
    assert_true(c.sd >= 0);
    tp_track(c.sd);
    tp_fill(data, 5000, 1);
    assert_int_equal(sock_send(c.sd, data, 5000, 0), 5000);
    assert_int_equal(sock_close(c.sd), 0);
    for (int rounds = 0; !fin && rounds < 100; rounds++) {
        while (tp_take(&s)) {
            assert_int_equal(s.seq, c.iss + 1 + off);
            assert_true(s.dlen <= 1000);
            assert_memory_equal(s.data, data + off, s.dlen);
            off += (uint32_t)s.dlen;
            if (s.flg & FIN) {
                assert_int_equal(off, 5000);
                fin = 1;
            }
        }
        c.pack = c.iss + 1 + off + (uint32_t)fin;
        tp_send(&c, ACK, NULL, 0);
        if (!fin)
            assert_state(&c, "FIN-WAIT-1");
    }
    assert_true(fin);
    tp_expect_none();
    assert_state(&c, "FIN-WAIT-2");
    tp_send(&c, ACK | FIN, NULL, 0);
    tp_expect_ack(&c, NULL);
    assert_state(&c, "TIME-WAIT");
    tp_finish();
}

/* Both FINs cross: FIN-WAIT-1 -> CLOSING -> TIME-WAIT. */
static void test_simultaneous_close(void **state)
{
    struct tp_conn c;

    (void)state;
    open_conn(&c, 53300);
    assert_int_equal(sock_shutdown(c.sd, SHUT_WR), 0);
    expect_fin(&c, c.iss + 1);
    assert_state(&c, "FIN-WAIT-1");
    tp_send(&c, ACK | FIN, NULL, 0); /* its FIN; it has not seen ours */
    tp_expect_ack(&c, NULL);
    assert_state(&c, "CLOSING");
    c.pack += 1;
    tp_send(&c, ACK, NULL, 0);
    tp_expect_none();
    assert_state(&c, "TIME-WAIT");
    tp_finish();
}

/* In FIN-WAIT-1, a FIN that also acks ours: straight to TIME-WAIT. */
static void test_fin_ack_in_fin_wait_1(void **state)
{
    struct tp_conn c;
    char b[8];

    (void)state;
    open_conn(&c, 53400);
    assert_int_equal(sock_shutdown(c.sd, SHUT_WR), 0);
    expect_fin(&c, c.iss + 1);
    c.pack += 1;
    tp_send(&c, ACK | FIN | PSH, "end", 3);
    tp_expect_ack(&c, NULL);
    assert_state(&c, "TIME-WAIT");
    tp_read_exact(c.sd, (const uint8_t *)"end", 3);
    assert_int_equal(sock_recv(c.sd, b, sizeof(b), MSG_DONTWAIT), 0);
    tp_finish();
}

/* shutdown(SHUT_WR): our FIN goes, sending is over (EPIPE), receiving
 * goes on through FIN-WAIT-2 until the peer's FIN. */
static void test_half_close(void **state)
{
    struct tp_conn c;
    struct tp_seg s;
    char b[8];

    (void)state;
    open_conn(&c, 53500);
    assert_int_equal(sock_send(c.sd, "last", 4, 0), 4);
    tp_expect(&s, ACK);
    assert_int_equal(sock_shutdown(c.sd, SHUT_WR), 0);
    expect_fin(&c, c.iss + 5);
    expect_errno(sock_send(c.sd, "more", 4, 0), EPIPE);
    assert_int_equal(tp_poll(c.sd, POLLOUT) & POLLOUT, 0);
    c.pack += 5;
    tp_send(&c, ACK, NULL, 0);
    assert_state(&c, "FIN-WAIT-2");
    tp_fill(data, 4000, 2);
    tp_send(&c, ACK, data, 1460);
    tp_send(&c, ACK, data + 1460, 1460);
    tp_expect_ack(&c, NULL);
    tp_send(&c, ACK | PSH, data + 2920, 1080);
    tp_read_exact(c.sd, data, 4000);
    test_flush(); /* a window update, see test_no_tiny_window_update */
    expect_errno(sock_recv(c.sd, b, sizeof(b), MSG_DONTWAIT), EAGAIN);
    tp_send(&c, ACK | FIN, NULL, 0);
    tp_expect_ack(&c, NULL);
    assert_state(&c, "TIME-WAIT");
    assert_int_equal(sock_recv(c.sd, b, sizeof(b), MSG_DONTWAIT), 0);
    tp_finish();
}

/* ---- TIME-WAIT ---------------------------------------------------------------------------------------------- */

/* TIME-WAIT lasts 2 MSL, answers a retransmitted FIN with an ACK and
 * starts its 2 MSL again (RFC 9293 §3.10.7.4); then the connection is
 * gone and a SYN to the port gets a RST. */
static void test_time_wait(void **state)
{
    struct tp_conn c;
    struct tp_seg s;
    uint8_t opt[4];

    (void)state;
    net_config.tcp_msl_ms = 1000;
    tp_open_active(&c, 80, 5000, 1460, 0);
    assert_int_equal(sock_close(c.sd), 0);
    expect_fin(&c, c.iss + 1);
    c.pack += 1;
    tp_send(&c, ACK | FIN, NULL, 0);
    tp_expect_ack(&c, NULL);
    assert_state(&c, "TIME-WAIT");
    test_advance(1500);
    assert_state(&c, "TIME-WAIT");
    tp_send_at(&c, c.pseq - 1, ACK | FIN, NULL, 0); /* our ACK was lost */
    tp_expect_ack(&c, &s);
    assert_int_equal(s.seq, c.iss + 2);
    test_advance(1900);
    assert_state(&c, "TIME-WAIT"); /* 3.4 s: the 2 MSL started again at 1.5 s */
    test_advance(200);
    assert_state(&c, "");
    tp_expect_none();
    tp_inject(80, c.lport, 99999, 0, SYN, 65535, opt, tp_opt_mss(opt, 1460), NULL, 0);
    tp_expect(&s, RST | ACK);
    assert_int_equal(s.ack, 100000);
    tp_send(&c, ACK, NULL, 0);
    tp_expect(&s, RST);
    assert_int_equal(s.seq, c.pack);
    tp_finish();
}

/* RFC 9293 §3.10.7.4 note, RFC 6191: a SYN beyond the old connection's
 * sequence numbers may open a new one on the 4-tuple of a TIME-WAIT; an
 * old SYN (at or before RCV.NXT) only gets an ACK. */
static void test_time_wait_new_syn(void **state)
{
    struct tp_conn c, d;
    struct tp_seg s;

    (void)state;
    open_conn(&c, 53550);
    assert_int_equal(sock_close(c.sd), 0);
    expect_fin(&c, c.iss + 1);
    c.pack += 1;
    tp_send(&c, ACK | FIN, NULL, 0);
    tp_expect_ack(&c, NULL);
    assert_state(&c, "TIME-WAIT");
    tp_inject(c.pport, PORT, c.irs, 0, SYN, 65535, NULL, 0, NULL, 0); /* old */
    tp_expect(&s, ACK);
    assert_int_equal(s.ack, c.pseq);
    assert_state(&c, "TIME-WAIT");
    tp_syn_to_listener(&d, PORT, c.pport, c.pseq + 100000, 1460, &s);
    assert_int_equal(tp_counter("tcp.time_wait_recycled"), 1);
    tp_send(&d, ACK, NULL, 0);
    assert_state(&d, "ESTABLISHED");
    d.sd = sock_accept(lsd, NULL, NULL);
    assert_true(d.sd >= 0);
    tp_track(d.sd);
    tp_finish();
}

/* A RST in TIME-WAIT, LAST-ACK, CLOSE-WAIT at RCV.NXT ends each. */
static void test_rst_in_closing_states(void **state)
{
    struct tp_conn a, b, d;
    char buf[8];

    (void)state;
    open_conn(&a, 53600); /* CLOSE-WAIT */
    tp_send(&a, ACK | FIN, NULL, 0);
    tp_expect_ack(&a, NULL);
    tp_send_at(&a, a.pseq, RST, NULL, 0);
    tp_expect_none();
    assert_state(&a, "");
    expect_errno(sock_recv(a.sd, buf, sizeof(buf), MSG_DONTWAIT), ECONNRESET);
    open_conn(&b, 53601); /* LAST-ACK */
    tp_send(&b, ACK | FIN, NULL, 0);
    tp_expect_ack(&b, NULL);
    assert_int_equal(sock_close(b.sd), 0);
    expect_fin(&b, b.iss + 1);
    tp_send_at(&b, b.pseq, RST, NULL, 0);
    assert_state(&b, "");
    assert_int_equal(tp_wait_send(5000), -1); /* no FIN retransmission */
    open_conn(&d, 53602); /* TIME-WAIT */
    assert_int_equal(sock_close(d.sd), 0);
    expect_fin(&d, d.iss + 1);
    d.pack += 1;
    tp_send(&d, ACK | FIN, NULL, 0);
    tp_expect_ack(&d, NULL);
    assert_state(&d, "TIME-WAIT");
    tp_send_at(&d, d.pseq, RST, NULL, 0);
    tp_expect_none();
    assert_state(&d, "");
    tp_finish();
}

/* ---- aborts ---------------------------------------------------------------------------------------------------- */

/* RFC 1122 §4.2.2.13 / RFC 9293 §3.6: close() with unread data aborts:
 * a RST instead of a FIN. */
static void test_close_unread_data_resets(void **state)
{
    struct tp_conn c;
    struct tp_seg s;

    (void)state;
    open_conn(&c, 53700);
    tp_send(&c, ACK | PSH, "unread", 6);
    assert_int_equal(sock_close(c.sd), 0);
    tp_expect(&s, RST | ACK);
    assert_int_equal(s.seq, c.iss + 1);
    tp_expect_none();
    assert_state(&c, "");
    tp_send(&c, ACK, "more", 4);
    tp_expect(&s, RST); /* nobody there now */
    tp_finish();
}

static void test_linger_zero_resets(void **state)
{
    struct tp_conn c;
    struct tp_seg s;
    struct linger l = { .l_onoff = 1, .l_linger = 0 };

    (void)state;
    open_conn(&c, 53800);
    assert_int_equal(sock_setsockopt(c.sd, SOL_SOCKET, SO_LINGER, &l, sizeof(l)), 0);
    assert_int_equal(sock_send(c.sd, "queued", 6, 0), 6);
    tp_expect(&s, ACK);
    assert_int_equal(sock_close(c.sd), 0);
    tp_expect(&s, RST | ACK);
    assert_int_equal(s.seq, c.iss + 7);
    tp_expect_none();
    assert_state(&c, "");
    tp_finish();
}

/* Closing a listener resets the connections waiting in its accept queue
 * and forgets the half-open ones. */
static void test_listener_close_resets_queue(void **state)
{
    struct tp_conn c, h;
    struct tp_seg sa, s;

    (void)state;
    lsd = tp_listen(PORT, 8, 0);
    tp_syn_to_listener(&c, PORT, 53900, 1000, 1460, &sa);
    tp_send(&c, ACK, NULL, 0);
    tp_syn_to_listener(&h, PORT, 53901, 1000, 1460, &sa);
    assert_int_equal(sock_close(lsd), 0);
    tp_expect(&s, RST | ACK);
    assert_int_equal(s.dport, 53900);
    assert_int_equal(s.seq, c.iss + 1);
    tp_expect_none();
    assert_int_equal(tp_wait_send(5000), -1); /* no SYN,ACK retransmission */
    tp_finish();
}

/* RFC 1122 §4.2.2.13: "if new data is received after CLOSE is called, its
 * TCP SHOULD send a RST to show that data was lost." */
static void test_data_after_close_resets(void **state)
{
    struct tp_conn c;
    struct tp_seg s;

    (void)state;
    open_conn(&c, 54000);
    assert_int_equal(sock_close(c.sd), 0);
    expect_fin(&c, c.iss + 1);
    c.pack += 1;
    tp_send(&c, ACK, NULL, 0);
    assert_state(&c, "FIN-WAIT-2");
    tp_send(&c, ACK | PSH, "nobody reads this", 17);
    test_advance(net_config.tcp_delack_ms + 10);
    if (!tp_take(&s))
        fail_msg("data for a closed socket: no answer at all");
    if (!(s.flg & RST))
        fail_msg("data for a closed socket was acknowledged (ack %u, window %u) instead of reset", s.ack, s.wnd);
    tp_finish();
}

/* An orphan in FIN-WAIT-2 whose peer never sends its FIN is dropped after
 * tcp_fin_wait2_ms. */
static void test_orphan_fin_wait_2_timeout(void **state)
{
    struct tp_conn c;
    struct tp_seg s;

    (void)state;
    net_config.tcp_fin_wait2_ms = 3000;
    open_conn(&c, 54100);
    assert_int_equal(sock_close(c.sd), 0);
    expect_fin(&c, c.iss + 1);
    c.pack += 1;
    tp_send(&c, ACK, NULL, 0);
    assert_state(&c, "FIN-WAIT-2");
    test_advance(2900);
    assert_state(&c, "FIN-WAIT-2");
    test_advance(200);
    assert_state(&c, "");
    tp_send(&c, ACK | FIN, NULL, 0);
    tp_expect(&s, RST);
    tp_finish();
}

/* ---- our FIN and retransmission ------------------------------------------------------------------------------------ */

/* Data and FIN sent; the timer fires and goes back to the first segment;
 * then the peer's (late) ACK of everything, FIN included, arrives. Our FIN
 * is acknowledged: FIN-WAIT-2, and no second FIN at a new sequence number
 * (RFC 9293 §3.10.7.4, fifth, FIN-WAIT-1: "if the FIN segment is now
 * acknowledged, then enter FIN-WAIT-2"). */
static void test_fin_acked_after_rto(void **state)
{
    struct tp_conn c;
    struct tp_seg s;
    uint32_t fin_seq = 0;
    int n = 0;

    (void)state;
    open_conn(&c, 54200);
    tp_fill(data, 3000, 3);
    assert_int_equal(sock_send(c.sd, data, 3000, 0), 3000);
    assert_int_equal(sock_close(c.sd), 0);
    while (tp_take(&s)) {
        n++;
        if (s.flg & FIN)
            fin_seq = s.seq + (uint32_t)s.dlen;
    }
    assert_int_equal(n, 3);
    assert_int_equal(fin_seq, c.iss + 1 + 3000);
    /* the timer: the first segment again (one MSS of congestion window) */
    assert_int_equal(tp_wait_send(5000), 1000);
    tp_expect(&s, ACK);
    assert_int_equal(s.seq, c.iss + 1);
    tp_expect_none();
    /* the ACK of the first flight, FIN included */
    c.pack = fin_seq + 1;
    tp_send(&c, ACK, NULL, 0);
    if (tp_take(&s))
        fail_msg("after the ACK of our FIN (ack %u) we sent flags 0x%02x seq %u len %zu: a FIN at a new sequence "
                 "number", c.pack, s.flg, s.seq, s.dlen);
    assert_state(&c, "FIN-WAIT-2");
    tp_send(&c, ACK | FIN, NULL, 0);
    tp_expect_ack(&c, &s);
    assert_int_equal(s.seq, fin_seq + 1);
    assert_state(&c, "TIME-WAIT");
    tp_finish();
}

/* Our FIN lost: resent by the timer at the same sequence number. */
static void test_fin_retransmitted(void **state)
{
    struct tp_conn c;

    (void)state;
    open_conn(&c, 54300);
    assert_int_equal(sock_shutdown(c.sd, SHUT_WR), 0);
    expect_fin(&c, c.iss + 1);
    assert_int_equal(tp_wait_send(5000), 1000);
    expect_fin(&c, c.iss + 1);
    c.pack += 1;
    tp_send(&c, ACK, NULL, 0);
    assert_state(&c, "FIN-WAIT-2");
    assert_int_equal(tp_wait_send(10000), -1);
    tp_finish();
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_fin_in_established, setup, tp_teardown),
        cmocka_unit_test_setup_teardown(test_last_ack_fin_retransmitted, setup, tp_teardown),
        cmocka_unit_test_setup_teardown(test_fin_in_syn_received, setup, tp_teardown),
        cmocka_unit_test_setup_teardown(test_close_fin_after_data, setup, tp_teardown),
        cmocka_unit_test_setup_teardown(test_simultaneous_close, setup, tp_teardown),
        cmocka_unit_test_setup_teardown(test_fin_ack_in_fin_wait_1, setup, tp_teardown),
        cmocka_unit_test_setup_teardown(test_half_close, setup, tp_teardown),
        cmocka_unit_test_setup_teardown(test_time_wait, setup, tp_teardown),
        cmocka_unit_test_setup_teardown(test_time_wait_new_syn, setup, tp_teardown),
        cmocka_unit_test_setup_teardown(test_rst_in_closing_states, setup, tp_teardown),
        cmocka_unit_test_setup_teardown(test_close_unread_data_resets, setup, tp_teardown),
        cmocka_unit_test_setup_teardown(test_linger_zero_resets, setup, tp_teardown),
        cmocka_unit_test_setup_teardown(test_listener_close_resets_queue, setup, tp_teardown),
        cmocka_unit_test_setup_teardown(test_data_after_close_resets, setup, tp_teardown),
        cmocka_unit_test_setup_teardown(test_orphan_fin_wait_2_timeout, setup, tp_teardown),
        cmocka_unit_test_setup_teardown(test_fin_acked_after_rto, setup, tp_teardown),
        cmocka_unit_test_setup_teardown(test_fin_retransmitted, setup, tp_teardown),
    };

    tp.default_config = net_config;
    return cmocka_run_group_tests(tests, NULL, NULL);
}
