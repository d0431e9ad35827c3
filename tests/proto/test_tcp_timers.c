/*
 * test_tcp_timers.c — protocol tests of TCP's timers on the virtual clock:
 * the retransmission timer (RFC 6298: initial RTO, RTO from a measured
 * RTT, exponential backoff, Karn's algorithm, restart on a partial ACK,
 * the 3-second rule after a lost SYN), the retry limit that ends a
 * connection with ETIMEDOUT, and keepalive (RFC 1122 §4.2.3.6).
 * Delayed ACK and persist are in test_tcp_data.c, TIME-WAIT in
 * test_tcp_close.c.
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

static uint8_t data[8192];

static void open_conn(struct tp_conn *c, uint16_t pport)
{
    int lsd = tp_listen(PORT, 8, 0);

    tp_open_passive(c, lsd, PORT, pport, 1000, 1460);
}

/* Active open with the SYN,ACK arriving rtt_ms after the SYN. */
static void open_active_rtt(struct tp_conn *c, uint16_t pport, uint64_t rtt_ms)
{
    struct tp_seg syn;
    uint8_t opt[4];

    tp_connect_start(c, pport, 0, &syn);
    test_advance(rtt_ms);
    c->irs = 3000;
    c->pseq = 3001;
    c->pack = c->iss + 1;
    tp_inject(pport, c->lport, 3000, c->pack, SYN | ACK, 65535, opt, tp_opt_mss(opt, 1460), NULL, 0);
    tp_expect_ack(c, NULL);
    assert_state(c, "ESTABLISHED");
}

/* The next n retransmissions of the segment at seq: the gaps between them. */
static void expect_retransmissions(uint32_t seq, size_t dlen, int n, long *gaps)
{
    struct tp_seg s;

    for (int i = 0; i < n; i++) {
        gaps[i] = tp_wait_send(200000);
        if (gaps[i] < 0)
            fail_msg("retransmission %d never came", i + 1);
        tp_expect(&s, ACK);
        assert_int_equal(s.seq, seq);
        assert_int_equal(s.dlen, dlen);
        assert_memory_equal(s.data, data, dlen);
        tp_expect_none();
    }
}

/* ---- the retransmission timer ----------------------------------------------------------------------- */

/* No RTT measured yet (a passive open takes none from the handshake):
 * RTO 1 s (RFC 6298 §2.1), doubling at each timeout (§5.5); after
 * tcp_retries the connection ends with ETIMEDOUT. */
static void test_rto_initial_backoff_and_limit(void **state)
{
    struct tp_conn c;
    struct tp_seg s;
    long gaps[3];
    char b[8];

    (void)state;
    net_config.tcp_retries = 3;
    open_conn(&c, 52000);
    tp_fill(data, 100, 1);
    assert_int_equal(sock_send(c.sd, data, 100, 0), 100);
    tp_expect(&s, ACK);
    assert_int_equal(s.dlen, 100);
    expect_retransmissions(c.iss + 1, 100, 3, gaps);
    print_message("  retransmissions after %ld, %ld, %ld ms\n", gaps[0], gaps[1], gaps[2]);
    assert_int_equal(gaps[0], 1000);
    assert_int_equal(gaps[1], 2000);
    assert_int_equal(gaps[2], 4000);
    assert_state(&c, "ESTABLISHED");
    /* the fourth timeout: given up */
    assert_int_equal(tp_wait_send(8000), -1);
    assert_state(&c, "");
    assert_true(tp_poll(c.sd, POLLIN) & POLLERR);
    expect_errno(sock_recv(c.sd, b, sizeof(b), MSG_DONTWAIT), ETIMEDOUT);
    expect_errno(sock_send(c.sd, "x", 1, 0), EPIPE);
    assert_int_equal(tp_counter("tcp.conn_timeouts"), 1);
    assert_int_equal(tp_counter("tcp.rto_timeouts"), 4);
    assert_int_equal(tp_counter("tcp.retrans_segs"), 3);
    tp_finish();
}

/* A SYN,ACK 100 ms after the SYN: SRTT 100, RTTVAR 50, RTO = 100 + 4 * 50
 * = 300 ms (RFC 6298 §2.2), then 600, 1200. */
static void test_rto_from_measured_rtt(void **state)
{
    struct tp_conn c;
    struct tp_seg s;
    long gaps[3];

    (void)state;
    open_active_rtt(&c, 81, 100);
    tp_fill(data, 200, 2);
    assert_int_equal(sock_send(c.sd, data, 200, 0), 200);
    tp_expect(&s, ACK);
    expect_retransmissions(c.iss + 1, 200, 3, gaps);
    print_message("  RTT 100 ms: retransmissions after %ld, %ld, %ld ms\n", gaps[0], gaps[1], gaps[2]);
    assert_int_equal(gaps[0], 300);
    assert_int_equal(gaps[1], 600);
    assert_int_equal(gaps[2], 1200);
    tp_finish();
}

/* Karn: the ACK of a retransmitted segment measures nothing and the
 * backed-off RTO stays; the next segment sent once gives a sample. */
