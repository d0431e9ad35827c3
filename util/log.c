/*
 * log.c — see log.h. Each line is formatted into a stack buffer and written
 * with one write(2): POSIX makes writes to a pipe of up to PIPE_BUF bytes
 * atomic, and for a terminal or file a single write is never interleaved
 * with another thread's in practice, so no lock is needed.
 */
#include "log.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "platform.h"

_Atomic unsigned char log_levels[LOG_MODULE_COUNT] = {
    [0 ... LOG_MODULE_COUNT - 1] = LOG_LEVEL_WARN,
};

static atomic_int log_fd = 2;
static atomic_int log_colour = -1; /* -1: not decided yet */

static const char *const module_names[LOG_MODULE_COUNT] = {
    [LOG_NET] = "net",   [LOG_TIMER] = "timer", [LOG_DEV] = "dev",
    [LOG_ETHER] = "ether", [LOG_ARP] = "arp",   [LOG_IP] = "ip",
    [LOG_ICMP] = "icmp", [LOG_UDP] = "udp",     [LOG_TCP] = "tcp",
    [LOG_SOCK] = "sock", [LOG_PCAP] = "pcap",   [LOG_FAULT] = "fault",
    [LOG_APP] = "app",   [LOG_CC] = "cc",
};

static const char *const level_names[] = {
    "off", "error", "warn", "info", "debug", "trace",
};

static const char *const level_colours[] = {
    "", "\033[31m", "\033[33m", "\033[32m", "\033[36m", "\033[90m",
};

const char *log_module_name(enum log_module mod)
{
    return (unsigned)mod < LOG_MODULE_COUNT ? module_names[mod] : "?";
}

void log_set_fd(int fd)
{
    atomic_store(&log_fd, fd);
    atomic_store(&log_colour, -1);
}

static int use_colour(int fd)
{
    int c = atomic_load(&log_colour);

    if (c < 0) {
        c = isatty(fd) ? 1 : 0;
        atomic_store(&log_colour, c);
    }
    return c;
}

/* "hh:mm:ss.mmm [thread] module level file:line " into buf. */
static int log_prefix(char *buf, size_t size, enum log_module mod, enum log_level lvl,
                      const char *file, int line, int colour)
{
    int64_t sec;
    int32_t usec;
    struct tm tm;
    time_t t;
    char tname[16];
    const char *base = strrchr(file, '/');

    platform_wallclock(&sec, &usec);
    t = (time_t)sec;
    localtime_r(&t, &tm);
    thread_get_name(tname, sizeof(tname));
    return snprintf(buf, size, "%02d:%02d:%02d.%03d [%s] %s %s%s%s %s:%d ", tm.tm_hour,
                    tm.tm_min, tm.tm_sec, (int)(usec / 1000), tname, module_names[mod],
                    colour ? level_colours[lvl] : "", level_names[lvl], colour ? "\033[0m" : "",
                    base ? base + 1 : file, line);
}

static void log_emit(char *buf, size_t n, size_t size)
{
    int fd = atomic_load(&log_fd);

    if (n >= size - 1)
        n = size - 2; /* truncated: keep the newline */
    buf[n++] = '\n';
    while (n > 0) {
        ssize_t w = write(fd, buf, n);
        if (w < 0 && errno == EINTR)
            continue;
        break; /* a short or failed log write is not worth retrying */
    }
}

void log_write(enum log_module mod, enum log_level lvl, const char *file, int line,
               const char *fmt, ...)
{
    char buf[1024];
    int colour = use_colour(atomic_load(&log_fd));
    int n = log_prefix(buf, sizeof(buf), mod, lvl, file, line, colour);
    va_list ap;

    if (n < 0)
        return;
    if ((size_t)n < sizeof(buf)) {
        va_start(ap, fmt);
        int m = vsnprintf(buf + n, sizeof(buf) - (size_t)n, fmt, ap);
        va_end(ap);
        if (m > 0)
            n += m;
    }
    log_emit(buf, (size_t)n > sizeof(buf) ? sizeof(buf) : (size_t)n, sizeof(buf));
}

void log_hexdump(enum log_module mod, enum log_level lvl, const char *file, int line,
                 const void *data, size_t len)
{
    const uint8_t *p = data;
    size_t size = 128 + (len / 16 + 1) * 80;
    char *buf;
    size_t n;

    if (size > 64 * 1024) { /* cap a dump at ~800 lines */
        size = 64 * 1024;
        len = (size - 128) / 80 * 16 - 16;
    }
    buf = malloc(size);
    if (!buf)
        return;
    n = (size_t)log_prefix(buf, size, mod, lvl, file, line, use_colour(atomic_load(&log_fd)));
    n += (size_t)snprintf(buf + n, size - n, "%zu bytes", len);
    for (size_t off = 0; off < len; off += 16) {
        n += (size_t)snprintf(buf + n, size - n, "\n    %04zx  ", off);
        for (size_t i = 0; i < 16; i++) {
            if (off + i < len)
                n += (size_t)snprintf(buf + n, size - n, "%02x ", p[off + i]);
            else
                n += (size_t)snprintf(buf + n, size - n, "   ");
        }
        buf[n++] = ' ';
        for (size_t i = 0; i < 16 && off + i < len; i++) {
            uint8_t c = p[off + i];
            buf[n++] = (c >= 0x20 && c < 0x7f) ? (char)c : '.';
        }
    }
    log_emit(buf, n, size);
    free(buf);
}

static int parse_level(const char *s, size_t len)
{
    for (size_t i = 0; i < sizeof(level_names) / sizeof(level_names[0]); i++) {
        if (strlen(level_names[i]) == len && strncmp(s, level_names[i], len) == 0)
            return (int)i;
    }
    return -1;
}

static int parse_module(const char *s, size_t len)
{
    for (int i = 0; i < LOG_MODULE_COUNT; i++) {
        if (strlen(module_names[i]) == len && strncmp(s, module_names[i], len) == 0)
            return i;
    }
    return -1;
}

int log_configure(const char *spec)
{
    unsigned char next[LOG_MODULE_COUNT];
    const char *p = spec;

    for (int i = 0; i < LOG_MODULE_COUNT; i++)
        next[i] = atomic_load(&log_levels[i]);
    while (p && *p) {
        const char *end = strchr(p, ',');
        size_t len = end ? (size_t)(end - p) : strlen(p);
        const char *eq = memchr(p, '=', len);
        int lvl;

        if (eq) {
            int mod = parse_module(p, (size_t)(eq - p));
            lvl = parse_level(eq + 1, len - (size_t)(eq - p) - 1);
            if (mod < 0 || lvl < 0)
                return -EINVAL;
            next[mod] = (unsigned char)lvl;
        } else if (len > 0) {
            lvl = parse_level(p, len);
            if (lvl < 0)
                return -EINVAL;
            for (int i = 0; i < LOG_MODULE_COUNT; i++)
                next[i] = (unsigned char)lvl;
        }
        p = end ? end + 1 : NULL;
    }
    for (int i = 0; i < LOG_MODULE_COUNT; i++)
        atomic_store(&log_levels[i], next[i]);
    return 0;
}

int log_configure_from_env(void)
{
    const char *spec = getenv("NETSTEP_LOG");

    return spec ? log_configure(spec) : 0;
}
