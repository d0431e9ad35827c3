/*
 * icmp.c — ICMP for IPv4 (RFC 792; host requirements RFC 1122 §3.2.2).
 *
 * Entry points:
 *   icmp_input        stack thread, from ip_deliver (protocol 1)
 *   icmp_error        any module that drops a datagram and owes its sender
 *                     an explanation (IP: protocol unreachable; reassembly:
 *                     time exceeded; UDP: port unreachable)
 *   icmp_ping_*       app threads: send echo requests, wait for replies
 *
 * Errors received from the network are checked (the quoted header must be
 * whole, with 8 bytes of its payload, RFC 792) and passed to the transport
 * that sent the quoted datagram through ip_error_notify.
 *
 * Locking: ping_lock guards the ping handles and their reply queues; each
 * handle has a condition variable its readers wait on. rate_lock guards the
 * error rate limiter. Neither is held while calling ip_output.
 */
#include "proto/icmp.h"

#include <errno.h>
#include <string.h>

#include "util/byteorder.h"
#include "util/cksum.h"
#include "util/log.h"
#include "util/mem.h"

static const char *const icmp_stat_names[ICMPSTAT_COUNT] = {
    [ICMPSTAT_IN_MSGS] = "in_msgs",
    [ICMPSTAT_IN_TOO_SHORT] = "in_too_short",
    [ICMPSTAT_IN_BAD_CHECKSUM] = "in_bad_checksum",
    [ICMPSTAT_IN_ECHOS] = "in_echos",
    [ICMPSTAT_IN_ECHO_REPLIES] = "in_echo_replies",
    [ICMPSTAT_IN_DEST_UNREACHS] = "in_dest_unreachs",
    [ICMPSTAT_IN_TIME_EXCEEDS] = "in_time_exceeds",
    [ICMPSTAT_IN_ERRORS_BAD_INNER] = "in_errors_bad_inner",
    [ICMPSTAT_IN_UNKNOWN_TYPE] = "in_unknown_type",
    [ICMPSTAT_IN_BROADCAST_ECHO] = "in_broadcast_echo",
    [ICMPSTAT_IN_REPLY_NO_PING] = "in_reply_no_ping",
    [ICMPSTAT_OUT_MSGS] = "out_msgs",
    [ICMPSTAT_OUT_ECHO_REPLIES] = "out_echo_replies",
    [ICMPSTAT_OUT_ECHOS] = "out_echos",
    [ICMPSTAT_OUT_DEST_UNREACHS] = "out_dest_unreachs",
    [ICMPSTAT_OUT_TIME_EXCEEDS] = "out_time_exceeds",
    [ICMPSTAT_OUT_RATELIMITED] = "out_ratelimited",
    [ICMPSTAT_PING_QUEUE_FULL] = "ping_queue_full",
};
struct stats_group icmp_stats = STATS_GROUP("icmp", icmp_stat_names);

/* One reply waiting on a ping handle. */
struct ping_item {
    struct ping_item *next;
    struct icmp_ping_reply reply;
    uint8_t data[];
};

struct icmp_ping {
    struct icmp_ping *next;   /* [P] */
    uint16_t id;              /* [c] echo identifier, host order */
    int closed;               /* [P] icmp_ping_close has begun */
    int waiters;              /* [P] threads inside icmp_ping_recv */
    struct cond cv;           /* waited on under ping_lock */
    struct ping_item *head;   /* [P] */
    struct ping_item *tail;   /* [P] */
    unsigned queued;          /* [P] */
};

static struct mutex ping_lock = MUTEX_INITIALIZER;
static struct icmp_ping *pings;   /* [P] */
static _Atomic uint16_t next_ping_id;
static int stopping;              /* [P] the stack is shutting down */

static struct mutex rate_lock = MUTEX_INITIALIZER;
static uint64_t rate_refill_ms;   /* [rate_lock] when tokens were last added */
static uint64_t rate_tokens_milli; /* [rate_lock] tokens x 1000 */

/* ---- helpers ---------------------------------------------------------------- */

