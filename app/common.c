/*
 * common.c — shared setup of the sample apps. See common.h.
 *
 * The order in app_stack_up matters: the tap is opened while we still hold
 * CAP_NET_ADMIN, then every capability is dropped, and only then does the
 * stack start reading frames — so network input is never handled with
 * privileges (docs/02-ethernet-over-tap.md).
 */
#include "app/common.h"

#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "driver/ether_tap.h"
#include "driver/fault.h"
#include "driver/loopback.h"
#include "driver/pcap.h"
#include "proto/ether.h"
#include "proto/tcp.h"
#include "proto/udp.h"
#include "util/log.h"
#include "util/mem.h"
#include "proto/tcp_cc.h"

enum { OPT_TAP = 256, OPT_ADDR, OPT_GW, OPT_MAC, OPT_PORT, OPT_LOG, OPT_STATS, OPT_PCAP,
       OPT_FAULT_FIRST, OPT_FAULT_LAST = OPT_FAULT_FIRST + 7, OPT_SET, OPT_CC };

/* The fault injector's options, in the order of their keys. */
static const char *const fault_opt_names[] = { "drop", "corrupt", "duplicate", "reorder",
                                               "delay", "rate", "size-limit", "seed" };

static const struct app_opt common_opts[] = {
    { "tap", 1, OPT_TAP, "NAME       tap device (default tap0; created if absent)" },
    { "addr", 1, OPT_ADDR, "A.B.C.D/N our address (default 192.0.2.2/24)" },
    { "gw", 1, OPT_GW, "A.B.C.D     default gateway (default 192.0.2.1; \"\" for none)" },
    { "mac", 1, OPT_MAC, "XX:..:XX   our MAC (default derived from the tap name)" },
    { "port", 1, OPT_PORT, "N         service port" },
    { "log", 1, OPT_LOG, "SPEC       log levels: info, debug, \"ip=debug,arp=trace\"" },
    { "stats", 0, OPT_STATS, "          print every counter at exit and on SIGUSR1" },
    { "set", 1, OPT_SET, "NAME=VALUE  set a stack limit (net_config), e.g. sock_rcvbuf_default=65536" },
    { "pcap", 1, OPT_PCAP, "FILE      capture every frame sent and received (Wireshark)" },
    { "cc", 1, OPT_CC, "NAME        TCP congestion control of new sockets: newreno (default), cubic" },
    { "drop", 1, OPT_FAULT_FIRST + 0, "P         fault injection: drop frames with probability P" },
    { "corrupt", 1, OPT_FAULT_FIRST + 1, "P      flip a byte after the Ethernet header, probability P" },
    { "duplicate", 1, OPT_FAULT_FIRST + 2, "P    send a frame twice, probability P" },
    { "reorder", 1, OPT_FAULT_FIRST + 3, "P      hold a frame back behind the next, probability P" },
    { "delay", 1, OPT_FAULT_FIRST + 4, "MS[:J]   delay frames MS ms plus 0..J ms" },
    { "rate", 1, OPT_FAULT_FIRST + 5, "N         at most N frames per second (token bucket)" },
    { "size-limit", 1, OPT_FAULT_FIRST + 6, "N   drop frames longer than N bytes" },
    { "seed", 1, OPT_FAULT_FIRST + 7, "N         seed of the fault injector: same seed, same faults" },
    { "help", 0, 'h', "            this help" },
};

static struct net_device *tap_dev;
static struct ip_iface *tap_iface;

static void usage(FILE *f, const struct app_options *o, const char *positional, const char *summary,
                  const struct app_opt *extra)
{
    fprintf(f, "usage: %s [options]%s%s\n%s\n\noptions:\n", o->prog, positional ? " " : "",
            positional ? positional : "", summary);
    for (const struct app_opt *e = extra; e && e->name; e++) {
        if (e->key < 256)
            fprintf(f, "  -%c, --%s %s\n", e->key, e->name, e->help);
        else
            fprintf(f, "  --%s %s\n", e->name, e->help);
    }
    for (size_t i = 0; i < sizeof(common_opts) / sizeof(common_opts[0]); i++) {
        const struct app_opt *c = &common_opts[i];
        if (c->key < 256)
            fprintf(f, "  -%c, --%s %s\n", c->key, c->name, c->help);
        else
            fprintf(f, "  --%s %s\n", c->name, c->help);
    }
    fprintf(f, "\nThe environment variable NETSTEP_LOG sets log levels too (--log wins).\n"
               "Fault options act both ways, or one way with rx: or tx: (--drop rx:0.1).\n");
}

