/*
 * ip.c — IPv4 (RFC 791; host requirements RFC 1122 §3.2.1, §3.3).
 *
 * Called in the order  ether_input -> ip_input -> [ip_reass_input] ->
 * transport handler  on the stack thread, and  transport -> ip_output ->
 * ip_route_lookup -> [fragment] -> arp_output  on any thread.
 *
 * netstep is a host, not a router: datagrams for addresses that are not
 * ours are dropped (ip.in_not_for_us), never forwarded. The weak host model
 * of RFC 1122 §3.3.4.2 applies: a datagram for any of our addresses is
 * accepted on any interface. Options are accepted and skipped.
 *
 * Locking: ip_lock guards the interface list, the route table and the
 * protocol table; it is never held while calling out of this file.
 */
#include "proto/ip.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "proto/arp.h"
#include "proto/ether.h"
#include "proto/icmp.h"
#include "util/byteorder.h"
#include "util/cksum.h"
#include "util/log.h"
#include "util/mem.h"

static const char *const ip_stat_names[IPSTAT_COUNT] = {
    [IPSTAT_IN_RECEIVES] = "in_receives",
    [IPSTAT_IN_DELIVERS] = "in_delivers",
    [IPSTAT_IN_TOO_SHORT] = "in_too_short",
    [IPSTAT_IN_BAD_VERSION] = "in_bad_version",
    [IPSTAT_IN_BAD_HDR_LEN] = "in_bad_hdr_len",
    [IPSTAT_IN_BAD_TOTAL_LEN] = "in_bad_total_len",
    [IPSTAT_IN_BAD_CHECKSUM] = "in_bad_checksum",
    [IPSTAT_IN_BAD_SOURCE] = "in_bad_source",
    [IPSTAT_IN_NOT_FOR_US] = "in_not_for_us",
    [IPSTAT_IN_UNKNOWN_PROTOCOL] = "in_unknown_protocol",
    [IPSTAT_IN_NO_IFACE] = "in_no_iface",
    [IPSTAT_OUT_REQUESTS] = "out_requests",
    [IPSTAT_OUT_NO_ROUTE] = "out_no_route",
    [IPSTAT_OUT_NO_MEMORY] = "out_no_memory",
    [IPSTAT_OUT_TOO_BIG] = "out_too_big",
    [IPSTAT_OUT_FRAGMENTED] = "out_fragmented",
    [IPSTAT_OUT_FRAGMENTS] = "out_fragments",
    [IPSTAT_REASS_FRAGMENTS] = "reass_fragments",
    [IPSTAT_REASS_OK] = "reass_ok",
    [IPSTAT_REASS_TIMEOUT] = "reass_timeout",
    [IPSTAT_REASS_OVERLAP] = "reass_overlap",
    [IPSTAT_REASS_OVERSIZE] = "reass_oversize",
    [IPSTAT_REASS_BAD_FRAGMENT] = "reass_bad_fragment",
    [IPSTAT_REASS_NO_MEMORY] = "reass_no_memory",
    [IPSTAT_REASS_DUPLICATE] = "reass_duplicate",
};
struct stats_group ip_stats = STATS_GROUP("ip", ip_stat_names);

struct ip_route {
    struct ip_route *next;   /* [I] */
    uint32_t network;        /* [I] */
    uint32_t netmask;        /* [I] */
    uint32_t gateway;        /* [I] IP_ADDR_ANY when on-link */
    struct ip_iface *iface;  /* [I] */
};

struct ip_protocol {
    ip_protocol_handler handler; /* [I] */
    ip_error_handler on_error;   /* [I] */
};

static struct mutex ip_lock = MUTEX_INITIALIZER;
static struct ip_iface *ifaces;          /* [I] */
static struct ip_route *routes;          /* [I] */
static struct ip_protocol protocols[256]; /* [I] */
static _Atomic uint16_t next_id;

static void ip_input(struct net_device *dev, struct pbuf *pb);

/* ---- addresses ------------------------------------------------------------- */

int ip_addr_pton(const char *s, uint32_t *addr)
{
    uint8_t b[4];
    const char *p = s;

    for (int i = 0; i < 4; i++) {
        unsigned v = 0;
        int digits = 0;
        while (*p >= '0' && *p <= '9' && digits < 4) {
            v = v * 10 + (unsigned)(*p++ - '0');
            digits++;
        }
        if (digits == 0 || digits > 3 || v > 255)
            return -EINVAL;
        b[i] = (uint8_t)v;
        if (i < 3 && *p++ != '.')
            return -EINVAL;
    }
    if (*p != '\0')
        return -EINVAL;
    memcpy(addr, b, 4);
    return 0;
}

