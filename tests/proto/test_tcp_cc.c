/*
 * test_tcp_cc.c — the congestion control algorithms of proto/tcp_cc.c,
 * driven directly through their hooks: NewReno (RFC 5681 §3.1, RFC 6582)
 * and CUBIC (RFC 9438).
 *
 * No stack, no network, no real time: each test builds a bare tcp_pcb,
 * sets the fields the hooks read (cwnd, ssthresh, snd_mss, snd_una/snd_max
 * for the flight size, srtt_ms8, rto_ms), and passes explicit now_ms
 * values. "Rounds" model a sender that keeps a full window in flight: every
 * RTT a whole cwnd of MSS-sized segments is acknowledged, one ACK each,
 * the ACKs spread evenly over the RTT.
 */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "net.h"
#include "proto/tcp_cc.h"
#include "proto/tcp_var.h"

#define MSS 1000u
#define CAP (1u << 30)    /* tcp_cc.c's cwnd ceiling */
#define C_CUBIC 0.4       /* RFC 9438 §5.1 */
#define BETA 0.7          /* RFC 9438 §4.6 */
#define ALPHA (3.0 * (1.0 - BETA) / (1.0 + BETA)) /* RFC 9438 §4.3 */

/* Fail with the numbers when |actual - expected| > tol. */
#define assert_near(actual, expected, tol)                                              \
    do {                                                                                \
        double a_ = (double)(actual), e_ = (double)(expected), t_ = (double)(tol);      \
        if (fabs(a_ - e_) > t_) {                                                       \
            print_error("%s = %.1f, want %.1f +- %.1f\n", #actual, a_, e_, t_);         \
            fail();                                                                     \
        }                                                                               \
    } while (0)

/* ---- helpers ------------------------------------------------------------- */

static struct tcp_pcb *pcb_new(const struct tcp_cc_ops *cc, uint32_t cwnd, uint32_t ssthresh,
                               uint32_t rtt_ms)
{
    struct tcp_pcb *pcb = calloc(1, sizeof(*pcb));

    assert_non_null(pcb);
    pcb->cc = cc;
    pcb->snd_mss = MSS;
    pcb->snd_una = 0xffff8000u; /* 32 KiB below the wrap, on purpose */
    pcb->snd_max = pcb->snd_una;
    pcb->srtt_ms8 = rtt_ms * 8;
    pcb->rto_ms = 1000;
    pcb->cwnd = cwnd;
    pcb->ssthresh = ssthresh;
    cc->init(pcb);
    return pcb;
}

static void set_flight(struct tcp_pcb *pcb, uint32_t bytes)
{
    pcb->snd_max = pcb->snd_una + bytes;
}

/* A full window in flight is lost: fast retransmit, then the full ACK. */
static void loss(struct tcp_pcb *pcb, uint64_t now)
{
    set_flight(pcb, pcb->cwnd);
    pcb->cc->congestion(pcb, TCP_CC_FAST, now);
    pcb->cc->recovered(pcb, now);
}

/* One RTT from now: the window at its start is acknowledged, one MSS per
 * ACK, the ACKs spread evenly over [now, now + rtt_ms). */
static void round_trip(struct tcp_pcb *pcb, uint64_t now, uint32_t rtt_ms)
{
    uint32_t w = pcb->cwnd, n = (w + MSS - 1) / MSS;

    for (uint32_t i = 0; i < n; i++)
        pcb->cc->ack(pcb, MSS, now + (uint64_t)i * rtt_ms / n);
}

/* RFC 9438 §4.2 eq. 1, in segments */
static double w_cubic(double w_max, double k, double t)
{
    return C_CUBIC * (t - k) * (t - k) * (t - k) + w_max;
}

/* ---- lookup -------------------------------------------------------------- */

/* Names resolve to the right tables, "reno" is an alias, others fail. */
static void test_find_names(void **state)
{
    (void)state;
    assert_ptr_equal(tcp_cc_find("newreno"), &tcp_cc_newreno);
    assert_ptr_equal(tcp_cc_find("reno"), &tcp_cc_newreno);
    assert_ptr_equal(tcp_cc_find("cubic"), &tcp_cc_cubic);
    assert_null(tcp_cc_find(""));
    assert_null(tcp_cc_find("bbr"));
    assert_null(tcp_cc_find("cubic "));
    assert_null(tcp_cc_find("newrenoo"));
    assert_null(tcp_cc_find(NULL));
    assert_string_equal(tcp_cc_newreno.name, "newreno");
    assert_string_equal(tcp_cc_cubic.name, "cubic");
    const struct tcp_cc_ops *all[] = {&tcp_cc_newreno, &tcp_cc_cubic};
    for (size_t i = 0; i < 2; i++) {
        assert_true(strlen(all[i]->name) < TCP_CC_NAME_MAX);
        assert_non_null(all[i]->init);
        assert_non_null(all[i]->ack);
        assert_non_null(all[i]->congestion);
        assert_non_null(all[i]->recovered);
    }
}

/* The list is the names, space separated; a short buffer truncates and
 * stays terminated; a zero size writes nothing. */
static void test_list(void **state)
{
    char buf[64], small[8], none[1] = {'x'};

    (void)state;
    memset(buf, 'x', sizeof(buf));
    tcp_cc_list(buf, sizeof(buf));
    assert_string_equal(buf, "newreno cubic");
    memset(small, 'x', sizeof(small));
    tcp_cc_list(small, sizeof(small));
    assert_string_equal(small, "newreno");
    tcp_cc_list(none, 0);
    assert_int_equal(none[0], 'x');
    tcp_cc_list(none, 1);
    assert_int_equal(none[0], '\0');
}

/* net_config.tcp_cc picks the default; unknown or unterminated: NewReno. */
static void test_default(void **state)
{
    char saved[sizeof(net_config.tcp_cc)];

    (void)state;
    memcpy(saved, net_config.tcp_cc, sizeof(saved));
    strcpy(net_config.tcp_cc, "cubic");
    assert_ptr_equal(tcp_cc_default(), &tcp_cc_cubic);
    strcpy(net_config.tcp_cc, "reno");
    assert_ptr_equal(tcp_cc_default(), &tcp_cc_newreno);
    strcpy(net_config.tcp_cc, "vegas");
    assert_ptr_equal(tcp_cc_default(), &tcp_cc_newreno);
    net_config.tcp_cc[0] = '\0';
    assert_ptr_equal(tcp_cc_default(), &tcp_cc_newreno);
    memset(net_config.tcp_cc, 'c', sizeof(net_config.tcp_cc)); /* no NUL */
    assert_ptr_equal(tcp_cc_default(), &tcp_cc_newreno);
    memcpy(net_config.tcp_cc, saved, sizeof(saved));
}

/* ---- NewReno ------------------------------------------------------------- */

/* RFC 5681 §3.1: below ssthresh each ACK adds what it acked, one MSS at
 * most; the window doubles over a round. */
static void test_newreno_slow_start(void **state)
{
    struct tcp_pcb *pcb = pcb_new(&tcp_cc_newreno, 10 * MSS, UINT32_MAX, 100);

    (void)state;
    pcb->cc->ack(pcb, MSS, 0);
    assert_int_equal(pcb->cwnd, 11 * MSS);
    pcb->cc->ack(pcb, 3 * MSS, 0); /* a stretch ACK: still one MSS */
    assert_int_equal(pcb->cwnd, 12 * MSS);
    pcb->cc->ack(pcb, 100, 0);     /* a small one: its bytes */
    assert_int_equal(pcb->cwnd, 12 * MSS + 100);
    pcb->cwnd = 10 * MSS;
    round_trip(pcb, 0, 100);
    assert_int_equal(pcb->cwnd, 20 * MSS);
    free(pcb);
}

/* RFC 5681 §3.1 eq. 3: above ssthresh, MSS*MSS/cwnd per ACK: about one
 * MSS per window acked, a little less as cwnd grows within the round. */
static void test_newreno_avoidance(void **state)
{
    struct tcp_pcb *pcb = pcb_new(&tcp_cc_newreno, 20 * MSS, 20 * MSS, 100);

    (void)state;
    pcb->cc->ack(pcb, MSS, 0);
    assert_int_equal(pcb->cwnd, 20 * MSS + MSS * MSS / (20 * MSS));
    pcb->cwnd = 20 * MSS;
    round_trip(pcb, 0, 100);
    assert_true(pcb->cwnd > 20 * MSS + 9 * MSS / 10);
    assert_true(pcb->cwnd <= 21 * MSS);
    /* a window so large the increment rounds to zero still grows a byte */
    pcb->cwnd = pcb->ssthresh = 2000000;
    pcb->cc->ack(pcb, MSS, 0);
    assert_int_equal(pcb->cwnd, 2000001);
    free(pcb);
}

/* RFC 5681 §3.1 eq. 4 and §3.2: ssthresh = max(flight/2, 2*MSS), from the
 * flight size (not cwnd), across the sequence wrap; FAST leaves cwnd at
 * ssthresh, RTO at one MSS; recovered deflates to ssthresh. */
static void test_newreno_congestion(void **state)
{
    struct tcp_pcb *pcb = pcb_new(&tcp_cc_newreno, 60 * MSS, UINT32_MAX, 100);

    (void)state;
    set_flight(pcb, 40 * MSS + 2); /* snd_max wraps past 2^32 */
    assert_true(pcb->snd_max < pcb->snd_una);
    pcb->cc->congestion(pcb, TCP_CC_FAST, 0);
    assert_int_equal(pcb->ssthresh, 20 * MSS + 1);
    assert_int_equal(pcb->cwnd, 20 * MSS + 1);
    pcb->cwnd = pcb->ssthresh + 3 * MSS; /* the caller's inflation */
    pcb->cc->recovered(pcb, 0);
    assert_int_equal(pcb->cwnd, 20 * MSS + 1);

    set_flight(pcb, 3 * MSS);
    pcb->cc->congestion(pcb, TCP_CC_FAST, 0);
    assert_int_equal(pcb->ssthresh, 2 * MSS);
    assert_int_equal(pcb->cwnd, 2 * MSS);

    pcb->cwnd = 30 * MSS;
    set_flight(pcb, 30 * MSS);
    pcb->cc->congestion(pcb, TCP_CC_RTO, 0);
    assert_int_equal(pcb->ssthresh, 15 * MSS);
    assert_int_equal(pcb->cwnd, MSS);
    free(pcb);
}

/* The inline code tcp_input.c and tcp_output.c had before the hooks, as the
 * reference NewReno must match exactly. */
struct ref_reno {
    uint32_t cwnd, ssthresh;
};

static void ref_ack(struct ref_reno *r, uint16_t mss, uint32_t acked)
{
    if (r->cwnd < r->ssthresh) {
        r->cwnd += acked < mss ? acked : mss;
    } else {
        uint32_t inc = (uint32_t)mss * mss / r->cwnd;
        r->cwnd += inc ? inc : 1;
    }
}

static void ref_loss(struct ref_reno *r, uint16_t mss, uint32_t flight, int rto)
{
    r->ssthresh = flight / 2 > 2u * mss ? flight / 2 : 2u * mss;
    r->cwnd = rto ? mss : r->ssthresh;
}

/* 200,000 random ACKs, fast retransmits (with inflation, deflation and the
 * full ACK) and timeouts: the hooks give the old inline code's numbers. */
static void test_newreno_matches_inline(void **state)
{
    struct tcp_pcb *pcb = pcb_new(&tcp_cc_newreno, 10 * 1460, UINT32_MAX, 100);
    struct ref_reno ref = {10 * 1460, UINT32_MAX};
    uint32_t rnd = 12345;

    (void)state;
    pcb->snd_mss = 1460;
    for (int i = 0; i < 200000; i++) {
        rnd = rnd * 1103515245u + 12345u;
        uint32_t r = rnd >> 8;
        if (r % 1000 == 0 || r % 1000 == 1) {
            uint32_t flight = r % 7 == 0 ? r % 4000 : pcb->cwnd - (r % (pcb->cwnd / 2 + 1));
            int rto = r % 1000 == 1;
            set_flight(pcb, flight);
            pcb->cc->congestion(pcb, rto ? TCP_CC_RTO : TCP_CC_FAST, (uint64_t)i);
            ref_loss(&ref, pcb->snd_mss, flight, rto);
            if (!rto) {
                pcb->cwnd += 3u * pcb->snd_mss; /* inflation, then the full ACK */
                pcb->cc->recovered(pcb, (uint64_t)i);
                ref.cwnd = ref.ssthresh;
            }
        } else {
            uint32_t acked = 1 + r % (3u * pcb->snd_mss);
            pcb->cc->ack(pcb, acked, (uint64_t)i);
            ref_ack(&ref, pcb->snd_mss, acked);
        }
        assert_int_equal(pcb->cwnd, ref.cwnd);
        assert_int_equal(pcb->ssthresh, ref.ssthresh);
    }
    free(pcb);
}

/* ---- CUBIC --------------------------------------------------------------- */

/* RFC 9438 §4.10: below ssthresh CUBIC slow-starts exactly as Reno. */
static void test_cubic_slow_start(void **state)
{
    struct tcp_pcb *c = pcb_new(&tcp_cc_cubic, 10 * MSS, 80 * MSS, 100);
    struct tcp_pcb *r = pcb_new(&tcp_cc_newreno, 10 * MSS, 80 * MSS, 100);

    (void)state;
    for (uint64_t now = 0; c->cwnd < c->ssthresh; now += 100) {
        round_trip(c, now, 100);
        round_trip(r, now, 100);
        assert_int_equal(c->cwnd, r->cwnd);
    }
    assert_int_equal(c->cwnd, 80 * MSS); /* 10, 20, 40, 80: doubling per RTT */
    free(c);
    free(r);
}

/* RFC 9438 §4.6: a loss sets ssthresh to 0.7 of the flight (at least two
 * MSS) and cwnd to ssthresh; §4.8: a timeout keeps that ssthresh and drops
 * cwnd to one MSS. */
static void test_cubic_decrease(void **state)
{
    struct tcp_pcb *pcb = pcb_new(&tcp_cc_cubic, 100 * MSS, 100 * MSS, 100);

    (void)state;
    set_flight(pcb, pcb->cwnd);
    pcb->cc->congestion(pcb, TCP_CC_FAST, 1000);
    assert_near(pcb->cwnd, BETA * 100 * MSS, MSS);
    assert_int_equal(pcb->ssthresh, pcb->cwnd);
    pcb->cc->recovered(pcb, 1100);
    assert_int_equal(pcb->cwnd, pcb->ssthresh);

    /* ssthresh follows the flight, not cwnd (RFC 9438 §4.6 eq.) */
    pcb->cwnd = 100 * MSS;
    set_flight(pcb, 50 * MSS);
    pcb->cc->congestion(pcb, TCP_CC_FAST, 2000);
    assert_near(pcb->cwnd, BETA * 50 * MSS, MSS);

    set_flight(pcb, 2 * MSS);
    pcb->cc->congestion(pcb, TCP_CC_FAST, 3000);
    assert_int_equal(pcb->ssthresh, 2 * MSS);
    assert_int_equal(pcb->cwnd, 2 * MSS);

    pcb->cwnd = 100 * MSS;
    set_flight(pcb, 100 * MSS);
    pcb->cc->congestion(pcb, TCP_CC_RTO, 4000);
    assert_int_equal(pcb->cwnd, MSS);
    assert_near(pcb->ssthresh, BETA * 100 * MSS, MSS);
    free(pcb);
}

/* RFC 9438 §4.2-§4.5: after a loss at W_max = 1000 MSS with a 100 ms RTT,
 * cwnd starts at 700 MSS and follows W_cubic: concave, never above W_max
 * before K = cbrt(W_max * (1 - beta) / C) ~ 9.09 s, within 1% of W_cubic(t)
 * half way and of W_max at K, then convex beyond it. */
static void test_cubic_curve(void **state)
{
    enum { RTT = 100, ROUNDS = 150 };
    const double w_max = 1000, k = cbrt(w_max * (1 - BETA) / C_CUBIC);
    struct tcp_pcb *pcb = pcb_new(&tcp_cc_cubic, 1000 * MSS, 1000 * MSS, RTT);
    uint32_t cw[ROUNDS + 1];
    const uint64_t t0 = 10000;

    (void)state;
    loss(pcb, t0 - RTT);
    assert_int_equal(pcb->cwnd, 700 * MSS);
    for (int r = 0; r <= ROUNDS; r++) {
        cw[r] = pcb->cwnd; /* the window at t = r * RTT */
        if (r > 0)
            assert_true(cw[r] >= cw[r - 1]);
        if ((r + 1) * RTT / 1000.0 <= k) /* targets so far: W_cubic(< t + RTT) */
            assert_true(cw[r] <= w_max * MSS);
        round_trip(pcb, t0 + (uint64_t)r * RTT, RTT);
    }
    /* on the curve: half way to K, and at K */
    int half = (int)lround(k / 2 / (RTT / 1000.0));
    assert_near(cw[half], w_cubic(w_max, k, half * RTT / 1000.0) * MSS, 0.01 * w_max * MSS);
    int rk = (int)lround(k / (RTT / 1000.0));
    assert_near(cw[rk], w_max * MSS, 0.01 * w_max * MSS);
    /* concave before K: each second adds less than the one before */
    assert_true(cw[10] - cw[0] > cw[40] - cw[30]);
    assert_true(cw[40] - cw[30] > cw[70] - cw[60]);
    assert_true(cw[70] - cw[60] > 0);
    /* convex after K: each second adds more; past W_max by t = 15 s */
    assert_true(cw[110] - cw[100] < cw[130] - cw[120]);
    assert_true(cw[130] - cw[120] < cw[150] - cw[140]);
    assert_true(cw[150] > 1.05 * w_max * MSS);
    /* never faster than 1.5x per RTT (RFC 9438 §4.2 target bound) */
    for (int r = 1; r <= ROUNDS; r++)
        assert_true(cw[r] <= 1.5 * cw[r - 1]);
    free(pcb);
}

/* RFC 9438 §4.2 eq. 2: K comes from cwnd_epoch, not from beta: after a
 * loss with only half the window in flight (application-limited), cwnd
 * restarts at 0.35 W_max, the curve starts there and still plateaus at
 * W_max, now at K = cbrt((W_max - cwnd_epoch) / C) ~ 11.8 s. */
static void test_cubic_epoch_from_flight(void **state)
{
    enum { RTT = 100 };
    const double w_max = 1000, k = cbrt((w_max - 350) / C_CUBIC);
    struct tcp_pcb *pcb = pcb_new(&tcp_cc_cubic, 1000 * MSS, 1000 * MSS, RTT);
    const uint64_t t0 = 10000;
    int rk = (int)lround(k / (RTT / 1000.0));

    (void)state;
    set_flight(pcb, 500 * MSS);
    pcb->cc->congestion(pcb, TCP_CC_FAST, t0 - RTT);
    pcb->cc->recovered(pcb, t0 - RTT);
    assert_int_equal(pcb->cwnd, 350 * MSS);
    for (int r = 0; r < rk; r++) {
        round_trip(pcb, t0 + (uint64_t)r * RTT, RTT);
        if (r + 1 == 10)
            assert_near(pcb->cwnd, w_cubic(w_max, k, 1.0) * MSS, 0.01 * w_max * MSS);
    }
    assert_near(pcb->cwnd, w_max * MSS, 0.01 * w_max * MSS);
    free(pcb);
}

/* An ACK of far more than a window (a stretch ACK after a reduction) counts
 * for one window at most: CUBIC grows no more than 1.5x, NewReno by its
 * one MSS*MSS/cwnd. */
static void test_stretch_ack(void **state)
{
    struct tcp_pcb *c = pcb_new(&tcp_cc_cubic, 100 * MSS, 100 * MSS, 100);
    struct tcp_pcb *r = pcb_new(&tcp_cc_newreno, 100 * MSS, 100 * MSS, 100);

    (void)state;
    loss(c, 10000);
    for (int n = 0; n < 3; n++) {
        uint32_t before = c->cwnd;
        c->cc->ack(c, 1000000000u, 10000 + 1000 * (uint64_t)n);
        assert_true(c->cwnd > before);
        assert_true(c->cwnd <= before + before / 2);
    }
    r->cc->ack(r, 1000000000u, 0);
    assert_int_equal(r->cwnd, 100 * MSS + MSS / 100);
    free(c);
    free(r);
}

/* RFC 9438 §4.2: the target is W_cubic one RTT ahead (t + RTT), so on a
 * 1 s path the first round already climbs most of the way to W_cubic(1 s)
 * (from t alone it would not grow at all: W_cubic(0) = cwnd); with no RTT
 * sample yet, 100 ms is assumed. */
static void test_cubic_rtt(void **state)
{
    const double k = cbrt(1000 * (1 - BETA) / C_CUBIC);
    struct tcp_pcb *a = pcb_new(&tcp_cc_cubic, 1000 * MSS, 1000 * MSS, 1000);
    struct tcp_pcb *b = pcb_new(&tcp_cc_cubic, 1000 * MSS, 1000 * MSS, 0);
    struct tcp_pcb *c = pcb_new(&tcp_cc_cubic, 1000 * MSS, 1000 * MSS, 100);
    uint64_t now = 10000;

    (void)state;
    a->rto_ms = 3000; /* acks 1 s apart are not idleness */
    loss(a, now);
    loss(b, now);
    loss(c, now);
    for (int r = 1; r <= 9; r++, now += 1000) {
        round_trip(a, now, 1000);
        assert_true(a->cwnd <= w_cubic(1000, k, r + 1) * MSS);
        if (r == 1) /* half way from 700 to W_cubic(1 s) = 788.6 MSS, at least */
            assert_true(a->cwnd >= (700 + (w_cubic(1000, k, 1.0) - 700) / 2) * MSS);
    }
    assert_near(a->cwnd, 1000 * MSS, 0.01 * 1000 * MSS); /* at t = 9 s ~ K */
    for (int r = 0; r < 30; r++, now += 100) {
        round_trip(b, now, 100);
        round_trip(c, now, 100);
        assert_int_equal(b->cwnd, c->cwnd);
    }
    free(a);
    free(b);
    free(c);
}

/* RFC 9438 §4.2: target is at most 1.5 * cwnd, "less than the increase
 * rate of slow start". After a timeout (K = 0, W_max = 7 MSS) on a 1 s
 * path W_cubic(t + RTT) races ahead of cwnd; cwnd then grows by half per
 * round, no more. */
static void test_cubic_growth_bound(void **state)
{
    enum { ROUNDS = 10 };
    struct tcp_pcb *pcb = pcb_new(&tcp_cc_cubic, 10 * MSS, 10 * MSS, 1000);
    uint32_t cw[ROUNDS + 1];
    uint64_t now = 10000;
    int bound_hit = 0;

    (void)state;
    pcb->rto_ms = 3000;
    set_flight(pcb, 10 * MSS);
    pcb->cc->congestion(pcb, TCP_CC_RTO, now);
    while (pcb->cwnd < pcb->ssthresh)
        pcb->cc->ack(pcb, MSS, now += 100);
    assert_int_equal(pcb->cwnd, 7 * MSS);
    for (int r = 0; r <= ROUNDS; r++, now += 1000) {
        cw[r] = pcb->cwnd;
        if (r > 0) {
            assert_true(cw[r] <= 1.5 * cw[r - 1] + MSS);
            bound_hit += cw[r] >= 1.45 * cw[r - 1];
        }
        round_trip(pcb, now, 1000);
    }
    assert_true(bound_hit >= 3);
    /* the curve itself is far above: W_cubic(10 s) = 7 + 0.4 * 1000 MSS */
    assert_true(cw[ROUNDS] < w_cubic(7, 0, ROUNDS) * MSS);
    free(pcb);
}

/* RFC 9438 §4.7: a second loss before cwnd regains W_max lowers W_max to
 * cwnd * (1 + beta) / 2, so the new plateau (reached at the new K) sits at
 * 0.85 of the window at the second loss, not at that window. */
static void test_cubic_fast_convergence(void **state)
{
    enum { RTT = 100 };
    struct tcp_pcb *pcb = pcb_new(&tcp_cc_cubic, 1000 * MSS, 1000 * MSS, RTT);
    uint64_t now = 10000;
    double c2, w_max2, k2;
    int rounds;

    (void)state;
    loss(pcb, now);
    for (int r = 0; r < 20; r++, now += RTT)
        round_trip(pcb, now, RTT);
    c2 = (double)pcb->cwnd / MSS;
    assert_true(c2 < 950); /* still below the first W_max */
    loss(pcb, now);
    assert_near(pcb->cwnd, BETA * c2 * MSS, MSS);
    w_max2 = c2 * (1 + BETA) / 2;
    k2 = cbrt((w_max2 - BETA * c2) / C_CUBIC);
    rounds = (int)lround(k2 / (RTT / 1000.0));
    now += RTT;
    for (int r = 0; r < rounds; r++, now += RTT)
        round_trip(pcb, now, RTT);
    assert_near(pcb->cwnd, w_max2 * MSS, 0.03 * w_max2 * MSS);
    assert_true(pcb->cwnd < 0.9 * c2 * MSS); /* without fast convergence: ~c2 */
    free(pcb);
}

/* RFC 9438 §4.3: on a 1 ms RTT the cubic curve barely moves, and CUBIC
 * follows W_est = 0.7 W + alpha_cubic per RTT instead: at least what Reno
 * has after the same loss in the early rounds, and far above W_cubic; once
 * W_est passes cwnd_prior, alpha_cubic is 1 (one MSS per RTT). */
static void test_cubic_reno_friendly(void **state)
{
    enum { RTT = 1 };
    struct tcp_pcb *c = pcb_new(&tcp_cc_cubic, 100 * MSS, 100 * MSS, RTT);
    struct tcp_pcb *r = pcb_new(&tcp_cc_newreno, 100 * MSS, 100 * MSS, RTT);
    const double k = cbrt(100 * (1 - BETA) / C_CUBIC);
    uint32_t cw[101];
    uint64_t t0 = 5000;

    (void)state;
    loss(c, t0 - RTT);
    loss(r, t0 - RTT);
    for (int n = 0; n <= 100; n++) {
        cw[n] = c->cwnd;
        if (n <= 30)
            assert_true(c->cwnd >= r->cwnd);
        if (n <= 50)
            assert_near(c->cwnd, (70 + ALPHA * n) * MSS, 2 * MSS);
        round_trip(c, t0 + (uint64_t)n * RTT, RTT);
        round_trip(r, t0 + (uint64_t)n * RTT, RTT);
    }
    assert_true(cw[30] > (w_cubic(100, k, 0.031) + 10) * MSS);
    assert_near(cw[30] - cw[10], 20 * ALPHA * MSS, 1.0 * MSS);
    assert_near(cw[90] - cw[70], 20 * MSS, 1.5 * MSS); /* alpha_cubic = 1 */
    free(c);
    free(r);
}

/* cwnd after a timeout at 100 MSS (once, or twice with no ACK between),
 * slow start back to ssthresh, then `rounds` RTTs of 100 ms. */
static uint32_t cubic_after_rto(int timeouts, int rounds)
{
    struct tcp_pcb *pcb = pcb_new(&tcp_cc_cubic, 100 * MSS, 100 * MSS, 100);
    uint64_t now = 10000;
    uint32_t cwnd;

    set_flight(pcb, 100 * MSS);
    for (int i = 0; i < timeouts; i++) {
        pcb->cc->congestion(pcb, TCP_CC_RTO, now);
        assert_int_equal(pcb->cwnd, MSS);
        assert_int_equal(pcb->ssthresh, 70 * MSS);
        now += 1000u << i;
    }
    while (pcb->cwnd < pcb->ssthresh)
        pcb->cc->ack(pcb, MSS, now += 10);
    assert_int_equal(pcb->cwnd, 70 * MSS);
    for (int r = 0; r < rounds; r++, now += 100)
        round_trip(pcb, now, 100);
    cwnd = pcb->cwnd;
    free(pcb);
    return cwnd;
}

/* RFC 9438 §4.8: after a timeout the first congestion avoidance stage has
 * K = 0 and W_max = cwnd_epoch (70 MSS), with W_est from 70 MSS: after 3 s
 * the Reno estimate (70 + 0.53 * 30 ~ 86 MSS) leads; not the concave climb
 * back toward the old 100 MSS a fast retransmit would give (~99 MSS). A
 * second timeout before any ACK does not count as another reduction. */
static void test_cubic_timeout(void **state)
{
    uint32_t once = cubic_after_rto(1, 30);

    (void)state;
    assert_near(once, (70 + 30 * ALPHA) * MSS, 3 * MSS);
    assert_int_equal(cubic_after_rto(2, 30), once);
}

/* RFC 9438 §4.2, §5.8: time with nothing to send is not counted in t. A
 * minute of silence in the concave region is followed by an ordinary
 * round's growth, not a jump toward 1.5 * cwnd. */
static void test_cubic_idle(void **state)
{
    enum { RTT = 100 };
    struct tcp_pcb *a = pcb_new(&tcp_cc_cubic, 1000 * MSS, 1000 * MSS, RTT);
    struct tcp_pcb *b = pcb_new(&tcp_cc_cubic, 1000 * MSS, 1000 * MSS, RTT);
    uint64_t now = 10000;
    uint32_t before;

    (void)state;
    loss(a, now);
    loss(b, now);
    for (int r = 0; r < 20; r++, now += RTT) {
        round_trip(a, now, RTT);
        round_trip(b, now, RTT);
    }
    before = a->cwnd;
    round_trip(a, now, RTT);          /* busy: the next round */
    round_trip(b, now + 60000, RTT);  /* idle for a minute first */
    assert_true(b->cwnd > before);
    assert_true(b->cwnd <= a->cwnd);
    assert_true(b->cwnd - before < 0.05 * before);
    assert_true(b->cwnd < 1000 * MSS);
    free(a);
    free(b);
}

/* ---- limits -------------------------------------------------------------- */

/* Huge acked counts, far-future clocks, flights of 4 GiB and windows past
 * the cap: cwnd saturates at 1 GiB (leaving room for the caller's
 * inflation), never wraps and never shrinks on an ACK. */
static void test_no_overflow(void **state)
{
    const struct tcp_cc_ops *algs[] = {&tcp_cc_newreno, &tcp_cc_cubic};

    (void)state;
    for (size_t i = 0; i < 2; i++) {
        struct tcp_pcb *pcb = pcb_new(algs[i], CAP - 500, UINT32_MAX, 100);
        uint32_t prev;

        pcb->cc->ack(pcb, UINT32_MAX, 0); /* slow start to the cap */
        assert_int_equal(pcb->cwnd, CAP);
        pcb->cwnd = CAP - 10 * MSS;
        pcb->ssthresh = 1000 * MSS;       /* congestion avoidance */
        prev = pcb->cwnd;
        for (uint64_t now = 0; now < 1000000; now += 500) { /* 1000 s, busy */
            pcb->cc->ack(pcb, UINT32_MAX, now);
            assert_true(pcb->cwnd >= prev);
            assert_true(pcb->cwnd <= CAP);
            prev = pcb->cwnd;
        }
        if (algs[i] == &tcp_cc_cubic)
            assert_int_equal(pcb->cwnd, CAP);
        for (uint64_t now = 1000000; now < UINT64_MAX / 4; now = now * 3 + 7) {
            pcb->cc->ack(pcb, UINT32_MAX, now);
            assert_true(pcb->cwnd >= prev);
            assert_true(pcb->cwnd <= CAP);
            prev = pcb->cwnd;
        }
        pcb->cwnd = 0xffffff00u;           /* set past the cap by someone */
        pcb->cc->ack(pcb, UINT32_MAX, UINT64_MAX);
        assert_int_equal(pcb->cwnd, 0xffffff00u);

        pcb->cwnd = CAP;
        pcb->snd_una = 1;
        pcb->snd_max = 0;                  /* 4 GiB - 1 in flight */
        pcb->cc->congestion(pcb, TCP_CC_FAST, 0);
        assert_true(pcb->ssthresh >= 2 * MSS);
        assert_true(pcb->ssthresh <= UINT32_MAX / 2);
        assert_int_equal(pcb->cwnd, pcb->ssthresh);
        pcb->cc->recovered(pcb, 0);
        for (int n = 0; n < 1000; n++)
            pcb->cc->ack(pcb, UINT32_MAX, UINT64_MAX - 1000 + (uint64_t)n);
        assert_true(pcb->cwnd >= pcb->ssthresh && pcb->cwnd <= UINT32_MAX / 2);
        free(pcb);
    }
}

/* A pcb of zeros (no MSS, no window, no RTT): every hook runs without a
 * division by zero (UBSan) and leaves small sane numbers. */
static void test_zero_pcb(void **state)
{
    const struct tcp_cc_ops *algs[] = {&tcp_cc_newreno, &tcp_cc_cubic};

    (void)state;
    for (size_t i = 0; i < 2; i++) {
        struct tcp_pcb *pcb = calloc(1, sizeof(*pcb));
        assert_non_null(pcb);
        pcb->cc = algs[i];
        pcb->cc->init(pcb);
        pcb->cc->ack(pcb, 100, 0);
        pcb->cc->ack(pcb, 100, 1);
        pcb->cc->congestion(pcb, TCP_CC_FAST, 2);
        assert_int_equal(pcb->ssthresh, 0);
        assert_int_equal(pcb->cwnd, 0);
        pcb->cc->recovered(pcb, 3);
        pcb->cc->ack(pcb, 100, 4);
        pcb->cc->congestion(pcb, TCP_CC_RTO, 5);
        pcb->cc->ack(pcb, 100, 6);
        pcb->cwnd = 5000;                  /* CA with snd_mss 0 */
        pcb->cc->ack(pcb, 100, 7);
        pcb->cc->ack(pcb, 100, 5000);
        assert_true(pcb->cwnd >= 5000 && pcb->cwnd < 10000);
        free(pcb);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_find_names),
        cmocka_unit_test(test_list),
        cmocka_unit_test(test_default),
        cmocka_unit_test(test_newreno_slow_start),
        cmocka_unit_test(test_newreno_avoidance),
        cmocka_unit_test(test_newreno_congestion),
        cmocka_unit_test(test_newreno_matches_inline),
        cmocka_unit_test(test_cubic_slow_start),
        cmocka_unit_test(test_cubic_decrease),
        cmocka_unit_test(test_cubic_curve),
        cmocka_unit_test(test_cubic_epoch_from_flight),
        cmocka_unit_test(test_cubic_rtt),
        cmocka_unit_test(test_cubic_growth_bound),
        cmocka_unit_test(test_cubic_fast_convergence),
        cmocka_unit_test(test_cubic_reno_friendly),
        cmocka_unit_test(test_cubic_timeout),
        cmocka_unit_test(test_cubic_idle),
        cmocka_unit_test(test_stretch_ack),
        cmocka_unit_test(test_no_overflow),
        cmocka_unit_test(test_zero_pcb),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
