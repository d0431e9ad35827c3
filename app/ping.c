/*
 * ping — send ICMP echo requests from netstep's own stack and print the
 * replies the way iputils ping does.
 *
 *     build/bin/ping -c 3 192.0.2.1
 *
 * The first 8 bytes of each request's data carry the time it was sent
 * (microseconds on the monotonic clock), so the RTT comes from the reply
 * itself, as in iputils; the rest is a byte pattern checked on return.
 */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "app/common.h"
#include "proto/icmp.h"
#include "util/byteorder.h"

struct ping_opts {
    long count;      /* 0: until interrupted */
    size_t size;
    double interval; /* seconds */
    double wait;     /* seconds to wait for replies after the last request */
};

struct ping_stats {
    long sent, received, errors;
    double min, max, sum, sum2; /* ms */
};

static const struct app_opt opts[] = {
    { "count", 1, 'c', "N        stop after N requests" },
    { "size", 1, 's', "N         bytes of data in each request (default 56)" },
    { "interval", 1, 'i', "S     seconds between requests (default 1)" },
    { "timeout", 1, 'W', "S      seconds to wait for the last replies (default 1)" },
    { 0 },
};

static int on_option(int key, const char *arg, void *ctx)
{
    struct ping_opts *p = ctx;
    char *end;

    switch (key) {
    case 'c': p->count = strtol(arg, &end, 10); return (*end || p->count < 1) ? -1 : 0;
    case 's': {
        long v = strtol(arg, &end, 10);
        if (*end || v < 0 || v > IP_PAYLOAD_SIZE_MAX - ICMP_HDR_SIZE)
            return -1;
        p->size = (size_t)v;
        return 0;
    }
    case 'i': p->interval = strtod(arg, &end); return (*end || p->interval < 0.001) ? -1 : 0;
    case 'W': p->wait = strtod(arg, &end); return (*end || p->wait < 0) ? -1 : 0;
    }
    return -1;
}

static void fill_payload(uint8_t *buf, size_t size)
{
    uint64_t now = platform_now_us();

    for (size_t i = 0; i < size; i++)
        buf[i] = (uint8_t)(i & 0xff);
    if (size >= 8)
        memcpy(buf, &now, 8);
}

static const char *error_text(uint8_t type, uint8_t code)
{
    if (type == ICMP_TYPE_DEST_UNREACH) {
        switch (code) {
        case ICMP_CODE_NET_UNREACH: return "Destination Net Unreachable";
        case ICMP_CODE_HOST_UNREACH: return "Destination Host Unreachable";
        case ICMP_CODE_PROTO_UNREACH: return "Destination Protocol Unreachable";
        case ICMP_CODE_PORT_UNREACH: return "Destination Port Unreachable";
        case ICMP_CODE_FRAG_NEEDED: return "Frag needed";
        }
        return "Destination Unreachable";
    }
    if (type == ICMP_TYPE_TIME_EXCEEDED)
        return code ? "Frag reassembly time exceeded" : "Time to live exceeded";
    return "Error";
}

static void print_reply(const struct icmp_ping_reply *r, const uint8_t *data, size_t size,
                        struct ping_stats *st)
{
    char from[IP_ADDR_STR_LEN];

    ip_addr_ntop(r->from, from, sizeof(from));
    if (r->type != ICMP_TYPE_ECHOREPLY) {
        st->errors++;
        printf("From %s icmp_seq=%u %s\n", from, r->seq, error_text(r->type, r->code));
        return;
    }
    st->received++;
    printf("%zu bytes from %s: icmp_seq=%u ttl=%u", r->len + ICMP_HDR_SIZE, from, r->seq, r->ttl);
    if (size >= 8 && r->len >= 8) {
        uint64_t sent;
        memcpy(&sent, data, 8);
        double ms = (double)(r->when_us - sent) / 1000.0;
        if (st->received == 1 || ms < st->min)
            st->min = ms;
        if (ms > st->max)
            st->max = ms;
        st->sum += ms;
        st->sum2 += ms * ms;
        printf(" time=%.3f ms", ms);
    }
    for (size_t i = 8; i < r->len && i < size; i++) {
        if (data[i] != (uint8_t)(i & 0xff)) {
            printf(" (wrong data byte #%zu should be 0x%x but was 0x%x)", i, (unsigned)(i & 0xff), data[i]);
            break;
        }
    }
    if (r->len != size)
        printf(" (truncated: %zu of %zu bytes)", r->len, size);
    printf("\n");
}

