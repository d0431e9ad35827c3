/*
 * test_tcp_random.c — long randomized transfers through the scripted TCP
 * peer (tcp_peer.h), checking invariants on every segment rather than a
 * fixed trace: one into us through reordering, duplication and overlap,
 * one from us through a lossy peer whose window keeps changing. Fixed
 * seeds, so a failure repeats; NETSTEP_TCP_SEED=n explores other runs.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "tcp_peer.h"

#define PORT 8080

static uint8_t data[1 << 18], got[1 << 18];

/* A small deterministic PRNG (xorshift32). NETSTEP_TCP_SEED (a number)
 * replaces the fixed seeds of the randomized tests, to explore more. */
static uint32_t rnd_state;

static void rnd_seed(uint32_t dflt)
{
    const char *e = getenv("NETSTEP_TCP_SEED");

    rnd_state = e && strtoul(e, NULL, 0) ? (uint32_t)strtoul(e, NULL, 0) ^ dflt : dflt;
    if (e)
        print_message("  seed %s\n", e);
}

static uint32_t rnd(void)
{
    uint32_t x = rnd_state;

    x ^= x << 13;
    x ^= x >> 17;
    x ^= x << 5;
    return rnd_state = x;
}

static void open_conn(struct tp_conn *c, uint16_t pport, uint32_t pisn, int rcvbuf)
{
    int lsd = tp_listen(PORT, 8, rcvbuf);

    tp_open_passive(c, lsd, PORT, pport, pisn, 1460);
}

/* ---- long randomized transfers ------------------------------------------------------------------------------------ */

/* 200 KB from the peer into an 8 KiB buffer, in segments of random size
 * sent out of order, duplicated and overlapping, while the app reads in
 * random amounts: every byte arrives once, in order; no ACK covers a byte
 * the peer never sent; the right edge of our window never moves back
 * (RFC 9293 §3.8.6: SHOULD NOT shrink the window). */
static void test_random_reorder_receive(void **state)
{
    enum { TOTAL = 200000 };
    static uint8_t sent[TOTAL];
    struct tp_conn c;
    struct tp_seg s;
    uint32_t base, acked = 0, right = 0, hole = 0;
    size_t nread = 0;
    int rounds = 0;

    (void)state;
    rnd_seed(0x12345678);
    open_conn(&c, 51300, 0xfffff000u, 8192); /* crosses 2^32 early */
    base = c.pseq;
    tp_fill(data, TOTAL, 17);
    while (nread < TOTAL) {
        assert_true(++rounds < 200000);
        /* a few segments somewhere in [acked, acked + 10000) */
        for (int k = 0; k < 4; k++) {
            uint32_t off = acked + rnd() % 10000, len = 1 + rnd() % 1460;
            if (off >= TOTAL)
                continue;
            if (off + len > TOTAL)
                len = TOTAL - off;
            tp_send_at(&c, base + off, ACK, data + off, len);
            memset(sent + off, 1, len);
        }
        if (rnd() % 3 == 0) { /* the next in-order bytes, now and then */
            uint32_t len = acked + 1460 <= TOTAL ? 1460 : TOTAL - acked;
            tp_send_at(&c, base + acked, ACK, data + acked, len);
            memset(sent + acked, 1, len);
        }
        while (hole < TOTAL && sent[hole])
            hole++;
        while (tp_take(&s)) {
            uint32_t a = s.ack - base;
            assert_true(a <= TOTAL);
            if (a > hole)
                fail_msg("ACK of byte %u; the peer has sent only up to %u without a gap", a, hole);
            assert_true(s.wnd <= 8192);
            if (right && (int32_t)(s.ack + s.wnd - right) < 0)
                fail_msg("the window's right edge moved back from %u to %u", right - base, s.ack + s.wnd - base);
            right = s.ack + s.wnd;
            if (a > acked)
                acked = a;
        }
        if (rnd() % 2) {
            size_t want = 1 + rnd() % 6000;
            ssize_t n = sock_recv(c.sd, got + nread, want, MSG_DONTWAIT);
            if (n > 0) {
                assert_memory_equal(got + nread, data + nread, (size_t)n);
                nread += (size_t)n;
            } else {
                assert_int_equal(errno, EAGAIN);
            }
        }
    }
    print_message("  %d rounds, %lld held out of order, %lld dropped\n", rounds,
                  (long long)tp_counter("tcp.in_ooo_segs"), (long long)tp_counter("tcp.in_ooo_dropped"));
    assert_memory_equal(got, data, TOTAL);
    tp_finish();
}

