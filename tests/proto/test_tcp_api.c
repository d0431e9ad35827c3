/*
 * test_tcp_api.c — protocol tests where TCP meets the socket API and the
 * rest of the stack: ICMP errors for a connection (RFC 1122 §4.2.3.9,
 * RFC 5927), a socket connected again after its connection was reset or
 * refused, and shutdown(SHUT_RD).
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

#include "proto/icmp.h"
#include "tcp_peer.h"

#define PORT 8080

/* The peer's router says type/code about our segment sport -> dport with
 * sequence number seq (the IP header and 8 bytes of TCP quoted). */
static void inject_icmp_about(uint8_t type, uint8_t code, uint16_t sport, uint16_t dport, uint32_t seq)
{
    uint8_t msg[ICMP_HDR_SIZE + IP_HDR_SIZE_MIN + 8], *in = msg + ICMP_HDR_SIZE;
    size_t len;

    memset(msg, 0, sizeof(msg));
    msg[0] = type;
    msg[1] = code;
    in[0] = 0x45;
    store16(in + 2, IP_HDR_SIZE_MIN + TCP_HDR_SIZE_MIN);
    in[8] = 64;
    in[9] = IP_PROTOCOL_TCP;
    memcpy(in + 12, &ts.our_ip, 4);
    memcpy(in + 16, &ts.peer_ip, 4);
    store16(in + 10, cksum16(in, IP_HDR_SIZE_MIN, 0));
    store16(in + IP_HDR_SIZE_MIN, sport);
    store16(in + IP_HDR_SIZE_MIN + 2, dport);
    store32(in + IP_HDR_SIZE_MIN + 4, seq);
    store16(msg + 2, cksum16(msg, sizeof(msg), 0));
    len = test_ip_frame(tp.frame, IP_PROTOCOL_ICMP, ts.peer_ip, ts.our_ip, 77, 0, msg, sizeof(msg));
    test_inject(tp.frame, len);
}

/* ---- ICMP ------------------------------------------------------------------------------------------- */

/* A port unreachable about our SYN fails the connect at once; one quoting
 * a sequence number we never sent is ignored (RFC 5927 §4.1). */
static void test_icmp_refuses_syn(void **state)
{
    struct tp_conn c;
    struct tp_seg syn;

    (void)state;
    tp_connect_start(&c, 90, 0, &syn);
    inject_icmp_about(ICMP_TYPE_DEST_UNREACH, ICMP_CODE_PORT_UNREACH, c.lport, 90, c.iss + 12345);
    assert_state(&c, "SYN-SENT");
    inject_icmp_about(ICMP_TYPE_DEST_UNREACH, ICMP_CODE_PORT_UNREACH, c.lport, 90, c.iss);
    assert_state(&c, "");
    assert_int_equal(tp_so_error(c.sd), ECONNREFUSED);
    tp_expect_none();
    tp_finish();
}

/* RFC 1122 §4.2.3.9: host unreachable is a soft error on an established
 * connection: it goes on, and the error is what a later timeout reports. */
static void test_icmp_soft_error_established(void **state)
{
    struct tp_conn c;
    struct tp_seg s;
    char b[8];

    (void)state;
    net_config.tcp_retries = 1;
    tp_open_active(&c, 91, 1, 1460, 0);
    assert_int_equal(sock_send(c.sd, "abc", 3, 0), 3);
    tp_expect(&s, ACK);
    inject_icmp_about(ICMP_TYPE_DEST_UNREACH, ICMP_CODE_HOST_UNREACH, c.lport, 91, c.iss + 1);
    assert_state(&c, "ESTABLISHED");
    assert_int_equal(tp_poll(c.sd, POLLIN) & POLLERR, 0);
    test_advance(20000);
    test_flush();
    assert_state(&c, "");
    expect_errno(sock_recv(c.sd, b, sizeof(b), MSG_DONTWAIT), EHOSTUNREACH);
    tp_finish();
}

/* ---- connecting again -------------------------------------------------------------------------------------- */

/* A socket whose connection was reset may connect again (Linux allows
 * it); the new connection must start clean: none of the old
 * connection's unsent or unacknowledged bytes, end-of-stream or FIN state
 * may leak into it. */