static const char *type_name(uint8_t type)
{
    switch (type) {
    case ICMP_TYPE_ECHOREPLY: return "echo reply";
    case ICMP_TYPE_DEST_UNREACH: return "destination unreachable";
    case ICMP_TYPE_SOURCE_QUENCH: return "source quench";
    case ICMP_TYPE_REDIRECT: return "redirect";
    case ICMP_TYPE_ECHO: return "echo request";
    case ICMP_TYPE_TIME_EXCEEDED: return "time exceeded";
    case ICMP_TYPE_PARAM_PROBLEM: return "parameter problem";
    default: return "unknown";
    }
}

static int is_error_type(uint8_t type)
{
    return type == ICMP_TYPE_DEST_UNREACH || type == ICMP_TYPE_SOURCE_QUENCH ||
           type == ICMP_TYPE_REDIRECT || type == ICMP_TYPE_TIME_EXCEEDED ||
           type == ICMP_TYPE_PARAM_PROBLEM;
}

void icmp_dump(const uint8_t *data, size_t len)
{
    const struct icmp_echo *e = (const struct icmp_echo *)data;

    if (len < ICMP_HDR_SIZE)
        return;
    if (e->type == ICMP_TYPE_ECHO || e->type == ICMP_TYPE_ECHOREPLY)
        log_debug(LOG_ICMP, "icmp %s, id %u, seq %u, length %zu", type_name(e->type), load16(&e->id),
                  load16(&e->seq), len);
    else
        log_debug(LOG_ICMP, "icmp %s, code %u, length %zu", type_name(e->type), e->code, len);
}

/* Build an ICMP message of type/code/values with payload and send it. */
static int icmp_send(uint8_t type, uint8_t code, uint32_t values, const void *payload, size_t len,
                     uint32_t src, uint32_t dst)
{
    struct pbuf *pb = pbuf_alloc(PBUF_HEADROOM, ICMP_HDR_SIZE + len);
    struct icmp_hdr *hdr;

    if (!pb)
        return -ENOMEM;
    hdr = (struct icmp_hdr *)pb->data;
    hdr->type = type;
    hdr->code = code;
    hdr->sum = 0;
    store32(&hdr->values, values);
    if (len)
        memcpy(pb->data + ICMP_HDR_SIZE, payload, len);
    store16(&hdr->sum, cksum16(pb->data, pb->len, 0));
    if (log_enabled(LOG_ICMP, LOG_LEVEL_DEBUG))
        icmp_dump(pb->data, pb->len);
    STAT_INC(&icmp_stats, ICMPSTAT_OUT_MSGS);
    return ip_output(IP_PROTOCOL_ICMP, pb, src, dst);
}

/* Token bucket: tokens come at net_config.icmp_ratelimit_per_s a second,
 * up to a burst of one second's worth; each error takes one. */
static int ratelimit_allow(void)
{
    uint64_t now = net_now_ms(), cap = (uint64_t)net_config.icmp_ratelimit_per_s * 1000;
    int ok;

    mutex_lock(&rate_lock);
    if (rate_refill_ms == 0 || now < rate_refill_ms) {
        rate_tokens_milli = cap; /* first use: a full bucket */
    } else {
        rate_tokens_milli += (now - rate_refill_ms) * net_config.icmp_ratelimit_per_s;
        if (rate_tokens_milli > cap)
            rate_tokens_milli = cap;
    }
    rate_refill_ms = now ? now : 1;
    ok = rate_tokens_milli >= 1000;
    if (ok)
        rate_tokens_milli -= 1000;
    mutex_unlock(&rate_lock);
    return ok;
}

/* ---- errors we send ------------------------------------------------------------ */

/* RFC 1122 §3.2.2: "An ICMP error message MUST NOT be sent as the result of
 * receiving: an ICMP error message, a datagram destined to an IP broadcast
 * or multicast address, a datagram sent as a link-layer broadcast, a
 * non-initial fragment, or a datagram whose source address does not define a
 * single host". */
static int error_allowed(const struct ip_rx *rx, const uint8_t *payload, size_t len)
{
    uint32_t src = ntoh32(rx->src), dst = ntoh32(rx->dst);

    if (rx->link_broadcast || rx->dst == IP_ADDR_BROADCAST || (dst >> 28) == 0xe)
        return 0;
    if (rx->iface && rx->dst == rx->iface->broadcast)
        return 0;
    if (load16(&rx->hdr->offset) & IP_OFFSET_MASK)
        return 0;
    if (src == 0 || rx->src == IP_ADDR_BROADCAST || (src >> 28) >= 0xe || (src >> 24) == 127)
        return 0;
    if (rx->iface && rx->src == rx->iface->broadcast)
        return 0;
    if (rx->hdr->protocol == IP_PROTOCOL_ICMP && (len < 1 || is_error_type(payload[0])))
        return 0;
    return 1;
}

