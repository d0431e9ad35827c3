/*
 * byteorder.h — host/network byte order, without <arpa/inet.h>.
 *
 * Every multi-byte field on the wire is big-endian ("network order").
 * hton16/ntoh16/hton32/ntoh32 convert; on a big-endian host they are no-ops.
 * Reading a field straight from a packet goes through load16/load32, which
 * also make no alignment assumption.
 */
#ifndef NETSTEP_BYTEORDER_H
#define NETSTEP_BYTEORDER_H

#include <stdint.h>
#include <string.h>

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
static inline uint16_t hton16(uint16_t v) { return v; }
static inline uint32_t hton32(uint32_t v) { return v; }
#else
static inline uint16_t hton16(uint16_t v) { return __builtin_bswap16(v); }
static inline uint32_t hton32(uint32_t v) { return __builtin_bswap32(v); }
#endif
static inline uint16_t ntoh16(uint16_t v) { return hton16(v); }
static inline uint32_t ntoh32(uint32_t v) { return hton32(v); }

/* Host-order value of the big-endian field at p (any alignment). */
static inline uint16_t load16(const void *p)
{
    uint16_t v;
    memcpy(&v, p, sizeof(v));
    return ntoh16(v);
}

static inline uint32_t load32(const void *p)
{
    uint32_t v;
    memcpy(&v, p, sizeof(v));
    return ntoh32(v);
}

static inline void store16(void *p, uint16_t v)
{
    v = hton16(v);
    memcpy(p, &v, sizeof(v));
}

static inline void store32(void *p, uint32_t v)
{
    v = hton32(v);
    memcpy(p, &v, sizeof(v));
}

#endif
