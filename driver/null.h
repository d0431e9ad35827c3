/* null.h — a device that drops everything it is given (a sink for tests). */
#ifndef NETSTEP_DRIVER_NULL_H
#define NETSTEP_DRIVER_NULL_H

#include "net.h"

struct net_device *null_init(void);

#endif