void icmp_error(uint8_t type, uint8_t code, uint32_t info, const struct ip_rx *rx,
                const uint8_t *payload, size_t len)
{
    /* Quote the header and as much payload as keeps us within 576 bytes
     * (RFC 1812 §4.3.2.3; RFC 792 asks for at least 8). */
    uint8_t quote[576 - IP_HDR_SIZE_MIN - ICMP_HDR_SIZE];
    size_t hlen = (size_t)(rx->hdr->vhl & 0x0f) * 4, n;

    if (!error_allowed(rx, payload, len))
        return;
    if (!ratelimit_allow()) {
        STAT_INC(&icmp_stats, ICMPSTAT_OUT_RATELIMITED);
        return;
    }
    n = len < sizeof(quote) - hlen ? len : sizeof(quote) - hlen;
    memcpy(quote, rx->hdr, hlen);
    memcpy(quote + hlen, payload, n);
    STAT_INC(&icmp_stats, type == ICMP_TYPE_TIME_EXCEEDED ? ICMPSTAT_OUT_TIME_EXCEEDS
                                                          : ICMPSTAT_OUT_DEST_UNREACHS);
    icmp_send(type, code, info, quote, hlen + n, ip_addr_is_local(rx->dst) ? rx->dst : IP_ADDR_ANY,
              rx->src);
}

/* ---- input -------------------------------------------------------------------- */

static void ping_deliver(uint16_t id, const struct icmp_ping_reply *r, const uint8_t *data, size_t len);

static void icmp_echo_reply(const struct ip_rx *rx, struct pbuf *pb)
{
    struct icmp_hdr *hdr = (struct icmp_hdr *)pb->data;

    /* RFC 1122 §3.2.2.6: an echo to a broadcast MAY be silently discarded */
    if (rx->link_broadcast || rx->dst == IP_ADDR_BROADCAST ||
        (rx->iface && rx->dst == rx->iface->broadcast)) {
        STAT_INC(&icmp_stats, ICMPSTAT_IN_BROADCAST_ECHO);
        pbuf_free(pb);
        return;
    }
    /* Turn the request around in place: same id, seq and data. */
    hdr->type = ICMP_TYPE_ECHOREPLY;
    hdr->sum = 0;
    store16(&hdr->sum, cksum16(pb->data, pb->len, 0));
    pb->flags = 0;
    STAT_INC(&icmp_stats, ICMPSTAT_OUT_MSGS);
    STAT_INC(&icmp_stats, ICMPSTAT_OUT_ECHO_REPLIES);
    if (log_enabled(LOG_ICMP, LOG_LEVEL_DEBUG))
        icmp_dump(pb->data, pb->len);
    ip_output(IP_PROTOCOL_ICMP, pb, rx->dst, rx->src);
}

/* An error from the network: check the quoted datagram, pass it upward. */
static void icmp_error_input(const struct ip_rx *rx, const uint8_t *msg, size_t len)
{
    const struct ip_hdr *inner = (const struct ip_hdr *)(msg + ICMP_HDR_SIZE);
    size_t ilen = len - ICMP_HDR_SIZE, ihl;

    if (ilen < IP_HDR_SIZE_MIN || (inner->vhl >> 4) != IP_VERSION_4 ||
        (ihl = (size_t)(inner->vhl & 0x0f) * 4) < IP_HDR_SIZE_MIN || ilen < ihl + 8) {
        STAT_INC(&icmp_stats, ICMPSTAT_IN_ERRORS_BAD_INNER);
        log_debug(LOG_ICMP, "error with a bad quoted datagram, dropped");
        return;
    }
    ip_error_notify(rx->src, msg[0], msg[1], load32(msg + 4), inner, msg + ICMP_HDR_SIZE + ihl,
                    ilen - ihl);
}

