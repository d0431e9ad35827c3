/*
 * net.h — the core of netstep: devices, protocols, the input queue, the
 * stack thread, timers and the configuration every module reads.
 *
 * The picture (docs/01-devices-and-the-stack-thread.md explains it):
 *
 *   RX thread(s) --net_input()--> [input queue] --> stack thread
 *                                                    |  ether_input / loopback
 *                                                    |  -> protocol handler
 *                                                    |     (arp_input, ip_input)
 *                                                    +  run due timers
 *
 *   app thread --sock_*()--> udp/tcp output --> ip_output --> arp
 *              --> net_device_output() --> dev->ops->transmit()
 *
 * Lock key for this header (docs/locking.md has the whole order):
 *   [N]  net.c's registry lock (net_lock): device and protocol lists
 *   [Q]  input queue lock
 *   [X]  the device's own tx_lock
 *   [T]  the timer lock
 *   [c]  constant after registration / net_run(); read without a lock
 */
#ifndef NETSTEP_NET_H
#define NETSTEP_NET_H

#include <stddef.h>
#include <stdint.h>

#include "platform.h"
#include "util/pbuf.h"
#include "util/stats.h"

/* ---- configuration -------------------------------------------------------
 * Every resource limit of the stack, in one place. Set fields in net_config
 * before net_init(); modules read them at init (and some at run time, noted).
 */
struct net_config {
    unsigned input_queue_max;      /* frames waiting for the stack thread */
    unsigned input_batch;          /* frames the stack thread takes per lock */
    unsigned arp_cache_max;        /* ARP cache entries */
    unsigned arp_pending_max;      /* packets held per unresolved address */
    unsigned arp_retries;          /* requests sent before giving up */
    unsigned arp_retry_ms;         /* between requests */
    unsigned arp_reachable_ms;     /* a resolved entry lives this long */
    unsigned ip_reass_max_datagrams; /* datagrams being reassembled at once */
    unsigned ip_reass_max_bytes;   /* fragment bytes held in all of them */
    unsigned ip_reass_timeout_ms;  /* RFC 791 suggests 15 s; Linux uses 30 s */
    unsigned ip_default_ttl;
    unsigned icmp_ratelimit_per_s; /* ICMP errors sent per second */
    unsigned icmp_ping_queue_max;  /* echo replies queued per ping handle */
    unsigned sock_max;             /* descriptors open at once */
    unsigned sock_rcvbuf_default;  /* SO_RCVBUF of a new socket, bytes */
    unsigned sock_sndbuf_default;  /* SO_SNDBUF of a new socket, bytes */
    unsigned sock_buf_min;         /* SO_RCVBUF/SO_SNDBUF are clamped to */
    unsigned sock_buf_max;         /*   [sock_buf_min, sock_buf_max] */
    unsigned port_ephemeral_lo;    /* local ports chosen by the stack */
    unsigned port_ephemeral_hi;    /*   (RFC 6335: 49152-65535) */
    unsigned tcp_max_pcbs;         /* connections in any state, all told */
    unsigned tcp_syn_backlog;      /* half-open connections per listener */
    unsigned tcp_backlog_max;      /* ceiling on listen()'s backlog */
    unsigned tcp_syn_retries;      /* SYN / SYN-ACK retransmissions */
    unsigned tcp_retries;          /* data retransmissions before ETIMEDOUT */
    unsigned tcp_rto_initial_ms;   /* RFC 6298 §2.1: 1 s */
    unsigned tcp_rto_min_ms;       /* RFC 6298 says 1 s; Linux uses 200 ms */
    unsigned tcp_rto_max_ms;
    unsigned tcp_delack_ms;        /* delayed ACK (RFC 9293: < 0.5 s) */
    unsigned tcp_msl_ms;           /* TIME-WAIT lasts 2 * MSL */
    unsigned tcp_fin_wait2_ms;     /* an orphan in FIN-WAIT-2 is dropped after */
    unsigned tcp_challenge_ack_per_s; /* RFC 5961 §7 rate limit */
    unsigned tcp_keep_idle_s;      /* keepalive defaults (RFC 1122 §4.2.3.6) */
    unsigned tcp_keep_intvl_s;
    unsigned tcp_keep_cnt;
    unsigned pbuf_pool_max;        /* idle packet buffers kept for reuse */
    unsigned tcp_sack;             /* offer and use SACK (RFC 2018): 1 on, 0 off */
    unsigned tcp_timestamps;       /* offer and use timestamps (RFC 7323): 1 on, 0 off */
    char tcp_cc[16];               /* congestion control of new sockets: "newreno", "cubic" */
    unsigned tap_offload;          /* tap: checksum and segmentation offload, 1 on, 0 off */
    unsigned busy_poll_us;         /* stack thread polls without sleeping this long after input; 0 off */
};