char *ip_addr_ntop(uint32_t addr, char *buf, size_t size)
{
    const uint8_t *b = (const uint8_t *)&addr;

    snprintf(buf, size, "%u.%u.%u.%u", b[0], b[1], b[2], b[3]);
    return buf;
}

int ip_prefix_pton(const char *s, uint32_t *addr, uint32_t *netmask)
{
    char tmp[32];
    const char *slash = strchr(s, '/');
    unsigned bits = 32;

    if (strlen(s) >= sizeof(tmp))
        return -EINVAL;
    snprintf(tmp, sizeof(tmp), "%s", s);
    if (slash) {
        char *end;
        tmp[slash - s] = '\0';
        bits = (unsigned)strtoul(slash + 1, &end, 10);
        if (*end != '\0' || end == slash + 1 || bits > 32)
            return -EINVAL;
    }
    if (ip_addr_pton(tmp, addr) < 0)
        return -EINVAL;
    *netmask = bits ? hton32(0xffffffffu << (32 - bits)) : 0;
    return 0;
}

static int is_loopback_addr(uint32_t addr)
{
    return (ntoh32(addr) >> 24) == 127; /* 127.0.0.0/8 */
}

static int is_group_addr(uint32_t addr)
{
    return (ntoh32(addr) >> 28) == 0xe; /* 224.0.0.0/4, multicast */
}

/* ---- interfaces ---------------------------------------------------------- */

struct ip_iface *ip_iface_add(struct net_device *dev, uint32_t unicast, uint32_t netmask, int *errp)
{
    struct ip_iface *iface = mem_calloc(1, sizeof(*iface));
    int err;

    if (!iface) {
        err = -ENOMEM;
        goto fail;
    }
    iface->iface.family = AF_INET;
    iface->unicast = unicast;
    iface->netmask = netmask;
    iface->broadcast = (unicast & netmask) | ~netmask;
    if ((err = net_device_add_iface(dev, &iface->iface)) < 0)
        goto fail;
    mutex_lock(&ip_lock);
    iface->next = ifaces;
    ifaces = iface;
    mutex_unlock(&ip_lock);
    /* the connected route: the subnet is reachable directly */
    if ((err = ip_route_add(unicast & netmask, netmask, IP_ADDR_ANY, iface)) < 0)
        goto fail_listed;
    if (log_enabled(LOG_IP, LOG_LEVEL_INFO)) {
        char a[IP_ADDR_STR_LEN], m[IP_ADDR_STR_LEN];
        log_info(LOG_IP, "%s: address %s netmask %s", dev->name, ip_addr_ntop(unicast, a, sizeof(a)),
                 ip_addr_ntop(netmask, m, sizeof(m)));
    }
    return iface;
fail_listed:
    /* the iface stays linked to dev; it is freed with the others at cleanup */
    if (errp)
        *errp = err;
    return NULL;
fail:
    mem_free(iface);
    if (errp)
        *errp = err;
    return NULL;
}

struct ip_iface *ip_iface_by_addr(uint32_t addr)
{
    struct ip_iface *iface;

    mutex_lock(&ip_lock);
    for (iface = ifaces; iface; iface = iface->next)
        if (iface->unicast == addr)
            break;
    mutex_unlock(&ip_lock);
    return iface;
}

int ip_addr_is_local(uint32_t addr)
{
    return ip_iface_by_addr(addr) != NULL;
}

void ip_iface_foreach(void (*fn)(struct ip_iface *iface, void *arg), void *arg)
{
    struct ip_iface *list;

    /* Interfaces are only added, never removed while the stack runs, so
     * the list can be walked after dropping the lock. */
    mutex_lock(&ip_lock);
    list = ifaces;
    mutex_unlock(&ip_lock);
    for (struct ip_iface *i = list; i; i = i->next)
        fn(i, arg);
}

/* ---- routes ---------------------------------------------------------------- */

