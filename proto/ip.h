/*
 * ip.h — IPv4 (RFC 791, RFC 1122 §3): interfaces, routing, input, output,
 * fragmentation and reassembly.
 *
 * Called in the order  ether_input -> ip_input -> (ip_reass_input) ->
 * the transport's handler (icmp_input, udp_input, tcp_input); and
 * sock/udp/tcp/icmp -> ip_output -> ip_route_lookup -> fragmentation ->
 * arp_output / net_device_output.
 *
 * Addresses are uint32_t in network byte order everywhere.
 *
 * Lock key:
 *   [I]  ip_lock: interfaces, routes and the protocol table
 *   [R]  reass_lock (ip_reass.c): reassembly contexts
 */
#ifndef NETSTEP_IP_H
#define NETSTEP_IP_H

#include <stddef.h>
#include <stdint.h>

#include "net.h"

#define IP_VERSION_4 4
#define IP_HDR_SIZE_MIN 20
#define IP_HDR_SIZE_MAX 60
#define IP_TOTAL_SIZE_MAX 65535
#define IP_PAYLOAD_SIZE_MAX (IP_TOTAL_SIZE_MAX - IP_HDR_SIZE_MIN)

#define IP_PROTOCOL_ICMP 1
#define IP_PROTOCOL_TCP 6
#define IP_PROTOCOL_UDP 17

#define IP_ADDR_ANY 0x00000000u
#define IP_ADDR_BROADCAST 0xffffffffu
#define IP_ADDR_STR_LEN 16

/* flags in the offset field (host order) */
#define IP_FLAG_RF 0x8000 /* reserved, must be zero */
#define IP_FLAG_DF 0x4000
#define IP_FLAG_MF 0x2000
#define IP_OFFSET_MASK 0x1fff

/* On the wire. */
struct ip_hdr {
    uint8_t vhl;       /* version (4 bits) and header length in words (4) */
    uint8_t tos;
    uint16_t total;    /* network order */
    uint16_t id;       /* network order */
    uint16_t offset;   /* flags and fragment offset, network order */
    uint8_t ttl;
    uint8_t protocol;
    uint16_t sum;
    uint32_t src;
    uint32_t dst;
} __attribute__((packed));

/* An IPv4 address on a device. */
struct ip_iface {
    struct net_iface iface; /* first: net.c links these */
    struct ip_iface *next;  /* [I] every ip_iface */
    uint32_t unicast;       /* [c] */
    uint32_t netmask;       /* [c] */
    uint32_t broadcast;     /* [c] */
};

/* The IP layer's view of one received datagram, passed to the transport. */
struct ip_rx {
    const struct ip_hdr *hdr; /* header as received (inside pb's headroom) */
    uint32_t src, dst;        /* from hdr */
    struct ip_iface *iface;   /* where it arrived */
    int link_broadcast;       /* sent to a link-layer broadcast */
};

/* Handler for a transport: runs on the stack thread with pb->data at the
 * transport header and pb->len its length (padding already trimmed).
 * Consumes pb. */
typedef void (*ip_protocol_handler)(const struct ip_rx *rx, struct pbuf *pb);
/* Called when an ICMP error (or a local failure such as an unresolved
 * next hop) refers to a datagram of this protocol that we sent. from is who
 * reported it (our own address for a local failure); inner is the quoted IP
 * header; payload/len the quoted bytes of its payload (at least 8 when they
 * came from the wire). */
typedef void (*ip_error_handler)(uint32_t from, uint8_t type, uint8_t code, uint32_t info,
                                 const struct ip_hdr *inner, const uint8_t *payload, size_t len);

enum ip_stat {
    IPSTAT_IN_RECEIVES,
    IPSTAT_IN_DELIVERS,
    IPSTAT_IN_TOO_SHORT,
    IPSTAT_IN_BAD_VERSION,
    IPSTAT_IN_BAD_HDR_LEN,
    IPSTAT_IN_BAD_TOTAL_LEN,
    IPSTAT_IN_BAD_CHECKSUM,
    IPSTAT_IN_BAD_SOURCE,
    IPSTAT_IN_NOT_FOR_US,
    IPSTAT_IN_UNKNOWN_PROTOCOL,
    IPSTAT_IN_NO_IFACE,
    IPSTAT_OUT_REQUESTS,
    IPSTAT_OUT_NO_ROUTE,
    IPSTAT_OUT_NO_MEMORY,
    IPSTAT_OUT_TOO_BIG,       /* larger than 65535, or DF and above the MTU */
    IPSTAT_OUT_FRAGMENTED,    /* datagrams split */
    IPSTAT_OUT_FRAGMENTS,     /* fragments created */
    IPSTAT_REASS_FRAGMENTS,   /* fragments received */
    IPSTAT_REASS_OK,          /* datagrams reassembled */
    IPSTAT_REASS_TIMEOUT,
    IPSTAT_REASS_OVERLAP,     /* train dropped: overlapping fragments */
    IPSTAT_REASS_OVERSIZE,    /* train dropped: beyond 65535 bytes */
    IPSTAT_REASS_BAD_FRAGMENT, /* MF set and length not a multiple of 8, ... */
    IPSTAT_REASS_NO_MEMORY,   /* limit on datagrams or bytes reached */
    IPSTAT_REASS_DUPLICATE,   /* an exact repeat of a fragment we hold */
    IPSTAT_COUNT
};
extern struct stats_group ip_stats;

