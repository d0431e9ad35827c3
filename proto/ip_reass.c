/*
 * ip_reass.c — IPv4 fragment reassembly (RFC 791 §3.2 "Fragmentation and
 * Reassembly", RFC 815 for the idea of tracking what is still missing,
 * RFC 1122 §3.3.2 for the timeout and the ICMP error it sends).
 *
 * Where it sits: ip_input -> ip_reass_input -> (a whole datagram goes back to
 * ip_input, which hands it to the transport). The expiry timer runs on the
 * stack thread: net_timer_run_due -> reass_timer_fire -> icmp_error.
 *
 * Entry points and their callers:
 *   ip_reass_init / ip_reass_cleanup   ip_init / ip_cleanup (and unit tests)
 *   ip_reass_input                     ip_input, for a datagram with MF set
 *                                      or a non-zero fragment offset
 *   ip_reass_usage                     tests
 *
 * The datagrams being rebuilt ("contexts") are keyed, as RFC 791 says, by
 * source, destination, protocol and identification. Each holds its
 * fragments as received (pbufs linked through pb->next, data still at their
 * IP header) sorted by offset and never overlapping, so a context is whole
 * exactly when the last fragment has been seen and the payload bytes held
 * add up to its total length. The contexts live in one list searched
 * linearly: it is bounded by net_config.ip_reass_max_datagrams (64 by
 * default); a hash table would pay only with far larger limits.
 *
 * Defences: every limit in net_config is read at call time; overlapping
 * fragments drop the whole datagram (RFC 5722 makes the same choice for
 * IPv6: overlaps are how IDS evasion and "teardrop" attacks work); one timer
 * armed for the earliest expiry reclaims abandoned datagrams.
 *
 * Lock key:
 *   [R]  reass_lock: every context and the totals below. Lock order:
 *        reass_lock, then net.c's timer_lock (net_timer_arm is called with
 *        reass_lock held). icmp_error and the log are called without it.
 */
#include <assert.h>
#include <string.h>

#include "net.h"
#include "proto/icmp.h"
#include "proto/ip.h"
#include "util/byteorder.h"
#include "util/cksum.h"
#include "util/log.h"
#include "util/mem.h"
#include "util/pbuf.h"

/* One datagram being reassembled. */
struct reass_ctx {
    struct reass_ctx *next; /* [R] list of contexts */
    uint32_t src, dst;      /* [R] the key (network order) */
    uint16_t id;            /* [R] network order */
    uint8_t protocol;       /* [R] */
    int have_last;          /* [R] the fragment with MF clear arrived */
    size_t total;           /* [R] payload length, known once have_last */
    size_t held;            /* [R] payload bytes in frags */
    uint64_t expires;       /* [R] first arrival + ip_reass_timeout_ms */
    struct pbuf *frags;     /* [R] sorted by offset, linked through next */
};

static struct mutex reass_lock = MUTEX_INITIALIZER;
static struct reass_ctx *reass_list; /* [R] */
static unsigned reass_count;         /* [R] contexts in reass_list */
static size_t reass_bytes;           /* [R] payload bytes in all of them */
static int reass_ready;              /* [R] between init and cleanup */
static struct net_timer reass_timer; /* fires at the earliest expiry */
static uint64_t reass_timer_deadline; /* [R] where it is armed, 0: not armed */

/* What happened to one fragment; reass_verdicts says how to count it. */
enum reass_verdict {
    REASS_HELD,          /* kept, datagram not complete yet */
    REASS_COMPLETE,      /* kept, and it completed the datagram */
    REASS_DUPLICATE,     /* exact repeat: fragment dropped */
    REASS_SHORT,         /* shorter than its own header: fragment dropped */
    REASS_BAD_LENGTH,    /* MF set, length 0 or not a multiple of 8 */
    REASS_NOT_FRAGMENT,  /* offset 0 and MF clear: caller bug, dropped */
    REASS_TOO_MANY,      /* ip_reass_max_datagrams reached */
    REASS_TOO_MANY_BYTES, /* ip_reass_max_bytes reached */
    REASS_NO_MEMORY,     /* allocation failed */
    REASS_OVERLAP,       /* overlaps a held fragment: context dropped */
    REASS_OVERSIZE,      /* beyond 65535 or the known end: context dropped */
    REASS_TWO_ENDS,      /* a second last fragment disagrees: context dropped */
};

