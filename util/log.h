/*
 * log.h — leveled, per-module logging that costs one load and a compare
 * when it is off.
 *
 * Levels: error < warn < info < debug < trace. Each module (net, arp, ip,
 * ...) has its own threshold, set from a spec string such as
 *     "info"                 every module at info
 *     "ip=debug,arp=trace"   those two modules; others keep their level
 *     "warn,tcp=debug"       every module at warn, tcp at debug
 * given by --log or the NETSTEP_LOG environment variable.
 *
 * A line looks like
 *     23:41:07.123 [stack] arp debug arp.c:212 reply 192.0.2.1 is-at ...
 * and is written with a single write(2), so lines from many threads never
 * interleave. Colour is used only when the output is a terminal.
 */
#ifndef NETSTEP_LOG_H
#define NETSTEP_LOG_H

#include <stdatomic.h>
#include <stddef.h>

enum log_module {
    LOG_NET,   /* core: devices, input queue, stack thread */
    LOG_TIMER, /* timers */
    LOG_DEV,   /* drivers */
    LOG_ETHER,
    LOG_ARP,
    LOG_IP,
    LOG_ICMP,
    LOG_UDP,
    LOG_TCP,
    LOG_SOCK,
    LOG_PCAP,
    LOG_FAULT,
    LOG_APP,
    LOG_CC,    /* TCP congestion control: cwnd, ssthresh on every change */
    LOG_MODULE_COUNT
};

enum log_level {
    LOG_LEVEL_OFF = 0,
    LOG_LEVEL_ERROR,
    LOG_LEVEL_WARN,
    LOG_LEVEL_INFO,
    LOG_LEVEL_DEBUG,
    LOG_LEVEL_TRACE,
};

/* Current threshold of each module; read without a lock (relaxed atomics). */
extern _Atomic unsigned char log_levels[LOG_MODULE_COUNT];

static inline int log_enabled(enum log_module mod, enum log_level lvl)
{
    return atomic_load_explicit(&log_levels[mod], memory_order_relaxed) >= lvl;
}

void log_write(enum log_module mod, enum log_level lvl, const char *file, int line,
               const char *fmt, ...) __attribute__((format(printf, 5, 6)));
/* Hex and ASCII dump of len bytes, 16 to a line, as one atomic write. */
void log_hexdump(enum log_module mod, enum log_level lvl, const char *file, int line,
                 const void *data, size_t len);

#define LOG_AT(mod, lvl, ...)                                   \
    do {                                                        \
        if (log_enabled((mod), (lvl)))                          \
            log_write((mod), (lvl), __FILE__, __LINE__, __VA_ARGS__); \
    } while (0)

#define log_error(mod, ...) LOG_AT(mod, LOG_LEVEL_ERROR, __VA_ARGS__)
#define log_warn(mod, ...)  LOG_AT(mod, LOG_LEVEL_WARN, __VA_ARGS__)
#define log_info(mod, ...)  LOG_AT(mod, LOG_LEVEL_INFO, __VA_ARGS__)
#define log_debug(mod, ...) LOG_AT(mod, LOG_LEVEL_DEBUG, __VA_ARGS__)
#define log_trace(mod, ...) LOG_AT(mod, LOG_LEVEL_TRACE, __VA_ARGS__)
#define log_hex(mod, data, len)                                          \
    do {                                                                 \
        if (log_enabled((mod), LOG_LEVEL_TRACE))                         \
            log_hexdump((mod), LOG_LEVEL_TRACE, __FILE__, __LINE__, (data), (len)); \
    } while (0)

/* Apply a spec ("info", "ip=debug,arp=trace"). Returns 0, or -EINVAL with
 * nothing changed if a module or level name is unknown. */
int log_configure(const char *spec);
/* Apply NETSTEP_LOG if set; returns as log_configure (0 if unset). */
int log_configure_from_env(void);
/* Send log lines to fd (default 2, stderr). Colour follows isatty(fd). */
void log_set_fd(int fd);
const char *log_module_name(enum log_module mod);

#endif