int ip_route_add(uint32_t network, uint32_t netmask, uint32_t gateway, struct ip_iface *iface)
{
    struct ip_route *r = mem_calloc(1, sizeof(*r));

    if (!r)
        return -ENOMEM;
    r->network = network & netmask;
    r->netmask = netmask;
    r->gateway = gateway;
    r->iface = iface;
    mutex_lock(&ip_lock);
    r->next = routes;
    routes = r;
    mutex_unlock(&ip_lock);
    return 0;
}

int ip_route_set_default(uint32_t gateway, struct ip_iface *iface)
{
    return ip_route_add(IP_ADDR_ANY, IP_ADDR_ANY, gateway, iface);
}

int ip_route_lookup(uint32_t dst, struct ip_iface **iface, uint32_t *nexthop)
{
    struct ip_route *best = NULL;

    mutex_lock(&ip_lock);
    for (struct ip_route *r = routes; r; r = r->next) {
        if ((dst & r->netmask) != r->network)
            continue;
        /* longest prefix wins: a longer mask is a larger host-order value */
        if (!best || ntoh32(r->netmask) > ntoh32(best->netmask))
            best = r;
    }
    if (best) {
        *iface = best->iface;
        *nexthop = best->gateway != IP_ADDR_ANY ? best->gateway : dst;
    }
    mutex_unlock(&ip_lock);
    return best ? 0 : -ENETUNREACH;
}

static unsigned mask_bits(uint32_t netmask)
{
    return (unsigned)__builtin_popcount(netmask);
}

size_t ip_route_format(char *buf, size_t size)
{
    size_t n = 0;

    if (size)
        buf[0] = '\0';
    mutex_lock(&ip_lock);
    for (struct ip_route *r = routes; r; r = r->next) {
        char net[IP_ADDR_STR_LEN], gw[IP_ADDR_STR_LEN];
        int m = snprintf(n < size ? buf + n : NULL, n < size ? size - n : 0, "%s/%u via %s dev %s\n",
                         ip_addr_ntop(r->network, net, sizeof(net)), mask_bits(r->netmask),
                         r->gateway ? ip_addr_ntop(r->gateway, gw, sizeof(gw)) : "on-link",
                         r->iface->iface.dev->name);
        if (m > 0)
            n += (size_t)m;
    }
    mutex_unlock(&ip_lock);
    return n;
}

uint32_t ip_source_for(uint32_t dst)
{
    struct ip_iface *iface;
    uint32_t nexthop;

    if (ip_addr_is_local(dst))
        return dst;
    return ip_route_lookup(dst, &iface, &nexthop) == 0 ? iface->unicast : IP_ADDR_ANY;
}

size_t ip_mtu_for(uint32_t dst)
{
    struct ip_iface *iface;
    uint32_t nexthop;

    if (ip_route_lookup(dst, &iface, &nexthop) < 0)
        return 576 - IP_HDR_SIZE_MIN; /* RFC 1122 §3.3.3: every host takes 576 */
    return iface->iface.dev->mtu - IP_HDR_SIZE_MIN;
}

/* ---- protocols ------------------------------------------------------------ */

int ip_protocol_register(uint8_t protocol, ip_protocol_handler handler, ip_error_handler on_error)
{
    int err = 0;

    mutex_lock(&ip_lock);
    if (protocols[protocol].handler)
        err = -EEXIST;
    else
        protocols[protocol] = (struct ip_protocol){ .handler = handler, .on_error = on_error };
    mutex_unlock(&ip_lock);
    return err;
}

static struct ip_protocol protocol_get(uint8_t protocol)
{
    struct ip_protocol p;

    mutex_lock(&ip_lock);
    p = protocols[protocol];
    mutex_unlock(&ip_lock);
    return p;
}

void ip_error_notify(uint32_t from, uint8_t type, uint8_t code, uint32_t info,
                     const struct ip_hdr *inner, const uint8_t *payload, size_t len)
{
    struct ip_protocol p = protocol_get(inner->protocol);

    if (p.on_error)
        p.on_error(from, type, code, info, inner, payload, len);
}

/* ---- input ------------------------------------------------------------------ */

