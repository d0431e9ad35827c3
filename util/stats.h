/*
 * stats.h — named counters, in the spirit of `netstat -s`.
 *
 * Each module keeps an array of counters indexed by its own enum and
 * registers it once with a name for each slot:
 *
 *     enum { IPSTAT_IN_RECEIVES, IPSTAT_BAD_CHECKSUM, IPSTAT_COUNT };
 *     static const char *const ip_stat_names[IPSTAT_COUNT] = {...};
 *     static struct stats_group ip_stats = STATS_GROUP("ip", ip_stat_names);
 *     STAT_INC(&ip_stats, IPSTAT_BAD_CHECKSUM);
 *
 * Counters are relaxed atomics: any thread may bump them without a lock, and
 * a reader sees each counter exactly, though not a snapshot of all at once.
 */
#ifndef NETSTEP_STATS_H
#define NETSTEP_STATS_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#define STATS_MAX_COUNTERS 64

struct stats_group {
    const char *name;
    const char *const *names;
    int count;
    struct stats_group *next; /* registry link, set once by stats_register */
    int registered;
    _Atomic uint64_t v[STATS_MAX_COUNTERS];
};

#define STATS_GROUP(gname, names_array)                                         \
    { .name = (gname), .names = (names_array),                                 \
      .count = (int)(sizeof(names_array) / sizeof((names_array)[0])) }

static inline void stat_add(struct stats_group *g, int idx, uint64_t n)
{
    atomic_fetch_add_explicit(&g->v[idx], n, memory_order_relaxed);
}
#define STAT_INC(g, idx) stat_add((g), (idx), 1)

static inline uint64_t stat_read(struct stats_group *g, int idx)
{
    return atomic_load_explicit(&g->v[idx], memory_order_relaxed);
}

/* Make a group visible to stats_dump/stats_lookup. Idempotent. */
void stats_register(struct stats_group *g);
/* Remove a group (a device being freed). */
void stats_unregister(struct stats_group *g);
/* Value of "group.counter" (e.g. "ip.bad_checksum"); -1 if unknown. */
int64_t stats_lookup(const char *dotted);
/* Write every registered group, one "group.counter value" per line, to
 * buf (NUL-terminated; truncated to size). Returns the length it needed. */
size_t stats_format(char *buf, size_t size, int nonzero_only);
/* Zero every counter (tests). */
void stats_reset_all(void);

#endif
