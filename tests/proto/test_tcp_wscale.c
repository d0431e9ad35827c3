/*
 * test_tcp_wscale.c — window scaling (RFC 7323 §2): negotiated only when
 * both SYNs carry the option; then every window field but a SYN's is
 * shifted, theirs by their count and ours by ours.
 *
 * The scripted peer is tcp_peer.h's; frames are checked byte by byte.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "tcp_peer.h"

#define PORT 7100

/* MSS 1460, NOP, window scale shift: the 8 option bytes of a peer's SYN */
static size_t opt_mss_ws(uint8_t *opt, uint8_t shift)
{
    tp_opt_mss(opt, 1460);
    opt[4] = 1;
    opt[5] = 3;
    opt[6] = 3;
    opt[7] = shift;
    return 8;
}

static int has_wscale(const struct tp_seg *s, uint8_t *shift)
{
    for (size_t i = 0; i + 2 < s->optlen;) {
        if (s->opt[i] == 1) {
            i++;
            continue;
        }
        if (s->opt[i] == 3 && s->opt[i + 1] == 3) {
            *shift = s->opt[i + 2];
            return 1;
        }
        if (s->opt[i] == 0 || s->opt[i + 1] < 2)
            break;
        i += s->opt[i + 1];
    }
    return 0;
}

/* Peer offers shift 7: our SYN-ACK answers with our shift (3 for the
 * default 256 KiB buffer), its window field unscaled; after that the peer's
 * window 2 means 256 bytes, and our window field is our window >> 3. */
static void test_passive_both_offer(void **state)
{
    int lsd = tp_listen(PORT, 4, 0);
    uint8_t opt[8], shift = 0;
    struct tp_seg sa, s;
    struct sockaddr_in a;
    socklen_t len = sizeof(a);
    static uint8_t data[1000];
    size_t sent = 0;
    int sd;

    (void)state;
    /* a SYN window of 400 keeps sender SWS avoidance (half the largest
     * window seen) from holding back the 256-byte segment below */
    tp_inject(41000, PORT, 500, 0, SYN, 400, opt, opt_mss_ws(opt, 7), NULL, 0);
    tp_expect(&sa, SYN | ACK);
    assert_true(has_wscale(&sa, &shift));
    assert_int_equal(shift, 3);
    assert_int_equal(sa.wnd, 65535); /* a SYN's window is never scaled */
    /* the ACK offers 2 << 7 = 256 bytes */
    tp_inject(41000, PORT, 501, sa.seq + 1, ACK, 2, NULL, 0, NULL, 0);
    sd = sock_accept(lsd, TP_SA(a), &len);
    assert_true(sd >= 0);
    tp_track(sd);
    tp_fill(data, sizeof(data), 3);
    assert_int_equal(sock_send(sd, data, sizeof(data), 0), (ssize_t)sizeof(data));
    while (tp_take(&s)) {
        sent += s.dlen;
        /* our window, in units of 8 bytes: 256 KiB free -> 32768 */
        assert_int_equal(s.wnd, (256 * 1024) >> 3);
    }
    assert_int_equal(sent, 256); /* exactly the scaled window, no more */
    tp_finish();
}

/* Peer's SYN has no window scale: our SYN-ACK must not carry one either,
 * and windows stay unscaled both ways (at most 65535). */
static void test_passive_peer_does_not_offer(void **state)
{
    int lsd = tp_listen(PORT + 1, 4, 0);
    struct tp_conn c;
    struct tp_seg sa, s;
    uint8_t shift;

    (void)state;
    tp_syn_to_listener(&c, PORT + 1, 41001, 900, 1460, &sa);
    assert_false(has_wscale(&sa, &shift));
    tp_send(&c, ACK, NULL, 0);
    c.sd = sock_accept(lsd, NULL, NULL);
    assert_true(c.sd >= 0);
    tp_track(c.sd);
    tp_send(&c, ACK | PSH, "abc", 3);
    test_advance(net_config.tcp_delack_ms + 10);
    tp_expect_ack(&c, &s);
    /* bytes, unscaled: the 65535 offered minus the 3 taken (the right edge
     * stays where it was: receiver SWS avoidance) */
    assert_int_equal(s.wnd, 65532);
    tp_finish();
}

/* Active open: our SYN offers our shift; a SYN-ACK without the option
 * turns scaling off, so our window field is plain bytes again. */
static void test_active_peer_declines(void **state)
{
    struct tp_conn c;
    struct tp_seg syn, ack;
    uint8_t opt[4], shift = 0;

    (void)state;
    tp_connect_start(&c, 81, 0, &syn);
    assert_true(has_wscale(&syn, &shift));
    assert_int_equal(shift, 3);
    c.irs = 3000;
    c.pack = c.iss + 1;
    tp_inject(c.pport, c.lport, 3000, c.pack, SYN | ACK, 65535, opt, tp_opt_mss(opt, 1460), NULL, 0);
    c.pseq = 3001;
    tp_expect_ack(&c, &ack);
    assert_int_equal(ack.wnd, 65535); /* not 256 KiB >> 3 */
    tp_finish();
}

