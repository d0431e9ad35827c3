/*
 * cksum.c — RFC 1071 Internet checksum. See cksum.h.
 *
 * The sum is taken over big-endian 16-bit words so the result is the same on
 * any host; a 32-bit accumulator cannot overflow for buffers under 128 KiB
 * (65,536 words of at most 0xffff), which covers every IPv4 datagram.
 */
#include "cksum.h"

uint32_t cksum_partial(const void *data, size_t len, uint32_t sum)
{
    const uint8_t *p = data;
    uint64_t acc = sum;

    while (len >= 2) {
        acc += (uint32_t)((p[0] << 8) | p[1]);
        p += 2;
        len -= 2;
    }
    if (len)
        acc += (uint32_t)(p[0] << 8);
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
