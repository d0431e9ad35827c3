/*
 * common.h — what every netstep sample app shares: the command-line flags
 * of the app contract, bringing the stack up on a tap, dropping
 * privileges, and waiting for signals.
 *
 *   --tap NAME          tap device (default tap0; created if absent and allowed)
 *   --addr A.B.C.D/N    our address (default 192.0.2.2/24)
 *   --gw A.B.C.D        default gateway (default 192.0.2.1)
 *   --mac XX:..:XX      our MAC (default: stable, derived from the tap name)
 *   --port N            service port (servers; their RFC default otherwise)
 *   --log SPEC          "info", "debug", or "tcp=trace,arp=debug"
 *   --stats             print every counter at exit (and on SIGUSR1)
 *   --pcap FILE         capture every frame the stack sends and receives
 *   --drop, --corrupt, --duplicate, --reorder [rx:|tx:]P
 *   --delay [rx:|tx:]MS[:JITTER], --rate [rx:|tx:]PKTS/S,
 *   --size-limit [rx:|tx:]BYTES, --seed N
 *                       the fault injector (driver/fault.h)
 *   -h, --help
 */
#ifndef NETSTEP_APP_COMMON_H
#define NETSTEP_APP_COMMON_H

#include <stdint.h>

#include "driver/fault.h"
#include "net.h"
#include "proto/ip.h"

struct app_options {
    const char *prog;
    const char *tap;
    const char *addr;     /* "A.B.C.D/N" */
    const char *gw;       /* may be "" for none */
    const char *log;
    int have_mac;
    uint8_t mac[6];
    int port;             /* -1: the app's default */
    int stats;            /* --stats */
    const char *pcap;     /* --pcap FILE, or NULL */
    struct fault_config fault; /* --drop, --delay, ... */
};

/* An option an app adds to the common ones. key is the short option
 * character (or a value >= 256 for long-only options). */
struct app_opt {
    const char *name;
    int has_arg;
    int key;
    const char *help;
};

/* Called for each app-specific option; returns 0, or -1 to fail usage. */
typedef int (*app_opt_fn)(int key, const char *arg, void *ctx);

/* Parse argv into o (defaults filled first). Prints usage and exits 0 for
 * --help, exits 2 on a bad option. Returns the index of the first
 * positional argument. */
int app_parse_args(struct app_options *o, int argc, char **argv, const char *positional,
                   const char *summary, const struct app_opt *extra, app_opt_fn fn, void *ctx);

/* Block the signals the app waits for (call before any thread starts). */
void app_signals_block(void);
/* Bring the stack up per o: logging, net_init, the tap, our address and
 * default route, drop capabilities, net_run. On failure prints one line
 * saying what failed and how to fix it, and exits 1. */
void app_stack_up(const struct app_options *o);
/* Our interface (valid after app_stack_up). */
struct ip_iface *app_iface(void);
struct net_device *app_device(void);
/* Wait up to timeout_ms (<0: forever) for SIGINT/SIGTERM; SIGUSR1 prints
 * the statistics block and keeps waiting. Returns 1 if asked to stop, 0 on
 * timeout. */
int app_wait_signal(int timeout_ms);
/* Print "--- stats ---", every counter, "--- end ---" to stdout. */
void app_print_stats(void);
/* Statistics (if --stats), then net_shutdown(). */
void app_stack_down(const struct app_options *o);

#endif