/* Active open, both offer: the peer's window 100 << 2 = 400 bytes bound
 * what we send; our windows go out >> 3. */
static void test_active_both_offer(void **state)
{
    struct tp_conn c;
    struct tp_seg syn, s;
    uint8_t opt[8];
    static uint8_t data[2000];
    size_t sent = 0;

    (void)state;
    tp_connect_start(&c, 82, 0, &syn);
    c.irs = 4000;
    c.pack = c.iss + 1;
    tp_inject(c.pport, c.lport, 4000, c.pack, SYN | ACK, 600, opt, opt_mss_ws(opt, 2), NULL, 0);
    c.pseq = 4001;
    tp_expect(&s, ACK);
    assert_int_equal(s.wnd, (256 * 1024) >> 3);
    /* the peer shrinks its window to 100 (<< 2 = 400 bytes) */
    tp_inject(c.pport, c.lport, 4001, c.pack, ACK, 100, NULL, 0, NULL, 0);
    tp_fill(data, sizeof(data), 5);
    assert_int_equal(sock_send(c.sd, data, sizeof(data), 0), (ssize_t)sizeof(data));
    while (tp_take(&s))
        sent += s.dlen;
    assert_int_equal(sent, 400);
    tp_finish();
}

/* The app never reads; the peer sends all the window offers, in segments
 * of 1457 bytes (not a whole number of our 8-byte units), until it closes.
 * Every byte sent inside an offered window must be taken, and no window
 * may offer more than the ring has room for. (An edge kept from an earlier
 * ACK, rounded up to the unit again at each ACK, used to creep past the
 * ring: a 20 MiB lossy echo stalled on a window of 8 bytes we then
 * refused.) */
static void test_window_never_past_ring(void **state)
{
    int lsd = tp_listen(PORT + 2, 4, 0);
    uint8_t opt[8], shift = 0;
    struct tp_seg sa, s;
    struct tp_conn c;
    static uint8_t data[1457];
    const uint32_t ring = 256 * 1024 + 8; /* default buffer and one unit of slack */
    uint32_t edge, held = 0;
    int acks = 0, rounds = 0;

    (void)state;
    memset(&c, 0, sizeof(c));
    c.lport = PORT + 2;
    c.pport = 41002;
    c.irs = 7000;
    c.pwnd = 65535;
    tp_inject(c.pport, c.lport, c.irs, 0, SYN, 65535, opt, opt_mss_ws(opt, 7), NULL, 0);
    tp_expect(&sa, SYN | ACK);
    assert_true(has_wscale(&sa, &shift));
    assert_int_equal(shift, 3);
    c.iss = sa.seq;
    c.pseq = c.irs + 1;
    c.pack = c.iss + 1;
    tp_send(&c, ACK, NULL, 0);
    c.sd = sock_accept(lsd, NULL, NULL);
    assert_true(c.sd >= 0);
    tp_track(c.sd);
    edge = c.pseq + 65535; /* the SYN-ACK's unscaled window */
    tp_fill(data, sizeof(data), 9);
    while ((int32_t)(edge - c.pseq) > 0) {
        uint32_t n = edge - c.pseq < sizeof(data) ? edge - c.pseq : (uint32_t)sizeof(data);
        assert_true(++rounds < 1000);
        tp_send(&c, ACK, data, n);
        held += n;
        if (test_sent_count() == 0)
            test_advance(net_config.tcp_delack_ms + 10);
        while (tp_take(&s)) {
            assert_int_equal(s.ack, c.pseq); /* all of it taken */
            assert_true(((uint32_t)s.wnd << 3) <= ring - held);
            edge = s.ack + ((uint32_t)s.wnd << 3);
            acks++;
        }
    }
    /* the window closed on a full ring, every byte of it ours */
    assert_true(acks > 100);
    assert_true(held >= 256 * 1024 - 1460 && held <= ring);
    tp_finish();
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_passive_both_offer, tp_setup, tp_teardown),
        cmocka_unit_test_setup_teardown(test_passive_peer_does_not_offer, tp_setup, tp_teardown),
        cmocka_unit_test_setup_teardown(test_active_peer_declines, tp_setup, tp_teardown),
        cmocka_unit_test_setup_teardown(test_active_both_offer, tp_setup, tp_teardown),
        cmocka_unit_test_setup_teardown(test_window_never_past_ring, tp_setup, tp_teardown),
    };

    tp.default_config = net_config;
    return cmocka_run_group_tests(tests, NULL, NULL);
}