static void test_rto_karn(void **state)
{
    struct tp_conn c;
    struct tp_seg s;
    long gaps[1];

    (void)state;
    open_conn(&c, 52100);
    tp_fill(data, 100, 3);
    assert_int_equal(sock_send(c.sd, data, 100, 0), 100);
    tp_expect(&s, ACK);
    expect_retransmissions(c.iss + 1, 100, 1, gaps);
    assert_int_equal(gaps[0], 1000);
    test_advance(50);
    c.pack += 100;
    tp_send(&c, ACK, NULL, 0); /* ambiguous: no sample */
    /* new data: the RTO is still the backed-off 2 s */
    assert_int_equal(sock_send(c.sd, data, 100, 0), 100);
    tp_expect(&s, ACK);
    expect_retransmissions(c.iss + 101, 100, 1, gaps);
    assert_int_equal(gaps[0], 2000);
    test_advance(50);
    c.pack += 100;
    tp_send(&c, ACK, NULL, 0);
    /* sent once, acked after 50 ms: a sample; RTO = 50 + 4 * 25 = 150,
     * raised to tcp_rto_min_ms */
    assert_int_equal(sock_send(c.sd, data, 100, 0), 100);
    tp_expect(&s, ACK);
    test_advance(50);
    c.pack += 100;
    tp_send(&c, ACK, NULL, 0);
    assert_int_equal(sock_send(c.sd, data, 100, 0), 100);
    tp_expect(&s, ACK);
    expect_retransmissions(c.iss + 301, 100, 1, gaps);
    print_message("  after a 50 ms sample: RTO %ld ms (min %u)\n", gaps[0], net_config.tcp_rto_min_ms);
    assert_int_equal(gaps[0], net_config.tcp_rto_min_ms > 150 ? net_config.tcp_rto_min_ms : 150);
    tp_finish();
}

/* RFC 6298 §5.3: an ACK of new data restarts the timer for what is left. */
static void test_rto_restarts_on_partial_ack(void **state)
{
    struct tp_conn c;
    struct tp_seg s;
    long t;

    (void)state;
    open_conn(&c, 52200);
    tp_fill(data, 2920, 4);
    assert_int_equal(sock_send(c.sd, data, 2920, 0), 2920);
    tp_expect(&s, ACK);
    tp_expect(&s, ACK);
    test_advance(800);
    c.pack += 1460;
    tp_send(&c, ACK, NULL, 0); /* the first segment, 800 ms on */
    t = tp_wait_send(5000);
    tp_expect(&s, ACK);
    assert_int_equal(s.seq, c.iss + 1461);
    assert_memory_equal(s.data, data + 1460, s.dlen);
    print_message("  partial ACK at 800 ms: the rest resent %ld ms after it\n", t);
    /* the ACK also timed the first segment: R = 800, RTO = 800 + 4 * 400,
     * counted from the ACK, not from the first send */
    assert_int_equal(t, 2400);
    tp_finish();
}

/* RFC 6298 §5.7: "If the timer expires awaiting the ACK of a SYN segment
 * and the TCP implementation is using an RTO less than 3 seconds, the RTO
 * MUST be re-initialized to 3 seconds when data transmission begins." */
static void test_rto_3s_after_syn_timeout(void **state)
{
    struct tp_conn c;
    struct tp_seg syn, s;
    uint8_t opt[4];
    long t;

    (void)state;
    tp_connect_start(&c, 82, 0, &syn);
    assert_int_equal(tp_wait_send(5000), 1000);
    tp_expect(&s, SYN);
    test_advance(500);
    c.irs = 100;
    c.pseq = 101;
    c.pack = c.iss + 1;
    tp_inject(82, c.lport, 100, c.pack, SYN | ACK, 65535, opt, tp_opt_mss(opt, 1460), NULL, 0);
    tp_expect_ack(&c, NULL);
    tp_fill(data, 100, 5);
    assert_int_equal(sock_send(c.sd, data, 100, 0), 100);
    tp_expect(&s, ACK);
    t = tp_wait_send(10000);
    print_message("  after a lost SYN, the first data RTO is %ld ms\n", t);
    assert_int_equal(t, 3000);
    tp_finish();
}

/* ---- keepalive -------------------------------------------------------------------------------------- */

static void keepalive_on(int sd, int idle, int intvl, int cnt)
{
    tp_set_int(sd, IPPROTO_TCP, TCP_KEEPIDLE, idle);
    tp_set_int(sd, IPPROTO_TCP, TCP_KEEPINTVL, intvl);
    tp_set_int(sd, IPPROTO_TCP, TCP_KEEPCNT, cnt);
    tp_set_int(sd, SOL_SOCKET, SO_KEEPALIVE, 1);
}

/* Unanswered: probes after idle, then every intvl; after cnt of them the
 * connection is dropped with ETIMEDOUT. A probe is <SEQ=SND.UNA-1>, no
 * data (RFC 1122 §4.2.3.6), which the peer must answer. */
