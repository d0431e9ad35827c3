/*
 * siphash.h — SipHash-2-4 (Aumasson and Bernstein, 2012): a keyed hash
 * that an attacker who does not know the key cannot predict. TCP uses it
 * for initial sequence numbers (RFC 6528) and ephemeral port offsets.
 */
#ifndef NETSTEP_SIPHASH_H
#define NETSTEP_SIPHASH_H

#include <stddef.h>
#include <stdint.h>

uint64_t siphash24(const uint8_t key[16], const void *data, size_t len);

#endif