void ip_dump(const uint8_t *data, size_t len)
{
    const struct ip_hdr *hdr = (const struct ip_hdr *)data;
    char src[IP_ADDR_STR_LEN], dst[IP_ADDR_STR_LEN];
    uint16_t off;

    if (len < IP_HDR_SIZE_MIN)
        return;
    off = load16(&hdr->offset);
    log_debug(LOG_IP, "ip %s > %s: proto %u, ihl %u, tos 0x%02x, len %u, id %u, flags [%s%s], "
              "offset %u, ttl %u, sum 0x%04x",
              ip_addr_ntop(hdr->src, src, sizeof(src)), ip_addr_ntop(hdr->dst, dst, sizeof(dst)),
              hdr->protocol, (unsigned)(hdr->vhl & 0x0f), hdr->tos, load16(&hdr->total),
              load16(&hdr->id), (off & IP_FLAG_DF) ? "DF" : "", (off & IP_FLAG_MF) ? "MF" : "",
              (unsigned)(off & IP_OFFSET_MASK) * 8, hdr->ttl, load16(&hdr->sum));
}

/* RFC 1122 §3.2.1.1-3.2.1.3: check the header of pb. Returns the header
 * length, or 0 after counting the drop in *stat with a reason in *why. */
static size_t ip_validate(const struct pbuf *pb, int *stat, const char **why)
{
    const struct ip_hdr *hdr = (const struct ip_hdr *)pb->data;
    size_t hlen, total;

    if (pb->len < IP_HDR_SIZE_MIN)
        return *stat = IPSTAT_IN_TOO_SHORT, *why = "shorter than a header", 0;
    if ((hdr->vhl >> 4) != IP_VERSION_4)
        return *stat = IPSTAT_IN_BAD_VERSION, *why = "not version 4", 0;
    hlen = (size_t)(hdr->vhl & 0x0f) * 4;
    if (hlen < IP_HDR_SIZE_MIN || hlen > pb->len)
        return *stat = IPSTAT_IN_BAD_HDR_LEN, *why = "bad header length", 0;
    total = load16(&hdr->total);
    if (total < hlen || total > pb->len)
        return *stat = IPSTAT_IN_BAD_TOTAL_LEN, *why = "bad total length", 0;
    if (cksum16(hdr, hlen, 0) != 0)
        return *stat = IPSTAT_IN_BAD_CHECKSUM, *why = "bad checksum", 0;
    if (hdr->src == IP_ADDR_BROADCAST || is_group_addr(hdr->src))
        return *stat = IPSTAT_IN_BAD_SOURCE, *why = "broadcast or multicast source", 0;
    return hlen;
}

/* Is dst ours, as seen on iface? */
static int ip_accepts(struct ip_iface *iface, uint32_t dst)
{
    if (dst == iface->unicast || dst == iface->broadcast || dst == IP_ADDR_BROADCAST)
        return 1;
    return ip_addr_is_local(dst); /* weak host model */
}

static void ip_deliver(struct ip_iface *iface, struct pbuf *pb)
{
    const struct ip_hdr *hdr = (const struct ip_hdr *)pb->data;
    size_t hlen = (size_t)(hdr->vhl & 0x0f) * 4;
    struct ip_protocol p = protocol_get(hdr->protocol);
    struct ip_rx rx = {
        .hdr = hdr, .src = hdr->src, .dst = hdr->dst, .iface = iface,
        .link_broadcast = (pb->flags & PBUF_FLAG_LINK_BCAST) != 0,
    };

    pbuf_pull(pb, hlen); /* hdr stays valid: it is now headroom */
    if (!p.handler) {
        STAT_INC(&ip_stats, IPSTAT_IN_UNKNOWN_PROTOCOL);
        log_debug(LOG_IP, "no handler for protocol %u, dropped", hdr->protocol);
        /* RFC 1122 §3.2.2.1: a host SHOULD send protocol unreachable */
        icmp_error(ICMP_TYPE_DEST_UNREACH, ICMP_CODE_PROTO_UNREACH, 0, &rx, pb->data, pb->len);
        pbuf_free(pb);
        return;
    }
    STAT_INC(&ip_stats, IPSTAT_IN_DELIVERS);
    p.handler(&rx, pb);
}