static void test_reconnect_after_reset(void **state)
{
    struct tp_conn c;
    struct tp_seg s;
    struct sockaddr_in a = tp_sin(TEST_PEER_IP, 92);
    uint8_t opt[4];
    char b[16];
    int r;

    (void)state;
    tp_open_active(&c, 92, 1, 1460, 0);
    assert_int_equal(sock_send(c.sd, "stale", 5, 0), 5); /* never acknowledged */
    tp_expect(&s, ACK);
    tp_send(&c, ACK | FIN, "old", 3); /* and the old peer's end of stream */
    tp_expect_ack(&c, NULL);
    tp_send_at(&c, c.pseq, RST, NULL, 0);
    assert_state(&c, "");
    /* what arrived before the reset is still handed over, then the reset */
    assert_int_equal(sock_recv(c.sd, b, sizeof(b), MSG_DONTWAIT), 3);
    assert_memory_equal(b, "old", 3);
    expect_errno(sock_recv(c.sd, b, sizeof(b), MSG_DONTWAIT), ECONNRESET);
    errno = 0;
    r = sock_connect(c.sd, TP_SA(a), sizeof(a));
    if (r == -1 && errno != EINPROGRESS) {
        print_message("  connect after a reset: errno %d (refused outright: fine)\n", errno);
        tp_finish();
        return;
    }
    tp_expect(&s, SYN);
    c.iss = s.seq;
    c.lport = s.sport;
    c.irs = 7000;
    c.pseq = 7001;
    c.pack = c.iss + 1;
    tp_inject(92, c.lport, 7000, c.pack, SYN | ACK, 65535, opt, tp_opt_mss(opt, 1460), NULL, 0);
    tp_expect(&s, ACK);
    assert_int_equal(s.ack, 7001);
    assert_state(&c, "ESTABLISHED");
    if (s.dlen || tp_take(&s))
        fail_msg("the new connection sent %zu bytes nobody gave it (\"%.*s\"), flags 0x%02x", s.dlen, (int)s.dlen,
                 s.data, s.flg);
    errno = 0;
    r = (int)sock_recv(c.sd, b, sizeof(b), MSG_DONTWAIT);
    if (r != -1 || errno != EAGAIN)
        fail_msg("the new connection's recv returned %d (errno %d): end of stream or data of the old one", r,
                 errno);
    assert_int_equal(sock_send(c.sd, "new", 3, 0), 3);
    tp_expect(&s, ACK);
    assert_int_equal(s.seq, c.iss + 1);
    assert_int_equal(s.dlen, 3);
    assert_memory_equal(s.data, "new", 3);
    tp_finish();
}

/* After a refused non-blocking connect (error read with SO_ERROR), the
 * same socket can try again and get through. */
static void test_reconnect_after_refused(void **state)
{
    struct tp_conn c;
    struct tp_seg s;
    struct sockaddr_in a = tp_sin(TEST_PEER_IP, 93);
    uint8_t opt[4];

    (void)state;
    tp_connect_start(&c, 93, 0, &s);
    tp_inject(93, c.lport, 0, c.iss + 1, RST | ACK, 0, NULL, 0, NULL, 0);
    assert_int_equal(tp_so_error(c.sd), ECONNREFUSED);
    expect_errno(sock_connect(c.sd, TP_SA(a), sizeof(a)), EINPROGRESS);
    tp_expect(&s, SYN);
    c.iss = s.seq;
    c.lport = s.sport;
    c.pseq = 501;
    c.pack = c.iss + 1;
    tp_inject(93, c.lport, 500, c.pack, SYN | ACK, 65535, opt, tp_opt_mss(opt, 1460), NULL, 0);
    tp_expect_ack(&c, NULL);
    assert_state(&c, "ESTABLISHED");
    assert_int_equal(tp_so_error(c.sd), 0);
    tp_finish();
}

/* ---- shutdown(SHUT_RD) ----------------------------------------------------------------------------------- */

/* After SHUT_RD nobody reads, but the acknowledgments must still be true:
 * an out-of-order segment must not make us acknowledge the hole before it
 * (RFC 9293 §3.4: an ACK says every byte before it was received). */
static void test_shut_rd_acks_only_received(void **state)
{
    int lsd = tp_listen(PORT, 4, 0);
    struct tp_conn c;
    struct tp_seg s;
    uint8_t d[500];
    char b[8];

    (void)state;
    tp_open_passive(&c, lsd, PORT, 55000, 1000, 1460);
    assert_int_equal(sock_shutdown(c.sd, SHUT_RD), 0);
    assert_int_equal(sock_recv(c.sd, b, sizeof(b), MSG_DONTWAIT), 0);
    tp_fill(d, sizeof(d), 1);
    tp_send(&c, ACK, d, 100);
    tp_expect_ack(&c, &s); /* in order: taken (and thrown away) */
    tp_send_at(&c, c.pseq + 1000, ACK, d, 100);
    tp_expect(&s, ACK);
    if (s.ack != c.pseq)
        fail_msg("after SHUT_RD, a segment 1000 bytes ahead made us acknowledge %u (RCV.NXT was %u): the "
                 "hole was never received", s.ack, c.pseq);
    tp_finish();
}

/* ---- listener corner cases -------------------------------------------------------------------------------- */

/* RFC 9293 §3.10.7.4, fifth, SYN-RECEIVED: an ACK that does not
 * acknowledge our SYN gets <SEQ=SEG.ACK><CTL=RST>; the half-open
 * connection stays for the right ACK. */