extern struct net_config net_config;

/* ---- clock ---------------------------------------------------------------
 * Milliseconds on the stack's clock: the monotonic clock, or a virtual one
 * that tests move by hand (net_clock_set_virtual/net_clock_advance) so that
 * timer tests take no real time and never flake. */
uint64_t net_now_ms(void);
void net_clock_set_virtual(uint64_t start_ms);
void net_clock_advance(uint64_t ms);
int net_clock_is_virtual(void);

/* ---- devices -------------------------------------------------------------- */
#define NET_DEVICE_TYPE_NULL 0x0000
#define NET_DEVICE_TYPE_LOOPBACK 0x0001
#define NET_DEVICE_TYPE_ETHERNET 0x0002

#define NET_DEVICE_FLAG_UP 0x0001
#define NET_DEVICE_FLAG_LOOPBACK 0x0010
#define NET_DEVICE_FLAG_BROADCAST 0x0020
#define NET_DEVICE_FLAG_NEED_ARP 0x0100
/* TCP offload: the device completes TCP checksums (PBUF_FLAG_CSUM_PARTIAL)
 * and cuts super-frames (pbuf gso_size) into segments; set only while no
 * hook (pcap, fault injector) needs to see the frames as they would be on
 * a wire. */
#define NET_DEVICE_FLAG_TSO 0x0200

#define NET_DEVICE_ADDR_LEN 16

struct net_device;
struct net_iface;
struct net_device_hook;

/* What a driver provides. transmit() receives a whole frame (for Ethernet,
 * header included) and consumes the pbuf whatever it returns. open() and
 * close() are optional. A device with a file descriptor to read (the tap)
 * gives rx_fd() and rx_poll(): the stack thread sleeps in poll() on every
 * such descriptor and, when one is readable, calls rx_poll(), which reads
 * up to budget frames without blocking and hands each to net_input(). */
struct net_device_ops {
    int (*open)(struct net_device *dev);
    int (*close)(struct net_device *dev);
    int (*transmit)(struct net_device *dev, struct pbuf *pb);
    int (*rx_fd)(struct net_device *dev);
    int (*rx_poll)(struct net_device *dev, unsigned budget);
};

enum net_device_stat {
    DEVSTAT_RX_FRAMES,
    DEVSTAT_RX_BYTES,
    DEVSTAT_TX_FRAMES,
    DEVSTAT_TX_BYTES,
    DEVSTAT_TX_ERRORS,
    DEVSTAT_TX_DOWN,    /* dropped: device not up */
    DEVSTAT_TX_TOO_BIG, /* dropped: larger than MTU */
    /* offloads (NET_DEVICE_FLAG_TSO; driver/ether_tap.c) */
    DEVSTAT_TX_SUPER_FRAMES,    /* TCP super-frames handed to the device */
    DEVSTAT_RX_SUPER_FRAMES,    /* TCP super-frames the kernel handed us */
    DEVSTAT_RX_CSUM_PARTIAL,    /* frames whose checksum the kernel left undone */
    DEVSTAT_RX_BAD_OFFLOAD,     /* dropped: offload flags we never allowed, or no vnet header */
    DEVSTAT_RX_NO_MEMORY,       /* dropped: no buffer for a super-frame */
    DEVSTAT_COUNT
};

struct net_device {
    struct net_device *next;              /* [N] */
    unsigned index;                       /* [c] */
    char name[16];                        /* [c] */
    uint16_t type;                        /* [c] NET_DEVICE_TYPE_* */
    uint16_t mtu;                         /* [c] largest payload of a frame */
    uint16_t hlen;                        /* [c] link header length */
    uint16_t alen;                        /* [c] link address length */
    _Atomic uint16_t flags;               /* NET_DEVICE_FLAG_*, atomic */
    uint8_t addr[NET_DEVICE_ADDR_LEN];    /* [c] our link address */
    uint8_t broadcast[NET_DEVICE_ADDR_LEN]; /* [c] */
    const struct net_device_ops *ops;     /* [c] */
    void *priv;                           /* driver's own, its own locking */
    struct net_iface *ifaces;             /* [N] protocol addresses on it */
    struct net_device_hook *hook_lower;   /* [c] hook nearest the driver */
    struct net_device_hook *hook_upper;   /* [c] hook nearest the stack */
    struct mutex tx_lock;                 /* [X] serialises ops->transmit */
    struct stats_group stats;             /* counters, atomic */
    char stats_name[24];                  /* [c] "dev.<name>" */
};

