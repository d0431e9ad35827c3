/*
 * fuzz_common.h — shared set-up of the libFuzzer targets: one stack on the
 * in-memory test device (tests/proto/testdev.c), logging off, peer already
 * in the ARP cache so replies leave at once. Each input is injected, the
 * stack runs until idle, and whatever it sent is discarded.
 */
#ifndef NETSTEP_FUZZ_COMMON_H
#define NETSTEP_FUZZ_COMMON_H

#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#include "testdev.h"
#include "util/log.h"

static int fuzz_ready;

static inline void fuzz_setup(void)
{
    if (fuzz_ready)
        return;
    log_configure("off");
    if (teststack_up_resolved() < 0)
        abort();
    fuzz_ready = 1;
}

#endif
