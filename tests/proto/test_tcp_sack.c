/*
 * test_tcp_sack.c — protocol tests of TCP's selective acknowledgments
 * (RFC 2018, loss recovery after RFC 6675), timestamps and PAWS
 * (RFC 7323), and NewReno's partial ACKs (RFC 6582) when SACK is off.
 *
 *   negotiation   both options answered only when the peer's SYN offers
 *                 them and net_config allows; an active open drops what
 *                 the SYN,ACK does not carry
 *   timestamps    TSecr follows the TS.Recent rule (RFC 7323 §4.3), TSval
 *                 follows the clock, RTT samples come from TSecr
 *   PAWS          an old TSval is dropped and acknowledged, a RST is not
 *   receiver      our ACKs carry SACK blocks for what we hold out of order
 *   sender        the scoreboard, IsLost, the pipe, what is resent
 *   timeout       the scoreboard is forgotten (RFC 2018 §8)
 *   bad input     SACK blocks outside the flight, malformed options, a
 *                 scoreboard overflow
 *   NewReno       partial ACKs and the end of recovery without SACK
 *   transfers     100 segments through a lossy peer, end to end
 *
 * The scripted peer is tcp_peer.h's; these tests add to it a peer that
 * sends timestamps and SACK blocks (struct peer below). Segment k of a
 * transfer (k from 1) starts at iss + 1 + (k - 1) * S, S the payload a
 * full segment carries: 1448 with timestamps (1460 less 12 bytes of
 * options), 1460 without.
 *
 * Three tests were written to fail before the stack was fixed, and each
 * comment says what the bug was:
 *   test_sack_receiver_repeats_recent_blocks       RFC 2018 §4
 *   test_sack_cumulative_ack_with_sack_is_dupack   RFC 6675 §5
 *   test_newreno_retransmit_within_flight          never-sent bytes resent
 *
 * NETSTEP_LOG=tcp=debug,cc=debug shows what the stack does.
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
#include "util/log.h"

#define PORT 7200

static uint8_t data[1 << 18];

/* ---- options in what the stack sent ---------------------------------------------------------------- */

struct blk {
    uint32_t start, end;
};

/* The offset of option kind in s (its kind byte), or -1. */
static int opt_find(const struct tp_seg *s, uint8_t kind)
{
    for (size_t i = 0; i < s->optlen;) {
        uint8_t k = s->opt[i];
        if (k == TCP_OPT_EOL)
            break;
        if (k == TCP_OPT_NOP) {
            i++;
            continue;
        }
        if (k == kind)
            return (int)i;
        i += s->opt[i + 1]; /* tp_take checked that every length is sane */
    }
    return -1;
}

static int seg_ts(const struct tp_seg *s, uint32_t *val, uint32_t *ecr)
{
    int at = opt_find(s, TCP_OPT_TIMESTAMP);

    if (at < 0)
        return 0;
    assert_int_equal(s->opt[at + 1], 10);
    if (val)
        *val = load32(s->opt + at + 2);
    if (ecr)
        *ecr = load32(s->opt + at + 6);
    return 1;
}

/* The SACK blocks s carries (0 if no SACK option), into b[4] (if b). */
static int seg_sack(const struct tp_seg *s, struct blk *b)
{
    int at = opt_find(s, TCP_OPT_SACK), n;

    if (at < 0)
        return 0;
    assert_true(s->opt[at + 1] >= 10 && (s->opt[at + 1] - 2) % 8 == 0);
    n = (s->opt[at + 1] - 2) / 8;
    assert_true(n <= 4);
    for (int i = 0; b && i < n; i++) {
        b[i].start = load32(s->opt + at + 2 + 8 * i);
        b[i].end = load32(s->opt + at + 6 + 8 * i);
    }
    return n;
}

static uint8_t seg_wscale(const struct tp_seg *s, int *has)
{
    int at = opt_find(s, TCP_OPT_WSCALE);

    *has = at >= 0;
    return at >= 0 ? s->opt[at + 2] : 0;
}

/* A counter that may not exist (yet): 0 then. */
static int64_t counter_or0(const char *dotted)
{
    int64_t v = stats_lookup(dotted);

    return v < 0 ? 0 : v;
}

/* ---- the pcb table ----------------------------------------------------------------------------------------- */

/* A numeric field ("cwnd", "ssthresh", "srtt", "rto") of c's line in
 * tcp_pcb_format's table. */
static unsigned long pcb_field(const struct tp_conn *c, const char *name)
{
    static char buf[1 << 16];
    char key[32];
    char *line = buf;

    snprintf(key, sizeof(key), " %s=", name);
    tcp_pcb_format(buf, sizeof(buf));
    while (line && *line) {
        char st[16], la[32], ra[32], *nl = strchr(line, '\n'), *p;
        unsigned lp, rp;
        if (sscanf(line, "tcp %15s %31[^:]:%u %31[^:]:%u", st, la, &lp, ra, &rp) == 5 && lp == c->lport &&
            rp == c->pport && strcmp(st, "CLOSED") != 0 && strcmp(st, "LISTEN") != 0 && (p = strstr(line, key)) &&
            (!nl || p < nl))
            return strtoul(p + strlen(key), NULL, 10);
        line = nl ? nl + 1 : NULL;
    }
    fail_msg("no line with %s for port %u in the pcb table:\n%s", key, c->lport, buf);
    return 0;
}

/* ---- a peer that speaks timestamps and SACK ---------------------------------------------------------------- */

struct peer {
    struct tp_conn c;
    int ts;          /* the peer puts a timestamps option on every segment */
    uint32_t tsval;  /* its clock: the TSval of its next segment */
    uint32_t echo;   /* the latest TSval we sent: its TSecr */
};

/* NOP NOP TS(10) if ts, then NOP NOP SACK with n blocks. */
static size_t peer_opts(uint8_t *o, int ts, uint32_t tsval, uint32_t tsecr, const struct blk *b, int n)
{
    size_t len = 0;

    if (ts) {
        o[len++] = TCP_OPT_NOP;
        o[len++] = TCP_OPT_NOP;
        o[len++] = TCP_OPT_TIMESTAMP;
        o[len++] = 10;
        store32(o + len, tsval);
        store32(o + len + 4, tsecr);
        len += 8;
    }
    if (n > 0) {
        o[len++] = TCP_OPT_NOP;
        o[len++] = TCP_OPT_NOP;
        o[len++] = TCP_OPT_SACK;
        o[len++] = (uint8_t)(2 + 8 * n);
        for (int i = 0; i < n; i++) {
            store32(o + len, b[i].start);
            store32(o + len + 4, b[i].end);
            len += 8;
        }
    }
    assert_true(len <= 40);
    return len;
}

/* The peer sends flg and data at seq, acknowledging p->c.pack, with its
 * timestamp (if agreed) and the SACK blocks b[0..n). Its clock ticks. */
static void peer_send_at(struct peer *p, uint32_t seq, uint8_t flg, const struct blk *b, int n, const void *d,
                         size_t dlen)
{
    uint8_t opt[40];
    size_t olen = peer_opts(opt, p->ts, p->tsval, p->echo, b, n);

    tp_inject(p->c.pport, p->c.lport, seq, p->c.pack, flg, p->c.pwnd, opt, olen, d, dlen);
    p->tsval++;
}

/* An ACK of ack (with SACK blocks) at the peer's next sequence number. */
static void peer_ack(struct peer *p, uint32_t ack, const struct blk *b, int n)
{
    p->c.pack = ack;
    peer_send_at(p, p->c.pseq, ACK, b, n, NULL, 0);
}

/* The next segment we sent; the peer notes our TSval for its TSecr. */
static int peer_take(struct peer *p, struct tp_seg *s)
{
    uint32_t v;

    if (!tp_take(s))
        return 0;
    if (seg_ts(s, &v, NULL))
        p->echo = v;
    return 1;
}

static void peer_expect(struct peer *p, struct tp_seg *s, uint8_t flg)
{
    if (!peer_take(p, s))
        fail_msg("expected a segment with flags 0x%02x, the stack sent nothing", flg);
    if ((s->flg & (uint8_t)~PSH) != flg)
        fail_msg("expected flags 0x%02x, got 0x%02x (seq %u ack %u len %zu)", flg, s->flg, s->seq, s->ack, s->dlen);
}

/* A SYN's options: MSS 1460, then what is offered. With all three, the
 * 20 bytes Linux sends (MSS, SACK-permitted, TS, NOP, WS). */
static size_t syn_opts(uint8_t *o, int sack, int ts, int ws, uint32_t tsval, uint32_t tsecr)
{
    size_t n = tp_opt_mss(o, 1460);

    if (sack && ts) {
        o[n++] = TCP_OPT_SACK_PERM;
        o[n++] = 2;
    } else if (sack) {
        o[n++] = TCP_OPT_NOP;
        o[n++] = TCP_OPT_NOP;
        o[n++] = TCP_OPT_SACK_PERM;
        o[n++] = 2;
    } else if (ts) {
        o[n++] = TCP_OPT_NOP;
        o[n++] = TCP_OPT_NOP;
    }
    if (ts) {
        o[n++] = TCP_OPT_TIMESTAMP;
        o[n++] = 10;
        store32(o + n, tsval);
        store32(o + n + 4, tsecr);
        n += 8;
    }
    if (ws) { /* shift 0: windows keep their face value */
        o[n++] = TCP_OPT_NOP;
        o[n++] = TCP_OPT_WSCALE;
        o[n++] = 3;
        o[n++] = 0;
    }
    assert_true(n % 4 == 0);
    return n;
}

/* Passive open on the listener lsd (port lport): the peer's SYN offers
 * sack/ts/ws; its TSval starts at tsval. The SYN,ACK goes to *sa. */
static void peer_open(struct peer *p, int lsd, uint16_t lport, uint16_t pport, uint32_t pisn, int sack, int ts,
                      int ws, uint32_t tsval, struct tp_seg *sa)
{
    uint8_t opt[40];
    struct tp_seg dummy;
    uint32_t v;

    if (!sa)
        sa = &dummy;
    memset(p, 0, sizeof(*p));
    p->c.sd = -1;
    p->c.lport = lport;
    p->c.pport = pport;
    p->c.irs = pisn;
    p->c.pwnd = 65535;
    p->tsval = tsval;
    tp_inject(pport, lport, pisn, 0, SYN, p->c.pwnd, opt, syn_opts(opt, sack, ts, ws, tsval, 0), NULL, 0);
    p->tsval++;
    tp_expect(sa, SYN | ACK);
    assert_int_equal(sa->ack, pisn + 1);
    p->c.iss = sa->seq;
    p->c.pseq = pisn + 1;
    p->c.pack = p->c.iss + 1;
    /* the peer keeps its timestamps on only if we answered them */
    p->ts = ts && seg_ts(sa, &v, NULL);
    if (p->ts)
        p->echo = v;
    peer_send_at(p, p->c.pseq, ACK, NULL, 0, NULL, 0);
    tp_expect_none();
    p->c.sd = sock_accept(lsd, NULL, NULL);
    assert_true(p->c.sd >= 0);
    tp_track(p->c.sd);
    assert_state(&p->c, "ESTABLISHED");
}

/* Segment k (from 1) of a transfer of segments of S bytes. */
static uint32_t segk(const struct peer *p, unsigned k, uint32_t S)
{
    return p->c.iss + 1 + (k - 1) * S;
}

/* ---- 1. negotiation ------------------------------------------------------------------------------------------ */

/* RFC 2018 §2, RFC 7323 §3.2, §2.2: a SYN offering SACK-permitted,
 * timestamps and window scale gets all three back, TSecr = the SYN's TSval;
 * later segments carry the timestamps option (NOP NOP TS). */