static void ip_input(struct net_device *dev, struct pbuf *pb)
{
    struct ip_iface *iface;
    const struct ip_hdr *hdr = (const struct ip_hdr *)pb->data;
    const char *why = NULL;
    int stat = 0;
    size_t hlen;

    STAT_INC(&ip_stats, IPSTAT_IN_RECEIVES);
    if ((hlen = ip_validate(pb, &stat, &why)) == 0)
        goto drop;
    if (log_enabled(LOG_IP, LOG_LEVEL_DEBUG))
        ip_dump(pb->data, pb->len);
    pbuf_trim(pb, load16(&hdr->total)); /* cut link-layer padding */
    iface = (struct ip_iface *)net_device_get_iface(dev, AF_INET);
    if (!iface) {
        stat = IPSTAT_IN_NO_IFACE, why = "no IPv4 address on the device";
        goto drop;
    }
    if ((is_loopback_addr(hdr->src) || is_loopback_addr(hdr->dst)) &&
        dev->type != NET_DEVICE_TYPE_LOOPBACK && !(pb->flags & PBUF_FLAG_NO_LINK)) {
        /* RFC 1122 §3.2.1.3 (g): 127/8 never appears on a wire */
        stat = IPSTAT_IN_BAD_SOURCE, why = "loopback address from a wire";
        goto drop;
    }
    if (hdr->src == iface->broadcast) {
        /* RFC 1122 §3.2.1.3: a host MUST silently discard a datagram whose
         * source is {<Network-number>, -1}; answering it would reach every
         * host on the link. */
        stat = IPSTAT_IN_BAD_SOURCE, why = "subnet broadcast source";
        goto drop;
    }
    if (!ip_accepts(iface, hdr->dst)) {
        stat = IPSTAT_IN_NOT_FOR_US, why = "not addressed to us";
        goto drop;
    }
    if (load16(&hdr->offset) & (IP_FLAG_MF | IP_OFFSET_MASK)) {
        pb = ip_reass_input(pb);
        if (!pb)
            return; /* held, or dropped and counted there */
    }
    ip_deliver(iface, pb);
    return;
drop:
    STAT_INC(&ip_stats, stat);
    log_debug(LOG_IP, "%s: drop datagram (%zu bytes): %s", dev->name, pb->len, why);
    pbuf_free(pb);
}

/* ---- output ------------------------------------------------------------------ */

static void ip_hdr_fill(struct ip_hdr *hdr, size_t total, uint16_t id, uint16_t offset,
                        uint8_t protocol, uint32_t src, uint32_t dst, const struct ip_tx_opts *o)
{
    hdr->vhl = (IP_VERSION_4 << 4) | (IP_HDR_SIZE_MIN / 4);
    hdr->tos = o ? o->tos : 0;
    store16(&hdr->total, (uint16_t)total);
    store16(&hdr->id, id);
    store16(&hdr->offset, offset);
    hdr->ttl = o && o->ttl ? o->ttl : (uint8_t)net_config.ip_default_ttl;
    hdr->protocol = protocol;
    hdr->sum = 0;
    hdr->src = src;
    hdr->dst = dst;
    store16(&hdr->sum, cksum16(hdr, IP_HDR_SIZE_MIN, 0));
}

/* Hand one finished datagram to the link. A datagram to one of our own
 * addresses never leaves: it is queued as input, as if it had arrived. */
static int ip_send_datagram(struct ip_iface *iface, uint32_t nexthop, struct pbuf *pb)
{
    const struct ip_hdr *hdr = (const struct ip_hdr *)pb->data;

    if (log_enabled(LOG_IP, LOG_LEVEL_DEBUG))
        ip_dump(pb->data, pb->len);
    if (ip_addr_is_local(hdr->dst)) {
        pb->proto = ETHER_TYPE_IP;
        pb->flags |= PBUF_FLAG_NO_LINK;
        return net_input(iface->iface.dev, pb);
    }
    return arp_output(iface, nexthop, pb);
}

/* RFC 791 §3.2 "Fragmentation": cut the payload of pb into pieces whose
 * lengths are multiples of 8 (all but the last) and send each. */
static int ip_fragment(struct ip_iface *iface, uint32_t nexthop, struct pbuf *pb, uint8_t protocol,
                       uint32_t src, uint32_t dst, const struct ip_tx_opts *o)
{
    size_t mtu = iface->iface.dev->mtu, chunk = (mtu - IP_HDR_SIZE_MIN) & ~(size_t)7;
    uint16_t id = atomic_fetch_add(&next_id, 1);
    int err = 0;

    STAT_INC(&ip_stats, IPSTAT_OUT_FRAGMENTED);
    for (size_t off = 0; off < pb->len && err == 0; off += chunk) {
        size_t len = pb->len - off < chunk ? pb->len - off : chunk;
        int more = off + len < pb->len;
        struct pbuf *frag = pbuf_alloc(PBUF_HEADROOM, len);
        struct ip_hdr *hdr;

        if (!frag) {
            STAT_INC(&ip_stats, IPSTAT_OUT_NO_MEMORY);
            err = -ENOMEM;
            break;
        }
        memcpy(frag->data, pb->data + off, len);
        hdr = (struct ip_hdr *)pbuf_push(frag, IP_HDR_SIZE_MIN);
        ip_hdr_fill(hdr, IP_HDR_SIZE_MIN + len, id, (uint16_t)((more ? IP_FLAG_MF : 0) | (off / 8)),
                    protocol, src, dst, o);
        STAT_INC(&ip_stats, IPSTAT_OUT_FRAGMENTS);
        err = ip_send_datagram(iface, nexthop, frag);
    }
    pbuf_free(pb);
    return err;
}