static const struct {
    int stat;       /* counter bumped when the fragment is refused */
    int kills_ctx;  /* the whole datagram goes with it */
    const char *why;
} reass_verdicts[] = {
    [REASS_DUPLICATE] = {IPSTAT_REASS_DUPLICATE, 0, "duplicate fragment"},
    [REASS_SHORT] = {IPSTAT_REASS_BAD_FRAGMENT, 0, "shorter than its header"},
    [REASS_BAD_LENGTH] = {IPSTAT_REASS_BAD_FRAGMENT, 0,
                          "MF set and length not a positive multiple of 8"},
    [REASS_NOT_FRAGMENT] = {IPSTAT_REASS_BAD_FRAGMENT, 0, "not a fragment"},
    [REASS_TOO_MANY] = {IPSTAT_REASS_NO_MEMORY, 0, "too many datagrams in reassembly"},
    [REASS_TOO_MANY_BYTES] = {IPSTAT_REASS_NO_MEMORY, 0, "reassembly byte limit reached"},
    [REASS_NO_MEMORY] = {IPSTAT_REASS_NO_MEMORY, 0, "out of memory"},
    [REASS_OVERLAP] = {IPSTAT_REASS_OVERLAP, 1, "overlaps a held fragment, datagram dropped"},
    [REASS_OVERSIZE] = {IPSTAT_REASS_OVERSIZE, 1, "beyond the datagram's end, datagram dropped"},
    [REASS_TWO_ENDS] = {IPSTAT_REASS_BAD_FRAGMENT, 1,
                        "last fragments disagree on the length, datagram dropped"},
};

/* The parsed header of one fragment. off and len are in bytes. */
struct reass_frag_info {
    uint32_t src, dst;
    uint16_t id;
    uint8_t protocol;
    int mf;
    size_t hlen, off, len;
};

/* ---- fragments: views of a held pbuf (data at its IP header) ---- */

static size_t frag_hlen(const struct pbuf *pb)
{
    return (size_t)(pb->data[0] & 0x0f) * 4;
}

static size_t frag_off(const struct pbuf *pb)
{
    return (size_t)(load16(pb->data + 6) & IP_OFFSET_MASK) * 8;
}

static size_t frag_len(const struct pbuf *pb)
{
    return pb->len - frag_hlen(pb);
}

static size_t frag_end(const struct pbuf *pb)
{
    return frag_off(pb) + frag_len(pb);
}

/* Fill fi from the validated header at pb->data. Returns REASS_HELD when
 * the fragment is acceptable so far, else the verdict dropping it. */
static enum reass_verdict reass_parse(const struct pbuf *pb, struct reass_frag_info *fi)
{
    const struct ip_hdr *hdr = (const struct ip_hdr *)pb->data;
    uint16_t offset;

    if (pb->len < IP_HDR_SIZE_MIN || pb->len < frag_hlen(pb))
        return REASS_SHORT;
    offset = ntoh16(hdr->offset);
    fi->src = hdr->src;
    fi->dst = hdr->dst;
    fi->id = hdr->id;
    fi->protocol = hdr->protocol;
    fi->mf = (offset & IP_FLAG_MF) != 0;
    fi->hlen = frag_hlen(pb);
    fi->off = (size_t)(offset & IP_OFFSET_MASK) * 8;
    fi->len = pb->len - fi->hlen;
    if (!fi->mf && fi->off == 0)
        return REASS_NOT_FRAGMENT;
    /* RFC 791 §3.2: every fragment but the last carries a multiple of
     * 8 octets ("the data must be broken on 8 octet boundaries") */
    if (fi->mf && (fi->len == 0 || fi->len % 8 != 0))
        return REASS_BAD_LENGTH;
    return REASS_HELD;
}

/* ---- contexts ---- */

static struct reass_ctx *reass_lookup_locked(const struct reass_frag_info *fi)
{
    assert(mutex_held(&reass_lock));
    for (struct reass_ctx *ctx = reass_list; ctx; ctx = ctx->next) {
        if (ctx->src == fi->src && ctx->dst == fi->dst && ctx->protocol == fi->protocol &&
            ctx->id == fi->id)
            return ctx;
    }
    return NULL;
}