static void test_negotiate_passive_all(void **state)
{
    int lsd = tp_listen(PORT, 8, 0);
    struct peer p;
    struct tp_seg sa, s;
    uint32_t val, ecr;
    int has;

    (void)state;
    peer_open(&p, lsd, PORT, 40001, 1000, 1, 1, 1, 0x11223344u, &sa);
    assert_int_equal(sa.mss, 1460);
    assert_int_equal(sa.optlen, 20); /* MSS, SACK-permitted, TS, NOP, WS */
    assert_int_equal(sa.opt[4], TCP_OPT_SACK_PERM);
    assert_int_equal(sa.opt[5], 2);
    assert_int_equal(sa.opt[6], TCP_OPT_TIMESTAMP);
    assert_true(seg_ts(&sa, &val, &ecr));
    assert_int_equal(ecr, 0x11223344u);
    assert_int_equal(sa.opt[16], TCP_OPT_NOP);
    seg_wscale(&sa, &has);
    assert_true(has);
    /* data both ways: every segment of ours carries NOP NOP TS first */
    peer_send_at(&p, p.c.pseq, ACK | PSH, NULL, 0, "hello", 5);
    p.c.pseq += 5;
    tp_read_exact(p.c.sd, (const uint8_t *)"hello", 5);
    test_advance(net_config.tcp_delack_ms);
    peer_expect(&p, &s, ACK);
    assert_int_equal(s.ack, p.c.pseq);
    assert_int_equal(s.optlen, 12);
    assert_memory_equal(s.opt, "\x01\x01\x08\x0a", 4);
    assert_true(seg_ts(&s, NULL, &ecr));
    assert_int_equal(ecr, 0x11223344u + 2); /* the data segment's TSval */
    tp_fill(data, 2896, 1);
    assert_int_equal(sock_send(p.c.sd, data, 2896, 0), 2896);
    for (int i = 0; i < 2; i++) {
        peer_expect(&p, &s, ACK);
        assert_int_equal(s.dlen, 1448); /* 1460 less the 12 option bytes */
        assert_int_equal(s.optlen, 12);
        assert_true(seg_ts(&s, NULL, &ecr));
        assert_int_equal(ecr, 0x11223344u + 2);
        assert_int_equal(seg_sack(&s, NULL), 0);
    }
    peer_ack(&p, p.c.pack + 2896, NULL, 0);
    /* the FIN too */
    assert_int_equal(sock_shutdown(p.c.sd, SHUT_WR), 0);
    peer_expect(&p, &s, FIN | ACK);
    assert_true(seg_ts(&s, &val, &ecr));
    assert_int_equal(ecr, 0x11223344u + 3); /* the ACK's TSval */
    tp_finish();
}

/* A SYN without SACK-permitted, timestamps or window scale: the SYN,ACK
 * carries the MSS option only, and no segment after it a timestamp. */
static void test_negotiate_passive_none(void **state)
{
    int lsd = tp_listen(PORT, 8, 0);
    struct peer p;
    struct tp_seg sa, s;
    size_t n = 0;

    (void)state;
    peer_open(&p, lsd, PORT, 40002, 1000, 0, 0, 0, 0, &sa);
    assert_int_equal(sa.optlen, 4);
    assert_int_equal(sa.mss, 1460);
    peer_send_at(&p, p.c.pseq, ACK | PSH, NULL, 0, "hello", 5);
    p.c.pseq += 5;
    test_advance(net_config.tcp_delack_ms);
    peer_expect(&p, &s, ACK);
    assert_int_equal(s.optlen, 0);
    tp_fill(data, 3000, 2);
    assert_int_equal(sock_send(p.c.sd, data, 3000, 0), 3000);
    while (peer_take(&p, &s)) {
        assert_int_equal(s.optlen, 0);
        assert_int_equal(s.dlen, 1460);
        n++;
    }
    assert_int_equal(n, 2);
    /* an out-of-order segment: a plain duplicate ACK, no SACK option */
    peer_send_at(&p, p.c.pseq + 100, ACK, NULL, 0, "late", 4);
    peer_expect(&p, &s, ACK);
    assert_int_equal(s.ack, p.c.pseq);
    assert_int_equal(s.optlen, 0);
    tp_finish();
}

/* One option without the others: each answered alone, in a layout that
 * keeps 4-byte alignment. */
static void test_negotiate_passive_one_each(void **state)
{
    int lsd = tp_listen(PORT, 8, 0);
    struct peer p, q, r;
    struct tp_seg sa, s;
    uint32_t ecr;
    int has;

    (void)state;
    /* SACK-permitted only (and window scale): no timestamps anywhere */
    peer_open(&p, lsd, PORT, 40003, 1000, 1, 0, 1, 0, &sa);
    assert_true(opt_find(&sa, TCP_OPT_SACK_PERM) >= 0);
    assert_false(seg_ts(&sa, NULL, NULL));
    seg_wscale(&sa, &has);
    assert_true(has);
    assert_int_equal(sa.optlen, 12);
    tp_fill(data, 2000, 3);
    assert_int_equal(sock_send(p.c.sd, data, 1460, 0), 1460);
    peer_expect(&p, &s, ACK);
    assert_int_equal(s.optlen, 0);
    assert_int_equal(s.dlen, 1460);
    /* ... but SACK blocks when we hold data out of order */
    peer_send_at(&p, p.c.pseq + 100, ACK, NULL, 0, "late", 4);
    peer_expect(&p, &s, ACK);
    {
        struct blk b[4];
        assert_int_equal(seg_sack(&s, b), 1);
        assert_int_equal(b[0].start, p.c.pseq + 100);
        assert_int_equal(b[0].end, p.c.pseq + 104);
    }
    /* timestamps only (no window scale): none answered but those */
    peer_open(&q, lsd, PORT, 40004, 1000, 0, 1, 0, 777, &sa);
    assert_int_equal(opt_find(&sa, TCP_OPT_SACK_PERM), -1);
    assert_true(seg_ts(&sa, NULL, &ecr));
    assert_int_equal(ecr, 777);
    seg_wscale(&sa, &has);
    assert_false(has); /* RFC 7323 §2.2: only in answer to one */
    assert_int_equal(sa.optlen, 16);
    peer_send_at(&q, q.c.pseq + 100, ACK, NULL, 0, "late", 4);
    peer_expect(&q, &s, ACK);
    assert_int_equal(s.optlen, 12); /* a timestamp, no SACK */
    assert_int_equal(seg_sack(&s, NULL), 0);
    /* window scale only */
    peer_open(&r, lsd, PORT, 40005, 1000, 0, 0, 1, 0, &sa);
    assert_int_equal(sa.optlen, 8);
    seg_wscale(&sa, &has);
    assert_true(has);
    tp_finish();
}

/* Active open: the SYN offers all three; a SYN,ACK without SACK and
 * timestamps turns them off, one with them keeps them on. */
static void test_negotiate_active(void **state)
{
    struct tp_conn c;
    struct tp_seg syn, s;
    uint8_t opt[40];
    uint32_t val, ecr;
    int has;

    (void)state;
    /* the SYN,ACK carries MSS only */
    tp_connect_start(&c, 80, 0, &syn);
    assert_int_equal(syn.optlen, 20);
    assert_int_equal(syn.opt[4], TCP_OPT_SACK_PERM);
    assert_true(seg_ts(&syn, &val, &ecr));
    assert_int_equal(ecr, 0); /* RFC 7323 §3.2: no TSecr in a SYN */
    seg_wscale(&syn, &has);
    assert_true(has);
    tp_inject(80, c.lport, 5000, c.iss + 1, SYN | ACK, 65535, opt, tp_opt_mss(opt, 1460), NULL, 0);
    tp_expect(&s, ACK);
    assert_int_equal(s.optlen, 0);
    c.pseq = 5001;
    c.pack = c.iss + 1;
    tp_fill(data, 3000, 4);
    assert_int_equal(sock_send(c.sd, data, 3000, 0), 3000);
    tp_expect(&s, ACK);
    assert_int_equal(s.optlen, 0);
    assert_int_equal(s.dlen, 1460);
    tp_inject(80, c.lport, 5000 + 1 + 100, c.pack, ACK, 65535, NULL, 0, "ooo", 3);
    tp_expect(&s, ACK); /* the rest of the data: Nagle, or a dup ACK */
    while (s.dlen > 0)
        tp_expect(&s, ACK);
    assert_int_equal(s.optlen, 0); /* no SACK blocks: not agreed */

    /* the SYN,ACK answers SACK and timestamps (not window scale) */
    {
        struct tp_conn d;
        uint8_t o[40];
        tp_connect_start(&d, 81, 0, &syn);
        assert_true(seg_ts(&syn, &val, NULL));
        tp_inject(81, d.lport, 9000, d.iss + 1, SYN | ACK, 65535, o, syn_opts(o, 1, 1, 0, 4242, val), NULL, 0);
        tp_expect(&s, ACK);
        assert_int_equal(s.ack, 9001);
        assert_int_equal(s.optlen, 12);
        assert_true(seg_ts(&s, NULL, &ecr));
        assert_int_equal(ecr, 4242);
        /* out of order: a SACK block after the timestamp */
        tp_inject(81, d.lport, 9001 + 50, d.iss + 1, ACK, 65535, o, peer_opts(o, 1, 4243, val, NULL, 0), "ooo", 3);
        tp_expect(&s, ACK);
        assert_int_equal(s.ack, 9001);
        {
            struct blk b[4];
            assert_int_equal(seg_sack(&s, b), 1);
            assert_int_equal(b[0].start, 9051);
            assert_int_equal(b[0].end, 9054);
            assert_int_equal(s.optlen, 24);
            assert_memory_equal(s.opt + 12, "\x01\x01\x05\x0a", 4);
        }
    }
    tp_finish();
}

/* net_config.tcp_sack = 0, tcp_timestamps = 0: nothing offered, nothing
 * answered. (tp_teardown restores net_config; the test after this one
 * checks that it did.) */
static void test_negotiate_disabled(void **state)
{
    int lsd = tp_listen(PORT, 8, 0);
    struct peer p;
    struct tp_conn c;
    struct tp_seg sa, syn, s;
    uint8_t opt[40];
    int has;

    (void)state;
    net_config.tcp_sack = 0;
    net_config.tcp_timestamps = 0;
    peer_open(&p, lsd, PORT, 40010, 1000, 1, 1, 1, 100, &sa);
    assert_int_equal(opt_find(&sa, TCP_OPT_SACK_PERM), -1);
    assert_false(seg_ts(&sa, NULL, NULL));
    seg_wscale(&sa, &has);
    assert_true(has);
    assert_int_equal(sa.optlen, 8);
    /* out of order, from a peer that still sends timestamps: no SACK */
    p.ts = 1;
    peer_send_at(&p, p.c.pseq + 100, ACK, NULL, 0, "late", 4);
    peer_expect(&p, &s, ACK);
    assert_int_equal(s.optlen, 0);

    tp_connect_start(&c, 80, 0, &syn);
    assert_int_equal(opt_find(&syn, TCP_OPT_SACK_PERM), -1);
    assert_false(seg_ts(&syn, NULL, NULL));
    assert_int_equal(syn.optlen, 8); /* MSS, NOP, WS */
    /* a SYN,ACK offering them anyway: still off */
    tp_inject(80, c.lport, 5000, c.iss + 1, SYN | ACK, 65535, opt, syn_opts(opt, 1, 1, 0, 1, 0), NULL, 0);
    tp_expect(&s, ACK);
    assert_int_equal(s.optlen, 0);

    /* SACK off, timestamps on: the SYN has MSS, NOP NOP TS, NOP WS */
    net_config.tcp_timestamps = 1;
    {
        struct tp_conn d;
        tp_connect_start(&d, 81, 0, &syn);
        assert_int_equal(opt_find(&syn, TCP_OPT_SACK_PERM), -1);
        assert_true(seg_ts(&syn, NULL, NULL));
        assert_int_equal(syn.optlen, 20);
    }
    tp_finish();
}