/* The stack limits --set may change: every field of struct net_config. */
static const struct {
    const char *name;
    unsigned *field;
} config_fields[] = {
#define F(x) { #x, &net_config.x }
    F(input_queue_max), F(input_batch), F(arp_cache_max), F(arp_pending_max), F(arp_retries),
    F(arp_retry_ms), F(arp_reachable_ms), F(ip_reass_max_datagrams), F(ip_reass_max_bytes),
    F(ip_reass_timeout_ms), F(ip_default_ttl), F(icmp_ratelimit_per_s), F(icmp_ping_queue_max),
    F(sock_max), F(sock_rcvbuf_default), F(sock_sndbuf_default), F(sock_buf_min), F(sock_buf_max),
    F(port_ephemeral_lo), F(port_ephemeral_hi), F(tcp_max_pcbs), F(tcp_syn_backlog), F(tcp_backlog_max),
    F(tcp_syn_retries), F(tcp_retries), F(tcp_rto_initial_ms), F(tcp_rto_min_ms), F(tcp_rto_max_ms),
    F(tcp_delack_ms), F(tcp_msl_ms), F(tcp_fin_wait2_ms), F(tcp_challenge_ack_per_s), F(tcp_keep_idle_s),
    F(tcp_keep_intvl_s), F(tcp_keep_cnt), F(tcp_sack), F(tcp_timestamps), F(pbuf_pool_max),
    F(tap_offload), F(busy_poll_us),
#undef F
};

/* --set NAME=VALUE: one net_config field, before the stack starts. */
static int config_set(struct app_options *o, const char *arg)
{
    const char *eq = strchr(arg, '=');
    char *end;
    unsigned long v;

    if (eq) {
        v = strtoul(eq + 1, &end, 10);
        for (size_t i = 0; *end == '\0' && eq[1] && i < sizeof(config_fields) / sizeof(config_fields[0]); i++) {
            if (strlen(config_fields[i].name) == (size_t)(eq - arg) &&
                strncmp(config_fields[i].name, arg, (size_t)(eq - arg)) == 0 && v <= 0xffffffffu) {
                *config_fields[i].field = (unsigned)v;
                return 0;
            }
        }
    }
    fprintf(stderr, "%s: --set %s: expected NAME=NUMBER with NAME one of:", o->prog, arg);
    for (size_t i = 0; i < sizeof(config_fields) / sizeof(config_fields[0]); i++)
        fprintf(stderr, " %s", config_fields[i].name);
    fprintf(stderr, "\n");
    return -1;
}

static int common_option(struct app_options *o, int key, const char *arg)
{
    switch (key) {
    case OPT_TAP: o->tap = arg; return 0;
    case OPT_ADDR: o->addr = arg; return 0;
    case OPT_GW: o->gw = arg; return 0;
    case OPT_LOG: o->log = arg; return 0;
    case OPT_STATS: o->stats = 1; return 0;
    case OPT_SET: return config_set(o, arg);
    case OPT_PCAP: o->pcap = arg; return 0;
    case OPT_CC:
        if (!tcp_cc_find(arg)) {
            char names[64];
            tcp_cc_list(names, sizeof(names));
            fprintf(stderr, "%s: --cc %s: unknown; one of: %s\n", o->prog, arg, names);
            return -1;
        }
        snprintf(net_config.tcp_cc, sizeof(net_config.tcp_cc), "%s", arg);
        return 0;
    case OPT_MAC:
        if (net_hwaddr_pton(arg, o->mac, 6) < 0) {
            fprintf(stderr, "%s: --mac %s: expected six hex bytes like 02:00:00:00:00:02\n", o->prog, arg);
            return -1;
        }
        o->have_mac = 1;
        return 0;
    case OPT_FAULT_FIRST ... OPT_FAULT_LAST: {
        const char *name = fault_opt_names[key - OPT_FAULT_FIRST];
        if (fault_config_set(&o->fault, name, arg) < 0) {
            fprintf(stderr, "%s: --%s %s: expected %s\n", o->prog, name, arg,
                    !strcmp(name, "seed") ? "a number"
                    : !strcmp(name, "delay") ? "[rx:|tx:]MS[:JITTER], e.g. 100 or tx:50:20"
                    : (!strcmp(name, "rate") || !strcmp(name, "size-limit")) ? "[rx:|tx:]N, a positive number"
                    : "[rx:|tx:]P with P from 0 to 1, e.g. 0.1 or rx:5%");
            return -1;
        }
        return 0;
    }
    case OPT_PORT: {
        char *end;
        long v = strtol(arg, &end, 10);
        if (*end || v < 1 || v > 65535) {
            fprintf(stderr, "%s: --port %s: expected a number from 1 to 65535\n", o->prog, arg);
            return -1;
        }
        o->port = (int)v;
        return 0;
    }
    }
    return 1; /* not ours */
}

