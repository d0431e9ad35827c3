/*
 * pbuf.c — packet buffers. See pbuf.h for the layout and ownership rules.
 */
#include "pbuf.h"

#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "mem.h"
#include "platform.h"

static atomic_long outstanding;

/* The pool: a stack of idle PBUF_POOL_SIZE buffers linked through next. */
static struct mutex pool_lock = MUTEX_INITIALIZER;
static struct pbuf *pool;              /* [pool_lock] */
static size_t pool_idle;               /* [pool_lock] */
static size_t pool_max = 1024;         /* [pool_lock] */
static atomic_ulong pool_hits;

void pbuf_pool_limit(size_t max)
{
    mutex_lock(&pool_lock);
    pool_max = max;
    mutex_unlock(&pool_lock);
    if (pool_idle > max) /* a racy peek is fine: drain re-checks under the lock */
        pbuf_pool_drain();
}

void pbuf_pool_drain(void)
{
    struct pbuf *list;

    mutex_lock(&pool_lock);
    list = pool;
    pool = NULL;
    pool_idle = 0;
    mutex_unlock(&pool_lock);
    while (list) {
        struct pbuf *next = list->next;
        mem_free(list);
        list = next;
    }
}

size_t pbuf_pool_idle(void)
{
    size_t n;

    mutex_lock(&pool_lock);
    n = pool_idle;
    mutex_unlock(&pool_lock);
    return n;
}

unsigned long pbuf_pool_hits(void)
{
    return atomic_load_explicit(&pool_hits, memory_order_relaxed);
}

static struct pbuf *pool_get(void)
{
    struct pbuf *pb;

    if (mem_would_fail()) /* tests that fail allocations still see it */
        return NULL;
    mutex_lock(&pool_lock);
    if ((pb = pool) != NULL) {
        pool = pb->next;
        pool_idle--;
    }
    mutex_unlock(&pool_lock);
    if (pb)
        atomic_fetch_add_explicit(&pool_hits, 1, memory_order_relaxed);
    else
        pb = malloc(sizeof(*pb) + PBUF_POOL_SIZE); /* the switch was consulted above */
    return pb;
}

struct pbuf *pbuf_alloc(size_t headroom, size_t len)
{
    struct pbuf *pb;
    size_t cap;

    if (headroom > SIZE_MAX / 2 || len > SIZE_MAX / 2)
        return NULL;
    cap = headroom + len;
    if (cap <= PBUF_POOL_SIZE) {
        pb = pool_get();
        cap = PBUF_POOL_SIZE;
    } else {
        pb = mem_alloc(sizeof(*pb) + cap);
    }
    if (!pb)
        return NULL;
    pb->next = NULL;
    pb->dev = NULL;
    pb->proto = 0;
    pb->flags = 0;
    pb->gso_size = 0;
    pb->cap = cap;
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
        copy->gso_size = pb->gso_size;
        memcpy(copy->cb, pb->cb, sizeof(copy->cb));
    }
    return copy;
}

void pbuf_free(struct pbuf *pb)
{
    if (!pb)
        return;
    atomic_fetch_sub_explicit(&outstanding, 1, memory_order_relaxed);
    if (pb->cap == PBUF_POOL_SIZE) {
        mutex_lock(&pool_lock);
        if (pool_idle < pool_max) {
            pb->next = pool;
            pool = pb;
            pool_idle++;
            pb = NULL;
        }
        mutex_unlock(&pool_lock);
    }
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