static void icmp_input(const struct ip_rx *rx, struct pbuf *pb)
{
    const uint8_t *msg = pb->data;

    STAT_INC(&icmp_stats, ICMPSTAT_IN_MSGS);
    if (pb->len < ICMP_HDR_SIZE) {
        STAT_INC(&icmp_stats, ICMPSTAT_IN_TOO_SHORT);
        log_debug(LOG_ICMP, "drop: %zu bytes, shorter than a header", pb->len);
        goto done;
    }
    if (cksum16(pb->data, pb->len, 0) != 0) {
        STAT_INC(&icmp_stats, ICMPSTAT_IN_BAD_CHECKSUM);
        log_debug(LOG_ICMP, "drop: bad checksum");
        goto done;
    }
    if (log_enabled(LOG_ICMP, LOG_LEVEL_DEBUG))
        icmp_dump(pb->data, pb->len);
    switch (msg[0]) {
    case ICMP_TYPE_ECHO:
        STAT_INC(&icmp_stats, ICMPSTAT_IN_ECHOS);
        icmp_echo_reply(rx, pb);
        return;
    case ICMP_TYPE_ECHOREPLY: {
        struct icmp_ping_reply r = {
            .from = rx->src, .type = msg[0], .code = msg[1], .ttl = rx->hdr->ttl,
            .seq = load16(msg + 6), .len = pb->len - ICMP_HDR_SIZE, .when_us = platform_now_us(),
        };
        STAT_INC(&icmp_stats, ICMPSTAT_IN_ECHO_REPLIES);
        ping_deliver(load16(msg + 4), &r, msg + ICMP_HDR_SIZE, r.len);
        break;
    }
    case ICMP_TYPE_DEST_UNREACH:
    case ICMP_TYPE_TIME_EXCEEDED:
    case ICMP_TYPE_PARAM_PROBLEM:
    case ICMP_TYPE_SOURCE_QUENCH:
        STAT_INC(&icmp_stats, msg[0] == ICMP_TYPE_TIME_EXCEEDED ? ICMPSTAT_IN_TIME_EXCEEDS
                                                                : ICMPSTAT_IN_DEST_UNREACHS);
        icmp_error_input(rx, msg, pb->len);
        break;
    default:
        STAT_INC(&icmp_stats, ICMPSTAT_IN_UNKNOWN_TYPE);
        log_debug(LOG_ICMP, "type %u not handled, dropped", msg[0]);
        break;
    }
done:
    pbuf_free(pb);
}

/* An error about one of our echo requests: hand it to the ping waiting for
 * it, so `ping` can print "Destination Host Unreachable". */
static void icmp_error_for_us(uint32_t from, uint8_t type, uint8_t code, uint32_t info,
                              const struct ip_hdr *inner, const uint8_t *payload, size_t len)
{
    struct icmp_ping_reply r = { .from = from, .type = type, .code = code };

    (void)info;
    (void)inner;
    if (len < ICMP_HDR_SIZE || payload[0] != ICMP_TYPE_ECHO)
        return;
    r.seq = load16(payload + 6);
    r.when_us = platform_now_us();
    ping_deliver(load16(payload + 4), &r, NULL, 0);
}

/* ---- ping ------------------------------------------------------------------------ */

static void ping_deliver(uint16_t id, const struct icmp_ping_reply *r, const uint8_t *data, size_t len)
{
    struct ping_item *item;
    struct icmp_ping *p;

    mutex_lock(&ping_lock);
    for (p = pings; p; p = p->next)
        if (p->id == id && !p->closed)
            break;
    if (!p) {
        mutex_unlock(&ping_lock);
        STAT_INC(&icmp_stats, ICMPSTAT_IN_REPLY_NO_PING);
        return;
    }
    if (p->queued >= net_config.icmp_ping_queue_max || !(item = mem_alloc(sizeof(*item) + len))) {
        mutex_unlock(&ping_lock);
        STAT_INC(&icmp_stats, ICMPSTAT_PING_QUEUE_FULL);
        return;
    }
    item->next = NULL;
    item->reply = *r;
    if (len)
        memcpy(item->data, data, len);
    if (p->tail)
        p->tail->next = item;
    else
        p->head = item;
    p->tail = item;
    p->queued++;
    cond_broadcast(&p->cv);
    mutex_unlock(&ping_lock);
}