int app_parse_args(struct app_options *o, int argc, char **argv, const char *positional,
                   const char *summary, const struct app_opt *extra, app_opt_fn fn, void *ctx)
{
    struct option longopts[64];
    char shortopts[64] = "h";
    size_t nl = 0, ns = 1;
    int c;

    const char *slash = strrchr(argv[0], '/');
    *o = (struct app_options){ .prog = slash ? slash + 1 : argv[0], .tap = "tap0",
                               .addr = "192.0.2.2/24", .gw = "192.0.2.1", .port = -1 };
    for (size_t i = 0; i < sizeof(common_opts) / sizeof(common_opts[0]); i++)
        longopts[nl++] = (struct option){ common_opts[i].name, common_opts[i].has_arg, NULL, common_opts[i].key };
    for (const struct app_opt *e = extra; e && e->name && nl < 62; e++) {
        longopts[nl++] = (struct option){ e->name, e->has_arg, NULL, e->key };
        if (e->key < 256 && ns < sizeof(shortopts) - 3) {
            shortopts[ns++] = (char)e->key;
            if (e->has_arg)
                shortopts[ns++] = ':';
        }
    }
    longopts[nl] = (struct option){ 0 };
    shortopts[ns] = '\0';
    while ((c = getopt_long(argc, argv, shortopts, longopts, NULL)) != -1) {
        int r;
        if (c == 'h') {
            usage(stdout, o, positional, summary, extra);
            exit(0);
        }
        if (c == '?') {
            usage(stderr, o, positional, summary, extra);
            exit(2);
        }
        r = common_option(o, c, optarg);
        if (r == 1)
            r = fn ? fn(c, optarg, ctx) : -1;
        if (r < 0)
            exit(2);
    }
    return optind;
}

void app_signals_block(void)
{
    sigset_t set;

    sigemptyset(&set);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGUSR1);
    pthread_sigmask(SIG_BLOCK, &set, NULL);
    signal(SIGPIPE, SIG_IGN);
}

static void tap_failure(const struct app_options *o, int err)
{
    fprintf(stderr, "%s: cannot open tap %s: %s\n", o->prog, o->tap, strerror(-err));
    if (err == -EPERM || err == -EACCES) {
        if (!platform_can_admin_net())
            fprintf(stderr,
                    "%s: this process lacks CAP_NET_ADMIN. Either run it as root, or create the tap\n"
                    "  for your user once:  sudo ip tuntap add mode tap user $USER name %s && sudo ip link set %s up\n"
                    "  or let the binaries open taps:  sudo make setcap\n",
                    o->prog, o->tap, o->tap);
        else
            fprintf(stderr, "%s: %s exists and belongs to another user or is busy\n", o->prog, o->tap);
    } else if (err == -ENOENT || err == -ENODEV) {
        fprintf(stderr, "%s: /dev/net/tun is missing: load the tun module (sudo modprobe tun)\n", o->prog);
    } else if (err == -EBUSY) {
        fprintf(stderr, "%s: another process holds %s; stop it or pick another --tap\n", o->prog, o->tap);
    }
    exit(1);
}

static void setup_addresses(const struct app_options *o)
{
    uint32_t addr, mask, gw;
    int err = 0;

    if (ip_prefix_pton(o->addr, &addr, &mask) < 0) {
        fprintf(stderr, "%s: --addr %s: expected A.B.C.D/N, e.g. 192.0.2.2/24\n", o->prog, o->addr);
        exit(1);
    }
    tap_iface = ip_iface_add(tap_dev, addr, mask, &err);
    if (!tap_iface) {
        fprintf(stderr, "%s: cannot add address %s: %s\n", o->prog, o->addr, strerror(-err));
        exit(1);
    }
    if (o->gw && *o->gw) {
        if (ip_addr_pton(o->gw, &gw) < 0) {
            fprintf(stderr, "%s: --gw %s: expected A.B.C.D\n", o->prog, o->gw);
            exit(1);
        }
        if ((gw & mask) != (addr & mask))
            fprintf(stderr, "%s: warning: gateway %s is not on %s\n", o->prog, o->gw, o->addr);
        ip_route_set_default(gw, tap_iface);
    }
}