static void test_keepalive_unanswered(void **state)
{
    struct tp_conn c;
    struct tp_seg s;
    long gaps[3];
    char b[8];

    (void)state;
    open_conn(&c, 52300);
    keepalive_on(c.sd, 10, 2, 3);
    tp_expect_none();
    for (int i = 0; i < 3; i++) {
        gaps[i] = tp_wait_send(20000);
        tp_expect(&s, ACK);
        assert_int_equal(s.seq, c.iss); /* SND.UNA - 1 */
        assert_int_equal(s.ack, c.pseq);
        assert_true(s.dlen <= 1);
    }
    print_message("  keepalive probes after %ld, %ld, %ld ms\n", gaps[0], gaps[1], gaps[2]);
    assert_int_equal(gaps[0], 10000);
    assert_int_equal(gaps[1], 2000);
    assert_int_equal(gaps[2], 2000);
    assert_state(&c, "ESTABLISHED");
    test_advance(2000);
    assert_state(&c, "");
    expect_errno(sock_recv(c.sd, b, sizeof(b), MSG_DONTWAIT), ETIMEDOUT);
    assert_int_equal(tp_counter("tcp.keepalive_probes"), 3);
    tp_finish();
}

/* Answered: the connection stays, and the next probe waits a whole idle
 * time again. */
static void test_keepalive_answered(void **state)
{
    struct tp_conn c;
    struct tp_seg s;

    (void)state;
    open_conn(&c, 52400);
    keepalive_on(c.sd, 10, 2, 2);
    for (int round = 0; round < 3; round++) {
        assert_int_equal(tp_wait_send(20000), 10000);
        tp_expect(&s, ACK);
        assert_int_equal(s.seq, c.iss);
        tp_send(&c, ACK, NULL, 0); /* <SEQ=RCV.NXT><ACK=SND.NXT> */
        tp_expect_none();
        assert_state(&c, "ESTABLISHED");
    }
    /* traffic from the peer counts as life too */
    test_advance(9000);
    tp_send(&c, ACK | PSH, "alive", 5);
    assert_int_equal(tp_wait_send(20000), net_config.tcp_delack_ms);
    tp_expect_ack(&c, NULL);
    assert_int_equal(tp_wait_send(20000), 10000 - net_config.tcp_delack_ms);
    tp_expect(&s, ACK);
    assert_int_equal(s.seq, c.iss);
    tp_finish();
}

/* The peer's keepalive probe, <SEQ=RCV.NXT-1>, with or without a byte, is
 * outside our window and must be answered with an ACK at once (RFC 1122
 * §4.2.3.6). */
static void test_answer_peer_keepalive(void **state)
{
    struct tp_conn c;
    struct tp_seg s;

    (void)state;
    open_conn(&c, 52450);
    tp_send_at(&c, c.pseq - 1, ACK, NULL, 0);
    tp_expect_ack(&c, &s);
    assert_int_equal(s.seq, c.iss + 1);
    tp_send_at(&c, c.pseq - 1, ACK, "?", 1);
    tp_expect_ack(&c, &s);
    {
        char b[4];
        expect_errno(sock_recv(c.sd, b, sizeof(b), MSG_DONTWAIT), EAGAIN);
    }
    tp_finish();
}

/* Socket API: TCP_KEEPIDLE set after SO_KEEPALIVE applies to the timer
 * that is running (as on Linux), not only from the next segment on. */
static void test_keepidle_after_enable(void **state)
{
    struct tp_conn c;
    struct tp_seg s;
    long t;

    (void)state;
    open_conn(&c, 52500);
    tp_set_int(c.sd, SOL_SOCKET, SO_KEEPALIVE, 1);
    tp_set_int(c.sd, IPPROTO_TCP, TCP_KEEPIDLE, 5);
    t = tp_wait_send(30000);
    print_message("  TCP_KEEPIDLE 5 set after SO_KEEPALIVE: first probe after %ld ms\n", t);
    assert_int_equal(t, 5000);
    tp_expect(&s, ACK);
    tp_finish();
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_rto_initial_backoff_and_limit, tp_setup, tp_teardown),
        cmocka_unit_test_setup_teardown(test_rto_from_measured_rtt, tp_setup, tp_teardown),
        cmocka_unit_test_setup_teardown(test_rto_karn, tp_setup, tp_teardown),
        cmocka_unit_test_setup_teardown(test_rto_restarts_on_partial_ack, tp_setup, tp_teardown),
        cmocka_unit_test_setup_teardown(test_rto_3s_after_syn_timeout, tp_setup, tp_teardown),
        cmocka_unit_test_setup_teardown(test_keepalive_unanswered, tp_setup, tp_teardown),
        cmocka_unit_test_setup_teardown(test_keepalive_answered, tp_setup, tp_teardown),
        cmocka_unit_test_setup_teardown(test_answer_peer_keepalive, tp_setup, tp_teardown),
        cmocka_unit_test_setup_teardown(test_keepidle_after_enable, tp_setup, tp_teardown),
    };

    tp.default_config = net_config;
    return cmocka_run_group_tests(tests, NULL, NULL);
}
