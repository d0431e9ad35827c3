/*
 * testdev.h — an in-memory Ethernet device and a whole stack around it, for
 * protocol tests and fuzzers. Nothing touches the network or needs root.
 *
 *   teststack_up()      virtual clock at 1000 ms, net_init, the test device
 *                       with 192.0.2.2/24 (MAC 02:00:00:00:00:02), default
 *                       gateway 192.0.2.1, devices opened, no stack thread;
 *                       the gratuitous ARP it sends is discarded
 *   test_inject()       queue a frame as if received, then run the stack
 *                       (net_poll) until idle
 *   test_advance()      move the virtual clock and run due timers
 *   test_take()         the next frame the stack transmitted, or NULL
 *
 * The peer is 192.0.2.1 with MAC 02:00:00:00:00:01.
 */
#ifndef NETSTEP_TESTDEV_H
#define NETSTEP_TESTDEV_H

#include <stddef.h>
#include <stdint.h>

#include "net.h"
#include "proto/ip.h"

#define TEST_OUR_IP "192.0.2.2"
#define TEST_PEER_IP "192.0.2.1"
extern const uint8_t TEST_OUR_MAC[6];
extern const uint8_t TEST_PEER_MAC[6];

struct test_stack {
    struct net_device *dev;
    struct ip_iface *iface;
    uint32_t our_ip, peer_ip;   /* network order */
};

extern struct test_stack ts;

/* Bring the stack up (see above); 0 or -errno. */
int teststack_up(void);
void teststack_down(void);
/* As teststack_up but the peer's MAC is already in the ARP cache. */
int teststack_up_resolved(void);

void test_inject(const void *frame, size_t len);
void test_advance(uint64_t ms);
/* Next transmitted frame (caller frees with pbuf_free), or NULL. */
struct pbuf *test_take(void);
size_t test_sent_count(void);
void test_flush(void);

/* Frame builders into buf (size >= 14 + 20 + len); return the frame length.
 * ip_frame: Ethernet (peer -> us) + IPv4 header (valid checksum) + payload. */
size_t test_eth_frame(uint8_t *buf, const uint8_t *dst, const uint8_t *src, uint16_t type,
                      const void *payload, size_t len);
size_t test_ip_frame(uint8_t *buf, uint8_t proto, uint32_t src, uint32_t dst, uint16_t id,
                     uint16_t frag, const void *payload, size_t len);
/* ICMP echo request with valid checksum into buf; returns its length. */
size_t test_icmp_echo(uint8_t *buf, uint8_t type, uint16_t id, uint16_t seq, const void *data, size_t len);

#endif
