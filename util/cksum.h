/*
 * cksum.h — the Internet checksum (RFC 1071), used by IPv4, ICMP, UDP, TCP.
 *
 * The checksum is the ones' complement of the ones' complement sum of the
 * data taken as 16-bit big-endian words. cksum_partial() accumulates a sum
 * over several pieces (pseudo-header, header, payload); cksum_finish() folds
 * and complements it. A buffer whose stored checksum is right sums to 0.
 */
#ifndef NETSTEP_CKSUM_H
#define NETSTEP_CKSUM_H

#include <stddef.h>
#include <stdint.h>

/* Add len bytes at data to the running 32-bit sum. Pieces after the first
 * must start at an even offset of the whole, except for the last one. */
uint32_t cksum_partial(const void *data, size_t len, uint32_t sum);
/* Fold the carries and complement: the value to store, in network order
 * when written with memcpy (it is computed over big-endian words and
 * returned in host order; use store16 to write it). */
uint16_t cksum_finish(uint32_t sum);
/* Checksum of one buffer: cksum_finish(cksum_partial(data, len, init)). */
uint16_t cksum16(const void *data, size_t len, uint32_t init);
/* Sum of the IPv4 pseudo-header (RFC 793 §3.1, RFC 768) for UDP and TCP;
 * src and dst are in network order, len is the host-order segment length. */
uint32_t cksum_pseudo(uint32_t src, uint32_t dst, uint8_t proto, uint16_t len);

#endif