/* A protocol address on a device (an IPv4 address, later others). The owner
 * module embeds it as the first member of its own struct. */
struct net_iface {
    struct net_iface *next;  /* [N] */
    struct net_device *dev;  /* [c] */
    int family;              /* [c] AF_INET */
};

/* Allocate a zeroed device; the driver fills type, mtu, ops, ... and then
 * calls net_device_register(). NULL when memory is short. */
struct net_device *net_device_alloc(void);
/* Name the device (name may be NULL for "netN"), give it an index and add
 * it to the registry. Returns 0 or -errno. */
int net_device_register(struct net_device *dev, const char *name);
struct net_device *net_device_by_name(const char *name);
struct net_device *net_device_by_index(unsigned index);
/* Attach an address (ip_iface_register calls this). */
int net_device_add_iface(struct net_device *dev, struct net_iface *iface);
struct net_iface *net_device_get_iface(struct net_device *dev, int family);
int net_device_is_up(struct net_device *dev);
/* Send pb (whose data starts at the network-layer header) out of dev as
 * protocol `type` (an EtherType) to link address dst; builds the link
 * header when the device has one. Consumes pb. Returns 0 or -errno. */
int net_device_output(struct net_device *dev, uint16_t type, struct pbuf *pb, const uint8_t *dst);
/* Hand a whole frame to the driver (through any hooks). Consumes pb. */
int net_device_transmit(struct net_device *dev, struct pbuf *pb);
/* Format a link address ("02:00:5e:00:53:02") into buf. */
char *net_hwaddr_ntop(const uint8_t *addr, size_t alen, char *buf, size_t size);
int net_hwaddr_pton(const char *s, uint8_t *addr, size_t alen);

/* ---- device hooks ----------------------------------------------------------
 * A hook sees every frame crossing a device's boundary, both ways: the
 * "middleware device" of smoltcp (pcap writer, fault injector) stacked on
 * any driver. The hooks of a device form a chain from the driver (lower)
 * to the stack (upper); each hook added goes on top of the others:
 *
 *              stack thread          net_device_transmit()
 *                   ^ RX                  | TX
 *          [pcap]   |                     v     added last: sees what the stack sees
 *          [fault]  |                     v     added first: the lossy "wire"
 *                   |                     v
 *      net_input() from the driver     ops->transmit() under tx_lock
 *
 * RX: net_input() runs the lowest hook on the caller's thread (a driver's
 * RX thread); after the top hook the frame joins the input queue. TX:
 * net_device_transmit() runs the top hook on the caller's thread (any
 * thread) with no lock held -- not even tx_lock, which only the last stage
 * takes around ops->transmit. So a hook may run on several threads at
 * once and locks its own state.
 *
 * frame() consumes pb. It passes pb on with net_hook_next(h, dir, pb), or
 * drops it (pbuf_free), or keeps it and passes it on later from another
 * thread (a timer: delay, reorder), or passes on a copy too (duplicate);
 * it returns what net_hook_next returned, or 0.
 *
 * The chain is [c]: hooks are added before net_run() (or, with
 * net_run_polled(), from the polling thread between polls) and never
 * removed; net_shutdown() calls release() once the device's threads and
 * the stack thread have stopped. */
enum net_dir { NET_DIR_RX, NET_DIR_TX };

struct net_device_hook {
    const char *name;                 /* [c] for logs */
    int (*frame)(struct net_device_hook *h, enum net_dir dir, struct pbuf *pb); /* [c] */
    void (*release)(struct net_device_hook *h); /* [c] free held frames and h */
    void *priv;                       /* [c] the hook's state, its own locking */
    struct net_device *dev;           /* [c] set by net_device_hook_add */
    struct net_device_hook *lower;    /* [c] next towards the driver */
    struct net_device_hook *upper;    /* [c] next towards the stack */
};

/* Put h on top of dev's chain. Returns 0, or -EBUSY once the stack thread
 * runs (frames may be crossing the chain). */
int net_device_hook_add(struct net_device *dev, struct net_device_hook *h);
/* Pass pb to the stage after h in direction dir: the next hook, or at the
 * end of the chain the input queue (RX) or the driver (TX). Consumes pb.
 * Returns 0 or -errno, as net_input / the driver. */