/* A new, empty context for fi's datagram, appended to the list; *out is
 * NULL when a limit or memory says no (the verdict tells which). */
static enum reass_verdict reass_ctx_new_locked(const struct reass_frag_info *fi,
                                               struct reass_ctx **out)
{
    struct reass_ctx *ctx, **pp;

    assert(mutex_held(&reass_lock));
    *out = NULL;
    if (reass_count >= net_config.ip_reass_max_datagrams)
        return REASS_TOO_MANY;
    if (reass_bytes + fi->len > net_config.ip_reass_max_bytes)
        return REASS_TOO_MANY_BYTES;
    ctx = mem_calloc(1, sizeof(*ctx));
    if (!ctx)
        return REASS_NO_MEMORY;
    ctx->src = fi->src;
    ctx->dst = fi->dst;
    ctx->id = fi->id;
    ctx->protocol = fi->protocol;
    /* RFC 1122 §3.3.2: the timer starts with the first fragment to arrive */
    ctx->expires = net_now_ms() + net_config.ip_reass_timeout_ms;
    for (pp = &reass_list; *pp; pp = &(*pp)->next)
        ;
    *pp = ctx;
    reass_count++;
    *out = ctx;
    return REASS_HELD;
}

/* Take ctx off the list; its fragments stay with it for the caller. */
static void reass_ctx_unlink_locked(struct reass_ctx *ctx)
{
    assert(mutex_held(&reass_lock));
    for (struct reass_ctx **pp = &reass_list; *pp; pp = &(*pp)->next) {
        if (*pp == ctx) {
            *pp = ctx->next;
            break;
        }
    }
    ctx->next = NULL;
    reass_count--;
    reass_bytes -= ctx->held;
}

/* Free an unlinked context and every fragment it holds. */
static void reass_ctx_free(struct reass_ctx *ctx)
{
    pbuf_free_chain(ctx->frags);
    mem_free(ctx);
}

/* ---- the timer ---- */

/* Arm the timer for the earliest expiry, or cancel it when nothing is held. */
static void reass_timer_update_locked(void)
{
    uint64_t earliest = UINT64_MAX, now;

    assert(mutex_held(&reass_lock));
    for (struct reass_ctx *ctx = reass_list; ctx; ctx = ctx->next) {
        if (ctx->expires < earliest)
            earliest = ctx->expires;
    }
    if (earliest == UINT64_MAX) {
        if (reass_timer_deadline)
            net_timer_cancel(&reass_timer);
        reass_timer_deadline = 0;
        return;
    }
    if (earliest == reass_timer_deadline)
        return;
    now = net_now_ms();
    net_timer_arm(&reass_timer, earliest > now ? earliest - now : 0);
    reass_timer_deadline = earliest;
}

/* RFC 1122 §3.3.2: "If the fragment with offset zero was received, an ICMP
 * Time Exceeded -- Reassembly Timeout message SHOULD be sent". ctx is
 * unlinked; called without reass_lock. */
static void reass_expire(struct reass_ctx *ctx)
{
    const struct pbuf *first = ctx->frags;
    char src[IP_ADDR_STR_LEN];

    STAT_INC(&ip_stats, IPSTAT_REASS_TIMEOUT);
    log_debug(LOG_IP, "reassembly of id=%u from %s timed out (%zu bytes held)",
              ntoh16(ctx->id), ip_addr_ntop(ctx->src, src, sizeof(src)), ctx->held);
    if (first && frag_off(first) == 0) {
        struct ip_rx rx = {
            .hdr = (const struct ip_hdr *)first->data, /* the header we keep */
            .src = ctx->src,
            .dst = ctx->dst,
            .iface = ip_iface_by_addr(ctx->dst),
            .link_broadcast = 0,
        };
        size_t len = frag_len(first) < 8 ? frag_len(first) : 8;
        icmp_error(ICMP_TYPE_TIME_EXCEEDED, ICMP_CODE_REASS_EXCEEDED, 0, &rx,
                   first->data + frag_hlen(first), len);
    }
    reass_ctx_free(ctx);
}

