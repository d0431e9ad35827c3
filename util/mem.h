/*
 * mem.h — the stack's allocator: malloc with a failure switch for tests.
 *
 * Every allocation in netstep goes through mem_alloc/mem_calloc so a test can
 * make the Nth allocation fail (mem_fail_after) and prove that each failure
 * is handled: counted, reported, never a crash (the picoTCP/SQLite habit).
 */
#ifndef NETSTEP_MEM_H
#define NETSTEP_MEM_H

#include <stddef.h>

void *mem_alloc(size_t size);
void *mem_calloc(size_t n, size_t size);
void mem_free(void *p);
/* Make the n-th allocation from now on fail (1 = the next one); every one
 * after it succeeds again. n = 0 turns failures off. */
void mem_fail_after(long n);
/* Make every allocation fail while on is non-zero. */
void mem_fail_all(int on);
/* Consult the failure switch as an allocation would, without allocating:
 * a cache that reuses memory calls it so tests still see every failure. */
int mem_would_fail(void);
/* Allocations refused so far by the failure switch. */
long mem_failures(void);

#endif
