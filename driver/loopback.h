/* loopback.h — a device whose transmit is its own input (127.0.0.1). */
#ifndef NETSTEP_DRIVER_LOOPBACK_H
#define NETSTEP_DRIVER_LOOPBACK_H

#include "net.h"

/* Register lo with 127.0.0.1/8. Returns the device or NULL. */
struct net_device *loopback_init(void);

#endif