/* tp_teardown put net_config back after the test above. */
static void test_config_restored(void **state)
{
    struct tp_conn c;
    struct tp_seg syn;

    (void)state;
    assert_int_equal(net_config.tcp_sack, 1);
    assert_int_equal(net_config.tcp_timestamps, 1);
    tp_connect_start(&c, 80, 0, &syn);
    assert_true(opt_find(&syn, TCP_OPT_SACK_PERM) >= 0);
    assert_true(seg_ts(&syn, NULL, NULL));
    tp_finish();
}

/* ---- 2. timestamps ---------------------------------------------------------------------------------------------- */

/* RFC 7323 §4.3: TS.Recent takes the TSval of a segment at or before
 * Last.ACK.sent only. Delayed ACK: the earliest unacknowledged segment's
 * TSval is echoed; ahead of a hole: still that one's; the segment that
 * fills the hole: its own. */
static void test_ts_recent_rules(void **state)
{
    int lsd = tp_listen(PORT, 8, 0);
    struct peer p;
    struct tp_seg s;
    uint32_t base, ecr, v1, v2;

    (void)state;
    peer_open(&p, lsd, PORT, 40020, 1000, 1, 1, 0, 500, NULL);
    base = p.c.pseq;
    tp_fill(data, 6000, 5);
    p.tsval = 1000;
    peer_send_at(&p, base, ACK, NULL, 0, data, 1000); /* TSval 1000 */
    tp_expect_none();                                 /* delayed */
    peer_send_at(&p, base + 1000, ACK, NULL, 0, data + 1000, 1000); /* TSval 1001: second segment, ACK now */
    peer_expect(&p, &s, ACK);
    assert_int_equal(s.ack, base + 2000);
    assert_true(seg_ts(&s, NULL, &ecr));
    assert_int_equal(ecr, 1000);
    /* [3000,4000) ahead of a hole, TSval 1002: not taken (3000 is past
     * Last.ACK.sent); the echo stays 1000 */
    peer_send_at(&p, base + 3000, ACK, NULL, 0, data + 3000, 1000);
    peer_expect(&p, &s, ACK);
    assert_int_equal(s.ack, base + 2000);
    assert_true(seg_ts(&s, &v1, &ecr));
    assert_int_equal(ecr, 1000);
    /* the hole is filled by TSval 1003: echoed */
    test_advance(250);
    peer_send_at(&p, base + 2000, ACK, NULL, 0, data + 2000, 1000);
    peer_expect(&p, &s, ACK);
    assert_int_equal(s.ack, base + 4000);
    assert_true(seg_ts(&s, &v2, &ecr));
    assert_int_equal(ecr, 1003);
    /* our TSval is a 1 ms clock (RFC 7323 §5.4): 250 ms later, 250 more */
    assert_int_equal(v2 - v1, 250);
    /* again: ahead of a hole (TSval 1004), then the hole (TSval 1005) */
    peer_send_at(&p, base + 5000, ACK, NULL, 0, data + 5000, 1000);
    peer_expect(&p, &s, ACK);
    assert_true(seg_ts(&s, NULL, &ecr));
    assert_int_equal(ecr, 1003);
    peer_send_at(&p, base + 4000, ACK, NULL, 0, data + 4000, 1000);
    peer_expect(&p, &s, ACK);
    assert_int_equal(s.ack, base + 6000);
    assert_true(seg_ts(&s, NULL, &ecr));
    assert_int_equal(ecr, 1005);
    /* a delayed ACK echoes the one segment it acknowledges */
    p.c.pseq = base + 6000;
    p.tsval = 2000;
    peer_send_at(&p, p.c.pseq, ACK | PSH, NULL, 0, "abc", 3);
    p.c.pseq += 3;
    tp_expect_none();
    test_advance(net_config.tcp_delack_ms);
    peer_expect(&p, &s, ACK);
    assert_int_equal(s.ack, p.c.pseq);
    assert_true(seg_ts(&s, &v1, &ecr));
    assert_int_equal(ecr, 2000);
    assert_int_equal(v1 - v2, net_config.tcp_delack_ms); /* sent when the timer fired */
    tp_read_exact(p.c.sd, data, 6000);
    tp_read_exact(p.c.sd, (const uint8_t *)"abc", 3);
    tp_finish();
}

/* RFC 7323 §4.1: the echoed TSval times the ACK of new data; a
 * retransmission too (no Karn ambiguity), a duplicate ACK not. */
static void test_ts_rtt_sample(void **state)
{
    int lsd = tp_listen(PORT, 8, 0);
    struct peer p;
    struct tp_seg s;
    uint32_t v1, v2;
    long t;

    (void)state;
    peer_open(&p, lsd, PORT, 40030, 1000, 0, 1, 0, 100, NULL); /* no SACK: no tail loss probe */
    assert_int_equal(pcb_field(&p.c, "srtt"), 0); /* a passive open measures nothing */
    tp_fill(data, 200, 6);
    assert_int_equal(sock_send(p.c.sd, data, 100, 0), 100);
    peer_expect(&p, &s, ACK);
    assert_true(seg_ts(&s, &v1, NULL));
    test_advance(150);
    peer_ack(&p, p.c.pack + 100, NULL, 0); /* TSecr = v1, 150 ms on */
    assert_int_equal(tp_counter("tcp.rtt_ts_samples"), 1);
    assert_int_equal(pcb_field(&p.c, "srtt"), 150);
    assert_int_equal(pcb_field(&p.c, "rto"), 150 + 4 * 75); /* RFC 6298 §2.2 */
    /* an ACK of nothing new: no sample */
    test_advance(100);
    peer_ack(&p, p.c.pack, NULL, 0);
    assert_int_equal(tp_counter("tcp.rtt_ts_samples"), 1);
    /* lost once, resent after the RTO (450 ms), acked 30 ms after the
     * resend: the echo is the resend's TSval, so R = 30 */
    assert_int_equal(sock_send(p.c.sd, data + 100, 100, 0), 100);
    peer_expect(&p, &s, ACK);
    assert_true(seg_ts(&s, &v1, NULL));
    t = tp_wait_send(5000);
    peer_expect(&p, &s, ACK);
    assert_int_equal(t, 450);
    assert_int_equal(s.seq, p.c.pack);
    assert_true(seg_ts(&s, &v2, NULL));
    assert_int_equal(v2 - v1, 450);
    test_advance(30);
    peer_ack(&p, p.c.pack + 100, NULL, 0);
    assert_int_equal(tp_counter("tcp.rtt_ts_samples"), 2);
    /* RFC 6298 §2.3: SRTT = 7/8 150 + 1/8 30 = 135; RTTVAR = 3/4 75 + 1/4
     * 120 = 86.25; RTO = SRTT + 4 RTTVAR */
    assert_int_equal(pcb_field(&p.c, "srtt"), 135);
    assert_int_equal(pcb_field(&p.c, "rto"), 135 + 345);
    tp_finish();
}

/* ---- 3. PAWS ----------------------------------------------------------------------------------------------------- */

/* RFC 7323 §5.3 R1: a segment whose TSval is older than TS.Recent is not
 * acceptable: acknowledged and dropped, its data and its ACK unused. A
 * newer TSval is accepted; the comparison is modulo 2^32. */
static void test_paws_drops_old(void **state)
{
    int lsd = tp_listen(PORT, 8, 0);
    struct peer p;
    struct tp_seg s;
    uint32_t ecr;
    char b[8];

    (void)state;
    peer_open(&p, lsd, PORT, 40040, 1000, 1, 1, 0, 5000, NULL);
    p.tsval = 6000;
    peer_send_at(&p, p.c.pseq, ACK | PSH, NULL, 0, "new", 3);
    p.c.pseq += 3;
    tp_read_exact(p.c.sd, (const uint8_t *)"new", 3);
    test_advance(net_config.tcp_delack_ms);
    peer_expect(&p, &s, ACK);
    assert_true(seg_ts(&s, NULL, &ecr));
    assert_int_equal(ecr, 6000);
    /* TSval 5999 < TS.Recent 6000: ACK at once, nothing taken */
    p.tsval = 5999;
    peer_send_at(&p, p.c.pseq, ACK | PSH, NULL, 0, "old", 3);
    peer_expect(&p, &s, ACK);
    assert_int_equal(s.ack, p.c.pseq);
    assert_true(seg_ts(&s, NULL, &ecr));
    assert_int_equal(ecr, 6000);
    expect_errno(sock_recv(p.c.sd, b, sizeof(b), MSG_DONTWAIT), EAGAIN);
    assert_int_equal(tp_counter("tcp.in_paws_dropped"), 1);
    test_advance(1000);
    tp_expect_none();
    /* the same bytes with TSval 6001: taken */
    p.tsval = 6001;
    peer_send_at(&p, p.c.pseq, ACK | PSH, NULL, 0, "old", 3);
    p.c.pseq += 3;
    tp_read_exact(p.c.sd, (const uint8_t *)"old", 3);
    test_advance(net_config.tcp_delack_ms);
    peer_expect(&p, &s, ACK);
    assert_int_equal(s.ack, p.c.pseq);
    assert_true(seg_ts(&s, NULL, &ecr));
    assert_int_equal(ecr, 6001);
    /* an old ACK of our data is dropped with its acknowledgment: the data
     * is still resent when the timer says */
    assert_int_equal(sock_send(p.c.sd, "data", 4, 0), 4);
    peer_expect(&p, &s, ACK);
    p.tsval = 6000;
    peer_ack(&p, p.c.pack + 4, NULL, 0);
    peer_expect(&p, &s, ACK); /* the PAWS answer */
    assert_int_equal(s.dlen, 0);
    assert_int_equal(tp_counter("tcp.in_paws_dropped"), 2);
    assert_true(tp_wait_send(3000) > 0);
    peer_expect(&p, &s, ACK);
    assert_int_equal(s.seq, p.c.iss + 1);
    assert_int_equal(s.dlen, 4);
    p.tsval = 6002;
    peer_ack(&p, p.c.pack, NULL, 0);
    test_advance(5000);
    tp_expect_none();
    tp_finish();
}

/* TSvals compare modulo 2^32 (RFC 7323 §5.3): past 0xffffffff is newer. */
static void test_paws_wraparound(void **state)
{
    int lsd = tp_listen(PORT, 8, 0);
    struct peer p;
    struct tp_seg s;
    uint32_t ecr;
    char b[8];

    (void)state;
    peer_open(&p, lsd, PORT, 40041, 1000, 1, 1, 0, 0xfffffff0u, NULL);
    p.tsval = 5; /* 21 ticks after 0xfffffff0 */
    peer_send_at(&p, p.c.pseq, ACK | PSH, NULL, 0, "wrap", 4);
    p.c.pseq += 4;
    tp_read_exact(p.c.sd, (const uint8_t *)"wrap", 4);
    test_advance(net_config.tcp_delack_ms);
    peer_expect(&p, &s, ACK);
    assert_true(seg_ts(&s, NULL, &ecr));
    assert_int_equal(ecr, 5);
    assert_int_equal(tp_counter("tcp.in_paws_dropped"), 0);
    p.tsval = 0xfffffff8u; /* before 5, modulo 2^32 */
    peer_send_at(&p, p.c.pseq, ACK | PSH, NULL, 0, "old", 3);
    peer_expect(&p, &s, ACK);
    assert_int_equal(s.ack, p.c.pseq);
    expect_errno(sock_recv(p.c.sd, b, sizeof(b), MSG_DONTWAIT), EAGAIN);
    assert_int_equal(tp_counter("tcp.in_paws_dropped"), 1);
    tp_finish();
}

/* RFC 7323 §5.3 R1 "and if the RST bit is not set": a RST with an old
 * TSval still resets. */