/* Wait until deadline (µs) for replies, printing each; with last set,
 * stop as soon as every request has its answer (as iputils does: -W only
 * matters while a reply is missing). Returns 1 if a signal asked us to
 * stop. */
static int collect(struct icmp_ping *p, uint64_t deadline_us, uint8_t *buf, size_t size,
                   struct ping_stats *st, int last)
{
    for (;;) {
        if (last && st->received + st->errors >= st->sent)
            return 0;
        struct icmp_ping_reply r;
        uint64_t now = platform_now_us();
        int left = now >= deadline_us ? 0 : (int)((deadline_us - now + 999) / 1000);
        int err;

        if (app_wait_signal(0))
            return 1;
        /* wake at least every 100 ms to notice SIGINT */
        err = icmp_ping_recv(p, &r, buf, size, left < 100 ? left : 100);
        if (err == 0) {
            print_reply(&r, buf, size, st);
            fflush(stdout);
            continue;
        }
        if (err != -ETIMEDOUT)
            return 1;
        if (platform_now_us() >= deadline_us)
            return 0;
    }
}

static void print_summary(const char *dst, const struct ping_stats *st, uint64_t elapsed_ms)
{
    printf("\n--- %s ping statistics ---\n", dst);
    printf("%ld packets transmitted, %ld received, ", st->sent, st->received);
    if (st->errors)
        printf("+%ld errors, ", st->errors);
    printf("%.0f%% packet loss, time %llums\n",
           st->sent ? 100.0 * (double)(st->sent - st->received) / (double)st->sent : 0.0,
           (unsigned long long)elapsed_ms);
    if (st->received > 0 && st->max > 0) {
        double avg = st->sum / (double)st->received;
        double var = st->sum2 / (double)st->received - avg * avg;
        printf("rtt min/avg/max/mdev = %.3f/%.3f/%.3f/%.3f ms\n", st->min, avg, st->max,
               var > 0 ? sqrt(var) : 0.0);
    }
}

int main(int argc, char **argv)
{
    struct app_options o;
    struct ping_opts po = { .count = 0, .size = 56, .interval = 1.0, .wait = 1.0 };
    struct ping_stats st = { 0 };
    struct icmp_ping *p;
    uint8_t *buf;
    uint32_t dst;
    uint64_t start;
    int idx, stop = 0, err;

    idx = app_parse_args(&o, argc, argv, "DESTINATION", "Send ICMP echo requests from the netstep stack.",
                         opts, on_option, &po);
    if (idx != argc - 1 || ip_addr_pton(argv[idx], &dst) < 0) {
        fprintf(stderr, "%s: give one destination address, e.g. %s 192.0.2.1\n", o.prog, o.prog);
        return 2;
    }
    buf = malloc(po.size + 1);
    if (!buf)
        return 1;
    app_signals_block();
    app_stack_up(&o);
    if ((err = icmp_ping_open(&p)) < 0) {
        fprintf(stderr, "%s: %s\n", o.prog, strerror(-err));
        return 1;
    }
    printf("PING %s (%s) %zu(%zu) bytes of data.\n", argv[idx], argv[idx], po.size,
           po.size + ICMP_HDR_SIZE + IP_HDR_SIZE_MIN);
    fflush(stdout);
    start = platform_now_ms();
    for (long seq = 1; !stop && (po.count == 0 || seq <= po.count); seq++) {
        fill_payload(buf, po.size);
        err = icmp_ping_send(p, dst, (uint16_t)seq, buf, po.size);
        if (err < 0)
            printf("%s: sendmsg: %s\n", o.prog, strerror(-err));
        st.sent++;
        int last = po.count != 0 && seq == po.count;
        double wait_s = last ? po.wait : po.interval;
        stop = collect(p, platform_now_us() + (uint64_t)(wait_s * 1e6), buf, po.size, &st, last);
    }
    print_summary(argv[idx], &st, platform_now_ms() - start);
    icmp_ping_close(p);
    app_stack_down(&o);
    free(buf);
    return st.received > 0 ? 0 : 1;
}