int ip_output_opt(uint8_t protocol, struct pbuf *pb, uint32_t src, uint32_t dst,
                  const struct ip_tx_opts *o)
{
    struct ip_iface *iface;
    uint32_t nexthop;
    struct ip_hdr *hdr;

    STAT_INC(&ip_stats, IPSTAT_OUT_REQUESTS);
    if (pb->len > IP_PAYLOAD_SIZE_MAX) {
        STAT_INC(&ip_stats, IPSTAT_OUT_TOO_BIG);
        pbuf_free(pb);
        return -EMSGSIZE;
    }
    if (is_loopback_addr(dst) && !ip_addr_is_local(dst)) {
        /* RFC 1122 §3.2.1.3 (g): MUST NOT be sent outside a host */
        STAT_INC(&ip_stats, IPSTAT_OUT_NO_ROUTE);
        pbuf_free(pb);
        return -ENETUNREACH;
    }
    if (src != IP_ADDR_ANY && (iface = ip_iface_by_addr(src)) != NULL &&
        (dst == IP_ADDR_BROADCAST || dst == iface->broadcast)) {
        nexthop = dst; /* a broadcast leaves by the interface it names */
    } else if (ip_route_lookup(dst, &iface, &nexthop) < 0) {
        char a[IP_ADDR_STR_LEN];
        STAT_INC(&ip_stats, IPSTAT_OUT_NO_ROUTE);
        log_debug(LOG_IP, "no route to %s", ip_addr_ntop(dst, a, sizeof(a)));
        pbuf_free(pb);
        return -ENETUNREACH;
    }
    if (src == IP_ADDR_ANY)
        src = ip_addr_is_local(dst) ? dst : iface->unicast;
    /* a TCP super-segment (gso_size) is cut up by the device, not here */
    if (pb->len + IP_HDR_SIZE_MIN > iface->iface.dev->mtu && !pb->gso_size) {
        if (o && o->dont_fragment) {
            STAT_INC(&ip_stats, IPSTAT_OUT_TOO_BIG);
            pbuf_free(pb);
            return -EMSGSIZE;
        }
        return ip_fragment(iface, nexthop, pb, protocol, src, dst, o);
    }
    hdr = (struct ip_hdr *)pbuf_push(pb, IP_HDR_SIZE_MIN);
    if (!hdr) {
        STAT_INC(&ip_stats, IPSTAT_OUT_NO_MEMORY);
        pbuf_free(pb);
        return -ENOBUFS;
    }
    ip_hdr_fill(hdr, pb->len, atomic_fetch_add(&next_id, 1), o && o->dont_fragment ? IP_FLAG_DF : 0,
                protocol, src, dst, o);
    return ip_send_datagram(iface, nexthop, pb);
}

int ip_output(uint8_t protocol, struct pbuf *pb, uint32_t src, uint32_t dst)
{
    return ip_output_opt(protocol, pb, src, dst, NULL);
}

/* ---- life cycle ---------------------------------------------------------------- */

int ip_init(void)
{
    uint16_t id;
    int err;

    stats_register(&ip_stats);
    platform_random(&id, sizeof(id));
    atomic_store(&next_id, id);
    if ((err = ip_reass_init()) < 0)
        return err;
    return net_protocol_register(ETHER_TYPE_IP, ip_input);
}

void ip_cleanup(void)
{
    ip_reass_cleanup();
    mutex_lock(&ip_lock);
    while (routes) {
        struct ip_route *r = routes;
        routes = r->next;
        mem_free(r);
    }
    while (ifaces) {
        struct ip_iface *i = ifaces;
        ifaces = i->next;
        mem_free(i);
    }
    memset(protocols, 0, sizeof(protocols));
    mutex_unlock(&ip_lock);
}