static void test_paws_spares_rst(void **state)
{
    int lsd = tp_listen(PORT, 8, 0);
    struct peer p;
    char b[8];

    (void)state;
    peer_open(&p, lsd, PORT, 40042, 1000, 1, 1, 0, 5000, NULL);
    p.tsval = 6000;
    peer_send_at(&p, p.c.pseq, ACK | PSH, NULL, 0, "x", 1);
    p.c.pseq += 1;
    test_advance(net_config.tcp_delack_ms);
    test_flush();
    p.tsval = 10; /* far older */
    peer_send_at(&p, p.c.pseq, RST, NULL, 0, NULL, 0);
    assert_int_equal(tp_counter("tcp.in_paws_dropped"), 0);
    assert_int_equal(tp_counter("tcp.in_rsts"), 1);
    assert_state(&p.c, "");
    tp_read_exact(p.c.sd, (const uint8_t *)"x", 1);
    expect_errno(sock_recv(p.c.sd, b, sizeof(b), MSG_DONTWAIT), ECONNRESET);
    tp_finish();
}

/* ---- 4. SACK as receiver ------------------------------------------------------------------------------------------ */

/* Is [start, end) exactly one of the ranges in want[0..n)? */
static int blk_in(const struct blk *want, int n, struct blk b)
{
    for (int i = 0; i < n; i++)
        if (want[i].start == b.start && want[i].end == b.end)
            return 1;
    return 0;
}

/* The ACK s must carry ack and SACK blocks: first exactly `first`, the
 * rest (nwant in all, or max) each one of held[0..nheld), no repeats. */
static void expect_blocks(const struct tp_seg *s, uint32_t ack, const struct blk *first, const struct blk *held,
                          int nheld, int nwant)
{
    struct blk b[4];
    int n = seg_sack(s, b);

    assert_int_equal(s->ack, ack);
    if (n != nwant)
        fail_msg("ACK %u: %d SACK blocks, want %d", s->ack, n, nwant);
    if (first && (b[0].start != first->start || b[0].end != first->end))
        fail_msg("first SACK block %u-%u, want %u-%u (the latest arrival)", b[0].start, b[0].end, first->start,
                 first->end);
    for (int i = 0; i < n; i++) {
        if (!blk_in(held, nheld, b[i]))
            fail_msg("SACK block %d: %u-%u is not a range we hold", i, b[i].start, b[i].end);
        for (int j = 0; j < i; j++)
            if (b[j].start == b[i].start)
                fail_msg("SACK block %u-%u reported twice", b[i].start, b[i].end);
    }
}

/* RFC 2883 §4: data we already have, sent again, is reported once as
 * the first SACK block of the next ACK (a D-SACK): wholly old, partly
 * old, or a copy of a range held out of order (then that range follows
 * it); never without SACK agreed. */
/* The peer sends [B+a, B+a+len); the ACK that comes at once must say ack
 * and carry exactly the blocks want[0..n) (offsets from B). */
static void dsack_step(struct peer *p, uint32_t B, uint32_t a, uint32_t len, uint32_t ack,
                       const uint32_t (*want)[2], int n)
{
    struct tp_seg s;
    struct blk b[4];

    peer_send_at(p, B + a, ACK, NULL, 0, data + a, len);
    peer_expect(p, &s, ACK);
    assert_int_equal(s.ack, B + ack);
    assert_int_equal(seg_sack(&s, b), n);
    for (int i = 0; i < n; i++) {
        assert_int_equal(b[i].start, B + want[i][0]);
        assert_int_equal(b[i].end, B + want[i][1]);
    }
}

static void test_dsack_reports_duplicates(void **state)
{
    int lsd = tp_listen(PORT, 8, 0);
    struct peer p, q;
    struct tp_seg s;
    uint32_t B;

    (void)state;
    peer_open(&p, lsd, PORT, 40060, 1000, 1, 0, 0, 100, NULL);
    B = p.c.pseq;
    tp_fill(data, 8000, 8);
    peer_send_at(&p, B, ACK, NULL, 0, data, 1000);
    test_advance(net_config.tcp_delack_ms);
    peer_expect(&p, &s, ACK);
    assert_int_equal(seg_sack(&s, NULL), 0);
    /* all of it again: ACKed at once, D-SACK [0, 1000) */
    dsack_step(&p, B, 0, 1000, 1000, (const uint32_t[][2]){ { 0, 1000 } }, 1);
    assert_int_equal(tp_counter("tcp.out_dsacks"), 1);
    /* reported once: the next ACK has no SACK option */
    peer_send_at(&p, B + 1000, ACK, NULL, 0, data + 1000, 1000);
    test_advance(net_config.tcp_delack_ms);
    peer_expect(&p, &s, ACK);
    assert_int_equal(s.ack, B + 2000);
    assert_int_equal(seg_sack(&s, NULL), 0);
    /* half old: the old half is the D-SACK, the new half is taken */
    dsack_step(&p, B, 1500, 1000, 2500, (const uint32_t[][2]){ { 1500, 2000 } }, 1);
    /* a copy of a range held out of order: D-SACK, then that range */
    dsack_step(&p, B, 4000, 1000, 2500, (const uint32_t[][2]){ { 4000, 5000 } }, 1);
    dsack_step(&p, B, 4000, 1000, 2500, (const uint32_t[][2]){ { 4000, 5000 }, { 4000, 5000 } }, 2);
    assert_int_equal(tp_counter("tcp.out_dsacks"), 3);
    peer_send_at(&p, B + 2500, ACK, NULL, 0, data + 2500, 1000);
    peer_send_at(&p, B + 3500, ACK, NULL, 0, data + 3500, 500);
    while (tp_take(&s)) /* the last ACK counts */
        ;
    assert_int_equal(s.ack, B + 5000);
    assert_int_equal(seg_sack(&s, NULL), 0);
    tp_read_exact(p.c.sd, data, 5000);

    /* without SACK agreed, a duplicate gets a plain ACK */
    peer_open(&q, lsd, PORT, 40061, 5000, 0, 0, 0, 100, NULL);
    peer_send_at(&q, q.c.pseq, ACK, NULL, 0, data, 1000);
    test_advance(net_config.tcp_delack_ms);
    peer_expect(&q, &s, ACK);
    dsack_step(&q, q.c.pseq, 0, 1000, 1000, NULL, 0);
    assert_int_equal(tp_counter("tcp.out_dsacks"), 3);
    tp_finish();
}

/* RFC 2018 §4: ranges held ahead of a hole are reported, the one holding
 * the segment that arrived last first, exactly as held (merged where
 * they touch), at most 3 beside timestamps; filling the holes removes
 * them. */
static void sack_receiver(int ts)
{
    int lsd = tp_listen(PORT, 8, 0);
    struct peer p;
    struct tp_seg s;
    uint32_t B;
    int max = ts ? 3 : 4;

    peer_open(&p, lsd, PORT, ts ? 40050 : 40051, 1000, 1, ts, 0, 100, NULL);
    B = p.c.pseq;
    tp_fill(data, 12000, 7);
#define R(a, b) ((struct blk){ B + (a), B + (b) })
    peer_send_at(&p, B, ACK, NULL, 0, data, 1000);
    test_advance(net_config.tcp_delack_ms);
    peer_expect(&p, &s, ACK);
    assert_int_equal(seg_sack(&s, NULL), 0); /* nothing held yet */
    peer_send_at(&p, B + 2000, ACK, NULL, 0, data + 2000, 1000);
    peer_expect(&p, &s, ACK);
    {
        struct blk held[] = { R(2000, 3000) };
        expect_blocks(&s, B + 1000, &held[0], held, 1, 1);
        if (ts) { /* NOP NOP TS, then NOP NOP SACK */
            assert_int_equal(s.optlen, 12 + 12);
            assert_memory_equal(s.opt, "\x01\x01\x08\x0a", 4);
            assert_memory_equal(s.opt + 12, "\x01\x01\x05\x0a", 4);
        } else {
            assert_int_equal(s.optlen, 12);
            assert_memory_equal(s.opt, "\x01\x01\x05\x0a", 4);
        }
    }
    peer_send_at(&p, B + 4000, ACK, NULL, 0, data + 4000, 1000);
    peer_expect(&p, &s, ACK);
    {
        struct blk held[] = { R(2000, 3000), R(4000, 5000) };
        expect_blocks(&s, B + 1000, &held[1], held, 2, 2);
    }
    peer_send_at(&p, B + 6000, ACK, NULL, 0, data + 6000, 1000);
    peer_expect(&p, &s, ACK);
    {
        struct blk held[] = { R(2000, 3000), R(4000, 5000), R(6000, 7000) };
        expect_blocks(&s, B + 1000, &held[2], held, 3, 3);
    }
    peer_send_at(&p, B + 8000, ACK, NULL, 0, data + 8000, 1000);
    peer_expect(&p, &s, ACK);
    {
        struct blk held[] = { R(2000, 3000), R(4000, 5000), R(6000, 7000), R(8000, 9000) };
        expect_blocks(&s, B + 1000, &held[3], held, 4, 4 < max ? 4 : max);
        assert_true(s.optlen <= 40);
    }
    peer_send_at(&p, B + 10000, ACK, NULL, 0, data + 10000, 1000);
    peer_expect(&p, &s, ACK);
    {
        struct blk held[] = { R(2000, 3000), R(4000, 5000), R(6000, 7000), R(8000, 9000), R(10000, 11000) };
        expect_blocks(&s, B + 1000, &held[4], held, 5, max);
        assert_int_equal(s.optlen, ts ? 40 : 36);
    }
    /* [3000,4000) joins two ranges: the merged one goes first */
    peer_send_at(&p, B + 3000, ACK, NULL, 0, data + 3000, 1000);
    peer_expect(&p, &s, ACK);
    {
        struct blk held[] = { R(2000, 5000), R(6000, 7000), R(8000, 9000), R(10000, 11000) };
        expect_blocks(&s, B + 1000, &held[0], held, 4, 4 < max ? 4 : max);
    }
    /* [1000,2000) fills the first hole: ACK 5000, the rest still held */
    peer_send_at(&p, B + 1000, ACK, NULL, 0, data + 1000, 1000);
    peer_expect(&p, &s, ACK);
    {
        struct blk held[] = { R(6000, 7000), R(8000, 9000), R(10000, 11000) };
        expect_blocks(&s, B + 5000, NULL, held, 3, 3);
    }
    /* the last holes: no SACK option left */
    peer_send_at(&p, B + 5000, ACK, NULL, 0, data + 5000, 1000);
    peer_expect(&p, &s, ACK);
    {
        struct blk held[] = { R(8000, 9000), R(10000, 11000) };
        expect_blocks(&s, B + 7000, NULL, held, 2, 2);
    }
    peer_send_at(&p, B + 7000, ACK, NULL, 0, data + 7000, 1000);
    peer_expect(&p, &s, ACK);
    {
        struct blk held[] = { R(10000, 11000) };
        expect_blocks(&s, B + 9000, NULL, held, 1, 1);
    }
    peer_send_at(&p, B + 9000, ACK, NULL, 0, data + 9000, 1000);
    peer_expect(&p, &s, ACK);
    assert_int_equal(s.ack, B + 11000);
    assert_int_equal(seg_sack(&s, NULL), 0);
    assert_int_equal(s.optlen, ts ? 12 : 0);
#undef R
    tp_read_exact(p.c.sd, data, 11000);
    assert_true(tp_counter("tcp.out_sack_blocks") > 0);
    tp_finish();
}

static void test_sack_receiver_ts(void **state)
{
    (void)state;
    sack_receiver(1);
}

static void test_sack_receiver_no_ts(void **state)
{
    (void)state;
    sack_receiver(0);
}

/* RFC 2018 §4: after the first block (the latest arrival), "the SACK
 * option SHOULD be filled out by repeating the most recently reported SACK
 * blocks ... This assures that in normal operation, any segment remaining
 * part of a non-contiguous block of data held by the data receiver is
 * reported in at least three successive SACK options". Ranges arriving in
 * ascending order (the usual pattern of losses in one window): the ACK
 * of the fifth must repeat the fourth and third, not the first and second
 * -- or the fourth is reported once, and one lost ACK hides it.
 *
 * (This once failed: sack_blocks() in tcp_output.c filled the blocks
 * after the first in ascending sequence order, lowest ranges first, not
 * most recently reported first.) */