int icmp_ping_open(struct icmp_ping **out)
{
    struct icmp_ping *p = mem_calloc(1, sizeof(*p));

    if (!p)
        return -ENOMEM;
    cond_init(&p->cv);
    p->id = atomic_fetch_add(&next_ping_id, 1);
    mutex_lock(&ping_lock);
    p->next = pings;
    pings = p;
    mutex_unlock(&ping_lock);
    *out = p;
    return 0;
}

uint16_t icmp_ping_id(struct icmp_ping *p)
{
    return p->id;
}

int icmp_ping_send(struct icmp_ping *p, uint32_t dst, uint16_t seq, const void *data, size_t len)
{
    uint32_t values = ((uint32_t)p->id << 16) | seq;

    if (len > IP_PAYLOAD_SIZE_MAX - ICMP_HDR_SIZE)
        return -EMSGSIZE;
    if (net_is_shutting_down())
        return -ESHUTDOWN;
    STAT_INC(&icmp_stats, ICMPSTAT_OUT_ECHOS);
    return icmp_send(ICMP_TYPE_ECHO, 0, values, data, len, IP_ADDR_ANY, dst);
}

int icmp_ping_recv(struct icmp_ping *p, struct icmp_ping_reply *reply, void *data, size_t size,
                   int timeout_ms)
{
    uint64_t deadline = timeout_ms >= 0 ? platform_now_ms() + (uint64_t)timeout_ms : 0;
    struct ping_item *item = NULL;
    int err = 0;

    mutex_lock(&ping_lock);
    p->waiters++;
    /* Re-check everything after each wake: replies, close, shutdown, time. */
    while (!(item = p->head)) {
        if (p->closed) {
            err = -EBADF;
            break;
        }
        if (stopping) {
            err = -ESHUTDOWN;
            break;
        }
        if (timeout_ms < 0)
            cond_wait(&p->cv, &ping_lock);
        else if (cond_wait_until(&p->cv, &ping_lock, deadline) == -ETIMEDOUT && !p->head) {
            err = -ETIMEDOUT;
            break;
        }
    }
    if (item) {
        p->head = item->next;
        if (!p->head)
            p->tail = NULL;
        p->queued--;
    }
    p->waiters--;
    if (p->closed)
        cond_broadcast(&p->cv); /* icmp_ping_close waits for waiters == 0 */
    mutex_unlock(&ping_lock);
    if (item) {
        *reply = item->reply;
        if (data && size)
            memcpy(data, item->data, item->reply.len < size ? item->reply.len : size);
        mem_free(item);
    }
    return err;
}

void icmp_ping_close(struct icmp_ping *p)
{
    struct ping_item *item;

    mutex_lock(&ping_lock);
    p->closed = 1;
    cond_broadcast(&p->cv);
    while (p->waiters > 0) /* let every reader leave before freeing */
        cond_wait(&p->cv, &ping_lock);
    for (struct icmp_ping **pp = &pings; *pp; pp = &(*pp)->next) {
        if (*pp == p) {
            *pp = p->next;
            break;
        }
    }
    mutex_unlock(&ping_lock);
    while ((item = p->head)) {
        p->head = item->next;
        mem_free(item);
    }
    cond_destroy(&p->cv);
    mem_free(p);
}

static void icmp_on_shutdown(void *arg)
{
    (void)arg;
    mutex_lock(&ping_lock);
    stopping = 1;
    for (struct icmp_ping *p = pings; p; p = p->next)
        cond_broadcast(&p->cv);
    mutex_unlock(&ping_lock);
}

/* ---- life cycle ------------------------------------------------------------------ */

int icmp_init(void)
{
    uint16_t id;
    int err;

    stats_register(&icmp_stats);
    platform_random(&id, sizeof(id));
    atomic_store(&next_ping_id, id);
    mutex_lock(&ping_lock);
    stopping = 0;
    mutex_unlock(&ping_lock);
    mutex_lock(&rate_lock);
    rate_refill_ms = 0;
    mutex_unlock(&rate_lock);
    if ((err = net_shutdown_notify(icmp_on_shutdown, NULL)) < 0)
        return err;
    return ip_protocol_register(IP_PROTOCOL_ICMP, icmp_input, icmp_error_for_us);
}

void icmp_cleanup(void)
{
    /* Handles still open belong to their apps, which close them; none is
     * freed here so that a late icmp_ping_close cannot touch freed memory. */
}
