/*
 * ether_tap.h — Ethernet over a Linux tap device (/dev/net/tun, IFF_TAP).
 */
#ifndef NETSTEP_DRIVER_ETHER_TAP_H
#define NETSTEP_DRIVER_ETHER_TAP_H

#include <stdint.h>

#include "net.h"

/* Open the tap called name (created if absent and we may), give it the MAC
 * mac (NULL: a stable address derived from the name) and register it. The
 * fd is opened now, so capabilities can be dropped before net_run(); the RX
 * thread starts when the device is opened by net_run(). Returns the device,
 * or NULL with -errno in *err (-EPERM/-EACCES: no right to the tap). */
struct net_device *ether_tap_init(const char *name, const uint8_t *mac, int *err);
/* Non-zero if ether_tap_init created the tap (it goes away with the fd). */
int ether_tap_created(struct net_device *dev);

#endif