/* Timer callback (stack thread): expire every context whose time is up. */
static void reass_timer_fire(void *arg)
{
    struct reass_ctx *expired = NULL, **tail = &expired, *ctx, *next;
    uint64_t now = net_now_ms();

    (void)arg;
    mutex_lock(&reass_lock);
    reass_timer_deadline = 0; /* net.c disarmed it to run us */
    for (ctx = reass_list; ctx; ctx = next) {
        next = ctx->next;
        if (ctx->expires > now)
            continue;
        reass_ctx_unlink_locked(ctx);
        *tail = ctx;
        tail = &ctx->next;
    }
    if (reass_ready)
        reass_timer_update_locked();
    mutex_unlock(&reass_lock);
    for (ctx = expired; ctx; ctx = next) {
        next = ctx->next;
        reass_expire(ctx);
    }
}

/* ---- input ---- */

/* Check the new fragment fi against what ctx already holds and find where
 * it goes. Returns REASS_HELD with *link set to the pointer to insert at,
 * or the verdict that refuses it. RFC 791 §3.2 reassembly, made strict. */
static enum reass_verdict reass_place_locked(struct reass_ctx *ctx,
                                             const struct reass_frag_info *fi,
                                             struct pbuf ***link)
{
    size_t end = fi->off + fi->len, held_end = 0;
    struct pbuf **pp = &ctx->frags;

    assert(mutex_held(&reass_lock));
    /* Everything before the new fragment's place (sorted by offset). */
    for (; *pp && frag_off(*pp) <= fi->off; pp = &(*pp)->next) {
        if (frag_off(*pp) == fi->off && frag_len(*pp) == fi->len)
            return REASS_DUPLICATE;
        held_end = frag_end(*pp);
    }
    if (held_end > fi->off || (*pp && frag_off(*pp) < end))
        return REASS_OVERLAP;
    for (const struct pbuf *f = *pp; f; f = f->next)
        held_end = frag_end(f);
    if (!fi->mf) {
        if (ctx->have_last && ctx->total != end)
            return REASS_TWO_ENDS;
        if (held_end > end)
            return REASS_OVERSIZE; /* held data lies beyond the end */
    } else if (ctx->have_last && end > ctx->total) {
        return REASS_OVERSIZE;
    }
    if (reass_bytes + fi->len > net_config.ip_reass_max_bytes)
        return REASS_TOO_MANY_BYTES;
    *link = pp;
    return REASS_HELD;
}

/* Add pb (described by fi) to ctx. Returns REASS_HELD or REASS_COMPLETE
 * when it was kept, else the verdict refusing it (pb untouched). */
static enum reass_verdict reass_insert_locked(struct reass_ctx *ctx, struct pbuf *pb,
                                              const struct reass_frag_info *fi)
{
    struct pbuf **link = NULL;
    enum reass_verdict v = reass_place_locked(ctx, fi, &link);

    if (v != REASS_HELD)
        return v;
    pb->next = *link;
    *link = pb;
    ctx->held += fi->len;
    reass_bytes += fi->len;
    if (!fi->mf) {
        ctx->have_last = 1;
        ctx->total = fi->off + fi->len;
    }
    /* Fragments never overlap and all lie below total: the datagram is
     * whole when they add up to it. */
    if (ctx->have_last && ctx->held == ctx->total)
        return REASS_COMPLETE;
    return REASS_HELD;
}

/* Find or make fi's context and try to add pb. When the verdict completes
 * or kills the context, it is unlinked and returned in *done. */
static enum reass_verdict reass_input_locked(struct pbuf *pb, const struct reass_frag_info *fi,
                                             struct reass_ctx **done)
{
    struct reass_ctx *ctx = reass_lookup_locked(fi);
    enum reass_verdict v;

    *done = NULL;
    /* RFC 791 §3.1: a datagram is at most 65535 octets, header included */
    if (fi->off + fi->len > IP_TOTAL_SIZE_MAX - fi->hlen) {
        v = REASS_OVERSIZE;
    } else if (!ctx && (v = reass_ctx_new_locked(fi, &ctx)) != REASS_HELD) {
        return v;
    } else {
        v = reass_insert_locked(ctx, pb, fi);
    }
    /* A context dies with its verdict, or completes; a brand-new one that
     * could not take its first fragment is not kept empty either. */
    if (ctx && (v == REASS_COMPLETE || reass_verdicts[v].kills_ctx || !ctx->frags)) {
        reass_ctx_unlink_locked(ctx);
        *done = ctx;
    }
    return v;
}