static void test_sack_receiver_repeats_recent_blocks(void **state)
{
    int lsd = tp_listen(PORT, 8, 0);
    struct peer p;
    struct tp_seg s;
    struct blk b[4];
    uint32_t B;
    int n;

    (void)state;
    peer_open(&p, lsd, PORT, 40052, 1000, 1, 1, 0, 100, NULL);
    B = p.c.pseq;
    tp_fill(data, 14000, 8);
    peer_send_at(&p, B, ACK, NULL, 0, data, 1000);
    for (uint32_t off = 2000; off <= 12000; off += 2000) {
        peer_send_at(&p, B + off, ACK, NULL, 0, data + off, 1000);
        do
            peer_expect(&p, &s, ACK);
        while (s.ack != B + 1000 || seg_sack(&s, NULL) == 0);
        n = seg_sack(&s, b);
        if (off < 8000)
            continue; /* up to three ranges: all of them fit */
        /* the ACK of [off, off+1000): that first, then the two reported
         * just before it (in either order), not older ones */
        assert_int_equal(n, 3);
        assert_int_equal(b[0].start, B + off);
        for (int i = 1; i < 3; i++)
            if (b[i].end - b[i].start != 1000 || (b[i].start != B + off - 2000 && b[i].start != B + off - 4000))
                fail_msg("ACK of the range at +%u: SACK blocks +%u +%u +%u; want +%u then +%u and +%u, the most "
                         "recently reported (RFC 2018 §4)",
                         off, b[0].start - B, b[1].start - B, b[2].start - B, off, off - 2000, off - 4000);
    }
    tp_read_exact(p.c.sd, data, 1000);
    tp_finish();
}

/* SACK blocks ride on our data segments too (RFC 2018 §4: in every ACK
 * that does not acknowledge all we hold), the payload shrinking to leave
 * them room: a full segment is MSS bytes of options and data. */
static void test_sack_on_data_segments(void **state)
{
    int lsd = tp_listen(PORT, 8, 0);
    struct peer p;
    struct tp_seg s;
    struct blk b[4];
    uint32_t B, una;
    size_t sent = 0;
    int n = 0;

    (void)state;
    peer_open(&p, lsd, PORT, 40053, 1000, 1, 1, 0, 100, NULL);
    B = p.c.pseq;
    una = p.c.iss + 1;
    tp_fill(data, 8000, 13);
    peer_send_at(&p, B + 1000, ACK, NULL, 0, data + 1000, 1000);
    peer_send_at(&p, B + 3000, ACK, NULL, 0, data + 3000, 1000);
    test_flush();
    assert_int_equal(sock_send(p.c.sd, data, 4000, 0), 4000);
    while (peer_take(&p, &s)) {
        assert_int_equal(s.seq, una + sent);
        assert_int_equal(s.ack, B);
        assert_int_equal(seg_sack(&s, b), 2);
        assert_int_equal(b[0].start, B + 3000); /* the latest arrival first */
        assert_int_equal(b[1].start, B + 1000);
        assert_int_equal(s.optlen, 12 + 20);
        assert_int_equal(s.dlen, 1460 - 32); /* a full segment, options included */
        assert_memory_equal(s.data, data + sent, s.dlen);
        sent += s.dlen;
        n++;
    }
    assert_int_equal(n, 2); /* the short rest waits (Nagle) */
    /* the first hole fills: one block left, 8 more bytes of data each */
    peer_send_at(&p, B, ACK, NULL, 0, data, 1000);
    p.c.pack = una + (uint32_t)sent;
    peer_send_at(&p, B + 2000, ACK, NULL, 0, NULL, 0); /* and acknowledges our two segments */
    while (peer_take(&p, &s)) {
        if (s.dlen == 0)
            continue;
        assert_int_equal(s.seq, una + sent);
        assert_int_equal(s.ack, B + 2000);
        assert_int_equal(seg_sack(&s, b), 1);
        assert_int_equal(b[0].start, B + 3000);
        assert_true(s.optlen + s.dlen <= 1460);
        sent += s.dlen;
    }
    assert_int_equal(sent, 4000);
    tp_read_exact(p.c.sd, data, 2000);
    tp_finish();
}

/* ---- 5. SACK as sender ------------------------------------------------------------------------------------------- */

#define MAXSEG 64

/* A range of segments [a, b) the peer holds. */
struct srange {
    unsigned a, b;
};

/* What the test knows of a transfer of `total` segments of S bytes from
 * us: what went out, what the peer holds, what we resent. Kept apart from
 * the stack's own bookkeeping, to check it. */
struct xfer {
    struct peer *p;
    uint32_t S;
    unsigned total;                   /* segments the app gave */
    unsigned una;                     /* the first not cumulatively acked */
    unsigned hi;                      /* the highest sent */
    unsigned char sacked[MAXSEG + 2]; /* the peer said it holds it */
    unsigned char resent[MAXSEG + 2]; /* resent in this recovery (<= HighRxt) */
    unsigned rex[MAXSEG];             /* resent by the last xfer_take, in order */
    int nrex;
    unsigned nnew;                    /* new segments in the last xfer_take */
    int with_data;                    /* the peer's ACKs carry data */
    size_t peer_bytes;                /* bytes it sent that way */
};

static void xfer_init(struct xfer *x, struct peer *p, uint32_t S, unsigned total, int with_data)
{
    memset(x, 0, sizeof(*x));
    x->p = p;
    x->S = S;
    x->total = total;
    x->una = 1;
    x->with_data = with_data;
    assert_true(total <= MAXSEG);
    tp_fill(data, total * S, 11);
    assert_int_equal(sock_send(p->c.sd, data, total * S, 0), (ssize_t)(total * S));
}

/* Everything the stack sent now: each data segment must be a whole segment
 * of the transfer, never one the peer acknowledged or SACKed; new ones in
 * order. Pure ACKs (answers to the peer's data) are skipped. */
static void xfer_take(struct xfer *x, const char *what)
{
    struct tp_seg s;

    x->nrex = 0;
    x->nnew = 0;
    while (peer_take(x->p, &s)) {
        uint32_t rel = s.seq - (x->p->c.iss + 1);
        unsigned k;
        if (s.dlen == 0 && !(s.flg & (SYN | FIN | RST)))
            continue;
        assert_int_equal(s.flg & ~PSH, ACK);
        if (rel % x->S != 0 || s.dlen != x->S)
            fail_msg("%s: %zu bytes at offset %u: not a whole segment of %u", what, s.dlen, rel, x->S);
        k = rel / x->S + 1;
        if (k < x->una || k > x->total)
            fail_msg("%s: segment %u sent, acknowledged up to %u, %u in all", what, k, x->una, x->total);
        assert_memory_equal(s.data, data + rel, x->S);
        if (k <= x->hi) {
            if (x->sacked[k])
                fail_msg("%s: resent segment %u, which the peer SACKed", what, k);
            x->resent[k] = 1;
            x->rex[x->nrex++] = k;
        } else {
            if (k != x->hi + 1)
                fail_msg("%s: new segment %u after %u: out of order", what, k, x->hi);
            x->hi = k;
            x->nnew++;
        }
    }
}

/* The peer acknowledges up to segment ack (the first it lacks) and SACKs
 * r[0..n) (a bare ACK, or 10 bytes of data if with_data). */
static void xfer_ack(struct xfer *x, unsigned ack, const struct srange *r, int n)
{
    struct blk b[4];

    assert_true(n <= 4);
    for (int i = 0; i < n; i++) {
        b[i].start = segk(x->p, r[i].a, x->S);
        b[i].end = segk(x->p, r[i].b, x->S);
        for (unsigned k = r[i].a; k < r[i].b; k++)
            x->sacked[k] = 1;
    }
    x->una = ack;
    x->p->c.pack = segk(x->p, ack, x->S);
    if (x->with_data) {
        peer_send_at(x->p, x->p->c.pseq, ACK | PSH, b, n, "0123456789", 10);
        x->p->c.pseq += 10;
        x->peer_bytes += 10;
    } else {
        peer_send_at(x->p, x->p->c.pseq, ACK, b, n, NULL, 0);
    }
}

/* RFC 6675 §4 IsLost(k): three discontiguous SACKed ranges above it, or
 * more than two segments' worth SACKed above it. */
static int xfer_is_lost(const struct xfer *x, unsigned k)
{
    unsigned bytes = 0, runs = 0;

    for (unsigned j = k + 1; j <= x->hi; j++) {
        if (x->sacked[j]) {
            bytes += x->S;
            if (!x->sacked[j - 1] || j == k + 1)
                runs++;
        }
    }
    return runs >= 3 || bytes > 2 * x->S;
}

/* RFC 6675 §4 SetPipe(), on what the test knows. */
static uint32_t xfer_pipe(const struct xfer *x)
{
    uint32_t pipe = 0;

    for (unsigned k = x->una; k <= x->hi; k++) {
        if (x->sacked[k])
            continue;
        if (!xfer_is_lost(x, k))
            pipe += x->S;
        if (x->resent[k])
            pipe += x->S;
    }
    return pipe;
}

/* RFC 6675 §5 (C): in recovery, cwnd - pipe is used to the last segment
 * (the peer's window is no limit here). */
static void xfer_check_pipe(const struct xfer *x, const char *what)
{
    unsigned long cwnd = pcb_field(&x->p->c, "cwnd");
    uint32_t pipe = xfer_pipe(x);

    if (pipe > cwnd)
        fail_msg("%s: pipe %u above cwnd %lu", what, pipe, cwnd);
    if (x->hi < x->total && pipe + x->S <= cwnd)
        fail_msg("%s: pipe %u leaves a segment's room in cwnd %lu, and nothing more was sent (up to %u of %u)", what,
                 pipe, cwnd, x->hi, x->total);
}

/* Let the clock run until the retransmission timer fires (segments sent
 * before it -- a tail loss probe, RFC 8985 §7 -- taken and checked);
 * what the timeout sent is left for xfer_take. */
static void xfer_wait_rto(struct xfer *x)
{
    int64_t before = tp_counter("tcp.rto_timeouts");

    for (int t = 0; tp_counter("tcp.rto_timeouts") == before; t += 10) {
        if (t > 60000)
            fail_msg("no retransmission timeout in 60 s");
        xfer_take(x, "before the timeout");
        test_advance(10);
    }
    assert_int_equal(tp_counter("tcp.rto_timeouts"), before + 1);
}

static void expect_rex(const struct xfer *x, const char *what, int n, ...)
{
    va_list ap;
    char got[256] = "";

    for (int i = 0; i < x->nrex; i++)
        snprintf(got + strlen(got), sizeof(got) - strlen(got), " %u", x->rex[i]);
    if (x->nrex != n)
        fail_msg("%s: resent segments [%s ], want %d of them", what, got, n);
    va_start(ap, n);
    for (int i = 0; i < n; i++) {
        unsigned k = va_arg(ap, unsigned);
        if (x->rex[i] != k)
            fail_msg("%s: resent segments [%s ], want segment %u as number %d", what, got, k, i + 1);
    }
    va_end(ap);
}

#define RANGES(...) ((const struct srange[]){ __VA_ARGS__ }), (int)(sizeof((const struct srange[]){ __VA_ARGS__ }) / sizeof(struct srange))

/* RFC 6675 from the first hole to the end of recovery. 30 segments; the
 * peer loses 3 and 6. Its ACKs: 1-2 acked; 4-5 SACKed (not enough to call
 * 3 lost); 7-10 SACKed (now 3 and 6 are lost: recovery, 3 and 6 resent,
 * nothing else); the rest sent before recovery SACKed (new data as the
 * pipe allows); a partial ACK (3 arrived: still nothing SACKed resent);
 * the ACK of exactly the recovery point (recovery over, cwnd = ssthresh).
 * with_data: every segment of the peer carries data: its SACK blocks
 * still make duplicate ACKs (RFC 6675 §2). */
