/*
 * arp.c — Address Resolution Protocol for IPv4 over Ethernet (RFC 826,
 * RFC 1122 §2.3.2, RFC 5227 for announcements).
 *
 * Entry points:
 *   arp_input         stack thread, from net_input_process by EtherType
 *   arp_output        any thread, from ip_output with the next hop
 *   arp_timer         stack thread, every net_config.arp_retry_ms: retries
 *                     outstanding requests and ages resolved entries
 *   arp_announce_all  net_run, once devices are up (gratuitous ARP)
 *
 * The cache is a fixed array of net_config.arp_cache_max entries. While an
 * address is being resolved, datagrams for it wait on the entry (at most
 * net_config.arp_pending_max); when the reply comes they are sent in order,
 * and when it never comes they are dropped and the sending transport is told
 * "host unreachable" through ip_error_notify, the way a router's ICMP error
 * would tell it (RFC 1122 §2.3.2.2).
 *
 * Locking: arp_lock guards every entry. Frames are sent only after it is
 * released: the lock is never held across net_device_output.
 */
#include "proto/arp.h"

#include <assert.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>

#include "proto/ether.h"
#include "proto/icmp.h"
#include "proto/ip.h"
#include "util/byteorder.h"
#include "util/log.h"
#include "util/mem.h"

struct arp_entry {
    enum arp_state state;   /* [A] */
    uint32_t pa;            /* [A] protocol address, network order */
    uint8_t ha[ETHER_ADDR_LEN]; /* [A] */
    struct ip_iface *iface; /* [A] where the address lives */
    uint64_t updated_ms;    /* [A] resolved at, or last request sent at */
    unsigned requests;      /* [A] requests sent while INCOMPLETE */
    struct pbuf *pending;   /* [A] datagrams waiting, oldest first */
    struct pbuf *pending_tail; /* [A] */
    unsigned pending_len;   /* [A] */
};

static const char *const arp_stat_names[ARPSTAT_COUNT] = {
    [ARPSTAT_RX_PACKETS] = "rx_packets",
    [ARPSTAT_RX_TOO_SHORT] = "rx_too_short",
    [ARPSTAT_RX_BAD_FORMAT] = "rx_bad_format",
    [ARPSTAT_RX_BAD_OP] = "rx_bad_op",
    [ARPSTAT_RX_BAD_SENDER] = "rx_bad_sender",
    [ARPSTAT_RX_REQUESTS] = "rx_requests",
    [ARPSTAT_RX_REPLIES] = "rx_replies",
    [ARPSTAT_RX_NOT_FOR_US] = "rx_not_for_us",
    [ARPSTAT_RX_CONFLICT] = "rx_conflict",
    [ARPSTAT_TX_REQUESTS] = "tx_requests",
    [ARPSTAT_TX_REPLIES] = "tx_replies",
    [ARPSTAT_TX_GRATUITOUS] = "tx_gratuitous",
    [ARPSTAT_CACHE_FULL] = "cache_full",
    [ARPSTAT_QUEUE_FULL] = "queue_full",
    [ARPSTAT_RESOLVE_FAILED] = "resolve_failed",
    [ARPSTAT_DROPPED_UNRESOLVED] = "dropped_unresolved",
    [ARPSTAT_EXPIRED] = "expired",
};
struct stats_group arp_stats = STATS_GROUP("arp", arp_stat_names);

static struct mutex arp_lock = MUTEX_INITIALIZER;
static struct arp_entry *cache;  /* [A] net_config.arp_cache_max entries */
static unsigned cache_size;      /* [A] */
static struct net_timer arp_timer;

static void arp_timer_fire(void *arg);

/* ---- cache ----------------------------------------------------------------- */

static struct arp_entry *cache_find_locked(uint32_t pa)
{
    assert(mutex_held(&arp_lock));
    for (unsigned i = 0; i < cache_size; i++)
        if (cache[i].state != ARP_STATE_FREE && cache[i].pa == pa)
            return &cache[i];
    return NULL;
}

/* A free entry, or else the least recently updated resolved one (evicted).
 * Entries being resolved and static ones are never evicted. */
static struct arp_entry *cache_alloc_locked(void)
{
    struct arp_entry *victim = NULL;

    for (unsigned i = 0; i < cache_size; i++) {
        struct arp_entry *e = &cache[i];
        if (e->state == ARP_STATE_FREE)
            return e;
        if (e->state == ARP_STATE_RESOLVED && (!victim || e->updated_ms < victim->updated_ms))
            victim = e;
    }
    if (victim) {
        char a[IP_ADDR_STR_LEN];
        log_debug(LOG_ARP, "cache full: evicting %s", ip_addr_ntop(victim->pa, a, sizeof(a)));
        memset(victim, 0, sizeof(*victim));
    }
    return victim;
}

