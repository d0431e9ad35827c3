/*
 * tcp_cc.c — the congestion control algorithms behind tcp_cc.h: NewReno
 * (RFC 5681 §3.1, RFC 6582) and CUBIC (RFC 9438).
 *
 * Called with tcp_lock held, through pcb->cc, by tcp_input (ACKs of new
 * data outside recovery: ack; the third duplicate ACK: congestion FAST; the
 * ACK that ends recovery: recovered) and by the rexmt timer in tcp_output
 * (congestion RTO). The callers own the recovery machinery and any window
 * inflation during fast recovery; the hooks here only size cwnd and
 * ssthresh.
 *
 * Units: windows in bytes, time in milliseconds. RFC 9438 counts windows in
 * segments and time in seconds; CUBIC converts with snd_mss where a formula
 * needs segments, and keeps its state in bytes (as RFC 9438 §4.1 allows).
 *
 * Every hook is total: any pcb field values, including zero cwnd or MSS and
 * huge acked counts, leave cwnd in [0, TCP_CC_CWND_MAX] grown or shrunk as
 * the algorithm says, never wrapped. The cap leaves room above cwnd for the
 * caller's fast-recovery inflation.
 */
#include "proto/tcp_cc.h"

#include <assert.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "net.h"
#include "proto/tcp_var.h"

#define TCP_CC_CWND_MAX (1u << 30) /* 1 GiB: no growth past this */
#define TCP_CC_DEFAULT_MSS 536     /* RFC 9293 §3.7.1, if snd_mss is unset */
#define TCP_CC_DEFAULT_RTT_MS 100  /* CUBIC's RTT before the first sample */
#define TCP_CC_DEFAULT_RTO_MS 1000 /* RFC 6298 §2.1, if rto_ms is unset */

static uint32_t cc_min32(uint32_t a, uint32_t b)
{
    return a < b ? a : b;
}

/* cwnd += inc, saturating at TCP_CC_CWND_MAX (a cwnd already above the cap,
 * set by someone else, is left alone rather than cut). */
static void cc_grow(struct tcp_pcb *pcb, uint64_t inc)
{
    uint64_t n = (uint64_t)pcb->cwnd + inc;

    if (n > TCP_CC_CWND_MAX)
        n = pcb->cwnd > TCP_CC_CWND_MAX ? pcb->cwnd : TCP_CC_CWND_MAX;
    pcb->cwnd = (uint32_t)n;
}

/* RFC 5681 §3.1: slow start, "cwnd += min (N, SMSS)" per ACK (the 1 SMSS
 * per ACK limit, so a stretch ACK does not burst). */
static void cc_slow_start(struct tcp_pcb *pcb, uint32_t acked)
{
    cc_grow(pcb, cc_min32(acked, pcb->snd_mss));
}

/* ---- NewReno ------------------------------------------------------------ */

static void newreno_init(struct tcp_pcb *pcb)
{
    memset(pcb->cc_state, 0, sizeof(pcb->cc_state));
}

/* RFC 5681 §3.1: slow start below ssthresh; above it congestion avoidance,
 * eq. 3: cwnd += SMSS*SMSS/cwnd per ACK (at least one byte). */
static void newreno_ack(struct tcp_pcb *pcb, uint32_t acked, uint64_t now_ms)
{
    uint64_t inc;

    (void)now_ms;
    if (pcb->cwnd < pcb->ssthresh || pcb->cwnd == 0) {
        cc_slow_start(pcb, acked);
        return;
    }
    inc = (uint64_t)pcb->snd_mss * pcb->snd_mss / pcb->cwnd;
    cc_grow(pcb, inc ? inc : 1);
}

/* RFC 5681 §3.1, eq. 4: ssthresh = max (FlightSize / 2, 2*SMSS); then
 * cwnd = ssthresh for fast retransmit (RFC 5681 §3.2 step 2, RFC 6582
 * §3.2: the caller adds the 3*SMSS inflation) or one segment after a
 * timeout (RFC 5681 §3.1, "LW"). */
static void newreno_congestion(struct tcp_pcb *pcb, enum tcp_cc_event ev, uint64_t now_ms)
{
    uint32_t flight = pcb->snd_max - pcb->snd_una;
    uint32_t floor2 = 2u * pcb->snd_mss;

    (void)now_ms;
    pcb->ssthresh = flight / 2 > floor2 ? flight / 2 : floor2;
    pcb->cwnd = ev == TCP_CC_FAST ? pcb->ssthresh : pcb->snd_mss;
}