static void sack_recovery(int ts, int with_data, uint16_t pport)
{
    int lsd = tp_listen(PORT, 8, 0);
    struct peer p;
    struct xfer x;
    uint32_t S = ts ? 1448 : 1460, flight, ssthresh;
    unsigned R;
    int64_t dups;

    peer_open(&p, lsd, PORT, pport, 1000, 1, ts, 0, 100, NULL);
    xfer_init(&x, &p, S, 30, with_data);
    xfer_take(&x, "initial window");
    assert_int_equal(x.nnew, 10); /* RFC 6928: 14600 bytes */
    xfer_ack(&x, 3, NULL, 0);
    xfer_take(&x, "ACK of 1-2");
    assert_int_equal(x.nrex, 0);
    assert_true(x.nnew >= 1);

    xfer_ack(&x, 3, RANGES({ 4, 6 }));
    xfer_take(&x, "SACK 4-5");
    expect_rex(&x, "SACK 4-5 (3 not yet lost)", 0);
    assert_int_equal(tp_counter("tcp.sack_recoveries"), 0);
    assert_int_equal(tp_counter("tcp.in_dup_acks"), 1);

    R = x.hi; /* the recovery point: everything sent before it starts */
    flight = (x.hi - x.una + 1) * S;
    memset(x.resent, 0, sizeof(x.resent));
    xfer_ack(&x, 3, RANGES({ 7, 11 }, { 4, 6 }));
    xfer_take(&x, "SACK 7-10");
    assert_int_equal(tp_counter("tcp.sack_recoveries"), 1);
    assert_int_equal(tp_counter("tcp.fast_retransmits"), 1);
    expect_rex(&x, "SACK 7-10: recovery", 2, 3u, 6u);
    ssthresh = flight / 2 > 2 * 1460 ? flight / 2 : 2 * 1460; /* RFC 6675 §5 step 4.2 */
    assert_int_equal(pcb_field(&p.c, "ssthresh"), ssthresh);
    assert_int_equal(pcb_field(&p.c, "cwnd"), ssthresh);
    xfer_check_pipe(&x, "SACK 7-10");

    /* 11..R, sent before recovery, arrive */
    xfer_ack(&x, 3, RANGES({ 7, R + 1 }, { 4, 6 }));
    xfer_take(&x, "SACK 11..R");
    expect_rex(&x, "SACK 11..R", 0);
    assert_true(x.nnew >= 1);
    xfer_check_pipe(&x, "SACK 11..R");

    /* the resent 3 arrives: a partial ACK */
    xfer_ack(&x, 6, RANGES({ 7, R + 1 }));
    xfer_take(&x, "partial ACK");
    expect_rex(&x, "partial ACK", 0);
    xfer_check_pipe(&x, "partial ACK");
    assert_int_equal(pcb_field(&p.c, "cwnd"), ssthresh);

    /* the resent 6 arrives: everything up to the recovery point */
    xfer_ack(&x, R + 1, NULL, 0);
    assert_int_equal(pcb_field(&p.c, "cwnd"), ssthresh);
    assert_int_equal(pcb_field(&p.c, "ssthresh"), ssthresh);
    xfer_take(&x, "full ACK");
    expect_rex(&x, "full ACK", 0);
    /* out of recovery, the flight (not the pipe) fills cwnd */
    assert_true((x.hi - x.una + 1) * S <= ssthresh);
    if (x.hi < x.total && (x.hi - x.una + 2) * S <= ssthresh)
        fail_msg("after recovery: %u segments in flight, cwnd %u has room for more", x.hi - x.una + 1, ssthresh);
    assert_int_equal(tp_counter("tcp.sack_recoveries"), 1);
    assert_int_equal(tp_counter("tcp.sack_retrans_segs"), 2);
    assert_int_equal(tp_counter("tcp.retrans_segs"), 2);
    assert_int_equal(tp_counter("tcp.in_sack_blocks"), 6);
    assert_int_equal(tp_counter("tcp.in_sack_bad"), 0);

    /* one more duplicate ACK: no new recovery */
    dups = tp_counter("tcp.in_dup_acks");
    xfer_ack(&x, R + 1, NULL, 0);
    xfer_take(&x, "duplicate after recovery");
    expect_rex(&x, "duplicate after recovery", 0);
    assert_int_equal(tp_counter("tcp.sack_recoveries"), 1);
    /* a segment with data and no new SACK information is no duplicate ACK */
    assert_int_equal(tp_counter("tcp.in_dup_acks"), dups + (with_data ? 0 : 1));
    if (with_data) {
        static uint8_t got[1024];
        assert_int_equal(sock_recv(p.c.sd, got, sizeof(got), MSG_DONTWAIT), (ssize_t)x.peer_bytes);
    }
    tp_finish();
}

static void test_sack_recovery_ts(void **state)
{
    (void)state;
    sack_recovery(1, 0, 40060);
}

static void test_sack_recovery_no_ts(void **state)
{
    (void)state;
    sack_recovery(0, 0, 40061);
}

static void test_sack_recovery_data_acks(void **state)
{
    (void)state;
    sack_recovery(1, 1, 40062);
}

/* The common start: a SACK and timestamps connection from peer port
 * pport, ten segments of 1448 bytes queued, the initial window of all ten
 * taken. */
static void xfer_start(struct xfer *x, struct peer *p, uint16_t pport)
{
    int lsd = tp_listen(PORT, 8, 0);

    peer_open(p, lsd, PORT, pport, 1000, 1, 1, 0, 100, NULL);
    xfer_init(x, p, 1448, 10, 0);
    xfer_take(x, "initial window");
    assert_int_equal(x->nnew, 10);
}

/* IsLost by DupThresh ranges (RFC 6675 §4): 4, 6 and 8 SACKed, one
 * segment each, three ranges above 3 -- lost; but 5 and 7 are not (two
 * ranges, two segments above them), and are not resent. */
static void test_sack_three_ranges(void **state)
{
    struct peer p;
    struct xfer x;

    (void)state;
    xfer_start(&x, &p, 40063);
    xfer_ack(&x, 3, RANGES({ 4, 5 }));
    xfer_take(&x, "SACK 4");
    xfer_ack(&x, 3, RANGES({ 6, 7 }, { 4, 5 }));
    xfer_take(&x, "SACK 6");
    expect_rex(&x, "SACK 4, 6", 0);
    assert_int_equal(tp_counter("tcp.sack_recoveries"), 0);
    memset(x.resent, 0, sizeof(x.resent));
    xfer_ack(&x, 3, RANGES({ 8, 9 }, { 6, 7 }, { 4, 5 }));
    xfer_take(&x, "SACK 8");
    assert_int_equal(tp_counter("tcp.sack_recoveries"), 1);
    expect_rex(&x, "SACK 4, 6, 8", 1, 3u);
    tp_finish();
}

/* RFC 6675 §5: "If the incoming ACK is a duplicate acknowledgment per the
 * definition in Section 2 (regardless of its status as a cumulative
 * acknowledgment), and the TCP is not currently in loss recovery, the TCP
 * MUST increase DupAcks by one and take the following steps: ... (2) If
 * DupAcks < DupThresh but IsLost (HighACK + 1) returns true ... go to step
 * (4)" -- fast retransmit. Section 2: an ACK is a duplicate if it carries
 * a SACK block that identifies previously un-SACKed octets. One ACK that
 * acknowledges 1-2 and SACKs 4-10 (the peer's ACKs before it were lost,
 * or it acknowledges by the stretch, as GRO receivers do) shows 3 lost:
 * it is resent at once.
 *
 * (This once failed: check_ack() counted an ACK as a duplicate only when
 * seg->ack == snd_una, so one that advanced snd_una never had IsLost
 * looked at, and recovery waited for a later ACK, the tail loss probe or
 * the RTO.) */
static void test_sack_cumulative_ack_with_sack_is_dupack(void **state)
{
    struct peer p;
    struct xfer x;

    (void)state;
    xfer_start(&x, &p, 40064);
    memset(x.resent, 0, sizeof(x.resent));
    xfer_ack(&x, 3, RANGES({ 4, 11 }));
    xfer_take(&x, "ACK of 1-2 with SACK 4-10");
    if (x.nrex == 0)
        fail_msg("ACK of 1-2 with SACK 4-10: 3 is lost (7 segments SACKed above it), nothing resent; "
                 "%lld SACK recoveries",
                 (long long)tp_counter("tcp.sack_recoveries"));
    expect_rex(&x, "ACK of 1-2 with SACK 4-10", 1, 3u);
    assert_int_equal(tp_counter("tcp.sack_recoveries"), 1);
    tp_finish();
}

/* ---- 6. a timeout forgets the scoreboard ---------------------------------------------------------------------- */

/* RFC 2018 §8: after a retransmission timeout the sender must not trust
 * what was SACKed (the peer may have dropped it): the go-back resends from
 * snd_una, SACKed ranges included. SACK information that arrives after
 * the timeout steers the rest of the go-back around what the peer holds. */
static void test_sack_rto_forgets_scoreboard(void **state)
{
    struct peer p;
    struct xfer x;

    (void)state;
    xfer_start(&x, &p, 40070);
    xfer_ack(&x, 3, RANGES({ 4, 6 }));
    xfer_take(&x, "ACK 1-2, SACK 4-5");
    expect_rex(&x, "ACK 1-2, SACK 4-5", 0);
    xfer_wait_rto(&x);
    memset(x.sacked, 0, sizeof(x.sacked)); /* the stack forgot; so do we */
    memset(x.resent, 0, sizeof(x.resent));
    xfer_take(&x, "timeout");
    expect_rex(&x, "timeout: one segment from snd_una", 1, 3u);
    /* the peer dropped 4-5 after all (it may, RFC 2018 §8): 4 comes next */
    xfer_ack(&x, 4, NULL, 0);
    xfer_take(&x, "ACK of 3, 4-5 reneged");
    if (x.nrex == 0 || x.rex[0] != 4)
        fail_msg("after the timeout and an ACK of 3, resent %d segments starting with %u; want 4 first "
                 "(the scoreboard must be forgotten)",
                 x.nrex, x.nrex ? x.rex[0] : 0);
    expect_rex(&x, "ACK of 3", 2, 4u, 5u);
    /* it holds 7-10: the go-back resends 6 and skips them */
    xfer_ack(&x, 6, RANGES({ 7, 11 }));
    xfer_take(&x, "ACK of 5, SACK 7-10");
    expect_rex(&x, "ACK of 5, SACK 7-10", 1, 6u);
    xfer_ack(&x, 11, NULL, 0);
    xfer_take(&x, "all acked");
    expect_rex(&x, "all acked", 0);
    test_advance(10000);
    tp_expect_none();
    assert_int_equal(tp_counter("tcp.rto_timeouts"), 1);
    assert_int_equal(tp_counter("tcp.sack_recoveries"), 0);
    tp_finish();
}

/* RFC 6675 §5.1, RFC 6582 §3.2 step 1: after a timeout no fast recovery
 * starts until the ACK passes what had been sent before it -- however
 * many duplicate ACKs and SACK blocks arrive meanwhile (they answer the
 * old flight). */
static void test_sack_no_recovery_after_rto(void **state)
{
    int lsd = tp_listen(PORT, 8, 0);
    struct peer p;
    struct xfer x;

    (void)state;
    peer_open(&p, lsd, PORT, 40071, 1000, 1, 1, 0, 100, NULL);
    xfer_init(&x, &p, 1448, 10, 0);
    xfer_take(&x, "initial window");
    xfer_ack(&x, 3, NULL, 0);
    xfer_take(&x, "ACK of 1-2");
    xfer_wait_rto(&x);
    memset(x.sacked, 0, sizeof(x.sacked));
    memset(x.resent, 0, sizeof(x.resent));
    xfer_take(&x, "timeout");
    expect_rex(&x, "timeout", 1, 3u);
    /* the old flight's answers: SACK 4-5 and 7-10, then plain duplicates */
    xfer_ack(&x, 3, RANGES({ 7, 11 }, { 4, 6 }));
    xfer_take(&x, "late SACK after the timeout");
    for (int i = 0; i < 3; i++) {
        xfer_ack(&x, 3, RANGES({ 7, 11 }, { 4, 6 }));
        xfer_take(&x, "late duplicate after the timeout");
    }
    assert_int_equal(tp_counter("tcp.sack_recoveries"), 0);
    assert_int_equal(tp_counter("tcp.fast_retransmits"), 0);
    /* the resent 3 arrives: 6 is the go-back's next, 4-5 and 7-10 skipped */
    xfer_ack(&x, 6, RANGES({ 7, 11 }));
    xfer_take(&x, "ACK of 3-5");
    expect_rex(&x, "ACK of 3-5", 1, 6u);
    assert_int_equal(tp_counter("tcp.fast_retransmits"), 0);
    tp_finish();
}

