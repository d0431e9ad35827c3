/*
 * arp.h — the Address Resolution Protocol (RFC 826) for IPv4 over Ethernet.
 *
 * arp_input runs on the stack thread; arp_output is called by ip_output on
 * any thread to send a datagram to a next hop, resolving it first if needed
 * (the datagram waits in a bounded per-entry queue meanwhile). Entries age
 * out; a next hop that does not answer after net_config.arp_retries requests
 * has its queued datagrams dropped with a host-unreachable error delivered
 * to the sender (RFC 1122 §2.3.2.2).
 *
 * Lock key: [A] arp_lock, the cache.
 */
#ifndef NETSTEP_ARP_H
#define NETSTEP_ARP_H

#include <stdint.h>

#include "net.h"

struct ip_iface;

#define ARP_HRD_ETHER 0x0001
#define ARP_OP_REQUEST 1
#define ARP_OP_REPLY 2

/* On the wire, for Ethernet and IPv4. */
struct arp_ether_ip {
    uint16_t hrd;
    uint16_t pro;
    uint8_t hln;
    uint8_t pln;
    uint16_t op;
    uint8_t sha[6];
    uint8_t spa[4];
    uint8_t tha[6];
    uint8_t tpa[4];
} __attribute__((packed));

enum arp_state {
    ARP_STATE_FREE = 0,
    ARP_STATE_INCOMPLETE, /* request sent, no reply yet */
    ARP_STATE_RESOLVED,
    ARP_STATE_STATIC,     /* set by hand; never ages */
};

enum arp_stat {
    ARPSTAT_RX_PACKETS,
    ARPSTAT_RX_TOO_SHORT,
    ARPSTAT_RX_BAD_FORMAT,     /* not Ethernet/IPv4 or wrong lengths */
    ARPSTAT_RX_BAD_OP,
    ARPSTAT_RX_BAD_SENDER,     /* sender is broadcast/multicast/zero MAC */
    ARPSTAT_RX_REQUESTS,
    ARPSTAT_RX_REPLIES,
    ARPSTAT_RX_NOT_FOR_US,     /* target is not one of our addresses */
    ARPSTAT_RX_CONFLICT,       /* someone else claims our address */
    ARPSTAT_TX_REQUESTS,
    ARPSTAT_TX_REPLIES,
    ARPSTAT_TX_GRATUITOUS,
    ARPSTAT_CACHE_FULL,        /* no entry could be had */
    ARPSTAT_QUEUE_FULL,        /* datagram dropped: pending queue full */
    ARPSTAT_RESOLVE_FAILED,    /* next hop never answered */
    ARPSTAT_DROPPED_UNRESOLVED, /* datagrams dropped with it */
    ARPSTAT_EXPIRED,
    ARPSTAT_COUNT
};
extern struct stats_group arp_stats;

int arp_init(void);
void arp_cleanup(void);
/* Send a gratuitous ARP for every address whose device is up. */
void arp_announce_all(void);
/* Send the IPv4 datagram pb to nexthop through iface. Consumes pb. Returns
 * 0 (sent or queued) or -errno. */
int arp_output(struct ip_iface *iface, uint32_t nexthop, struct pbuf *pb);

/* Cache access, for tools and tests. Returns the state and copies the MAC
 * into hw when resolved. */
enum arp_state arp_cache_lookup(uint32_t addr, uint8_t hw[6]);
int arp_cache_add_static(struct ip_iface *iface, uint32_t addr, const uint8_t hw[6]);
/* "addr hwaddr state age" lines into buf. */
size_t arp_cache_format(char *buf, size_t size);
unsigned arp_cache_count(void);
void arp_dump(const uint8_t *data, size_t len);

#endif
