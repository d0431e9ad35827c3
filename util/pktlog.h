/*
 * pktlog.h — one-line packet summaries in the style of tcpdump, for the
 * debug log (net.c logs one per frame in and out, module "dev"):
 *
 *   ARP, Request who-has 192.0.2.2 tell 192.0.2.1, length 28
 *   IP 192.0.2.1 > 192.0.2.2: ICMP echo request, id 1, seq 1, length 64
 *   IP 192.0.2.1.5000 > 192.0.2.2.7: UDP, length 12
 *   IP 192.0.2.1.5000 > 192.0.2.2.7: Flags [S], seq 1234, win 64240, options [mss 1460], length 0
 *
 * The formatters are pure functions over untrusted bytes: every field is
 * read only after its length was checked, and a short or inconsistent
 * packet is described ("[|tcp]", "bad hdr length") rather than trusted.
 * tests/fuzz/fuzz_pktlog.c holds them to that.
 */
#ifndef NETSTEP_PKTLOG_H
#define NETSTEP_PKTLOG_H

#include <stddef.h>
#include <stdint.h>

/* Describe the Ethernet frame at frame (len bytes) into buf. buf is always
 * NUL-terminated (when size > 0), the text cut to fit. Returns the length
 * of the text written. */
size_t pktlog_format(const uint8_t *frame, size_t len, char *buf, size_t size);
/* The same for an IPv4 packet without a link header (loopback). */
size_t pktlog_format_ip(const uint8_t *pkt, size_t len, char *buf, size_t size);

#endif