/* RFC 6582 §3.2 step 3: a full ACK ends recovery; deflate to ssthresh. */
static void newreno_recovered(struct tcp_pcb *pcb, uint64_t now_ms)
{
    (void)now_ms;
    pcb->cwnd = pcb->ssthresh;
}

const struct tcp_cc_ops tcp_cc_newreno = {
    .name = "newreno",
    .init = newreno_init,
    .ack = newreno_ack,
    .congestion = newreno_congestion,
    .recovered = newreno_recovered,
};

/* ---- CUBIC (RFC 9438) --------------------------------------------------- */

#define CUBIC_C 0.4      /* RFC 9438 §5.1: "C SHOULD be set to 0.4" */
#define CUBIC_BETA 0.7   /* RFC 9438 §4.6: beta_cubic "SHOULD be set to 0.7" */
/* RFC 9438 §4.3: alpha_cubic = 3 * (1 - beta_cubic) / (1 + beta_cubic) */
#define CUBIC_ALPHA (3.0 * (1.0 - CUBIC_BETA) / (1.0 + CUBIC_BETA))

enum {
    CUBIC_EPOCH = 1,       /* a congestion avoidance stage is running */
    CUBIC_AFTER_RTO = 2,   /* the next stage is the first after a timeout */
    CUBIC_RTO_UNACKED = 4, /* a timeout, and no ACK of new data since */
};

/* Per-connection state, in pcb->cc_state. Windows in bytes, as doubles so
 * the cubic curve keeps its fractions. */
struct cubic {
    double w_max;      /* RFC 9438 §4.1.2 W_max; 0: no congestion event yet */
    double k;          /* §4.2 eq. 2: seconds from t_epoch to reach w_max */
    double w_est;      /* §4.3 eq. 4: Reno's window, estimated */
    double cwnd_prior; /* §4.1.2 cwnd_prior: cwnd before the last reduction */
    double frac;       /* growth below one byte, carried to the next ACK */
    uint64_t t_epoch;  /* §4.1.2 t_epoch, ms */
    uint64_t last_ack; /* when the last ACK of new data came, ms */
    uint32_t flags;    /* CUBIC_* */
};

static_assert(sizeof(struct cubic) <= TCP_CC_STATE_SIZE, "CUBIC state must fit in cc_state");

/* The state is copied in and out: cc_state is declared uint64_t[]. */
static void cubic_load(const struct tcp_pcb *pcb, struct cubic *c)
{
    memcpy(c, pcb->cc_state, sizeof(*c));
}

static void cubic_store(struct tcp_pcb *pcb, const struct cubic *c)
{
    memcpy(pcb->cc_state, c, sizeof(*c));
}

static double cubic_mss(const struct tcp_pcb *pcb)
{
    return pcb->snd_mss ? pcb->snd_mss : TCP_CC_DEFAULT_MSS;
}

/* RFC 9438 §4.2 eq. 1, in bytes: W_cubic(t) = C * (t - K)^3 + W_max */
static double cubic_w(const struct cubic *c, double t_s, double mss)
{
    double d = t_s - c->k;

    return c->w_max + CUBIC_C * d * d * d * mss;
}

/* Bytes to a uint32_t cwnd: clamped to [0, TCP_CC_CWND_MAX]. */
static uint32_t cubic_bytes(double b)
{
    if (!(b > 0))
        return 0;
    return b >= TCP_CC_CWND_MAX ? TCP_CC_CWND_MAX : (uint32_t)b;
}

static void cubic_init(struct tcp_pcb *pcb)
{
    memset(pcb->cc_state, 0, sizeof(pcb->cc_state));
}

/* RFC 9438 §4.2: the first ACK in congestion avoidance starts the stage:
 * t_epoch = now, cwnd_epoch = cwnd, K = cbrt((W_max - cwnd_epoch) / C).
 * After a timeout (§4.8), or with no congestion event yet (§4.10, the
 * HyStart++ case), K = 0 and W_max = cwnd_epoch. §4.3: W_est starts at
 * cwnd_epoch. */