/* ---- 7. bad SACK blocks and malformed options ------------------------------------------------------------------- */

/* Blocks that cannot describe what we have in flight beyond the ACK are
 * ignored and counted (tcp.in_sack_bad); a SACK option of impossible
 * length makes the segment malformed (tcp.in_bad_options): dropped. */
static void test_sack_bad_blocks(void **state)
{
    int lsd = tp_listen(PORT, 8, 0);
    struct peer p;
    struct xfer x;
    struct tp_seg s;
    uint32_t S = 1448;
    char b[8];

    (void)state;
    peer_open(&p, lsd, PORT, 40080, 1000, 1, 1, 0, 100, NULL);
    xfer_init(&x, &p, S, 10, 0);
    xfer_take(&x, "initial window");
    p.c.pack = segk(&p, 2, S);
    {
        struct blk bad[] = {
            { segk(&p, 5, S), segk(&p, 5, S) },       /* empty */
            { segk(&p, 6, S), segk(&p, 5, S) },       /* start after end */
            { segk(&p, 9, S), segk(&p, 11, S) + 100 }, /* beyond snd_max */
        };
        peer_send_at(&p, p.c.pseq, ACK, bad, 3, NULL, 0);
    }
    x.una = 2;
    assert_int_equal(tp_counter("tcp.in_sack_bad"), 3);
    p.c.pack = segk(&p, 3, S);
    {
        struct blk bad[] = {
            { segk(&p, 1, S), segk(&p, 2, S) },                              /* below the ACK */
            { segk(&p, 3, S), segk(&p, 4, S) },                              /* starting at it */
            { segk(&p, 3, S) + 0x7fff0000u, segk(&p, 3, S) + 0x7fff05a8u }, /* far away */
        };
        peer_send_at(&p, p.c.pseq, ACK, bad, 3, NULL, 0);
    }
    x.una = 3;
    assert_int_equal(tp_counter("tcp.in_sack_bad"), 6);
    assert_int_equal(tp_counter("tcp.in_sack_blocks"), 0);
    xfer_take(&x, "bad blocks");
    expect_rex(&x, "bad blocks", 0);
    /* none of them reached the scoreboard: two real ones are not enough */
    xfer_ack(&x, 3, RANGES({ 4, 6 }));
    assert_int_equal(tp_counter("tcp.in_sack_blocks"), 1);
    xfer_take(&x, "SACK 4-5");
    expect_rex(&x, "SACK 4-5", 0);
    assert_int_equal(tp_counter("tcp.sack_recoveries"), 0);
    /* malformed: a SACK option of length 11, of length 2, and one that
     * runs past the header; each on a segment with data */
    {
        static const uint8_t opts[][16] = {
            { 1, 1, 5, 11, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 1 },
            { 1, 1, 5, 2, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0 },
            { 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 5, 10, 0, 0, 0, 0 },
        };
        static const size_t olen[] = { 16, 8, 16 };
        for (int i = 0; i < 3; i++)
            tp_inject(p.c.pport, p.c.lport, p.c.pseq, p.c.pack, ACK | PSH, p.c.pwnd, opts[i], olen[i], "bad", 3);
    }
    assert_int_equal(tp_counter("tcp.in_bad_options"), 3);
    tp_expect_none();
    expect_errno(sock_recv(p.c.sd, b, sizeof(b), MSG_DONTWAIT), EAGAIN);
    /* four blocks beside timestamps cannot fit in 40 bytes: the option
     * cannot be whole, the segment is malformed */
    {
        uint8_t o[48];
        size_t n = peer_opts(o, 1, p.tsval, p.echo, NULL, 0);
        o[n++] = 5;
        o[n++] = 34;
        memset(o + n, 0, 26);
        n += 26; /* 40 bytes: 8 of the option's 34 are missing */
        tp_inject(p.c.pport, p.c.lport, p.c.pseq, p.c.pack, ACK | PSH, p.c.pwnd, o, n, "bad", 3);
    }
    assert_int_equal(tp_counter("tcp.in_bad_options"), 4);
    tp_expect_none();
    /* the connection is fine */
    peer_send_at(&p, p.c.pseq, ACK | PSH, NULL, 0, "good", 4);
    p.c.pseq += 4;
    tp_read_exact(p.c.sd, (const uint8_t *)"good", 4);
    test_advance(net_config.tcp_delack_ms);
    peer_expect(&p, &s, ACK);
    assert_int_equal(s.ack, p.c.pseq);
    assert_state(&p.c, "ESTABLISHED");
    tp_finish();
}

/* A peer that SACKs 42 one-byte ranges (more than the scoreboard holds):
 * the overflow is counted, nothing SACKed is resent, every byte that goes
 * out is the right one, and the final ACK ends it all cleanly. */
static void test_sack_scoreboard_overflow(void **state)
{
    int lsd = tp_listen(PORT, 8, 0);
    struct peer p;
    struct tp_seg s;
    uint32_t S = 1448, una, r0;
    const int nr = 42;

    (void)state;
    peer_open(&p, lsd, PORT, 40082, 1000, 1, 1, 0, 100, NULL);
    una = p.c.iss + 1;
    tp_fill(data, 10 * S, 14);
    assert_int_equal(sock_send(p.c.sd, data, 10 * S, 0), 10 * S);
    test_flush();
    r0 = segk(&p, 4, S);
    p.c.pack = segk(&p, 3, S);
    for (int i = 0; i < nr; i += 3) {
        struct blk b[3];
        for (int j = 0; j < 3; j++)
            b[j] = (struct blk){ r0 + 200u * (uint32_t)(i + j), r0 + 200u * (uint32_t)(i + j) + 1 };
        peer_send_at(&p, p.c.pseq, ACK, b, 3, NULL, 0);
        while (peer_take(&p, &s)) {
            uint32_t off = s.seq - una;
            if (s.dlen == 0)
                continue;
            assert_true(off + s.dlen <= 10 * S);
            assert_memory_equal(s.data, data + off, s.dlen);
            for (int k = 0; k < 32 && k <= i + 2; k++) {
                uint32_t r = r0 + 200u * (uint32_t)k;
                if (r - s.seq < (uint32_t)s.dlen) /* r in [seq, seq + dlen), modulo 2^32 */
                    fail_msg("resent %zu bytes at +%u, over the SACKed byte +%u", s.dlen, off, r - una);
            }
        }
    }
    assert_int_equal(tp_counter("tcp.in_sack_blocks"), nr);
    assert_true(tp_counter("tcp.sack_scoreboard_full") > 0);
    assert_int_equal(tp_counter("tcp.sack_recoveries"), 1);
    p.c.pack = una + 10 * S;
    peer_send_at(&p, p.c.pseq, ACK, NULL, 0, NULL, 0);
    test_flush();
    test_advance(5000);
    tp_expect_none(); /* all acknowledged: nothing more */
    assert_int_equal(pcb_field(&p.c, "cwnd"), pcb_field(&p.c, "ssthresh"));
    tp_finish();
}

/* SACK blocks from a peer that did not agree to SACK: nothing happens
 * (RFC 2018 §2: only after SACK-permitted). */
static void test_sack_unagreed_ignored(void **state)
{
    int lsd = tp_listen(PORT, 8, 0);
    struct peer p;
    struct xfer x;

    (void)state;
    peer_open(&p, lsd, PORT, 40081, 1000, 0, 1, 0, 100, NULL);
    xfer_init(&x, &p, 1448, 10, 0);
    xfer_take(&x, "initial window");
    xfer_ack(&x, 3, RANGES({ 7, 11 }, { 4, 6 }));
    xfer_take(&x, "SACK without SACK-permitted");
    expect_rex(&x, "SACK without SACK-permitted", 0); /* one duplicate ACK only */
    assert_int_equal(tp_counter("tcp.in_sack_blocks"), 0);
    assert_int_equal(tp_counter("tcp.sack_recoveries"), 0);
    tp_finish();
}

/* ---- 8. NewReno without SACK ------------------------------------------------------------------------------------- */

/* RFC 6582 §3.2. (The plain fast retransmit on three duplicate ACKs and the
 * full ACK after it are test_tcp_data.c's test_fast_retransmit; here the
 * partial ACKs.) No SACK, no timestamps: segments of 1460. The peer loses
 * 3, 6 and 9 of the first ten. Three duplicate ACKs resend 3; each partial
 * ACK resends the next hole at once; an ACK one segment short of the
 * recovery point is still partial; the ACK of exactly the recovery point
 * ends recovery (cwnd = ssthresh); one or two duplicate ACKs after that
 * start nothing. */
static void test_newreno_partial_acks(void **state)
{
    int lsd = tp_listen(PORT, 8, 0);
    struct peer p;
    struct xfer x;
    uint32_t S = 1460, flight, ssthresh;
    unsigned R;

    (void)state;
    peer_open(&p, lsd, PORT, 40090, 1000, 0, 0, 0, 0, NULL);
    xfer_init(&x, &p, S, 40, 0);
    xfer_take(&x, "initial window");
    assert_int_equal(x.nnew, 10);
    xfer_ack(&x, 3, NULL, 0);
    xfer_take(&x, "ACK of 1-2");
    assert_int_equal(x.nrex, 0);
    xfer_ack(&x, 3, NULL, 0);
    xfer_take(&x, "duplicate 1");
    xfer_ack(&x, 3, NULL, 0);
    xfer_take(&x, "duplicate 2");
    expect_rex(&x, "two duplicates", 0);
    assert_int_equal(tp_counter("tcp.fast_retransmits"), 0);
    R = x.hi;
    flight = (x.hi - x.una + 1) * S;
    xfer_ack(&x, 3, NULL, 0);
    xfer_take(&x, "duplicate 3");
    expect_rex(&x, "third duplicate: fast retransmit", 1, 3u);
    assert_int_equal(tp_counter("tcp.fast_retransmits"), 1);
    ssthresh = flight / 2 > 2 * S ? flight / 2 : 2 * S;
    assert_int_equal(pcb_field(&p.c, "ssthresh"), ssthresh);
    assert_int_equal(pcb_field(&p.c, "cwnd"), ssthresh + 3 * S); /* RFC 6582 §3.2 step 2 */
    /* 3 arrived: ACK up to 6, partial: 6 goes at once */
    xfer_ack(&x, 6, NULL, 0);
    xfer_take(&x, "partial ACK of 3-5");
    if (x.nrex < 1 || x.rex[0] != 6)
        fail_msg("partial ACK up to 6: the first hole (6) was not resent at once (%d resent)", x.nrex);
    expect_rex(&x, "partial ACK of 3-5", 1, 6u);
    /* 6 arrived: ACK up to 9, partial: 9 goes */
    xfer_ack(&x, 9, NULL, 0);
    xfer_take(&x, "partial ACK of 6-8");
    expect_rex(&x, "partial ACK of 6-8", 1, 9u);
    /* one short of the recovery point: still partial, R resent */
    xfer_ack(&x, R, NULL, 0);
    xfer_take(&x, "ACK one short of the recovery point");
    expect_rex(&x, "ACK one short of the recovery point", 1, R);
    assert_int_equal(tp_counter("tcp.fast_retransmits"), 1);
    /* exactly the recovery point: recovery is over */
    xfer_ack(&x, R + 1, NULL, 0);
    assert_int_equal(pcb_field(&p.c, "cwnd"), ssthresh); /* RFC 6582 §3.2 step 3 */
    xfer_take(&x, "full ACK");
    expect_rex(&x, "full ACK", 0);
    assert_true((x.hi - x.una + 1) * S <= ssthresh);
    /* a duplicate ACK, and another: no fast retransmit */
    xfer_ack(&x, R + 1, NULL, 0);
    xfer_take(&x, "duplicate after recovery");
    xfer_ack(&x, R + 1, NULL, 0);
    xfer_take(&x, "second duplicate after recovery");
    expect_rex(&x, "duplicates after recovery", 0);
    assert_int_equal(tp_counter("tcp.fast_retransmits"), 1);
    assert_int_equal(tp_counter("tcp.sack_recoveries"), 0);
    assert_int_equal(tp_counter("tcp.retrans_segs"), 4);
    tp_finish();
}

