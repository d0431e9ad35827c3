/*
 * pbuf.c — packet buffers. See pbuf.h for the layout and ownership rules.
 */
#include "pbuf.h"

#include <stdatomic.h>
#include <string.h>

#include "mem.h"

static atomic_long outstanding;

struct pbuf *pbuf_alloc(size_t headroom, size_t len)
{
    struct pbuf *pb;

    if (headroom > SIZE_MAX / 2 || len > SIZE_MAX / 2)
        return NULL;
    pb = mem_alloc(sizeof(*pb) + headroom + len);
    if (!pb)
        return NULL;
    pb->next = NULL;
    pb->dev = NULL;
    pb->proto = 0;
    pb->flags = 0;
    pb->cap = headroom + len;
    pb->data = pb->buf + headroom;
    pb->len = len;
    atomic_fetch_add_explicit(&outstanding, 1, memory_order_relaxed);
    return pb;
}

struct pbuf *pbuf_from(const void *src, size_t len)
{
    struct pbuf *pb = pbuf_alloc(PBUF_HEADROOM, len);

    if (pb && len)
        memcpy(pb->data, src, len);
    return pb;
}

struct pbuf *pbuf_clone(const struct pbuf *pb)
{
    struct pbuf *copy = pbuf_from(pb->data, pb->len);

    if (copy) {
        copy->dev = pb->dev;
        copy->proto = pb->proto;
        copy->flags = pb->flags;
        memcpy(copy->cb, pb->cb, sizeof(copy->cb));
    }
    return copy;
}

void pbuf_free(struct pbuf *pb)
{
    if (!pb)
        return;
    atomic_fetch_sub_explicit(&outstanding, 1, memory_order_relaxed);
    mem_free(pb);
}

void pbuf_free_chain(struct pbuf *pb)
{
    while (pb) {
        struct pbuf *next = pb->next;
        pbuf_free(pb);
        pb = next;
    }
}

uint8_t *pbuf_push(struct pbuf *pb, size_t n)
{
    if (pbuf_headroom(pb) < n)
        return NULL;
    pb->data -= n;
    pb->len += n;
    return pb->data;
}

uint8_t *pbuf_pull(struct pbuf *pb, size_t n)
{
    if (pb->len < n)
        return NULL;
    pb->data += n;
    pb->len -= n;
    return pb->data;
}

void pbuf_trim(struct pbuf *pb, size_t len)
{
    if (len < pb->len)
        pb->len = len;
}

long pbuf_outstanding(void)
{
    return atomic_load_explicit(&outstanding, memory_order_relaxed);
}