static void test_bad_ack_in_syn_received(void **state)
{
    int lsd = tp_listen(PORT, 4, 0);
    struct tp_conn c;
    struct tp_seg sa, s;

    (void)state;
    tp_syn_to_listener(&c, PORT, 55100, 1000, 1460, &sa);
    tp_inject(c.pport, PORT, c.pseq, c.iss + 9, ACK, 65535, NULL, 0, NULL, 0);
    tp_expect(&s, RST);
    assert_int_equal(s.seq, c.iss + 9);
    tp_inject(c.pport, PORT, c.pseq, c.iss, ACK, 65535, NULL, 0, NULL, 0); /* acks nothing */
    tp_expect(&s, RST);
    assert_int_equal(s.seq, c.iss);
    assert_state(&c, "SYN-RECEIVED");
    tp_send(&c, ACK, NULL, 0);
    assert_state(&c, "ESTABLISHED");
    c.sd = sock_accept(lsd, NULL, NULL);
    assert_true(c.sd >= 0);
    tp_track(c.sd);
    tp_finish();
}

/* A connection reset while it waits in the accept queue: accept() must
 * not hand out a dead connection as if it were alive, and the listener
 * goes on. */
static void test_reset_before_accept(void **state)
{
    int lsd = tp_listen(PORT, 4, 0), sd;
    struct tp_conn c, d;
    struct tp_seg sa;
    char b[8];

    (void)state;
    tp_syn_to_listener(&c, PORT, 55200, 1000, 1460, &sa);
    tp_send(&c, ACK, NULL, 0);
    tp_send_at(&c, c.pseq, RST, NULL, 0);
    sd = sock_accept(lsd, NULL, NULL);
    if (sd >= 0) { /* Linux hands it out; then recv must say ECONNRESET */
        tp_track(sd);
        expect_errno(sock_recv(sd, b, sizeof(b), MSG_DONTWAIT), ECONNRESET);
    } else {
        assert_int_equal(errno, EAGAIN);
    }
    tp_open_passive(&d, lsd, PORT, 55201, 1000, 1460);
    tp_finish();
}

/* ---- send buffer ------------------------------------------------------------------------------------------- */

/* A small SO_SNDBUF: a non-blocking send takes what fits (a partial
 * write), then EAGAIN; POLLOUT comes back when the peer's ACK frees room. */
static void test_partial_write_and_pollout(void **state)
{
    static uint8_t d[10000];
    struct tp_conn c;
    struct tp_seg s;
    struct sockaddr_in a = tp_sin(TEST_PEER_IP, 95);
    ssize_t n = 0;

    (void)state;
    tp_fill(d, sizeof(d), 3);
    memset(&c, 0, sizeof(c));
    c.sd = tp_socket();
    tp_set_int(c.sd, SOL_SOCKET, SO_SNDBUF, 2048);
    expect_errno(sock_connect(c.sd, TP_SA(a), sizeof(a)), EINPROGRESS);
    tp_expect(&s, SYN);
    c.lport = s.sport;
    c.pport = 95;
    c.iss = s.seq;
    c.pseq = 11;
    c.pack = c.iss + 1;
    c.pwnd = 65535;
    tp_inject(95, c.lport, 10, c.pack, SYN | ACK, 65535, NULL, 0, NULL, 0);
    tp_expect_ack(&c, NULL);
    assert_int_equal(sock_send(c.sd, d, sizeof(d), 0), 2048);
    expect_errno(sock_send(c.sd, d, sizeof(d), 0), EAGAIN);
    assert_int_equal(tp_poll(c.sd, POLLOUT) & POLLOUT, 0);
    while (tp_take(&s)) {
        assert_memory_equal(s.data, d + n, s.dlen);
        n += (ssize_t)s.dlen;
    }
    assert_true(n > 0);
    c.pack += (uint32_t)n;
    tp_send(&c, ACK, NULL, 0);
    assert_true(tp_poll(c.sd, POLLOUT) & POLLOUT);
    assert_int_equal(sock_send(c.sd, d + 2048, sizeof(d) - 2048, 0), n);
    tp_finish();
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_icmp_refuses_syn, tp_setup, tp_teardown),
        cmocka_unit_test_setup_teardown(test_icmp_soft_error_established, tp_setup, tp_teardown),
        cmocka_unit_test_setup_teardown(test_reconnect_after_reset, tp_setup, tp_teardown),
        cmocka_unit_test_setup_teardown(test_reconnect_after_refused, tp_setup, tp_teardown),
        cmocka_unit_test_setup_teardown(test_shut_rd_acks_only_received, tp_setup, tp_teardown),
        cmocka_unit_test_setup_teardown(test_bad_ack_in_syn_received, tp_setup, tp_teardown),
        cmocka_unit_test_setup_teardown(test_reset_before_accept, tp_setup, tp_teardown),
        cmocka_unit_test_setup_teardown(test_partial_write_and_pollout, tp_setup, tp_teardown),
    };

    tp.default_config = net_config;
    return cmocka_run_group_tests(tests, NULL, NULL);
}
