/*
 * udp.h — the User Datagram Protocol (RFC 768) behind sock_open(AF_INET,
 * SOCK_DGRAM, 0).
 *
 * Lock key: [U] udp_lock, every UDP pcb and its receive queue.
 */
#ifndef NETSTEP_UDP_H
#define NETSTEP_UDP_H

#include <stdint.h>

#include "net.h"

#define UDP_HDR_SIZE 8
#define UDP_PAYLOAD_MAX (65535 - 20 - UDP_HDR_SIZE) /* 65,507 */

/* On the wire. */
struct udp_hdr {
    uint16_t src;
    uint16_t dst;
    uint16_t len;
    uint16_t sum;
} __attribute__((packed));

enum udp_stat {
    UDPSTAT_IN_DATAGRAMS,
    UDPSTAT_IN_TOO_SHORT,
    UDPSTAT_IN_BAD_LENGTH,   /* length field not the datagram's length */
    UDPSTAT_IN_BAD_CHECKSUM,
    UDPSTAT_IN_NO_CHECKSUM,  /* checksum 0: accepted (RFC 768) */
    UDPSTAT_IN_BAD_PORT,     /* destination port 0 */
    UDPSTAT_NO_PORT,         /* nobody listening: port unreachable */
    UDPSTAT_RCVBUF_ERRORS,   /* receive queue full: dropped */
    UDPSTAT_IN_NO_MEMORY,
    UDPSTAT_IN_ICMP_ERRORS,  /* ICMP errors delivered to a socket */
    UDPSTAT_OUT_DATAGRAMS,
    UDPSTAT_OUT_ERRORS,
    UDPSTAT_COUNT
};
extern struct stats_group udp_stats;

int udp_init(void);
void udp_cleanup(void);
/* One line per socket: "udp - local:port peer:port sendq=0 recvq=BYTES". */
size_t udp_pcb_format(char *buf, size_t size);
/* Log a decoded header at debug. */
void udp_dump(const uint8_t *data, size_t len, uint32_t src, uint32_t dst);

#endif