/* A retransmission resends what was sent: never bytes beyond snd_max
 * (they were never sent, and lie beyond the peer's window here). With
 * TCP_NODELAY, 100-byte writes fill the peer's 1000-byte window; 2000
 * more wait. The first is lost: the fast retransmit (and the resend on a
 * partial ACK) may cover at most the 1000 bytes in flight.
 *
 * (This once failed: without SACK, enter_recovery() and the partial-ACK
 * branch of ack_new_data() in tcp_input.c resent min(sndbuf.len, MSS)
 * bytes from snd_una -- sndbuf holds the unsent bytes too -- so 1460
 * bytes went: 460 never sent, beyond the window, and snd_max did not move
 * over them.) */
static void test_newreno_retransmit_within_flight(void **state)
{
    int lsd = tp_listen(PORT, 8, 0);
    struct peer p;
    struct tp_seg s;
    uint32_t una;

    (void)state;
    peer_open(&p, lsd, PORT, 40091, 1000, 0, 0, 0, 0, NULL);
    una = p.c.iss + 1;
    tp_set_int(p.c.sd, IPPROTO_TCP, TCP_NODELAY, 1);
    p.c.pwnd = 1000;
    peer_ack(&p, una, NULL, 0); /* the window shrinks to 1000 */
    tp_fill(data, 3000, 12);
    for (int i = 0; i < 10; i++) {
        assert_int_equal(sock_send(p.c.sd, data + 100 * i, 100, 0), 100);
        peer_expect(&p, &s, ACK);
        assert_int_equal(s.seq, una + 100u * (uint32_t)i);
        assert_int_equal(s.dlen, 100);
    }
    assert_int_equal(sock_send(p.c.sd, data + 1000, 2000, 0), 2000);
    tp_expect_none(); /* the window is full */
    for (int i = 0; i < 3 && tp_counter("tcp.fast_retransmits") == 0; i++)
        peer_ack(&p, una, NULL, 0);
    assert_int_equal(tp_counter("tcp.fast_retransmits"), 1);
    peer_expect(&p, &s, ACK);
    assert_int_equal(s.seq, una);
    if (s.dlen > 1000)
        fail_msg("fast retransmit of %zu bytes from snd_una: 1000 were in flight (and in the window); %zu of "
                 "them were never sent",
                 s.dlen, s.dlen - 1000);
    assert_memory_equal(s.data, data, s.dlen);
    while (peer_take(&p, &s))
        ;
    /* a partial ACK: 500 bytes in flight above it */
    peer_ack(&p, una + 500, NULL, 0);
    if (peer_take(&p, &s)) {
        assert_int_equal(s.seq, una + 500);
        if (s.dlen > 500)
            fail_msg("resend on a partial ACK: %zu bytes, 500 were in flight", s.dlen);
    }
    tp_finish();
}

/* ---- a whole transfer through losses ---------------------------------------------------------------------------- */

#define XN 100 /* segments */

/* The peer receives a 100-segment transfer, losing the first transmission
 * of 5, 20-22 (a burst), 40, 70-71 and 100 (the tail), and the first
 * resend of 21 too. It acknowledges every segment at once, with SACK
 * blocks (the one holding the latest arrival first, then the highest
 * others) and timestamps. Everything must arrive, intact; without a
 * timeout, nothing may arrive twice but what tail loss probes resend (a
 * probe may repeat the last segment): the peer never loses anything it
 * did not say it lacked. */
static void transfer_with_losses(int sack, int ts, uint16_t pport)
{
    int lsd = tp_listen(PORT, 8, 0);
    struct peer p;
    struct tp_seg s;
    const uint32_t S = ts ? 1448 : 1460, total = XN * S;
    static uint8_t got[XN * 1460];
    static unsigned char tx[XN + 2];
    uint32_t una, ack = 0, dups = 0;
    uint64_t t0 = net_now_ms();
    int idle = 0;

    memset(got, 0, sizeof(got));
    memset(tx, 0, sizeof(tx));
    peer_open(&p, lsd, PORT, pport, 1000, sack, ts, 0, 100, NULL);
    una = p.c.iss + 1;
    tp_fill(data, total, 15);
    assert_int_equal(sock_send(p.c.sd, data, total, 0), (ssize_t)total);
    while (ack < total) {
        struct blk b[4];
        uint32_t off, end, lo, hi;
        unsigned k;
        int n = 0, drop = 0;
        if (net_now_ms() - t0 > 60000)
            fail_msg("60 s and %u of %u bytes acknowledged", ack, total);
        if (!peer_take(&p, &s)) {
            test_advance(10);
            if (++idle > 100000)
                fail_msg("stuck");
            continue;
        }
        if (s.dlen == 0)
            continue;
        off = s.seq - una;
        end = off + (uint32_t)s.dlen;
        assert_true(end <= total);
        assert_memory_equal(s.data, data + off, s.dlen);
        if (off % S == 0) {
            k = off / S + 1;
            tx[k]++;
            drop = (tx[k] == 1 && (k == 5 || (k >= 20 && k <= 22) || k == 40 || k == 70 || k == 71 || k == XN)) ||
                   (tx[k] == 2 && k == 21);
        }
        if (drop)
            continue;
        for (uint32_t i = off; i < end; i++) {
            if (got[i])
                dups++;
            got[i] = 1;
        }
        while (ack < total && got[ack])
            ack++;
        /* SACK: the run holding this segment first, then the highest */
        if (sack && off > ack) {
            for (lo = off; lo > ack && got[lo - 1]; lo--)
                ;
            for (hi = end; hi < total && got[hi]; hi++)
                ;
            b[n++] = (struct blk){ una + lo, una + hi };
        }
        for (hi = total; sack && hi > ack && n < (ts ? 3 : 4);) {
            while (hi > ack && !got[hi - 1])
                hi--;
            if (hi <= ack)
                break;
            for (lo = hi; lo > ack && got[lo - 1]; lo--)
                ;
            if (!(n > 0 && b[0].start == una + lo))
                b[n++] = (struct blk){ una + lo, una + hi };
            hi = lo;
        }
        p.c.pack = una + ack;
        peer_send_at(&p, p.c.pseq, ACK, b, n, NULL, 0);
    }
    print_message("  %u bytes in %llu ms: %lld retransmissions, %lld SACK recoveries, %lld timeouts, %lld tail loss "
                  "probes, %u bytes received twice\n",
                  total, (unsigned long long)(net_now_ms() - t0), (long long)tp_counter("tcp.retrans_segs"),
                  (long long)tp_counter("tcp.sack_recoveries"), (long long)tp_counter("tcp.rto_timeouts"),
                  (long long)counter_or0("tcp.tlp_probes"), dups);
    if (tp_counter("tcp.rto_timeouts") == 0 && dups > (uint32_t)counter_or0("tcp.tlp_probes") * S)
        fail_msg("%u bytes resent that the peer had, with no timeout and %lld tail loss probes", dups,
                 (long long)counter_or0("tcp.tlp_probes"));
    if (sack)
        assert_true(tp_counter("tcp.sack_recoveries") >= 1);
    test_advance(5000);
    while (peer_take(&p, &s)) /* nothing but, perhaps, a last probe */
        assert_true(s.dlen == 0 || s.seq - una + s.dlen <= total);
    tp_finish();
}

static void test_sack_transfer_with_losses(void **state)
{
    (void)state;
    transfer_with_losses(1, 1, 40110);
}

static void test_sack_transfer_with_losses_no_ts(void **state)
{
    (void)state;
    transfer_with_losses(1, 0, 40111);
}

static void test_newreno_transfer_with_losses(void **state)
{
    (void)state;
    transfer_with_losses(0, 1, 40112);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_negotiate_passive_all, tp_setup, tp_teardown),
        cmocka_unit_test_setup_teardown(test_negotiate_passive_none, tp_setup, tp_teardown),
        cmocka_unit_test_setup_teardown(test_negotiate_passive_one_each, tp_setup, tp_teardown),
        cmocka_unit_test_setup_teardown(test_negotiate_active, tp_setup, tp_teardown),
        cmocka_unit_test_setup_teardown(test_negotiate_disabled, tp_setup, tp_teardown),
        cmocka_unit_test_setup_teardown(test_config_restored, tp_setup, tp_teardown),
        cmocka_unit_test_setup_teardown(test_ts_recent_rules, tp_setup, tp_teardown),
        cmocka_unit_test_setup_teardown(test_ts_rtt_sample, tp_setup, tp_teardown),
        cmocka_unit_test_setup_teardown(test_paws_drops_old, tp_setup, tp_teardown),
        cmocka_unit_test_setup_teardown(test_paws_wraparound, tp_setup, tp_teardown),
        cmocka_unit_test_setup_teardown(test_paws_spares_rst, tp_setup, tp_teardown),
        cmocka_unit_test_setup_teardown(test_sack_receiver_ts, tp_setup, tp_teardown),
        cmocka_unit_test_setup_teardown(test_sack_receiver_no_ts, tp_setup, tp_teardown),
        cmocka_unit_test_setup_teardown(test_sack_receiver_repeats_recent_blocks, tp_setup, tp_teardown),
        cmocka_unit_test_setup_teardown(test_dsack_reports_duplicates, tp_setup, tp_teardown),
        cmocka_unit_test_setup_teardown(test_sack_on_data_segments, tp_setup, tp_teardown),
        cmocka_unit_test_setup_teardown(test_sack_recovery_ts, tp_setup, tp_teardown),
        cmocka_unit_test_setup_teardown(test_sack_recovery_no_ts, tp_setup, tp_teardown),
        cmocka_unit_test_setup_teardown(test_sack_recovery_data_acks, tp_setup, tp_teardown),
        cmocka_unit_test_setup_teardown(test_sack_three_ranges, tp_setup, tp_teardown),
        cmocka_unit_test_setup_teardown(test_sack_cumulative_ack_with_sack_is_dupack, tp_setup, tp_teardown),
        cmocka_unit_test_setup_teardown(test_sack_rto_forgets_scoreboard, tp_setup, tp_teardown),
        cmocka_unit_test_setup_teardown(test_sack_no_recovery_after_rto, tp_setup, tp_teardown),
        cmocka_unit_test_setup_teardown(test_sack_bad_blocks, tp_setup, tp_teardown),
        cmocka_unit_test_setup_teardown(test_sack_scoreboard_overflow, tp_setup, tp_teardown),
        cmocka_unit_test_setup_teardown(test_sack_unagreed_ignored, tp_setup, tp_teardown),
        cmocka_unit_test_setup_teardown(test_newreno_partial_acks, tp_setup, tp_teardown),
        cmocka_unit_test_setup_teardown(test_newreno_retransmit_within_flight, tp_setup, tp_teardown),
        cmocka_unit_test_setup_teardown(test_sack_transfer_with_losses, tp_setup, tp_teardown),
        cmocka_unit_test_setup_teardown(test_sack_transfer_with_losses_no_ts, tp_setup, tp_teardown),
        cmocka_unit_test_setup_teardown(test_newreno_transfer_with_losses, tp_setup, tp_teardown),
    };

    tp.default_config = net_config;
    log_configure_from_env();
    return cmocka_run_group_tests(tests, NULL, NULL);
}