/* 150 KB from the app to a peer that loses a fifth of what we send,
 * acknowledges cumulatively (a tenth of its ACKs lost too) and offers a window that changes at random
 * (its right edge never moving back), then a FIN: the peer ends with every
 * byte, in order, and the FIN right after the last one; no segment ever
 * goes past the right edge the peer offered. */
static void test_random_loss_send(void **state)
{
    enum { TOTAL = 150000 };
    static uint8_t rcv[TOTAL + 2000];
    struct tp_conn c;
    struct tp_seg s;
    size_t queued = 0;
    uint32_t base, have = 0, right; /* the peer's in-order bytes; its window's right edge */
    int fin = 0, rounds = 0;

    (void)state;
    rnd_seed(0x9e3779b9);
    net_config.tcp_retries = 50;
    open_conn(&c, 51400, 1000, 0);
    base = c.iss + 1;
    right = base + 65535;
    tp_fill(data, TOTAL, 18);
    while (!fin) {
        int sent = 0;
        assert_true(++rounds < 20000);
        if (queued < TOTAL) {
            ssize_t n = sock_send(c.sd, data + queued, TOTAL - queued, 0);
            if (n > 0)
                queued += (size_t)n;
            if (queued == TOTAL)
                assert_int_equal(sock_shutdown(c.sd, SHUT_WR), 0);
        }
        while (tp_take(&s)) {
            uint32_t off = s.seq - base;
            sent = 1;
            if ((int32_t)(s.seq + (uint32_t)s.dlen - right) > 0)
                fail_msg("segment [%u, %zu) past the peer's right edge %u", off, off + s.dlen, right - base);
            if (rnd() % 5 == 0)
                continue; /* lost */
            assert_true(off + s.dlen <= TOTAL);
            memcpy(rcv + off, s.data, s.dlen);
            assert_memory_equal(rcv + off, data + off, s.dlen);
            if (off <= have && off + s.dlen > have)
                have = off + (uint32_t)s.dlen;
            if ((s.flg & FIN) && off + s.dlen == have) {
                assert_int_equal(have, TOTAL);
                fin = 1;
            }
            c.pack = base + have + (uint32_t)fin;
            c.pwnd = (uint16_t)(1 + rnd() % 30000);
            if ((int32_t)(c.pack + c.pwnd - right) < 0)
                c.pwnd = (uint16_t)(right - c.pack);
            right = c.pack + c.pwnd;
            if (rnd() % 10) /* and a tenth of its ACKs are lost */
                tp_send(&c, ACK, NULL, 0);
        }
        if (!sent) {
            test_advance(50);
            if (rnd() % 4 == 0) { /* a window update now and then */
                uint32_t w = 1 + rnd() % 65535;
                if ((int32_t)(c.pack + w - right) > 0) {
                    c.pwnd = (uint16_t)w;
                    right = c.pack + w;
                    tp_send(&c, ACK, NULL, 0);
                }
            }
        }
    }
    print_message("  %d rounds, %lld retransmitted, %lld timeouts, %lld fast\n", rounds,
                  (long long)tp_counter("tcp.retrans_segs"), (long long)tp_counter("tcp.rto_timeouts"),
                  (long long)tp_counter("tcp.fast_retransmits"));
    assert_memory_equal(rcv, data, TOTAL);
    tp_send(&c, ACK, NULL, 0); /* the last ACK may have been lost */
    test_flush();
    assert_state(&c, "FIN-WAIT-2");
    tp_send(&c, ACK | FIN, NULL, 0);
    tp_expect_ack(&c, NULL);
    assert_state(&c, "TIME-WAIT");
    tp_finish();
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_random_reorder_receive, tp_setup, tp_teardown),
        cmocka_unit_test_setup_teardown(test_random_loss_send, tp_setup, tp_teardown),
    };

    tp.default_config = net_config;
    return cmocka_run_group_tests(tests, NULL, NULL);
}