static void cubic_epoch_start(struct cubic *c, const struct tcp_pcb *pcb, uint64_t now_ms)
{
    double cwnd = pcb->cwnd;

    if (c->w_max <= 0)
        c->cwnd_prior = cwnd;
    if ((c->flags & CUBIC_AFTER_RTO) || c->w_max <= 0) {
        c->w_max = cwnd;
        c->k = 0;
    } else {
        /* a cwnd_epoch above W_max gives a negative K: the curve is then
         * convex from the start, through W_cubic(0) = cwnd_epoch */
        c->k = cbrt((c->w_max - cwnd) / cubic_mss(pcb) / CUBIC_C);
    }
    c->w_est = cwnd;
    c->t_epoch = now_ms;
    c->frac = 0;
    c->flags = (c->flags | CUBIC_EPOCH) & ~CUBIC_AFTER_RTO;
}

/* RFC 9438 §4.2: target = W_cubic(t + RTT), at least cwnd, at most
 * 1.5 * cwnd; §4.4, §4.5: cwnd grows by (target - cwnd) / cwnd per segment
 * acked, here (target - cwnd) * acked / cwnd bytes, never past target. */
static void cubic_grow(struct cubic *c, struct tcp_pcb *pcb, double cwnd, double acked, double t_s)
{
    double rtt_ms = pcb->srtt_ms8 ? pcb->srtt_ms8 >> 3 : TCP_CC_DEFAULT_RTT_MS;
    double target = cubic_w(c, t_s + rtt_ms / 1000.0, cubic_mss(pcb));
    double inc;

    if (target < cwnd)
        target = cwnd;
    if (target > 1.5 * cwnd)
        target = 1.5 * cwnd;
    c->frac += (target - cwnd) * acked / cwnd;
    if (c->frac > target - cwnd)
        c->frac = target - cwnd;
    inc = floor(c->frac);
    c->frac -= inc;
    cc_grow(pcb, cubic_bytes(inc));
}

/* RFC 9438 §4.10: slow start below ssthresh as Reno does (RFC 5681 §3.1);
 * §4.2-§4.5 above it: the larger of the Reno estimate and the cubic curve. */
static void cubic_ack(struct tcp_pcb *pcb, uint32_t acked, uint64_t now_ms)
{
    struct cubic c;
    double mss = cubic_mss(pcb), cwnd, a, t_s;
    uint64_t idle = pcb->rto_ms ? pcb->rto_ms : TCP_CC_DEFAULT_RTO_MS;

    cubic_load(pcb, &c);
    c.flags &= ~CUBIC_RTO_UNACKED;
    if (pcb->cwnd < pcb->ssthresh || pcb->cwnd == 0) {
        c.flags &= ~CUBIC_EPOCH;
        cc_slow_start(pcb, acked);
        goto out;
    }
    if (!(c.flags & CUBIC_EPOCH))
        cubic_epoch_start(&c, pcb, now_ms);
    else if (now_ms > c.last_ack && now_ms - c.last_ack > idle)
        /* §4.2: t "MUST NOT include periods during which cwnd has not been
         * updated due to application-limited behavior" (§5.8). No ACK for
         * longer than the RTO, yet no timeout (which would have ended the
         * stage): nothing was in flight, or the peer's window was shut. */
        c.t_epoch += now_ms - c.last_ack;
    cwnd = pcb->cwnd;
    a = acked < pcb->cwnd ? acked : cwnd; /* one ACK counts for a window at most */
    t_s = now_ms > c.t_epoch ? (double)(now_ms - c.t_epoch) / 1000.0 : 0;

    /* §4.3 eq. 4: W_est += alpha_cubic * segments_acked / cwnd (segments);
     * alpha_cubic becomes 1 once W_est >= cwnd_prior */
    c.w_est += (c.w_est >= c.cwnd_prior ? 1.0 : CUBIC_ALPHA) * a * mss / cwnd;
    if (c.w_est > TCP_CC_CWND_MAX)
        c.w_est = TCP_CC_CWND_MAX;
    if (cubic_w(&c, t_s, mss) < c.w_est) {
        /* §4.3: the Reno-friendly region: cwnd "SHOULD be set to W_est" */
        uint32_t w = cubic_bytes(c.w_est);
        if (w > pcb->cwnd)
            pcb->cwnd = w;
    } else {
        cubic_grow(&c, pcb, cwnd, a, t_s);
    }
out:
    c.last_ack = now_ms;
    cubic_store(pcb, &c);
}

