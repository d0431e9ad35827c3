/*
 * mem.c — allocation with test-controlled failures. See mem.h.
 */
#include "mem.h"

#include <stdatomic.h>
#include <stdlib.h>

static atomic_long fail_countdown; /* >0: counting down to a failure */
static atomic_int fail_all;
static atomic_long failures;

static int should_fail(void)
{
    long n;

    if (atomic_load_explicit(&fail_all, memory_order_relaxed))
        goto fail;
    n = atomic_load_explicit(&fail_countdown, memory_order_relaxed);
    if (n <= 0)
        return 0;
    if (atomic_fetch_sub(&fail_countdown, 1) != 1)
        return 0;
fail:
    atomic_fetch_add(&failures, 1);
    return 1;
}

int mem_would_fail(void)
{
    return should_fail();
}

void *mem_alloc(size_t size)
{
    return should_fail() ? NULL : malloc(size);
}

void *mem_calloc(size_t n, size_t size)
{
    return should_fail() ? NULL : calloc(n, size);
}

void mem_free(void *p)
{
    free(p);
}

void mem_fail_after(long n)
{
    atomic_store(&fail_countdown, n);
}

void mem_fail_all(int on)
{
    atomic_store(&fail_all, on);
}

long mem_failures(void)
{
    return atomic_load(&failures);
}