/* The fault injector first, then the capture on top of it, so the capture
 * shows what the stack sees (driver/pcap.h). */
static void attach_hooks(const struct app_options *o)
{
    int err;

    if (fault_config_active(&o->fault) && (err = fault_attach(tap_dev, &o->fault)) < 0) {
        fprintf(stderr, "%s: cannot start the fault injector: %s\n", o->prog, strerror(-err));
        exit(1);
    }
    if (o->pcap && (err = pcap_attach(tap_dev, o->pcap)) < 0) {
        fprintf(stderr, "%s: --pcap %s: cannot create the capture file: %s\n", o->prog, o->pcap,
                strerror(-err));
        exit(1);
    }
}

void app_stack_up(const struct app_options *o)
{
    int err = 0;

    thread_set_name("main");
    if (log_configure_from_env() < 0)
        fprintf(stderr, "%s: ignoring NETSTEP_LOG: not a valid log spec\n", o->prog);
    if (o->log && log_configure(o->log) < 0) {
        fprintf(stderr, "%s: --log %s: unknown module or level (levels: error warn info debug trace)\n",
                o->prog, o->log);
        exit(1);
    }
    if ((err = net_init()) < 0) {
        fprintf(stderr, "%s: stack init failed: %s\n", o->prog, strerror(-err));
        exit(1);
    }
    tap_dev = ether_tap_init(o->tap, o->have_mac ? o->mac : NULL, &err);
    if (!tap_dev)
        tap_failure(o, err);
    attach_hooks(o);
    if (!loopback_init()) {
        fprintf(stderr, "%s: cannot create the loopback device\n", o->prog);
        exit(1);
    }
    setup_addresses(o);
    /* Everything privileged is done: from here on we need no capability. */
    if ((err = platform_drop_capabilities()) < 0) {
        fprintf(stderr, "%s: cannot drop capabilities: %s\n", o->prog, strerror(-err));
        exit(1);
    }
    log_info(LOG_APP, "capabilities dropped");
    if ((err = net_run()) < 0) {
        fprintf(stderr, "%s: cannot start the stack: %s\n", o->prog, strerror(-err));
        exit(1);
    }
}

struct ip_iface *app_iface(void)
{
    return tap_iface;
}

struct net_device *app_device(void)
{
    return tap_dev;
}

/* One of the format functions into a fresh buffer sized by a first call;
 * the table may grow between the calls, which only truncates it. */
static char *format_all(size_t (*fmt)(char *, size_t))
{
    size_t need = fmt(NULL, 0) + 256;
    char *buf = malloc(need);

    if (buf)
        fmt(buf, need);
    return buf;
}

static size_t stats_all(char *buf, size_t size)
{
    return net_stats_format(buf, size, 0);
}

/* The counters (netstat -s) and the socket table (ss), in one block. */
void app_print_stats(void)
{
    char *stats = format_all(stats_all), *tcp = format_all(tcp_pcb_format), *udp = format_all(udp_pcb_format);

    printf("--- stats ---\n%s--- sockets ---\n%s%s--- end ---\n", stats ? stats : "", tcp ? tcp : "",
           udp ? udp : "");
    fflush(stdout);
    free(stats);
    free(tcp);
    free(udp);
}

int app_wait_signal(int timeout_ms)
{
    sigset_t set;
    uint64_t deadline = timeout_ms >= 0 ? platform_now_ms() + (uint64_t)timeout_ms : 0;

    sigemptyset(&set);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGUSR1);
    for (;;) {
        int sig;
        if (timeout_ms < 0) {
            sig = sigwaitinfo(&set, NULL);
        } else {
            uint64_t now = platform_now_ms();
            uint64_t left = deadline > now ? deadline - now : 0;
            struct timespec ts = { .tv_sec = (time_t)(left / 1000), .tv_nsec = (long)(left % 1000) * 1000000L };
            sig = sigtimedwait(&set, NULL, &ts);
            if (sig < 0 && errno == EAGAIN)
                return 0;
        }
        if (sig == SIGUSR1)
            app_print_stats();
        else if (sig == SIGINT || sig == SIGTERM)
            return 1;
    }
}

void app_stack_down(const struct app_options *o)
{
    if (o->stats)
        app_print_stats();
    net_shutdown();
}
