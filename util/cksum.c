/*
 * cksum.c — RFC 1071 Internet checksum. See cksum.h.
 *
 * The one's-complement sum does not care about byte order (RFC 1071
 * §2(B)): summing the data as the host's own 16-bit words and swapping the
 * bytes of the folded result gives the sum of the big-endian words. So the
 * loop loads 32 bits at a time in host order (memcpy: any alignment) into a
 * 64-bit accumulator, which cannot overflow below 2^32 words, and the
 * result is swapped once at the end on a little-endian host. Callers see
 * the same partial sums as a word-by-word big-endian loop.
 */
#include <string.h>

#include "cksum.h"

static uint32_t fold16(uint64_t acc)
{
    while (acc >> 16)
        acc = (acc & 0xffffu) + (acc >> 16);
    return (uint32_t)acc;
}

uint32_t cksum_partial(const void *data, size_t len, uint32_t sum)
{
    const uint8_t *p = data;
    uint64_t acc = 0;
    uint32_t w32, folded;
    uint16_t w16;

    while (len >= 32) { /* unrolled: eight independent loads per turn */
        uint32_t w[8];
        memcpy(w, p, sizeof(w));
        acc += (uint64_t)w[0] + w[1] + w[2] + w[3] + w[4] + w[5] + w[6] + w[7];
        p += 32;
        len -= 32;
    }
    while (len >= 4) {
        memcpy(&w32, p, 4);
        acc += w32;
        p += 4;
        len -= 4;
    }
    if (len >= 2) {
        memcpy(&w16, p, 2);
        acc += w16;
        p += 2;
        len -= 2;
    }
    if (len) { /* the odd byte is the high half of a big-endian word */
        const uint8_t last[2] = { p[0], 0 };
        memcpy(&w16, last, 2);
        acc += w16;
    }
    folded = fold16(acc);
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
    folded = ((folded & 0xffu) << 8) | (folded >> 8);
#endif
    /* sum is a partial sum from an earlier call (or a seed): keep the
     * result a 32-bit partial sum like it */
    acc = (uint64_t)sum + folded;
    while (acc >> 32)
        acc = (acc & 0xffffffffu) + (acc >> 32);
    return (uint32_t)acc;
}

uint16_t cksum_finish(uint32_t sum)
{
    while (sum >> 16)
        sum = (sum & 0xffffu) + (sum >> 16);
    return (uint16_t)~sum;
}

uint16_t cksum16(const void *data, size_t len, uint32_t init)
{
    return cksum_finish(cksum_partial(data, len, init));
}

uint32_t cksum_pseudo(uint32_t src, uint32_t dst, uint8_t proto, uint16_t len)
{
    /* src and dst are in network order: their bytes are already big-endian,
     * so sum them as bytes to stay host-independent. */
    uint8_t ph[12];
    const uint8_t *s = (const uint8_t *)&src, *d = (const uint8_t *)&dst;

    for (int i = 0; i < 4; i++) {
        ph[i] = s[i];
        ph[4 + i] = d[i];
    }
    ph[8] = 0;
    ph[9] = proto;
    ph[10] = (uint8_t)(len >> 8);
    ph[11] = (uint8_t)len;
    return cksum_partial(ph, sizeof(ph), 0);
}
