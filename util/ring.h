/*
 * ring.h — a byte ring buffer: TCP's send and receive buffers.
 *
 * `len` bytes starting at `head` are the ring's contents. Bytes beyond them
 * (up to `cap`) may also be written at an offset without becoming contents:
 * TCP's receiver puts out-of-order data there, in place, and makes it
 * contents with ring_commit() once the hole before it is filled.
 * Not thread-safe: the owner's lock guards it.
 */
#ifndef NETSTEP_RING_H
#define NETSTEP_RING_H

#include <stddef.h>
#include <stdint.h>

struct ring {
    uint8_t *buf;
    size_t cap;
    size_t head; /* index of the first byte */
    size_t len;  /* bytes of contents */
};

/* Allocate cap bytes. Returns 0 or -ENOMEM. */
int ring_init(struct ring *r, size_t cap);
void ring_free(struct ring *r);
static inline size_t ring_space(const struct ring *r) { return r->cap - r->len; }
/* Append up to n bytes; returns how many fit. */
size_t ring_write(struct ring *r, const void *data, size_t n);
/* Write n bytes at offset off from head (off + n <= cap), beyond or over
 * the contents, without changing len. */
void ring_write_at(struct ring *r, size_t off, const void *data, size_t n);
/* Make the n bytes after the contents part of them (ring_write_at'd). */
void ring_commit(struct ring *r, size_t n);
/* Copy n bytes starting off bytes in, without consuming. Returns copied. */
size_t ring_peek(const struct ring *r, size_t off, void *out, size_t n);
/* Drop n bytes from the front. */
void ring_discard(struct ring *r, size_t n);

#endif