int net_hook_next(struct net_device_hook *h, enum net_dir dir, struct pbuf *pb);

/* ---- protocols ------------------------------------------------------------
 * A handler for one EtherType, run on the stack thread with pb->data at the
 * protocol's header. It consumes pb. */
typedef void (*net_protocol_handler)(struct net_device *dev, struct pbuf *pb);
int net_protocol_register(uint16_t type, net_protocol_handler handler);
/* fn() runs on the stack thread after each batch of input frames: work a
 * protocol put off while the batch was processed (TCP: one ACK and one
 * reader wake-up per connection per batch, not per segment). */
int net_batch_end_register(void (*fn)(void));

/* ---- input ----------------------------------------------------------------
 * Called by drivers (any thread) with a whole frame; for devices without a
 * link header pb->proto must be set. Runs the device's hooks, then queues
 * it for the stack thread; consumes pb. Returns 0, or -ENOBUFS when the
 * queue is full (dropped, counted as net.input_queue_full). */
int net_input(struct net_device *dev, struct pbuf *pb);
/* Run the frame through the protocol handlers now, on this thread (the stack
 * thread does this for each queued frame). Consumes pb. */
void net_input_process(struct net_device *dev, struct pbuf *pb);

/* ---- timers ---------------------------------------------------------------
 * One deadline heap, run by the stack thread. A timer is embedded in its
 * owner; fn(arg) runs on the stack thread with no net.c lock held, so it may
 * take its module's lock. A module frees a structure holding a timer only on
 * the stack thread (or after net_shutdown), never while fn might be running. */
struct net_timer {
    uint64_t deadline;   /* [T] */
    int heap_index;      /* [T] -1 when not armed */
    int reserved;        /* [T] a heap slot is reserved for it */
    void (*fn)(void *arg); /* [c] */
    void *arg;           /* [c] */
    const char *name;    /* [c] for the timer log */
};

/* Prepare t; reserves its heap slot so arming never fails. -ENOMEM. */
int net_timer_init(struct net_timer *t, const char *name, void (*fn)(void *), void *arg);
/* Cancel t and release its slot. */
void net_timer_destroy(struct net_timer *t);
/* Fire fn after delay_ms (re-arming an armed timer moves it). */
void net_timer_arm(struct net_timer *t, uint64_t delay_ms);
void net_timer_cancel(struct net_timer *t);
int net_timer_armed(struct net_timer *t);
/* Milliseconds until t fires, or -1 if not armed. */
int64_t net_timer_remaining(struct net_timer *t);
/* Run every timer that is due now (the stack thread does this). Returns the
 * number run. */
int net_timer_run_due(void);

/* ---- life cycle ----------------------------------------------------------- */
/* Register the built-in protocols (ARP, IPv4, ICMP, ...). Call once, first. */
int net_init(void);
/* Open the devices and start the stack thread. Returns 0 or -errno. */
int net_run(void);
/* As net_run() but without a stack thread: the caller drives the stack
 * with net_poll() (protocol tests, fuzzers). */
int net_run_polled(void);
/* Wake every blocked caller (they fail with ESHUTDOWN), stop the stack
 * thread and the drivers' threads, close devices and free everything. */
void net_shutdown(void);
/* Non-zero once net_shutdown() has begun. Blocked callers check it. */
int net_is_shutting_down(void);
/* Register fn to run first thing in net_shutdown(), before threads stop: the
 * place to wake a module's blocked callers. */
int net_shutdown_notify(void (*fn)(void *arg), void *arg);
/* Drain the input queue and run due timers on the calling thread, until
 * there is nothing left to do. For tests and tools that run without the
 * stack thread. Returns the number of frames and timers processed. */
int net_poll(void);
/* Human-readable "group.counter value" lines for every statistic. */
size_t net_stats_format(char *buf, size_t size, int nonzero_only);

/* Statistics of the core. */
enum net_stat {
    NETSTAT_INPUT_QUEUED,
    NETSTAT_INPUT_QUEUE_FULL,
    NETSTAT_INPUT_DEV_DOWN,
    NETSTAT_INPUT_NO_PROTOCOL,
    NETSTAT_TIMERS_RUN,
    NETSTAT_BUSY_POLLS,    /* looks at the devices without sleeping (busy_poll_us) */
    NETSTAT_COUNT
};
extern struct stats_group net_stats;

#endif
