/*
 * fault.c — the fault injector: a device hook that drops, corrupts,
 * duplicates, reorders, delays and rate-limits frames. See fault.h for the
 * order of the faults and what each option means.
 *
 * Entry points: fault_config_set / fault_attach (app setup, before
 * net_run); fault_frame (the hook: RX thread for rx, any sending thread
 * for tx); fault_timer (stack thread, releases held frames); fault_release
 * (net_shutdown).
 *
 * Locking: each direction has its own lock [D] over its generator, token
 * bucket and held frames. Decisions are taken under it; frames are passed
 * on (net_hook_next) after it is dropped, so the lock is never held across
 * the capture's file write or the driver. Lock order: [D] -> timer lock.
 *
 * A held frame keeps its release time in pb->cb (the scratch area belongs
 * to whoever holds the frame) and waits on the direction's list, linked
 * through pb->next and sorted by release time.
 */
#include "driver/fault.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util/log.h"
#include "util/mem.h"

#define RX(s) FAULTSTAT_INDEX(NET_DIR_RX, FAULTSTAT_##s)
#define TX(s) FAULTSTAT_INDEX(NET_DIR_TX, FAULTSTAT_##s)
static const char *const fault_stat_names[2 * FAULTSTAT_PER_DIR] = {
    [RX(FRAMES)] = "rx_frames",             [TX(FRAMES)] = "tx_frames",
    [RX(DROPPED)] = "rx_dropped",           [TX(DROPPED)] = "tx_dropped",
    [RX(CORRUPTED)] = "rx_corrupted",       [TX(CORRUPTED)] = "tx_corrupted",
    [RX(DUPLICATED)] = "rx_duplicated",     [TX(DUPLICATED)] = "tx_duplicated",
    [RX(REORDERED)] = "rx_reordered",       [TX(REORDERED)] = "tx_reordered",
    [RX(DELAYED)] = "rx_delayed",           [TX(DELAYED)] = "tx_delayed",
    [RX(RATE_DROPPED)] = "rx_rate_dropped", [TX(RATE_DROPPED)] = "tx_rate_dropped",
    [RX(SIZE_DROPPED)] = "rx_size_dropped", [TX(SIZE_DROPPED)] = "tx_size_dropped",
    [RX(HELD_OVERFLOW)] = "rx_held_overflow", [TX(HELD_OVERFLOW)] = "tx_held_overflow",
};
#undef RX
#undef TX
struct stats_group fault_stats = STATS_GROUP("fault", fault_stat_names);

static const char *const dir_names[2] = { "rx", "tx" };

struct fault;

/* One direction of one injector. */
struct fault_dir {
    struct mutex lock;
    struct fault *f;               /* [c] */
    enum net_dir dir;              /* [c] */
    struct fault_dir_config cfg;   /* [c] */
    uint64_t rng;                  /* [D] xorshift64* state, never 0 */
    uint64_t frames;               /* [D] frames seen: k of the next one */
    uint64_t tokens;               /* [D] token bucket, in 1/1000 frame */
    uint64_t tokens_at;            /* [D] clock of the last refill */
    struct pbuf *reorder_held;     /* [D] waits for the next frame */
    uint64_t reorder_deadline;     /* [D] ... or for this time */
    struct pbuf *delayed;          /* [D] sorted by release time */
    unsigned held;                 /* [D] frames on delayed + reorder_held */
    struct net_timer timer;        /* releases what is due */
};

struct fault {
    struct net_device_hook hook;   /* [c] */
    unsigned held_max;             /* [c] per direction */
    struct fault_dir dir[2];
};

/* Injectors alive: the stats group lives while there is one. Attach and
 * release run on the thread that sets the stack up and shuts it down. */
static int fault_instances;

/* The random values one frame draws, always all of them (fault.h). */
struct fault_draw {
    double drop, corrupt, duplicate, reorder; /* uniform in [0, 1) */
    uint64_t pos, val, jitter;
};