/* Detach and return an entry's pending datagrams. */
static struct pbuf *pending_take_locked(struct arp_entry *e)
{
    struct pbuf *chain = e->pending;

    e->pending = e->pending_tail = NULL;
    e->pending_len = 0;
    return chain;
}

static void entry_free_locked(struct arp_entry *e)
{
    memset(e, 0, sizeof(*e));
}

/* ---- sending ----------------------------------------------------------------- */

static int arp_send(struct net_device *dev, uint16_t op, const uint8_t *tha, uint32_t spa,
                    uint32_t tpa, const uint8_t *dst)
{
    struct arp_ether_ip *msg;
    /* Allocate the Ethernet minimum so ether_output pads without copying. */
    struct pbuf *pb = pbuf_alloc(PBUF_HEADROOM, ETHER_FRAME_SIZE_MIN - ETHER_HDR_SIZE);

    if (!pb)
        return -ENOMEM;
    pbuf_trim(pb, sizeof(*msg));
    msg = (struct arp_ether_ip *)pb->data;
    store16(&msg->hrd, ARP_HRD_ETHER);
    store16(&msg->pro, ETHER_TYPE_IP);
    msg->hln = ETHER_ADDR_LEN;
    msg->pln = 4;
    store16(&msg->op, op);
    memcpy(msg->sha, dev->addr, ETHER_ADDR_LEN);
    memcpy(msg->spa, &spa, 4);
    memcpy(msg->tha, tha, ETHER_ADDR_LEN);
    memcpy(msg->tpa, &tpa, 4);
    if (log_enabled(LOG_ARP, LOG_LEVEL_DEBUG))
        arp_dump(pb->data, pb->len);
    return net_device_output(dev, ETHER_TYPE_ARP, pb, dst);
}

static int arp_request(struct ip_iface *iface, uint32_t tpa)
{
    static const uint8_t zero[ETHER_ADDR_LEN];

    STAT_INC(&arp_stats, ARPSTAT_TX_REQUESTS);
    return arp_send(iface->iface.dev, ARP_OP_REQUEST, zero, iface->unicast, tpa, ETHER_ADDR_BROADCAST);
}

/* Send each datagram of chain to ha. */
static void pending_send(struct net_device *dev, struct pbuf *chain, const uint8_t *ha)
{
    while (chain) {
        struct pbuf *pb = chain;
        chain = chain->next;
        pb->next = NULL;
        net_device_output(dev, ETHER_TYPE_IP, pb, ha);
    }
}

/* Drop each datagram of chain, telling its sender the host is unreachable. */
static void pending_fail(struct pbuf *chain)
{
    while (chain) {
        struct pbuf *pb = chain;
        const struct ip_hdr *hdr = (const struct ip_hdr *)pb->data;
        size_t hlen = (size_t)(hdr->vhl & 0x0f) * 4;

        chain = chain->next;
        STAT_INC(&arp_stats, ARPSTAT_DROPPED_UNRESOLVED);
        ip_error_notify(hdr->src, ICMP_TYPE_DEST_UNREACH, ICMP_CODE_HOST_UNREACH, 0, hdr,
                        pb->data + hlen, pb->len - hlen);
        pbuf_free(pb);
    }
}

static int is_local_broadcast(struct ip_iface *iface, uint32_t addr)
{
    return addr == IP_ADDR_BROADCAST || addr == iface->broadcast;
}

