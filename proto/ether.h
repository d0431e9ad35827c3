/*
 * ether.h — Ethernet II framing (IEEE 802.3 with an EtherType, RFC 894).
 *
 * ether_input() runs on the stack thread for every frame from an Ethernet
 * device: it validates the header, keeps frames addressed to us or to
 * broadcast, and strips the header. ether_output() prepends one.
 */
#ifndef NETSTEP_ETHER_H
#define NETSTEP_ETHER_H

#include <stdint.h>

#include "net.h"

#define ETHER_ADDR_LEN 6
#define ETHER_HDR_SIZE 14
#define ETHER_FRAME_SIZE_MIN 60  /* without the FCS, which taps do not carry */
#define ETHER_PAYLOAD_SIZE_MAX 1500
#define ETHER_FRAME_SIZE_MAX (ETHER_HDR_SIZE + ETHER_PAYLOAD_SIZE_MAX)

#define ETHER_TYPE_IP 0x0800
#define ETHER_TYPE_ARP 0x0806
#define ETHER_TYPE_IPV6 0x86dd

/* On the wire. */
struct ether_hdr {
    uint8_t dst[ETHER_ADDR_LEN];
    uint8_t src[ETHER_ADDR_LEN];
    uint16_t type; /* network order */
} __attribute__((packed));

extern const uint8_t ETHER_ADDR_BROADCAST[ETHER_ADDR_LEN];

enum ether_stat {
    ETHERSTAT_RX_FRAMES,
    ETHERSTAT_RX_TOO_SHORT,
    ETHERSTAT_RX_OTHER_HOST,  /* unicast to another MAC */
    ETHERSTAT_RX_MULTICAST,   /* multicast we did not join */
    ETHERSTAT_RX_BAD_SOURCE,  /* source is a broadcast/multicast address */
    ETHERSTAT_RX_LOOPED,      /* our own frame came back */
    ETHERSTAT_TX_FRAMES,
    ETHERSTAT_TX_NO_HEADROOM,
    ETHERSTAT_COUNT
};
extern struct stats_group ether_stats;

int ether_init(void);
/* Fill the Ethernet defaults of a device a driver is setting up. */
void ether_setup_device(struct net_device *dev);
/* Validate and strip the header of pb; sets pb->proto. Returns 0 to go on,
 * or -1 when the frame was dropped (pb freed and the drop counted). */
int ether_input(struct net_device *dev, struct pbuf *pb);
/* Prepend a header (dst, our address, type) and transmit. Consumes pb. */
int ether_output(struct net_device *dev, uint16_t type, struct pbuf *pb, const uint8_t *dst);
/* Log the decoded header of a frame at debug (the frame is not changed). */
void ether_dump(const uint8_t *frame, size_t len);
/* A stable locally administered MAC derived from a name (02:xx:..). */
void ether_addr_from_name(const char *name, uint8_t addr[ETHER_ADDR_LEN]);

#endif
