/*
 * stats.c — the registry of counter groups. See stats.h.
 */
#include "stats.h"

#include <stdio.h>
#include <string.h>

#include "platform.h"

static struct mutex registry_lock = MUTEX_INITIALIZER;
static struct stats_group *groups; /* [registry_lock] */

void stats_register(struct stats_group *g)
{
    mutex_lock(&registry_lock);
    if (!g->registered) {
        struct stats_group **pp = &groups;
        while (*pp) /* keep registration order: it is the dump order */
            pp = &(*pp)->next;
        g->next = NULL;
        *pp = g;
        g->registered = 1;
    }
    mutex_unlock(&registry_lock);
}

void stats_unregister(struct stats_group *g)
{
    mutex_lock(&registry_lock);
    for (struct stats_group **pp = &groups; *pp; pp = &(*pp)->next) {
        if (*pp == g) {
            *pp = g->next;
            g->registered = 0;
            break;
        }
    }
    mutex_unlock(&registry_lock);
}

int64_t stats_lookup(const char *dotted)
{
    const char *dot = strchr(dotted, '.');
    int64_t v = -1;

    if (!dot)
        return -1;
    mutex_lock(&registry_lock);
    for (struct stats_group *g = groups; g; g = g->next) {
        if (strlen(g->name) != (size_t)(dot - dotted) || strncmp(g->name, dotted, (size_t)(dot - dotted)))
            continue;
        for (int i = 0; i < g->count; i++) {
            if (strcmp(g->names[i], dot + 1) == 0) {
                v = (int64_t)stat_read(g, i);
                break;
            }
        }
    }
    mutex_unlock(&registry_lock);
    return v;
}

size_t stats_format(char *buf, size_t size, int nonzero_only)
{
    size_t n = 0;

    if (size)
        buf[0] = '\0';
    mutex_lock(&registry_lock);
    for (struct stats_group *g = groups; g; g = g->next) {
        for (int i = 0; i < g->count; i++) {
            uint64_t v = stat_read(g, i);
            int m;
            if (nonzero_only && v == 0)
                continue;
            m = snprintf(n < size ? buf + n : NULL, n < size ? size - n : 0, "%s.%s %llu\n",
                         g->name, g->names[i], (unsigned long long)v);
            if (m > 0)
                n += (size_t)m;
        }
    }
    mutex_unlock(&registry_lock);
    return n;
}

void stats_reset_all(void)
{
    mutex_lock(&registry_lock);
    for (struct stats_group *g = groups; g; g = g->next)
        for (int i = 0; i < g->count; i++)
            atomic_store_explicit(&g->v[i], 0, memory_order_relaxed);
    mutex_unlock(&registry_lock);
}