int arp_output(struct ip_iface *iface, uint32_t nexthop, struct pbuf *pb)
{
    struct net_device *dev = iface->iface.dev;
    struct arp_entry *e;
    uint8_t ha[ETHER_ADDR_LEN];
    int send_request = 0, err = 0;

    if (!(atomic_load(&dev->flags) & NET_DEVICE_FLAG_NEED_ARP) || is_local_broadcast(iface, nexthop))
        return net_device_output(dev, ETHER_TYPE_IP, pb, dev->broadcast);
    mutex_lock(&arp_lock);
    e = cache_find_locked(nexthop);
    if (e && (e->state == ARP_STATE_RESOLVED || e->state == ARP_STATE_STATIC)) {
        memcpy(ha, e->ha, ETHER_ADDR_LEN);
        mutex_unlock(&arp_lock);
        return net_device_output(dev, ETHER_TYPE_IP, pb, ha);
    }
    if (!e) {
        e = cache_alloc_locked();
        if (!e) {
            STAT_INC(&arp_stats, ARPSTAT_CACHE_FULL);
            err = -ENOBUFS;
            goto drop_locked;
        }
        e->state = ARP_STATE_INCOMPLETE;
        e->pa = nexthop;
        e->iface = iface;
        e->updated_ms = net_now_ms();
        e->requests = 1;
        send_request = 1;
    }
    if (e->pending_len >= net_config.arp_pending_max) {
        STAT_INC(&arp_stats, ARPSTAT_QUEUE_FULL);
        err = -ENOBUFS;
        goto drop_locked;
    }
    pb->next = NULL;
    if (e->pending_tail)
        e->pending_tail->next = pb;
    else
        e->pending = pb;
    e->pending_tail = pb;
    e->pending_len++;
    mutex_unlock(&arp_lock);
    if (send_request)
        arp_request(iface, nexthop);
    return 0;
drop_locked:
    mutex_unlock(&arp_lock);
    log_debug(LOG_ARP, "datagram dropped: %s", err == -ENOBUFS ? "cache or queue full" : "?");
    pbuf_free(pb);
    return err;
}

/* ---- input ------------------------------------------------------------------ */

/* RFC 826 "Packet Reception": update the sender's entry if we have one
 * (merge); create one if the packet is for us. Returns the datagrams that
 * were waiting for it, for the caller to send after unlocking. */
static struct pbuf *cache_update_locked(struct ip_iface *iface, uint32_t spa, const uint8_t *sha,
                                        int for_us)
{
    struct arp_entry *e = cache_find_locked(spa);

    if (!e) {
        if (!for_us)
            return NULL;
        e = cache_alloc_locked();
        if (!e) {
            STAT_INC(&arp_stats, ARPSTAT_CACHE_FULL);
            return NULL;
        }
        e->pa = spa;
    }
    if (e->state == ARP_STATE_STATIC)
        return NULL;
    e->state = ARP_STATE_RESOLVED;
    e->iface = iface;
    memcpy(e->ha, sha, ETHER_ADDR_LEN);
    e->updated_ms = net_now_ms();
    e->requests = 0;
    return pending_take_locked(e);
}

/* Checks of the fixed part; returns a reason string or NULL when fine. */
static const char *arp_validate(const struct pbuf *pb, int *stat)
{
    const struct arp_ether_ip *msg = (const struct arp_ether_ip *)pb->data;
    static const uint8_t zero[ETHER_ADDR_LEN];
    uint16_t op;

    if (pb->len < sizeof(*msg))
        return *stat = ARPSTAT_RX_TOO_SHORT, "too short";
    if (load16(&msg->hrd) != ARP_HRD_ETHER || load16(&msg->pro) != ETHER_TYPE_IP ||
        msg->hln != ETHER_ADDR_LEN || msg->pln != 4)
        return *stat = ARPSTAT_RX_BAD_FORMAT, "not Ethernet/IPv4";
    op = load16(&msg->op);
    if (op != ARP_OP_REQUEST && op != ARP_OP_REPLY)
        return *stat = ARPSTAT_RX_BAD_OP, "unknown operation";
    if ((msg->sha[0] & 0x01) || memcmp(msg->sha, zero, ETHER_ADDR_LEN) == 0)
        return *stat = ARPSTAT_RX_BAD_SENDER, "group or zero sender address";
    return NULL;
}