/* RFC 9438 §4.7 fast convergence, then §4.6 multiplicative decrease:
 * W_max = cwnd * (1 + beta_cubic) / 2 if cwnd < W_max, else cwnd;
 * cwnd_prior = cwnd; ssthresh = max(flight_size * beta_cubic, 2 * SMSS);
 * cwnd = ssthresh. §4.8, a timeout: the same ssthresh, cwnd = one segment
 * as Reno does (RFC 5681 §3.1), and the next stage starts with K = 0. */
static void cubic_congestion(struct tcp_pcb *pcb, enum tcp_cc_event ev, uint64_t now_ms)
{
    struct cubic c;
    uint32_t flight = pcb->snd_max - pcb->snd_una;
    uint64_t ssthresh = (uint64_t)(flight * CUBIC_BETA);
    double cwnd = pcb->cwnd;

    (void)now_ms;
    cubic_load(pcb, &c);
    /* A timeout again, with no ACK since the last one: cwnd is one segment
     * already and was not reduced now, so W_max and cwnd_prior keep
     * describing the window before the first timeout. */
    if (!(ev == TCP_CC_RTO && (c.flags & CUBIC_RTO_UNACKED))) {
        c.w_max = cwnd < c.w_max ? cwnd * (1.0 + CUBIC_BETA) / 2.0 : cwnd;
        c.cwnd_prior = cwnd;
    }
    if (ssthresh < 2u * pcb->snd_mss)
        ssthresh = 2u * pcb->snd_mss;
    if (ssthresh > TCP_CC_CWND_MAX)
        ssthresh = TCP_CC_CWND_MAX;
    pcb->ssthresh = (uint32_t)ssthresh;
    c.flags &= ~(CUBIC_EPOCH | CUBIC_AFTER_RTO | CUBIC_RTO_UNACKED);
    c.frac = 0;
    if (ev == TCP_CC_FAST) {
        pcb->cwnd = pcb->ssthresh;
    } else {
        pcb->cwnd = pcb->snd_mss;
        c.flags |= CUBIC_AFTER_RTO | CUBIC_RTO_UNACKED;
    }
    cubic_store(pcb, &c);
}

/* Recovery is over: congestion avoidance goes on from ssthresh; the stage
 * (and t_epoch) starts at the next ACK. */
static void cubic_recovered(struct tcp_pcb *pcb, uint64_t now_ms)
{
    (void)now_ms;
    pcb->cwnd = pcb->ssthresh;
}

const struct tcp_cc_ops tcp_cc_cubic = {
    .name = "cubic",
    .init = cubic_init,
    .ack = cubic_ack,
    .congestion = cubic_congestion,
    .recovered = cubic_recovered,
};

/* ---- lookup ------------------------------------------------------------- */

static const struct tcp_cc_ops *const tcp_cc_all[] = {
    &tcp_cc_newreno,
    &tcp_cc_cubic,
};

#define TCP_CC_COUNT (sizeof(tcp_cc_all) / sizeof(tcp_cc_all[0]))

const struct tcp_cc_ops *tcp_cc_find(const char *name)
{
    if (name == NULL)
        return NULL;
    if (strcmp(name, "reno") == 0) /* Linux's name for the same thing */
        return &tcp_cc_newreno;
    for (size_t i = 0; i < TCP_CC_COUNT; i++)
        if (strcmp(name, tcp_cc_all[i]->name) == 0)
            return tcp_cc_all[i];
    return NULL;
}

const struct tcp_cc_ops *tcp_cc_default(void)
{
    char name[sizeof(net_config.tcp_cc) + 1]; /* tcp_cc may lack its NUL */
    const struct tcp_cc_ops *cc;

    memcpy(name, net_config.tcp_cc, sizeof(net_config.tcp_cc));
    name[sizeof(net_config.tcp_cc)] = '\0';
    cc = tcp_cc_find(name);
    return cc ? cc : &tcp_cc_newreno;
}

/* Like snprintf: truncated to fit size, NUL-terminated if size > 0. */
void tcp_cc_list(char *buf, size_t size)
{
    size_t off = 0;

    if (size == 0)
        return;
    buf[0] = '\0';
    for (size_t i = 0; i < TCP_CC_COUNT && off < size; i++) {
        int n = snprintf(buf + off, size - off, "%s%s", i ? " " : "", tcp_cc_all[i]->name);
        if (n < 0)
            break;
        off += (size_t)n;
    }
}