/* A chain of frames to pass on, in order. */
struct chain {
    struct pbuf *head, **tail;
};

static void chain_init(struct chain *c)
{
    c->head = NULL;
    c->tail = &c->head;
}

static void chain_add(struct chain *c, struct pbuf *pb)
{
    pb->next = NULL;
    *c->tail = pb;
    c->tail = &pb->next;
}

/* ---- randomness --------------------------------------------------------------
 * xorshift64* (Vigna, "An experimental exploration of Marsaglia's xorshift
 * generators", 2016), seeded through splitmix64 so that nearby seeds give
 * unrelated streams. Not for cryptography: for replayable experiments. */

static uint64_t splitmix64(uint64_t *x)
{
    uint64_t z = (*x += 0x9e3779b97f4a7c15ull);

    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static uint64_t fault_rand_locked(struct fault_dir *d)
{
    d->rng ^= d->rng >> 12;
    d->rng ^= d->rng << 25;
    d->rng ^= d->rng >> 27;
    return d->rng * 0x2545f4914f6cdd1dull;
}

static double fault_uniform_locked(struct fault_dir *d)
{
    return (double)(fault_rand_locked(d) >> 11) * 0x1.0p-53;
}

static void fault_draw_locked(struct fault_dir *d, struct fault_draw *r)
{
    r->drop = fault_uniform_locked(d);
    r->corrupt = fault_uniform_locked(d);
    r->duplicate = fault_uniform_locked(d);
    r->reorder = fault_uniform_locked(d);
    r->pos = fault_rand_locked(d);
    r->val = fault_rand_locked(d);
    r->jitter = fault_rand_locked(d);
}

/* ---- one frame ------------------------------------------------------------------ */

static void fault_count(struct fault_dir *d, enum fault_stat s)
{
    STAT_INC(&fault_stats, FAULTSTAT_INDEX(d->dir, s));
}

static const char *fault_dev_name(const struct fault_dir *d)
{
    return d->f->hook.dev->name;
}

/* Token bucket: one token per frame, rate tokens a second, at most rate
 * tokens (one second's worth) saved up. Kept in 1/1000 token so a refill
 * of one millisecond is exact. */
static int fault_take_token_locked(struct fault_dir *d, uint64_t now)
{
    uint64_t cap = (uint64_t)d->cfg.rate * 1000;

    d->tokens += (now - d->tokens_at) * d->cfg.rate;
    if (d->tokens > cap)
        d->tokens = cap;
    d->tokens_at = now;
    if (d->tokens < 1000)
        return 0;
    d->tokens -= 1000;
    return 1;
}

/* Size limit, rate, then --drop. Returns the counter to bump, or -1 to let
 * the frame live. */
static int fault_drop_reason_locked(struct fault_dir *d, const struct pbuf *pb, uint64_t now,
                                    const struct fault_draw *r)
{
    if (d->cfg.size_limit && pb->len > d->cfg.size_limit)
        return FAULTSTAT_SIZE_DROPPED;
    if (d->cfg.rate && !fault_take_token_locked(d, now))
        return FAULTSTAT_RATE_DROPPED;
    if (r->drop < d->cfg.drop)
        return FAULTSTAT_DROPPED;
    return -1;
}

/* Flip one byte after the link header, so that the frame still reaches
 * the network layer and its checksums have something to catch. */
static void fault_corrupt_locked(struct fault_dir *d, struct pbuf *pb, uint64_t k,
                                 const struct fault_draw *r)
{
    size_t skip = d->f->hook.dev->hlen, off;
    uint8_t was, x = (uint8_t)(1 + r->val % 255);

    if (pb->len <= skip)
        return; /* nothing after the link header to damage */
    off = skip + (size_t)(r->pos % (pb->len - skip));
    was = pb->data[off];
    pb->data[off] ^= x;
    fault_count(d, FAULTSTAT_CORRUPTED);
    log_debug(LOG_FAULT, "%s %s frame %" PRIu64 ": corrupted byte %zu (0x%02x -> 0x%02x)",
              fault_dev_name(d), dir_names[d->dir], k, off, was, pb->data[off]);
}

static uint64_t pb_due(const struct pbuf *pb)
{
    uint64_t due;

    memcpy(&due, pb->cb, sizeof(due));
    return due;
}

/* Put pb on the delayed list, after every frame due no later (so frames
 * with the same release time keep their order). */
static void fault_hold_locked(struct fault_dir *d, struct pbuf *pb, uint64_t due)
{
    struct pbuf **pp = &d->delayed;

    memcpy(pb->cb, &due, sizeof(due));
    while (*pp && pb_due(*pp) <= due)
        pp = &(*pp)->next;
    pb->next = *pp;
    *pp = pb;
    d->held++;
}

/* The delay stage: with no delay configured the frames go on at once
 * (into out); otherwise they are held until now + delay + jitter. */
static void fault_delay_locked(struct fault_dir *d, struct chain *in, uint64_t now, uint64_t jitter,
                               struct chain *out)
{
    struct pbuf *pb = in->head, *next;

    for (; pb; pb = next) {
        next = pb->next;
        if (!d->cfg.delay_ms && !d->cfg.jitter_ms) {
            chain_add(out, pb);
        } else if (d->held >= d->f->held_max) {
            fault_count(d, FAULTSTAT_HELD_OVERFLOW);
            log_debug(LOG_FAULT, "%s %s: %u frames held already, frame dropped", fault_dev_name(d),
                      dir_names[d->dir], d->held);
            pbuf_free(pb);
        } else {
            fault_hold_locked(d, pb, now + d->cfg.delay_ms + jitter);
            fault_count(d, FAULTSTAT_DELAYED);
        }
    }
}

/* Arm the timer for the earliest held frame, or cancel it. */
static void fault_rearm_locked(struct fault_dir *d, uint64_t now)
{
    uint64_t next = UINT64_MAX;

    if (d->delayed)
        next = pb_due(d->delayed);
    if (d->reorder_held && d->reorder_deadline < next)
        next = d->reorder_deadline;
    if (next == UINT64_MAX)
        net_timer_cancel(&d->timer);
    else
        net_timer_arm(&d->timer, next > now ? next - now : 0);
}

/* Reorder: hold pb back unless a frame is held already, in which case that
 * one follows pb (and its duplicate). Adds what goes on now to c. */
static void fault_reorder_locked(struct fault_dir *d, struct pbuf *pb, struct pbuf *dup, uint64_t k,
                                 const struct fault_draw *r, uint64_t now, struct chain *c)
{
    struct pbuf *prev = d->reorder_held;

    if (prev) {
        d->reorder_held = NULL;
        d->held--;
    } else if (r->reorder < d->cfg.reorder && d->held < d->f->held_max) {
        d->reorder_held = pb;
        d->reorder_deadline = now + FAULT_REORDER_HOLD_MS;
        d->held++;
        pb = NULL;
        fault_count(d, FAULTSTAT_REORDERED);
        log_debug(LOG_FAULT, "%s %s frame %" PRIu64 ": held back behind the next one",
                  fault_dev_name(d), dir_names[d->dir], k);
    }
    if (pb)
        chain_add(c, pb);
    if (dup)
        chain_add(c, dup);
    if (prev)
        chain_add(c, prev);
}

/* Decide everything about frame pb; returns (in out) what to pass on now. */
static void fault_apply_locked(struct fault_dir *d, struct pbuf *pb, struct chain *out)
{
    uint64_t k = d->frames++, now = net_now_ms();
    struct fault_draw r;
    struct pbuf *dup = NULL;
    struct chain c;
    int why;

    fault_draw_locked(d, &r);
    fault_count(d, FAULTSTAT_FRAMES);
    if ((why = fault_drop_reason_locked(d, pb, now, &r)) >= 0) {
        fault_count(d, why);
        log_debug(LOG_FAULT, "%s %s frame %" PRIu64 ": %s (%zu bytes)", fault_dev_name(d),
                  dir_names[d->dir], k,
                  why == FAULTSTAT_DROPPED ? "dropped"
                  : why == FAULTSTAT_RATE_DROPPED ? "dropped by the rate limit"
                                                  : "dropped by the size limit",
                  pb->len);
        pbuf_free(pb);
        return;
    }
    if (r.corrupt < d->cfg.corrupt)
        fault_corrupt_locked(d, pb, k, &r);
    if (r.duplicate < d->cfg.duplicate && (dup = pbuf_clone(pb))) {
        fault_count(d, FAULTSTAT_DUPLICATED);
        log_debug(LOG_FAULT, "%s %s frame %" PRIu64 ": duplicated", fault_dev_name(d),
                  dir_names[d->dir], k);
    }
    chain_init(&c);
    fault_reorder_locked(d, pb, dup, k, &r, now, &c);
    fault_delay_locked(d, &c, now, d->cfg.jitter_ms ? r.jitter % (d->cfg.jitter_ms + 1u) : 0, out);
    if (d->held)
        fault_rearm_locked(d, now);
}

/* Hand every frame of the chain to the next stage, in order. Returns the
 * first error. */
static int fault_pass(struct fault_dir *d, struct pbuf *pb)
{
    int err = 0;

    while (pb) {
        struct pbuf *next = pb->next;
        int e;
        pb->next = NULL;
        e = net_hook_next(&d->f->hook, d->dir, pb);
        if (e < 0 && err == 0)
            err = e;
        pb = next;
    }
    return err;
}

static int fault_frame(struct net_device_hook *h, enum net_dir dir, struct pbuf *pb)
{
    struct fault *f = h->priv;
    struct fault_dir *d = &f->dir[dir];
    struct chain out;

    chain_init(&out);
    mutex_lock(&d->lock);
    fault_apply_locked(d, pb, &out);
    mutex_unlock(&d->lock);
    return fault_pass(d, out.head);
}

/* Stack thread: release the delayed frames that are due, and a frame held
 * for reordering that waited long enough for a successor. */
static void fault_timer(void *arg)
{
    struct fault_dir *d = arg;
    uint64_t now = net_now_ms();
    struct chain out;

    chain_init(&out);
    mutex_lock(&d->lock);
    if (d->reorder_held && d->reorder_deadline <= now) {
        struct chain late;
        chain_init(&late);
        chain_add(&late, d->reorder_held);
        d->reorder_held = NULL;
        d->held--;
        fault_delay_locked(d, &late, now, 0, &out);
    }
    while (d->delayed && pb_due(d->delayed) <= now) {
        struct pbuf *pb = d->delayed;
        d->delayed = pb->next;
        d->held--;
        chain_add(&out, pb);
    }
    fault_rearm_locked(d, now);
    mutex_unlock(&d->lock);
    fault_pass(d, out.head);
}

/* ---- life cycle ------------------------------------------------------------------ */

/* Free f with the frames it holds; ntimers of its timers were initialised. */
static void fault_free(struct fault *f, int ntimers)
{
    for (int i = 0; i < 2; i++) {
        struct fault_dir *d = &f->dir[i];
        if (i < ntimers)
            net_timer_destroy(&d->timer);
        pbuf_free(d->reorder_held);
        pbuf_free_chain(d->delayed);
        mutex_destroy(&d->lock);
    }
    mem_free(f);
}

static void fault_release(struct net_device_hook *h)
{
    fault_free(h->priv, 2);
    if (--fault_instances == 0)
        stats_unregister(&fault_stats);
}

/* Append ", what" (or "what" first) to buf, which holds n bytes. */
static size_t describe_add(char *buf, size_t size, size_t n, const char *what)
{
    if (n < size)
        n += (size_t)snprintf(buf + n, size - n, "%s%s", n ? ", " : "", what);
    return n < size ? n : size - 1;
}

/* "drop 0.1, delay 100+0..20 ms": only what is switched on, or "none". */
static void fault_describe(const struct fault_dir_config *c, char *buf, size_t size)
{
    static const char *const probs[] = { "drop", "corrupt", "duplicate", "reorder" };
    const double p[] = { c->drop, c->corrupt, c->duplicate, c->reorder };
    char w[48];
    size_t n = 0;

    buf[0] = '\0';
    for (int i = 0; i < 4; i++) {
        if (p[i] > 0) {
            snprintf(w, sizeof(w), "%s %g", probs[i], p[i]);
            n = describe_add(buf, size, n, w);
        }
    }
    if (c->delay_ms || c->jitter_ms) {
        snprintf(w, sizeof(w), "delay %u+0..%u ms", c->delay_ms, c->jitter_ms);
        n = describe_add(buf, size, n, w);
    }
    if (c->rate) {
        snprintf(w, sizeof(w), "rate %u/s", c->rate);
        n = describe_add(buf, size, n, w);
    }
    if (c->size_limit) {
        snprintf(w, sizeof(w), "size-limit %u", c->size_limit);
        n = describe_add(buf, size, n, w);
    }
    if (n == 0)
        snprintf(buf, size, "none");
}

/* Everything but the timer, which may fail. */
static void fault_dir_init(struct fault *f, enum net_dir dir, const struct fault_config *c,
                           uint64_t *seedp)
{
    struct fault_dir *d = &f->dir[dir];

    d->f = f;
    d->dir = dir;
    d->cfg = c->dir[dir];
    d->rng = splitmix64(seedp);
    if (d->rng == 0)
        d->rng = 1; /* xorshift's one forbidden state */
    d->tokens = (uint64_t)d->cfg.rate * 1000; /* the bucket starts full */
    d->tokens_at = net_now_ms();
    mutex_init(&d->lock);
}

int fault_attach(struct net_device *dev, const struct fault_config *c)
{
    struct fault *f = mem_calloc(1, sizeof(*f));
    uint64_t seed = c->seed, s;
    char rx[160], tx[160];
    int err;

    if (!f)
        return -ENOMEM;
    if (!c->seeded) {
        platform_random(&seed, sizeof(seed));
        log_warn(LOG_FAULT, "%s: no --seed given: using --seed %" PRIu64 " (pass it to replay this run)",
                 dev->name, seed);
    }
    s = seed; /* rx draws the first value of the seed's stream, tx the second */
    f->held_max = c->held_max ? c->held_max : FAULT_HELD_MAX_DEFAULT;
    f->hook = (struct net_device_hook){ .name = "fault", .frame = fault_frame,
                                        .release = fault_release, .priv = f };
    fault_dir_init(f, NET_DIR_RX, c, &s);
    fault_dir_init(f, NET_DIR_TX, c, &s);
    if ((err = net_timer_init(&f->dir[NET_DIR_RX].timer, "fault-rx", fault_timer, &f->dir[NET_DIR_RX])) < 0) {
        fault_free(f, 0);
        return err;
    }
    if ((err = net_timer_init(&f->dir[NET_DIR_TX].timer, "fault-tx", fault_timer, &f->dir[NET_DIR_TX])) < 0) {
        fault_free(f, 1);
        return err;
    }
    if ((err = net_device_hook_add(dev, &f->hook)) < 0) {
        fault_free(f, 2);
        return err;
    }
    if (fault_instances++ == 0) {
        memset(fault_stats.v, 0, sizeof(fault_stats.v)); /* a fresh run starts at zero */
        stats_register(&fault_stats);
    }
    fault_describe(&c->dir[NET_DIR_RX], rx, sizeof(rx));
    fault_describe(&c->dir[NET_DIR_TX], tx, sizeof(tx));
    log_info(LOG_FAULT, "%s: seed %" PRIu64 "; rx: %s; tx: %s", dev->name, seed, rx, tx);
    return 0;
}

/* ---- options ------------------------------------------------------------------ */

/* "rx:..." / "tx:..." / "...": which directions, and the value after. */
static const char *parse_dirs(const char *arg, int *mask)
{
    if (strncmp(arg, "rx:", 3) == 0) {
        *mask = 1 << NET_DIR_RX;
        return arg + 3;
    }
    if (strncmp(arg, "tx:", 3) == 0) {
        *mask = 1 << NET_DIR_TX;
        return arg + 3;
    }
    *mask = (1 << NET_DIR_RX) | (1 << NET_DIR_TX);
    return arg;
}

/* A probability: "0.1", or a percentage "10%". */
static int parse_prob(const char *s, double *p)
{
    char *end;
    double v = strtod(s, &end);

    if (end == s)
        return -EINVAL;
    if (*end == '%') {
        v /= 100;
        end++;
    }
    if (*end || !(v >= 0 && v <= 1))
        return -EINVAL;
    *p = v;
    return 0;
}

static int parse_uint(const char *s, unsigned long max, unsigned *v, const char **endp)
{
    char *end;
    unsigned long x;

    if (*s < '0' || *s > '9')
        return -EINVAL;
    errno = 0;
    x = strtoul(s, &end, 10);
    if (errno || x > max || (!endp && *end))
        return -EINVAL;
    if (endp)
        *endp = end;
    *v = (unsigned)x;
    return 0;
}

/* "MS" or "MS:JITTER" */
static int parse_delay(const char *s, unsigned *ms, unsigned *jitter)
{
    const char *end;

    *jitter = 0;
    if (parse_uint(s, FAULT_DELAY_MAX_MS, ms, &end) < 0)
        return -EINVAL;
    if (*end == '\0')
        return 0;
    if (*end != ':')
        return -EINVAL;
    return parse_uint(end + 1, FAULT_DELAY_MAX_MS, jitter, NULL);
}

static int parse_seed(const char *s, struct fault_config *c)
{
    char *end;
    unsigned long long v;

    if (*s < '0' || *s > '9')
        return -EINVAL;
    errno = 0;
    v = strtoull(s, &end, 10);
    if (errno || *end)
        return -EINVAL;
    c->seed = v;
    c->seeded = 1;
    return 0;
}

int fault_config_set(struct fault_config *c, const char *name, const char *arg)
{
    struct fault_dir_config v = { 0 };
    int mask, err = -EINVAL;
    const char *val;

    if (strcmp(name, "seed") == 0)
        return parse_seed(arg, c);
    val = parse_dirs(arg, &mask);
    for (int i = 0; i < 2; i++) {
        if (!(mask & (1 << i)))
            continue;
        v = c->dir[i];
        if (!strcmp(name, "drop"))
            err = parse_prob(val, &v.drop);
        else if (!strcmp(name, "corrupt"))
            err = parse_prob(val, &v.corrupt);
        else if (!strcmp(name, "duplicate"))
            err = parse_prob(val, &v.duplicate);
        else if (!strcmp(name, "reorder"))
            err = parse_prob(val, &v.reorder);
        else if (!strcmp(name, "delay"))
            err = parse_delay(val, &v.delay_ms, &v.jitter_ms);
        else if (!strcmp(name, "rate"))
            err = parse_uint(val, 10000000, &v.rate, NULL);
        else if (!strcmp(name, "size-limit"))
            err = parse_uint(val, 1u << 20, &v.size_limit, NULL);
        if (err < 0)
            return err; /* the first direction parses exactly as the second */
        c->dir[i] = v;
    }
    return 0;
}

int fault_config_active(const struct fault_config *c)
{
    for (int i = 0; i < 2; i++) {
        const struct fault_dir_config *d = &c->dir[i];
        if (d->drop > 0 || d->corrupt > 0 || d->duplicate > 0 || d->reorder > 0 || d->delay_ms ||
            d->jitter_ms || d->rate || d->size_limit)
            return 1;
    }
    return 0;
}