static void arp_input(struct net_device *dev, struct pbuf *pb)
{
    const struct arp_ether_ip *msg = (const struct arp_ether_ip *)pb->data;
    struct ip_iface *iface = (struct ip_iface *)net_device_get_iface(dev, AF_INET);
    struct pbuf *waiting = NULL;
    uint32_t spa, tpa;
    uint8_t sha[ETHER_ADDR_LEN];
    const char *why;
    int stat = 0, for_us;

    STAT_INC(&arp_stats, ARPSTAT_RX_PACKETS);
    if ((why = arp_validate(pb, &stat)) != NULL) {
        STAT_INC(&arp_stats, stat);
        log_debug(LOG_ARP, "%s: drop: %s", dev->name, why);
        pbuf_free(pb);
        return;
    }
    if (log_enabled(LOG_ARP, LOG_LEVEL_DEBUG))
        arp_dump(pb->data, pb->len);
    memcpy(&spa, msg->spa, 4);
    memcpy(&tpa, msg->tpa, 4);
    memcpy(sha, msg->sha, ETHER_ADDR_LEN);
    STAT_INC(&arp_stats, load16(&msg->op) == ARP_OP_REQUEST ? ARPSTAT_RX_REQUESTS : ARPSTAT_RX_REPLIES);
    if (!iface) {
        STAT_INC(&arp_stats, ARPSTAT_RX_NOT_FOR_US);
        pbuf_free(pb);
        return;
    }
    if (spa == iface->unicast) {
        /* RFC 5227 §2.4: someone else uses our address. We keep it and say so. */
        char a[24];
        STAT_INC(&arp_stats, ARPSTAT_RX_CONFLICT);
        log_warn(LOG_ARP, "%s: address conflict: %s also claims %s", dev->name,
                 net_hwaddr_ntop(sha, ETHER_ADDR_LEN, a, sizeof(a)), "our address");
        pbuf_free(pb);
        return;
    }
    for_us = tpa == iface->unicast;
    if (spa != IP_ADDR_ANY) { /* an ARP probe (RFC 5227) has sender 0.0.0.0 */
        mutex_lock(&arp_lock);
        waiting = cache_update_locked(iface, spa, sha, for_us);
        mutex_unlock(&arp_lock);
        pending_send(dev, waiting, sha);
    }
    if (!for_us) {
        STAT_INC(&arp_stats, ARPSTAT_RX_NOT_FOR_US);
    } else if (load16(&msg->op) == ARP_OP_REQUEST) {
        STAT_INC(&arp_stats, ARPSTAT_TX_REPLIES);
        arp_send(dev, ARP_OP_REPLY, sha, iface->unicast, spa, sha);
    }
    pbuf_free(pb);
}

/* ---- timer ------------------------------------------------------------------- */

/* One pass over the cache: resend or give up on requests, expire old
 * entries. Failed entries' datagrams are collected and failed unlocked. */
static void arp_timer_fire(void *arg)
{
    struct pbuf *failed = NULL;
    struct { struct ip_iface *iface; uint32_t pa; } resend[16];
    unsigned nresend = 0;
    uint64_t now = net_now_ms();

    (void)arg;
    mutex_lock(&arp_lock);
    for (unsigned i = 0; i < cache_size; i++) {
        struct arp_entry *e = &cache[i];
        if (e->state == ARP_STATE_INCOMPLETE && now - e->updated_ms >= net_config.arp_retry_ms) {
            if (e->requests >= net_config.arp_retries) {
                char a[IP_ADDR_STR_LEN];
                STAT_INC(&arp_stats, ARPSTAT_RESOLVE_FAILED);
                log_debug(LOG_ARP, "%s: no reply after %u requests", ip_addr_ntop(e->pa, a, sizeof(a)),
                          e->requests);
                if (e->pending_tail) {
                    e->pending_tail->next = failed;
                    failed = pending_take_locked(e);
                }
                entry_free_locked(e);
            } else if (nresend < sizeof(resend) / sizeof(resend[0])) {
                e->requests++; /* the rest wait for the next pass */
                e->updated_ms = now;
                resend[nresend].iface = e->iface;
                resend[nresend++].pa = e->pa;
            }
        } else if (e->state == ARP_STATE_RESOLVED && now - e->updated_ms >= net_config.arp_reachable_ms) {
            STAT_INC(&arp_stats, ARPSTAT_EXPIRED);
            entry_free_locked(e);
        }
    }
    mutex_unlock(&arp_lock);
    for (unsigned i = 0; i < nresend; i++)
        arp_request(resend[i].iface, resend[i].pa);
    pending_fail(failed);
    net_timer_arm(&arp_timer, net_config.arp_retry_ms);
}

/* ---- announcement -------------------------------------------------------------- */

static void announce(struct ip_iface *iface, void *arg)
{
    static const uint8_t zero[ETHER_ADDR_LEN];
    struct net_device *dev = iface->iface.dev;

    (void)arg;
    if (!net_device_is_up(dev) || !(atomic_load(&dev->flags) & NET_DEVICE_FLAG_NEED_ARP))
        return;
    /* RFC 5227 §2.3: an announcement is a request with sender and target
     * both our address. */
    STAT_INC(&arp_stats, ARPSTAT_TX_GRATUITOUS);
    arp_send(dev, ARP_OP_REQUEST, zero, iface->unicast, iface->unicast, ETHER_ADDR_BROADCAST);
}

void arp_announce_all(void)
{
    ip_iface_foreach(announce, NULL);
}

/* ---- life cycle and tools ----------------------------------------------------- */