/* The whole datagram of the complete context ctx: a 20-byte header made
 * from the first fragment's (options dropped, as RFC 791 §3.2 leaves only
 * the first fragment's copied options and we keep none), then the payload.
 * last is the fragment that completed it. NULL when memory is short. */
static struct pbuf *reass_build(const struct reass_ctx *ctx, const struct pbuf *last)
{
    struct pbuf *pb = pbuf_alloc(PBUF_HEADROOM, IP_HDR_SIZE_MIN + ctx->total);
    struct ip_hdr *hdr;

    if (!pb)
        return NULL;
    memcpy(pb->data, ctx->frags->data, IP_HDR_SIZE_MIN);
    hdr = (struct ip_hdr *)pb->data;
    hdr->vhl = (IP_VERSION_4 << 4) | (IP_HDR_SIZE_MIN / 4);
    hdr->total = hton16((uint16_t)(IP_HDR_SIZE_MIN + ctx->total));
    hdr->offset = 0;
    hdr->sum = 0;
    store16(&hdr->sum, cksum16(hdr, IP_HDR_SIZE_MIN, 0));
    for (const struct pbuf *f = ctx->frags; f; f = f->next)
        memcpy(pb->data + IP_HDR_SIZE_MIN + frag_off(f), f->data + frag_hlen(f), frag_len(f));
    pb->dev = last->dev;
    pb->flags = last->flags;
    pb->proto = last->proto;
    return pb;
}

/* Count and log a refused fragment (its context, if dropped, is freed by
 * the caller). */
static void reass_drop_log(enum reass_verdict v, const struct reass_frag_info *fi)
{
    char src[IP_ADDR_STR_LEN];

    STAT_INC(&ip_stats, reass_verdicts[v].stat);
    log_debug(LOG_IP, "fragment id=%u from %s off=%zu len=%zu%s dropped: %s", ntoh16(fi->id),
              ip_addr_ntop(fi->src, src, sizeof(src)), fi->off, fi->len, fi->mf ? " MF" : "",
              reass_verdicts[v].why);
}

/* ---- public API ---- */

struct pbuf *ip_reass_input(struct pbuf *pb)
{
    struct reass_frag_info fi = {0};
    struct reass_ctx *done = NULL;
    struct pbuf *whole = NULL;
    enum reass_verdict v;

    STAT_INC(&ip_stats, IPSTAT_REASS_FRAGMENTS);
    v = reass_parse(pb, &fi);
    if (v == REASS_HELD) {
        mutex_lock(&reass_lock);
        assert(reass_ready);
        v = reass_input_locked(pb, &fi, &done);
        reass_timer_update_locked();
        mutex_unlock(&reass_lock);
    }
    if (v == REASS_COMPLETE) {
        whole = reass_build(done, pb);
        if (whole)
            STAT_INC(&ip_stats, IPSTAT_REASS_OK);
        else
            reass_drop_log(REASS_NO_MEMORY, &fi);
    } else if (v != REASS_HELD) {
        reass_drop_log(v, &fi);
        pbuf_free(pb);
    }
    if (done)
        reass_ctx_free(done); /* frees pb too when it was kept */
    return whole;
}

int ip_reass_init(void)
{
    int err = 0;

    mutex_lock(&reass_lock);
    if (!reass_ready) {
        err = net_timer_init(&reass_timer, "ip_reass", reass_timer_fire, NULL);
        reass_ready = err == 0;
        reass_timer_deadline = 0;
    }
    mutex_unlock(&reass_lock);
    return err;
}

void ip_reass_cleanup(void)
{
    struct reass_ctx *ctx;
    int was_ready;

    mutex_lock(&reass_lock);
    was_ready = reass_ready;
    reass_ready = 0;
    ctx = reass_list;
    reass_list = NULL;
    reass_count = 0;
    reass_bytes = 0;
    reass_timer_deadline = 0;
    mutex_unlock(&reass_lock);
    if (was_ready)
        net_timer_destroy(&reass_timer);
    while (ctx) {
        struct reass_ctx *next = ctx->next;
        reass_ctx_free(ctx);
        ctx = next;
    }
}

void ip_reass_usage(unsigned *datagrams, size_t *bytes)
{
    mutex_lock(&reass_lock);
    if (datagrams)
        *datagrams = reass_count;
    if (bytes)
        *bytes = reass_bytes;
    mutex_unlock(&reass_lock);
}
