/*
 * netstepd — bring the stack up on a tap and let it answer ARP and ping
 * until SIGINT/SIGTERM. The smallest complete use of netstep:
 *
 *     sudo ip tuntap add mode tap name tap0 && sudo ip addr add 192.0.2.1/24 dev tap0
 *     sudo ip link set tap0 up
 *     build/bin/netstepd --log info      # then: ping 192.0.2.2
 *
 * It prints one line when ready, the statistics on SIGUSR1 (and at exit
 * with --stats), and every N seconds with --stats-interval N.
 */
#include <stdio.h>
#include <stdlib.h>

#include "app/common.h"
#include "proto/ether.h"

enum { OPT_STATS_INTERVAL = 300 };

static const struct app_opt opts[] = {
    { "stats-interval", 1, OPT_STATS_INTERVAL, "SEC print the statistics every SEC seconds" },
    { 0 },
};

static int on_option(int key, const char *arg, void *ctx)
{
    int *interval = ctx;

    if (key == OPT_STATS_INTERVAL) {
        *interval = atoi(arg);
        return *interval > 0 ? 0 : -1;
    }
    return -1;
}

int main(int argc, char **argv)
{
    struct app_options o;
    int interval = 0;
    char mac[24], addr[IP_ADDR_STR_LEN];

    app_parse_args(&o, argc, argv, NULL, "Run the netstep stack on a tap: it answers ARP and ping.",
                   opts, on_option, &interval);
    app_signals_block();
    app_stack_up(&o);
    printf("%s: up on %s %s/%d mac %s\n", o.prog, app_device()->name,
           ip_addr_ntop(app_iface()->unicast, addr, sizeof(addr)),
           __builtin_popcount(app_iface()->netmask),
           net_hwaddr_ntop(app_device()->addr, ETHER_ADDR_LEN, mac, sizeof(mac)));
    fflush(stdout);
    while (!app_wait_signal(interval > 0 ? interval * 1000 : -1))
        app_print_stats(); /* the interval passed */
    app_stack_down(&o);
    return 0;
}