/* Options for ip_output_opt. */
struct ip_tx_opts {
    uint8_t ttl;   /* 0: net_config.ip_default_ttl */
    uint8_t tos;
    int dont_fragment;
};

int ip_init(void);
void ip_cleanup(void);

/* ---- addresses ---- */
int ip_addr_pton(const char *s, uint32_t *addr);
char *ip_addr_ntop(uint32_t addr, char *buf, size_t size);
/* "a.b.c.d/n" -> address and netmask. */
int ip_prefix_pton(const char *s, uint32_t *addr, uint32_t *netmask);

/* ---- interfaces ---- */
/* Give dev the address unicast/netmask and add a route to its subnet.
 * Returns the new iface, or NULL (-errno in *err if err is not NULL). */
struct ip_iface *ip_iface_add(struct net_device *dev, uint32_t unicast, uint32_t netmask, int *err);
/* The iface that owns addr, or NULL. */
struct ip_iface *ip_iface_by_addr(uint32_t addr);
/* Non-zero if addr is one of our unicast addresses. */
int ip_addr_is_local(uint32_t addr);
/* Visit every iface (ARP's announcement uses it). */
void ip_iface_foreach(void (*fn)(struct ip_iface *iface, void *arg), void *arg);

/* ---- routes (longest prefix match) ---- */
int ip_route_add(uint32_t network, uint32_t netmask, uint32_t gateway, struct ip_iface *iface);
int ip_route_set_default(uint32_t gateway, struct ip_iface *iface);
/* Where dst goes: the iface and the next hop (dst itself when on-link).
 * Returns 0 or -ENETUNREACH. */
int ip_route_lookup(uint32_t dst, struct ip_iface **iface, uint32_t *nexthop);
/* "dst/prefix via gw dev NAME" lines into buf. */
size_t ip_route_format(char *buf, size_t size);

/* ---- input / output ---- */
int ip_protocol_register(uint8_t protocol, ip_protocol_handler handler, ip_error_handler on_error);
/* Deliver an error to the transport that sent inner (used by ICMP input and
 * by ARP when a next hop does not answer). */
void ip_error_notify(uint32_t from, uint8_t type, uint8_t code, uint32_t info,
                     const struct ip_hdr *inner, const uint8_t *payload, size_t len);
/* Send pb (data at the transport header, headroom >= PBUF_HEADROOM) from
 * src (IP_ADDR_ANY: the route's iface address) to dst. Fragments when larger
 * than the MTU. Consumes pb. Returns 0 or -errno (-ENETUNREACH, -EMSGSIZE,
 * -ENOMEM, ...). */
int ip_output(uint8_t protocol, struct pbuf *pb, uint32_t src, uint32_t dst);
int ip_output_opt(uint8_t protocol, struct pbuf *pb, uint32_t src, uint32_t dst,
                  const struct ip_tx_opts *opts);
/* The source address ip_output would choose for dst, or IP_ADDR_ANY. */
uint32_t ip_source_for(uint32_t dst);
/* Largest transport payload that fits in one unfragmented datagram to dst. */
size_t ip_mtu_for(uint32_t dst);
/* Log a decoded header at debug. */
void ip_dump(const uint8_t *data, size_t len);

/* ---- reassembly (ip_reass.c) ---- */
int ip_reass_init(void);
void ip_reass_cleanup(void);
/* Take one validated fragment (pb->data at the IP header, trimmed to its
 * total length). Returns a whole datagram (data at its IP header, no
 * options) when this fragment completes one, else NULL. Consumes pb. */
struct pbuf *ip_reass_input(struct pbuf *pb);
/* Datagrams and bytes currently held (tests). */
void ip_reass_usage(unsigned *datagrams, size_t *bytes);

#endif
