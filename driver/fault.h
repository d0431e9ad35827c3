/*
 * fault.h — a lossy, reordering, slow "wire" between a device and the
 * stack, reproducible from a seed (`--drop 0.1 --seed 7` on every app).
 *
 * The injector is a device hook (net.h) attached first, so it sits next to
 * the driver and a capture added after it (driver/pcap.h) sees what the
 * stack sees. Each direction (rx: driver -> stack, tx: stack -> driver) has
 * its own settings, its own xorshift64* generator seeded from the seed,
 * its own lock and its own release timer. For each frame, in this order:
 *
 *   size-limit BYTES   frames longer than BYTES are dropped
 *   rate PKTS/S        token bucket of PKTS tokens refilled at PKTS per
 *                      second (bursts up to one second's worth); a frame
 *                      finding the bucket empty is dropped
 *   drop P             dropped with probability P
 *   corrupt P          one byte after the link header (so the frame still
 *                      reaches IP and its checksums) is XORed with a random
 *                      non-zero value
 *   duplicate P        a copy follows the frame
 *   reorder P          the frame is held back and sent right after the next
 *                      frame in that direction (or after FAULT_REORDER_HOLD_MS
 *                      if none comes)
 *   delay MS[:JITTER]  everything is held MS ms plus 0..JITTER ms (drawn per
 *                      frame, so jitter reorders as netem's does) and
 *                      released by a timer on the stack thread
 *
 * Reproducibility: every frame draws the same number of random values
 * whatever happens to it, so the decisions for the k-th frame of a
 * direction depend only on the seed and k. Held frames (delay + reorder)
 * are bounded per direction by held_max; a frame that finds no room is
 * dropped and counted as held_overflow.
 *
 * Every fault is logged at debug (module "fault") with the frame's index k
 * and counted in the stats group "fault" (fault.rx_dropped, ...).
 */
#ifndef NETSTEP_DRIVER_FAULT_H
#define NETSTEP_DRIVER_FAULT_H

#include <stdint.h>

#include "net.h"

#define FAULT_HELD_MAX_DEFAULT 1024
#define FAULT_REORDER_HOLD_MS 20
#define FAULT_DELAY_MAX_MS 60000

struct fault_dir_config {
    double drop;          /* probabilities, 0..1 */
    double corrupt;
    double duplicate;
    double reorder;
    unsigned delay_ms;    /* fixed delay */
    unsigned jitter_ms;   /* plus 0..jitter_ms */
    unsigned rate;        /* frames per second, 0: unlimited */
    unsigned size_limit;  /* bytes, 0: none */
};

struct fault_config {
    struct fault_dir_config dir[2]; /* [NET_DIR_RX], [NET_DIR_TX] */
    uint64_t seed;
    int seeded;           /* seed was given; otherwise one is drawn and logged */
    unsigned held_max;    /* frames held per direction; 0: the default */
};

/* Counters of one direction; the group holds rx_* then tx_*. */
enum fault_stat {
    FAULTSTAT_FRAMES,        /* frames that entered the injector */
    FAULTSTAT_DROPPED,       /* by --drop */
    FAULTSTAT_CORRUPTED,
    FAULTSTAT_DUPLICATED,
    FAULTSTAT_REORDERED,     /* held back behind the next frame */
    FAULTSTAT_DELAYED,
    FAULTSTAT_RATE_DROPPED,  /* by --rate */
    FAULTSTAT_SIZE_DROPPED,  /* by --size-limit */
    FAULTSTAT_HELD_OVERFLOW, /* dropped: held_max frames already held */
    FAULTSTAT_PER_DIR
};
#define FAULTSTAT_INDEX(dir, stat) ((int)(dir) * FAULTSTAT_PER_DIR + (stat))
extern struct stats_group fault_stats;

/* Apply one command-line option to c: name is "drop", "corrupt",
 * "duplicate", "reorder", "delay", "rate", "size-limit" or "seed"; arg its
 * value, optionally prefixed "rx:" or "tx:" to set one direction only
 * ("0.1", "rx:0.1", "tx:100:20"). Returns 0, or -EINVAL (c unchanged). */
int fault_config_set(struct fault_config *c, const char *name, const char *arg);
/* Non-zero if c asks for any fault in either direction. */
int fault_config_active(const struct fault_config *c);
/* Hook dev with an injector configured by c (copied). Call before net_run
 * and before attaching a capture. Returns 0 or -errno. */
int fault_attach(struct net_device *dev, const struct fault_config *c);

#endif
