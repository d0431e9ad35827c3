/*
 * pbuf.h — packet buffers.
 *
 * One pbuf holds one frame or datagram in a single contiguous allocation.
 * `data` points at the header of the layer currently looking at it; lower
 * layers pbuf_pull() their header off on the way in, and pbuf_push() room
 * for it into the reserved headroom on the way out, so a packet is built
 * once and never copied between layers.
 *
 *      buf                data                 data+len       buf+cap
 *       | headroom ...     | Ethernet|IP|UDP|payload |  tailroom |
 *
 * Ownership: a function that takes a struct pbuf * consumes it (passes it on
 * or frees it) unless its comment says otherwise. The `next` field may be
 * used by whichever queue holds the pbuf at the moment.
 */
#ifndef NETSTEP_PBUF_H
#define NETSTEP_PBUF_H

#include <stddef.h>
#include <stdint.h>

/* Room for Ethernet (14) + IPv4 with options (60) + TCP with options (60),
 * rounded up. Every outgoing packet is allocated with at least this. */
#define PBUF_HEADROOM 160

struct net_device;

/* The link header is already gone (a datagram looped back to ourselves, or
 * one from a device without link headers): skip link-layer input. */
#define PBUF_FLAG_NO_LINK 0x0001
/* Addressed to a link-layer broadcast: never answer it with an ICMP error. */
#define PBUF_FLAG_LINK_BCAST 0x0002
/* Checksum offload (a device with NET_DEVICE_FLAG_TSO): the TCP checksum
 * field holds only the pseudo-header sum; the device's peer completes it.
 * On input: the checksum was never computed, because the frame never left
 * this machine (the kernel said so); it is not checked. */
#define PBUF_FLAG_CSUM_PARTIAL 0x0004

struct pbuf {
    struct pbuf *next;       /* link for whichever queue holds it */
    struct net_device *dev;  /* device it arrived on, or leaves by */
    uint16_t proto;          /* EtherType of what data points at, once known */
    uint16_t flags;          /* PBUF_FLAG_* */
    uint16_t gso_size;       /* a TCP super-frame: payload bytes per segment
                                the device cuts it into; 0: one segment */
    uint8_t cb[16];          /* scratch for the layer holding it (e.g. a
                                socket queue keeps the sender's address) */
    uint8_t *data;           /* start of the current layer */
    size_t len;              /* bytes from data to the end of the packet */
    size_t cap;              /* size of buf */
    uint8_t buf[];
};

/* A pbuf with len bytes of (uninitialised) data after headroom bytes of
 * headroom. NULL when memory is short. */
struct pbuf *pbuf_alloc(size_t headroom, size_t len);
/* A pbuf holding a copy of len bytes at src, with PBUF_HEADROOM. */
struct pbuf *pbuf_from(const void *src, size_t len);
void pbuf_free(struct pbuf *pb);
/* Free a chain linked through next. */
void pbuf_free_chain(struct pbuf *pb);
/* A copy with the same data, fresh headroom of PBUF_HEADROOM. */
struct pbuf *pbuf_clone(const struct pbuf *pb);

/* Prepend n bytes (a header); returns the new data pointer, or NULL if the
 * headroom is too small. */
uint8_t *pbuf_push(struct pbuf *pb, size_t n);
/* Drop n bytes from the front (a header that was parsed). Returns the new
 * data pointer, or NULL if len < n (the pbuf is unchanged). */
uint8_t *pbuf_pull(struct pbuf *pb, size_t n);
/* Cut the packet to len bytes (link-layer padding, IP total length). */
void pbuf_trim(struct pbuf *pb, size_t len);
static inline size_t pbuf_headroom(const struct pbuf *pb)
{
    return (size_t)(pb->data - pb->buf);
}

/* Buffers of up to PBUF_POOL_SIZE bytes (headroom + data: every MTU-sized
 * frame) come from a free list of recycled ones, so the data path does not
 * call malloc per packet. At most `max` idle buffers are kept (0: no pool);
 * the rest go back to malloc. */
#define PBUF_POOL_SIZE (PBUF_HEADROOM + 2048)
void pbuf_pool_limit(size_t max);
/* Free every idle buffer (at shutdown). */
void pbuf_pool_drain(void);
/* Idle buffers in the pool now; allocations served from it so far. */
size_t pbuf_pool_idle(void);
unsigned long pbuf_pool_hits(void);

/* pbufs allocated and not yet freed: tests check it returns to zero. */
long pbuf_outstanding(void);

#endif