int arp_init(void)
{
    int err;

    stats_register(&arp_stats);
    mutex_lock(&arp_lock);
    cache_size = net_config.arp_cache_max ? net_config.arp_cache_max : 1;
    cache = mem_calloc(cache_size, sizeof(*cache));
    mutex_unlock(&arp_lock);
    if (!cache)
        return -ENOMEM;
    if ((err = net_timer_init(&arp_timer, "arp", arp_timer_fire, NULL)) < 0)
        return err;
    net_timer_arm(&arp_timer, net_config.arp_retry_ms);
    return net_protocol_register(ETHER_TYPE_ARP, arp_input);
}

void arp_cleanup(void)
{
    net_timer_destroy(&arp_timer);
    mutex_lock(&arp_lock);
    for (unsigned i = 0; i < cache_size; i++)
        pbuf_free_chain(pending_take_locked(&cache[i]));
    mem_free(cache);
    cache = NULL;
    cache_size = 0;
    mutex_unlock(&arp_lock);
}

enum arp_state arp_cache_lookup(uint32_t addr, uint8_t hw[6])
{
    enum arp_state state = ARP_STATE_FREE;
    struct arp_entry *e;

    mutex_lock(&arp_lock);
    e = cache_find_locked(addr);
    if (e) {
        state = e->state;
        if (hw && state != ARP_STATE_INCOMPLETE)
            memcpy(hw, e->ha, ETHER_ADDR_LEN);
    }
    mutex_unlock(&arp_lock);
    return state;
}

int arp_cache_add_static(struct ip_iface *iface, uint32_t addr, const uint8_t hw[6])
{
    struct arp_entry *e;
    struct pbuf *waiting = NULL;

    mutex_lock(&arp_lock);
    e = cache_find_locked(addr);
    if (!e)
        e = cache_alloc_locked();
    if (!e) {
        mutex_unlock(&arp_lock);
        return -ENOBUFS;
    }
    waiting = pending_take_locked(e);
    e->state = ARP_STATE_STATIC;
    e->pa = addr;
    e->iface = iface;
    memcpy(e->ha, hw, ETHER_ADDR_LEN);
    e->updated_ms = net_now_ms();
    mutex_unlock(&arp_lock);
    pending_send(iface->iface.dev, waiting, hw);
    return 0;
}

unsigned arp_cache_count(void)
{
    unsigned n = 0;

    mutex_lock(&arp_lock);
    for (unsigned i = 0; i < cache_size; i++)
        n += cache[i].state != ARP_STATE_FREE;
    mutex_unlock(&arp_lock);
    return n;
}

size_t arp_cache_format(char *buf, size_t size)
{
    static const char *const names[] = { "free", "incomplete", "resolved", "static" };
    uint64_t now = net_now_ms();
    size_t n = 0;

    if (size)
        buf[0] = '\0';
    mutex_lock(&arp_lock);
    for (unsigned i = 0; i < cache_size; i++) {
        struct arp_entry *e = &cache[i];
        char a[IP_ADDR_STR_LEN], h[24];
        int m;
        if (e->state == ARP_STATE_FREE)
            continue;
        m = snprintf(n < size ? buf + n : NULL, n < size ? size - n : 0,
                     "%-15s %s %-10s age %llums queued %u\n", ip_addr_ntop(e->pa, a, sizeof(a)),
                     net_hwaddr_ntop(e->ha, ETHER_ADDR_LEN, h, sizeof(h)), names[e->state],
                     (unsigned long long)(now - e->updated_ms), e->pending_len);
        if (m > 0)
            n += (size_t)m;
    }
    mutex_unlock(&arp_lock);
    return n;
}

void arp_dump(const uint8_t *data, size_t len)
{
    const struct arp_ether_ip *msg = (const struct arp_ether_ip *)data;
    char sha[24], tha[24], spa[IP_ADDR_STR_LEN], tpa[IP_ADDR_STR_LEN];
    uint32_t s, t;

    if (len < sizeof(*msg))
        return;
    memcpy(&s, msg->spa, 4);
    memcpy(&t, msg->tpa, 4);
    log_debug(LOG_ARP, "arp %s: %s (%s) -> %s (%s)",
              load16(&msg->op) == ARP_OP_REQUEST ? "request" : "reply",
              ip_addr_ntop(s, spa, sizeof(spa)), net_hwaddr_ntop(msg->sha, 6, sha, sizeof(sha)),
              ip_addr_ntop(t, tpa, sizeof(tpa)), net_hwaddr_ntop(msg->tha, 6, tha, sizeof(tha)));
}
