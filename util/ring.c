/*
 * ring.c — byte ring buffer. See ring.h.
 */
#include "ring.h"

#include <errno.h>
#include <string.h>

#include "mem.h"

int ring_init(struct ring *r, size_t cap)
{
    r->buf = mem_alloc(cap ? cap : 1);
    r->cap = cap;
    r->head = r->len = 0;
    return r->buf ? 0 : -ENOMEM;
}

void ring_free(struct ring *r)
{
    mem_free(r->buf);
    r->buf = NULL;
    r->cap = r->head = r->len = 0;
}

void ring_write_at(struct ring *r, size_t off, const void *data, size_t n)
{
    size_t pos = (r->head + off) % r->cap, first = r->cap - pos;

    if (n == 0 || off + n > r->cap)
        return;
    if (first > n)
        first = n;
    memcpy(r->buf + pos, data, first);
    memcpy(r->buf, (const uint8_t *)data + first, n - first);
}

size_t ring_write(struct ring *r, const void *data, size_t n)
{
    if (n > ring_space(r))
        n = ring_space(r);
    ring_write_at(r, r->len, data, n);
    r->len += n;
    return n;
}

void ring_commit(struct ring *r, size_t n)
{
    if (n > ring_space(r))
        n = ring_space(r);
    r->len += n;
}

size_t ring_peek(const struct ring *r, size_t off, void *out, size_t n)
{
    size_t pos, first;

    if (off >= r->len)
        return 0;
    if (n > r->len - off)
        n = r->len - off;
    pos = (r->head + off) % r->cap;
    first = r->cap - pos;
    if (first > n)
        first = n;
    memcpy(out, r->buf + pos, first);
    memcpy((uint8_t *)out + first, r->buf, n - first);
    return n;
}

void ring_discard(struct ring *r, size_t n)
{
    if (n > r->len)
        n = r->len;
    /* head never jumps back to 0 when the ring empties: bytes written
     * beyond the contents (TCP's out-of-order data) are addressed from it */
    r->head = (r->head + n) % (r->cap ? r->cap : 1);
    r->len -= n;
}
