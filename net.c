/*
 * net.c — the core: device and protocol registries, the input queue, the
 * stack thread, the timer heap, the clock, and the stack's life cycle.
 *
 * Entry points and their callers:
 *   net_init / net_run / net_shutdown    apps and tests
 *   net_device_register                  drivers (driver/)
 *   net_input                            ops->rx_poll on the stack thread, loopback
 *                                        (any thread)
 *   net_batch_end_register               protocols, at init
 *   net_device_hook_add / net_hook_next  pcap and fault hooks (driver/)
 *   net_device_output                    ip_output, arp (any thread)
 *   net_timer_*                          protocol modules (any thread)
 *   net_poll                             tests without a stack thread
 *
 * The stack thread (stack_thread_main) sleeps until a device it reads has a
 * frame (poll() on their descriptors and a wake-up pipe), a frame is queued
 * by another thread, a timer earlier than its sleep is armed, or shutdown
 * begins (with no device to read, on input_cond); it never polls on an
 * interval. After each batch of input it runs the protocols' batch-end
 * work (TCP's put-off ACKs and reader wake-ups). Lock order: net_lock, then queue_lock, then
 * timer_lock; a device's tx_lock is taken with none of these held. Device
 * hooks run with none of net.c's locks held (they may arm timers, queue
 * input and transmit).
 */
#include "net.h"

#include <assert.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "proto/arp.h"
#include "proto/ether.h"
#include "proto/icmp.h"
#include "proto/ip.h"
#include "proto/sock_var.h"
#include "proto/tcp.h"
#include "proto/udp.h"
#include "util/log.h"
#include "util/mem.h"
#include "util/pktlog.h"

struct net_config net_config = {
    .input_queue_max = 4096,
    .input_batch = 64,
    .arp_cache_max = 256,
    .arp_pending_max = 16,
    .arp_retries = 3,
    .arp_retry_ms = 1000,
    .arp_reachable_ms = 300000,
    .ip_reass_max_datagrams = 64,
    .ip_reass_max_bytes = 1024 * 1024,
    .ip_reass_timeout_ms = 30000,
    .ip_default_ttl = 64,
    .icmp_ratelimit_per_s = 100,
    .icmp_ping_queue_max = 64,
    .sock_max = 1024,
    .sock_rcvbuf_default = 256 * 1024,
    .sock_sndbuf_default = 256 * 1024,
    .sock_buf_min = 2048,
    .sock_buf_max = 16 * 1024 * 1024,
    .port_ephemeral_lo = 49152,
    .port_ephemeral_hi = 65535,
    .tcp_max_pcbs = 8192,
    .tcp_syn_backlog = 256,
    .tcp_backlog_max = 4096,
    .tcp_syn_retries = 6,
    .tcp_retries = 15,
    .tcp_rto_initial_ms = 1000,
    .tcp_rto_min_ms = 200,
    .tcp_rto_max_ms = 60000,
    .tcp_delack_ms = 40,
    .tcp_msl_ms = 30000,
    .tcp_fin_wait2_ms = 60000,
    .tcp_challenge_ack_per_s = 1000,
    .tcp_keep_idle_s = 7200,
    .tcp_keep_intvl_s = 75,
    .tcp_keep_cnt = 9,
    .pbuf_pool_max = 1024,
    .tcp_sack = 1,
    .tcp_timestamps = 1,
    .tcp_cc = "newreno",
    .tap_offload = 0,
    .busy_poll_us = 0,
};

static const char *const net_stat_names[NETSTAT_COUNT] = {
    [NETSTAT_INPUT_QUEUED] = "input_queued",
    [NETSTAT_INPUT_QUEUE_FULL] = "input_queue_full",
    [NETSTAT_INPUT_DEV_DOWN] = "input_device_down",
    [NETSTAT_INPUT_NO_PROTOCOL] = "input_no_protocol",
    [NETSTAT_TIMERS_RUN] = "timers_run",
    [NETSTAT_BUSY_POLLS] = "busy_polls",
};
struct stats_group net_stats = STATS_GROUP("net", net_stat_names);

static const char *const dev_stat_names[DEVSTAT_COUNT] = {
    [DEVSTAT_RX_FRAMES] = "rx_frames",   [DEVSTAT_RX_BYTES] = "rx_bytes",
    [DEVSTAT_TX_FRAMES] = "tx_frames",   [DEVSTAT_TX_BYTES] = "tx_bytes",
    [DEVSTAT_TX_ERRORS] = "tx_errors",   [DEVSTAT_TX_DOWN] = "tx_device_down",
    [DEVSTAT_TX_TOO_BIG] = "tx_too_big",
    [DEVSTAT_TX_SUPER_FRAMES] = "offload_tx_super_frames",
    [DEVSTAT_RX_SUPER_FRAMES] = "offload_rx_super_frames",
    [DEVSTAT_RX_CSUM_PARTIAL] = "offload_rx_csum_partial",
    [DEVSTAT_RX_BAD_OFFLOAD] = "offload_rx_refused",
    [DEVSTAT_RX_NO_MEMORY] = "offload_rx_no_memory",
};

/* ---- registries ---------------------------------------------------------- */

struct net_protocol {
    struct net_protocol *next; /* [N] */
    uint16_t type;             /* [c] */
    net_protocol_handler handler; /* [c] */
};

struct shutdown_notifier {
    struct shutdown_notifier *next;
    void (*fn)(void *arg);
    void *arg;
};

static struct mutex net_lock = MUTEX_INITIALIZER;
static struct net_device *devices;           /* [N] */
static struct net_protocol *protocols;       /* [N] */
static struct shutdown_notifier *notifiers;  /* [N] */
static unsigned next_index;                  /* [N] */
static _Atomic int shutting_down;
static int running;                          /* [N] stack thread started */
#define NET_BATCH_END_MAX 4
static void (*batch_end_fns[NET_BATCH_END_MAX])(void); /* [N] set at init */
static int nbatch_end;                                 /* [N] */

/* ---- input queue ---------------------------------------------------------- */

static struct mutex queue_lock = MUTEX_INITIALIZER;
static struct cond input_cond;    /* the stack thread waits here */
static struct pbuf *queue_head;   /* [Q] */
static struct pbuf *queue_tail;   /* [Q] */
static unsigned queue_len;        /* [Q] */
static int wake_pending;          /* [Q] an earlier timer was armed */
static int stop_requested;        /* [Q] */
static int stack_polling;         /* [Q] the stack thread sleeps in poll() */
static struct thread stack_thread;

/* Devices the stack thread reads itself (ops->rx_fd), fixed when the stack
 * starts: [c] from net_run/net_run_polled until net_shutdown. */
#define NET_POLL_DEVICES_MAX 16
static struct net_device *poll_devs[NET_POLL_DEVICES_MAX];
static int poll_fds[NET_POLL_DEVICES_MAX];
static int npoll;
static int stack_wake[2] = { -1, -1 }; /* [c] wakes the stack thread from poll() */

/* ---- timers --------------------------------------------------------------- */

static struct mutex timer_lock = MUTEX_INITIALIZER;
static struct net_timer **heap;  /* [T] min-heap on deadline */
static int heap_len;             /* [T] armed timers */
static int heap_cap;             /* [T] allocated slots */
static int heap_reserved;        /* [T] slots promised to initialised timers */

/* ---- clock ---------------------------------------------------------------- */

static _Atomic int clock_virtual;
static _Atomic uint64_t clock_virtual_now;

uint64_t net_now_ms(void)
{
    if (atomic_load_explicit(&clock_virtual, memory_order_relaxed))
        return atomic_load_explicit(&clock_virtual_now, memory_order_relaxed);
    return platform_now_ms();
}

void net_clock_set_virtual(uint64_t start_ms)
{
    atomic_store(&clock_virtual_now, start_ms);
    atomic_store(&clock_virtual, 1);
}

void net_clock_advance(uint64_t ms)
{
    atomic_fetch_add(&clock_virtual_now, ms);
}

int net_clock_is_virtual(void)
{
    return atomic_load(&clock_virtual);
}

/* ---- devices -------------------------------------------------------------- */

struct net_device *net_device_alloc(void)
{
    struct net_device *dev = mem_calloc(1, sizeof(*dev));

    if (!dev)
        return NULL;
    mutex_init(&dev->tx_lock);
    return dev;
}

int net_device_register(struct net_device *dev, const char *name)
{
    mutex_lock(&net_lock);
    dev->index = next_index++;
    if (name && *name)
        snprintf(dev->name, sizeof(dev->name), "%s", name);
    else
        snprintf(dev->name, sizeof(dev->name), "net%u", dev->index);
    snprintf(dev->stats_name, sizeof(dev->stats_name), "dev.%s", dev->name);
    dev->stats.name = dev->stats_name;
    dev->stats.names = dev_stat_names;
    dev->stats.count = DEVSTAT_COUNT;
    dev->next = devices;
    devices = dev;
    mutex_unlock(&net_lock);
    stats_register(&dev->stats);
    log_info(LOG_NET, "registered device %s (index %u, type 0x%04x, mtu %u)", dev->name,
             dev->index, dev->type, dev->mtu);
    return 0;
}

struct net_device *net_device_by_name(const char *name)
{
    struct net_device *dev;

    mutex_lock(&net_lock);
    for (dev = devices; dev; dev = dev->next)
        if (strcmp(dev->name, name) == 0)
            break;
    mutex_unlock(&net_lock);
    return dev;
}

struct net_device *net_device_by_index(unsigned index)
{
    struct net_device *dev;

    mutex_lock(&net_lock);
    for (dev = devices; dev; dev = dev->next)
        if (dev->index == index)
            break;
    mutex_unlock(&net_lock);
    return dev;
}

int net_device_add_iface(struct net_device *dev, struct net_iface *iface)
{
    int err = 0;

    mutex_lock(&net_lock);
    for (struct net_iface *i = dev->ifaces; i; i = i->next) {
        if (i->family == iface->family) {
            err = -EEXIST; /* one address per family per device, for now */
            break;
        }
    }
    if (!err) {
        iface->dev = dev;
        iface->next = dev->ifaces;
        dev->ifaces = iface;
    }
    mutex_unlock(&net_lock);
    return err;
}

struct net_iface *net_device_get_iface(struct net_device *dev, int family)
{
    struct net_iface *iface;

    mutex_lock(&net_lock);
    for (iface = dev->ifaces; iface; iface = iface->next)
        if (iface->family == family)
            break;
    mutex_unlock(&net_lock);
    return iface;
}

int net_device_is_up(struct net_device *dev)
{
    return (atomic_load(&dev->flags) & NET_DEVICE_FLAG_UP) != 0;
}

static int net_device_open(struct net_device *dev)
{
    int err;

    if (net_device_is_up(dev))
        return 0;
    if (dev->ops->open && (err = dev->ops->open(dev)) < 0) {
        log_error(LOG_NET, "%s: open failed: %s", dev->name, strerror(-err));
        return err;
    }
    atomic_fetch_or(&dev->flags, NET_DEVICE_FLAG_UP);
    log_info(LOG_NET, "%s: up", dev->name);
    return 0;
}

static void net_device_close(struct net_device *dev)
{
    if (!net_device_is_up(dev))
        return;
    atomic_fetch_and(&dev->flags, (uint16_t)~NET_DEVICE_FLAG_UP);
    if (dev->ops->close)
        dev->ops->close(dev);
    log_info(LOG_NET, "%s: down", dev->name);
}

/* At debug, one tcpdump-style line per frame ("tap0 Out IP 192.0.2.2 >
 * 192.0.2.1: ICMP echo reply, ..."), logged where the stack meets the
 * device's hook chain: what the stack itself sends and receives. */
static void dev_log_frame(struct net_device *dev, const struct pbuf *pb, const char *dir)
{
    char line[256];

    if (!log_enabled(LOG_DEV, LOG_LEVEL_DEBUG))
        return;
    if (dev->type == NET_DEVICE_TYPE_ETHERNET && !(pb->flags & PBUF_FLAG_NO_LINK))
        pktlog_format(pb->data, pb->len, line, sizeof(line));
    else if (pb->proto == ETHER_TYPE_IP)
        pktlog_format_ip(pb->data, pb->len, line, sizeof(line));
    else
        snprintf(line, sizeof(line), "type 0x%04x, length %zu", pb->proto, pb->len);
    log_debug(LOG_DEV, "%s %s %s", dev->name, dir, line);
}

/* The last stage of the TX chain: the driver, under the device's tx_lock. */
static int net_device_transmit_driver(struct net_device *dev, struct pbuf *pb)
{
    size_t len = pb->len;
    int err;

    mutex_lock(&dev->tx_lock);
    err = dev->ops->transmit(dev, pb);
    mutex_unlock(&dev->tx_lock);
    if (err < 0) {
        STAT_INC(&dev->stats, DEVSTAT_TX_ERRORS);
        log_debug(LOG_NET, "%s: transmit failed: %s", dev->name, strerror(-err));
        return err;
    }
    STAT_INC(&dev->stats, DEVSTAT_TX_FRAMES);
    stat_add(&dev->stats, DEVSTAT_TX_BYTES, len);
    return 0;
}

int net_device_transmit(struct net_device *dev, struct pbuf *pb)
{
    size_t len = pb->len;

    if (!net_device_is_up(dev)) {
        STAT_INC(&dev->stats, DEVSTAT_TX_DOWN);
        log_debug(LOG_NET, "%s: drop tx, device down", dev->name);
        pbuf_free(pb);
        return -ENETDOWN;
    }
    if (pb->gso_size && (atomic_load(&dev->flags) & NET_DEVICE_FLAG_TSO)) {
        STAT_INC(&dev->stats, DEVSTAT_TX_SUPER_FRAMES); /* the device cuts it to size */
    } else if (len > (size_t)dev->mtu + dev->hlen) {
        STAT_INC(&dev->stats, DEVSTAT_TX_TOO_BIG);
        log_debug(LOG_NET, "%s: drop tx, %zu bytes > mtu %u", dev->name, len, dev->mtu);
        pbuf_free(pb);
        return -EMSGSIZE;
    }
    dev_log_frame(dev, pb, "Out");
    log_hex(LOG_DEV, pb->data, pb->len);
    if (dev->hook_upper) /* [c]: no lock needed to read the chain */
        return dev->hook_upper->frame(dev->hook_upper, NET_DIR_TX, pb);
    return net_device_transmit_driver(dev, pb);
}

int net_device_output(struct net_device *dev, uint16_t type, struct pbuf *pb, const uint8_t *dst)
{
    if (dev->type == NET_DEVICE_TYPE_ETHERNET)
        return ether_output(dev, type, pb, dst);
    pb->proto = type; /* devices without a link header carry it beside */
    return net_device_transmit(dev, pb);
}

char *net_hwaddr_ntop(const uint8_t *addr, size_t alen, char *buf, size_t size)
{
    size_t n = 0;

    if (size)
        buf[0] = '\0';
    for (size_t i = 0; i < alen && n + 3 < size + (i == alen - 1); i++)
        n += (size_t)snprintf(buf + n, size - n, i ? ":%02x" : "%02x", addr[i]);
    return buf;
}

int net_hwaddr_pton(const char *s, uint8_t *addr, size_t alen)
{
    for (size_t i = 0; i < alen; i++) {
        unsigned v;
        int used;
        if (sscanf(s, "%2x%n", &v, &used) != 1 || used != 2)
            return -EINVAL;
        addr[i] = (uint8_t)v;
        s += 2;
        if (i + 1 < alen) {
            if (*s != ':' && *s != '-')
                return -EINVAL;
            s++;
        }
    }
    return *s == '\0' ? 0 : -EINVAL;
}

/* ---- device hooks ---------------------------------------------------------- */

static int net_input_enqueue(struct net_device *dev, struct pbuf *pb);

int net_device_hook_add(struct net_device *dev, struct net_device_hook *h)
{
    int err = 0;

    mutex_lock(&net_lock);
    if (running) {
        err = -EBUSY; /* frames may be crossing the chain right now */
    } else {
        h->dev = dev;
        h->upper = NULL;
        h->lower = dev->hook_upper;
        if (h->lower)
            h->lower->upper = h;
        else
            dev->hook_lower = h;
        dev->hook_upper = h;
    }
    mutex_unlock(&net_lock);
    if (!err)
        log_info(LOG_NET, "%s: hook %s added", dev->name, h->name);
    return err;
}

int net_hook_next(struct net_device_hook *h, enum net_dir dir, struct pbuf *pb)
{
    struct net_device_hook *next = dir == NET_DIR_RX ? h->upper : h->lower;

    if (next)
        return next->frame(next, dir, pb);
    if (dir == NET_DIR_RX)
        return net_input_enqueue(h->dev, pb);
    return net_device_transmit_driver(h->dev, pb);
}

/* net_shutdown: the device's threads and the stack thread have stopped. */
static void net_device_hooks_release(struct net_device *dev)
{
    struct net_device_hook *h = dev->hook_upper;

    dev->hook_upper = dev->hook_lower = NULL;
    while (h) {
        struct net_device_hook *lower = h->lower;
        if (h->release)
            h->release(h);
        h = lower;
    }
}

/* ---- protocols ------------------------------------------------------------ */

int net_protocol_register(uint16_t type, net_protocol_handler handler)
{
    struct net_protocol *proto;

    mutex_lock(&net_lock);
    for (proto = protocols; proto; proto = proto->next) {
        if (proto->type == type) {
            mutex_unlock(&net_lock);
            return -EEXIST;
        }
    }
    proto = mem_calloc(1, sizeof(*proto));
    if (!proto) {
        mutex_unlock(&net_lock);
        return -ENOMEM;
    }
    proto->type = type;
    proto->handler = handler;
    proto->next = protocols;
    protocols = proto;
    mutex_unlock(&net_lock);
    return 0;
}

static net_protocol_handler net_protocol_lookup(uint16_t type)
{
    net_protocol_handler handler = NULL;

    /* The list is only added to before net_run(); the lock keeps TSan and
     * late registrations honest at a cost of one uncontended lock. */
    mutex_lock(&net_lock);
    for (struct net_protocol *p = protocols; p; p = p->next) {
        if (p->type == type) {
            handler = p->handler;
            break;
        }
    }
    mutex_unlock(&net_lock);
    return handler;
}

/* ---- input ---------------------------------------------------------------- */

/* Wake the stack thread, wherever it sleeps: on input_cond, or in poll()
 * on the devices (then through the wake-up pipe, written once per sleep). */
static void stack_kick_locked(void)
{
    assert(mutex_held(&queue_lock));
    cond_signal(&input_cond);
    if (stack_polling) {
        stack_polling = 0;
        platform_wakeup_signal(stack_wake);
    }
}

/* Read what the polled devices have, up to net_config.input_batch frames
 * each: they go through net_input (hooks, then the input queue). */
static int rx_poll_all(void)
{
    int n = 0;

    for (int i = 0; i < npoll; i++) {
        int r = poll_devs[i]->ops->rx_poll(poll_devs[i], net_config.input_batch);
        if (r > 0)
            n += r;
    }
    return n;
}

/* Collect the devices the stack thread reads itself. Under net_lock. */
static void poll_devices_setup_locked(void)
{
    npoll = 0;
    for (struct net_device *dev = devices; dev && npoll < NET_POLL_DEVICES_MAX; dev = dev->next) {
        if (dev->ops && dev->ops->rx_fd && dev->ops->rx_poll && dev->ops->rx_fd(dev) >= 0) {
            poll_devs[npoll] = dev;
            poll_fds[npoll] = dev->ops->rx_fd(dev);
            npoll++;
        }
    }
}

int net_input(struct net_device *dev, struct pbuf *pb)
{
    pb->dev = dev;
    pb->next = NULL;
    STAT_INC(&dev->stats, DEVSTAT_RX_FRAMES);
    stat_add(&dev->stats, DEVSTAT_RX_BYTES, pb->len);
    if (dev->hook_lower) /* [c]: no lock needed to read the chain */
        return dev->hook_lower->frame(dev->hook_lower, NET_DIR_RX, pb);
    return net_input_enqueue(dev, pb);
}

/* The last stage of the RX chain: the input queue. */
static int net_input_enqueue(struct net_device *dev, struct pbuf *pb)
{
    int was_empty;

    pb->next = NULL;
    mutex_lock(&queue_lock);
    if (queue_len >= net_config.input_queue_max) {
        mutex_unlock(&queue_lock);
        STAT_INC(&net_stats, NETSTAT_INPUT_QUEUE_FULL);
        log_debug(LOG_NET, "%s: input queue full (%u), frame dropped", dev->name,
                  net_config.input_queue_max);
        pbuf_free(pb);
        return -ENOBUFS;
    }
    was_empty = queue_len == 0;
    if (queue_tail)
        queue_tail->next = pb;
    else
        queue_head = pb;
    queue_tail = pb;
    queue_len++;
    /* Only the empty -> non-empty edge needs a wake-up: otherwise the stack
     * thread is already awake and will find this frame before it sleeps,
     * because it checks queue_len under queue_lock before waiting. */
    if (was_empty)
        stack_kick_locked();
    mutex_unlock(&queue_lock);
    STAT_INC(&net_stats, NETSTAT_INPUT_QUEUED);
    return 0;
}

void net_input_process(struct net_device *dev, struct pbuf *pb)
{
    net_protocol_handler handler;

    if (!net_device_is_up(dev)) {
        STAT_INC(&net_stats, NETSTAT_INPUT_DEV_DOWN);
        pbuf_free(pb);
        return;
    }
    dev_log_frame(dev, pb, "In ");
    log_hex(LOG_DEV, pb->data, pb->len);
    if (dev->type == NET_DEVICE_TYPE_ETHERNET && !(pb->flags & PBUF_FLAG_NO_LINK)) {
        /* ether_input validates the header, sets pb->proto and pulls it */
        if (ether_input(dev, pb) < 0)
            return;
    }
    handler = net_protocol_lookup(pb->proto);
    if (!handler) {
        STAT_INC(&net_stats, NETSTAT_INPUT_NO_PROTOCOL);
        log_debug(LOG_NET, "%s: no handler for type 0x%04x, dropped", dev->name, pb->proto);
        pbuf_free(pb);
        return;
    }
    handler(dev, pb);
}

/* Take up to max frames off the queue. Called with queue_lock held. */
static struct pbuf *queue_take_locked(unsigned max)
{
    struct pbuf *head = queue_head, *last = NULL, *pb = queue_head;
    unsigned n = 0;
    assert(mutex_held(&queue_lock));

    while (pb && n < max) {
        last = pb;
        pb = pb->next;
        n++;
    }
    if (!last)
        return NULL;
    queue_head = pb;
    if (!queue_head)
        queue_tail = NULL;
    last->next = NULL;
    queue_len -= n;
    return head;
}

int net_batch_end_register(void (*fn)(void))
{
    int err = 0;

    mutex_lock(&net_lock);
    if (nbatch_end >= NET_BATCH_END_MAX)
        err = -ENOSPC;
    else
        batch_end_fns[nbatch_end++] = fn;
    mutex_unlock(&net_lock);
    return err;
}

static int process_batch(struct pbuf *batch)
{
    int n = 0, fns;

    while (batch) {
        struct pbuf *pb = batch;
        batch = batch->next;
        pb->next = NULL;
        net_input_process(pb->dev, pb);
        n++;
    }
    if (n) {
        mutex_lock(&net_lock);
        fns = nbatch_end;
        mutex_unlock(&net_lock);
        for (int i = 0; i < fns; i++) /* registered once at init: stable */
            batch_end_fns[i]();
    }
    return n;
}

/* ---- timers --------------------------------------------------------------- */

static void heap_swap_locked(int i, int j)
{
    struct net_timer *t = heap[i];
    assert(mutex_held(&timer_lock));

    heap[i] = heap[j];
    heap[j] = t;
    heap[i]->heap_index = i;
    heap[j]->heap_index = j;
}

static void heap_up_locked(int i)
{
    while (i > 0) {
        int parent = (i - 1) / 2;
        if (heap[parent]->deadline <= heap[i]->deadline)
            break;
        heap_swap_locked(i, parent);
        i = parent;
    }
}

static void heap_down_locked(int i)
{
    for (;;) {
        int l = 2 * i + 1, r = l + 1, min = i;
        if (l < heap_len && heap[l]->deadline < heap[min]->deadline)
            min = l;
        if (r < heap_len && heap[r]->deadline < heap[min]->deadline)
            min = r;
        if (min == i)
            break;
        heap_swap_locked(i, min);
        i = min;
    }
}

static void heap_remove_locked(struct net_timer *t)
{
    int i = t->heap_index;
    assert(mutex_held(&timer_lock));

    heap_len--;
    if (i != heap_len) {
        heap[i] = heap[heap_len];
        heap[i]->heap_index = i;
        heap_down_locked(i);
        heap_up_locked(i);
    }
    t->heap_index = -1;
}

int net_timer_init(struct net_timer *t, const char *name, void (*fn)(void *), void *arg)
{
    t->fn = fn;
    t->arg = arg;
    t->name = name;
    t->heap_index = -1;
    t->deadline = 0;
    mutex_lock(&timer_lock);
    if (heap_reserved == heap_cap) {
        int cap = heap_cap ? heap_cap * 2 : 64;
        struct net_timer **grown = mem_alloc((size_t)cap * sizeof(*grown));
        if (!grown) {
            mutex_unlock(&timer_lock);
            t->reserved = 0;
            return -ENOMEM;
        }
        if (heap_len)
            memcpy(grown, heap, (size_t)heap_len * sizeof(*grown));
        mem_free(heap);
        heap = grown;
        heap_cap = cap;
    }
    heap_reserved++;
    t->reserved = 1;
    mutex_unlock(&timer_lock);
    return 0;
}

void net_timer_destroy(struct net_timer *t)
{
    mutex_lock(&timer_lock);
    if (t->heap_index >= 0)
        heap_remove_locked(t);
    if (t->reserved) {
        heap_reserved--;
        t->reserved = 0;
    }
    mutex_unlock(&timer_lock);
}

/* Wake the stack thread so it recomputes how long to sleep. */
static void stack_wakeup(void)
{
    mutex_lock(&queue_lock);
    wake_pending = 1;
    stack_kick_locked();
    mutex_unlock(&queue_lock);
}

void net_timer_arm(struct net_timer *t, uint64_t delay_ms)
{
    int earliest;

    mutex_lock(&timer_lock);
    /* A timer without a slot (init failed, destroyed, or initialised before
     * a net_shutdown that freed the heap) cannot be armed: a caller bug,
     * reported rather than written past the heap. */
    if (!t->reserved || (t->heap_index < 0 && heap_len >= heap_cap)) {
        mutex_unlock(&timer_lock);
        log_error(LOG_TIMER, "arming timer %s that has no slot", t->name ? t->name : "?");
        return;
    }
    t->deadline = net_now_ms() + delay_ms;
    if (t->heap_index < 0) {
        t->heap_index = heap_len;
        heap[heap_len++] = t;
    }
    heap_down_locked(t->heap_index);
    heap_up_locked(t->heap_index);
    earliest = t->heap_index == 0;
    mutex_unlock(&timer_lock);
    log_trace(LOG_TIMER, "armed %s in %llu ms", t->name, (unsigned long long)delay_ms);
    if (earliest)
        stack_wakeup();
}

void net_timer_cancel(struct net_timer *t)
{
    mutex_lock(&timer_lock);
    if (t->heap_index >= 0)
        heap_remove_locked(t);
    mutex_unlock(&timer_lock);
}

int net_timer_armed(struct net_timer *t)
{
    int armed;

    mutex_lock(&timer_lock);
    armed = t->heap_index >= 0;
    mutex_unlock(&timer_lock);
    return armed;
}

int64_t net_timer_remaining(struct net_timer *t)
{
    int64_t left = -1;
    uint64_t now = net_now_ms();

    mutex_lock(&timer_lock);
    if (t->heap_index >= 0)
        left = t->deadline > now ? (int64_t)(t->deadline - now) : 0;
    mutex_unlock(&timer_lock);
    return left;
}

/* Deadline of the earliest timer, or UINT64_MAX when none is armed. */
static uint64_t timer_next_deadline(void)
{
    uint64_t d = UINT64_MAX;

    mutex_lock(&timer_lock);
    if (heap_len > 0)
        d = heap[0]->deadline;
    mutex_unlock(&timer_lock);
    return d;
}

int net_timer_run_due(void)
{
    uint64_t now = net_now_ms();
    int n = 0;

    for (;;) {
        struct net_timer *t;
        void (*fn)(void *);
        void *arg;

        mutex_lock(&timer_lock);
        if (heap_len == 0 || heap[0]->deadline > now) {
            mutex_unlock(&timer_lock);
            break;
        }
        t = heap[0];
        heap_remove_locked(t);
        fn = t->fn;
        arg = t->arg;
        mutex_unlock(&timer_lock);
        log_trace(LOG_TIMER, "running %s", t->name);
        fn(arg); /* may re-arm t */
        STAT_INC(&net_stats, NETSTAT_TIMERS_RUN);
        n++;
    }
    return n;
}

/* ---- the stack thread ------------------------------------------------------ */

static void *stack_thread_main(void *arg)
{
    uint64_t last_input_us = 0; /* when a frame last came in: this thread's own */

    (void)arg;
    thread_set_name("stack");
    log_debug(LOG_NET, "stack thread running");
    for (;;) {
        struct pbuf *batch;

        mutex_lock(&queue_lock);
        /* Sleep until there is input, a timer is due, or we are stopped.
         * Every waker changes queue_len, wake_pending or stop_requested
         * under queue_lock before kicking (stack_kick_locked), and we test
         * them under the same lock before sleeping, so no wake-up is lost.
         * With devices to read, the sleep is poll() on their descriptors
         * and the wake-up pipe; without, a wait on input_cond. */
        while (!queue_len && !stop_requested) {
            uint64_t deadline, now;
            wake_pending = 0;
            deadline = timer_next_deadline();
            now = net_now_ms();
            if (deadline <= now)
                break;
            if (npoll > 0) {
                unsigned char ready[NET_POLL_DEVICES_MAX];
                uint64_t wait = deadline == UINT64_MAX ? 0 : deadline - now;
                int timeout = deadline == UINT64_MAX ? -1 : wait > 60000 ? 60000 : (int)wait;
                /* Busy polling (net_config.busy_poll_us, off by default):
                 * for a while after the last frame, look again at once
                 * instead of sleeping. A sleeping thread costs a wake-up
                 * per frame (tens of microseconds on a virtual machine);
                 * this costs a CPU while it lasts. */
                if (net_config.busy_poll_us && platform_now_us() - last_input_us < net_config.busy_poll_us) {
                    timeout = 0;
                    STAT_INC(&net_stats, NETSTAT_BUSY_POLLS);
                }
                stack_polling = 1;
                mutex_unlock(&queue_lock);
                platform_wait_fds(poll_fds, npoll, stack_wake[0], timeout, ready);
                mutex_lock(&queue_lock);
                stack_polling = 0;
                break; /* read the devices, run what is due, then look again */
            }
            if (deadline == UINT64_MAX)
                cond_wait(&input_cond, &queue_lock);
            else
                cond_wait_until(&input_cond, &queue_lock, deadline);
            if (wake_pending)
                continue; /* recompute the deadline */
        }
        if (stop_requested) {
            mutex_unlock(&queue_lock);
            break;
        }
        batch = queue_take_locked(net_config.input_batch);
        mutex_unlock(&queue_lock);
        if (batch && net_config.busy_poll_us)
            last_input_us = platform_now_us();
        process_batch(batch);
        if (rx_poll_all() > 0 && net_config.busy_poll_us)
            last_input_us = platform_now_us();
        net_timer_run_due();
    }
    log_debug(LOG_NET, "stack thread stopped");
    return NULL;
}

int net_poll(void)
{
    int total = 0;

    for (;;) {
        struct pbuf *batch;
        int n;

        n = rx_poll_all();
        mutex_lock(&queue_lock);
        batch = queue_take_locked(net_config.input_batch);
        mutex_unlock(&queue_lock);
        n += process_batch(batch);
        n += net_timer_run_due();
        if (n == 0)
            break;
        total += n;
    }
    return total;
}

/* ---- life cycle ------------------------------------------------------------ */

int net_shutdown_notify(void (*fn)(void *arg), void *arg)
{
    struct shutdown_notifier *n = mem_calloc(1, sizeof(*n));

    if (!n)
        return -ENOMEM;
    n->fn = fn;
    n->arg = arg;
    mutex_lock(&net_lock);
    n->next = notifiers;
    notifiers = n;
    mutex_unlock(&net_lock);
    return 0;
}

int net_is_shutting_down(void)
{
    return atomic_load(&shutting_down);
}

int net_init(void)
{
    int err;

    atomic_store(&shutting_down, 0);
    cond_init(&input_cond);
    pbuf_pool_limit(net_config.pbuf_pool_max);
    stats_register(&net_stats);
    if ((err = ether_init()) < 0 || (err = arp_init()) < 0 || (err = ip_init()) < 0 ||
        (err = icmp_init()) < 0 || (err = sock_init()) < 0 || (err = udp_init()) < 0 ||
        (err = tcp_init()) < 0) {
        log_error(LOG_NET, "init failed: %s", strerror(-err));
        return err;
    }
    log_info(LOG_NET, "initialised");
    return 0;
}

static int open_devices(void)
{
    for (struct net_device *dev = devices; dev; dev = dev->next) {
        int err = net_device_open(dev);
        if (err < 0)
            return err;
    }
    return 0;
}

int net_run(void)
{
    int err;

    mutex_lock(&net_lock);
    err = open_devices();
    poll_devices_setup_locked();
    mutex_unlock(&net_lock);
    if (err < 0)
        return err;
    if (stack_wake[0] < 0 && (err = platform_wakeup_open(stack_wake)) < 0)
        return err;
    /* ARP announces each address now that its device is up */
    arp_announce_all();
    mutex_lock(&queue_lock);
    stop_requested = 0;
    mutex_unlock(&queue_lock);
    err = thread_create(&stack_thread, "stack", stack_thread_main, NULL);
    if (err < 0)
        return err;
    mutex_lock(&net_lock);
    running = 1;
    mutex_unlock(&net_lock);
    log_info(LOG_NET, "running");
    return 0;
}

int net_run_polled(void)
{
    int err;

    mutex_lock(&net_lock);
    err = open_devices();
    poll_devices_setup_locked();
    mutex_unlock(&net_lock);
    if (err == 0)
        arp_announce_all();
    return err;
}

void net_shutdown(void)
{
    struct shutdown_notifier *n;
    struct net_device *dev;
    struct net_protocol *proto;
    int was_running;

    if (atomic_exchange(&shutting_down, 1))
        return;
    log_info(LOG_NET, "shutting down");
    /* 1. wake every blocked caller; they see net_is_shutting_down() */
    mutex_lock(&net_lock);
    n = notifiers;
    mutex_unlock(&net_lock);
    for (; n; n = n->next)
        n->fn(n->arg);
    /* 2. stop the stack thread */
    mutex_lock(&net_lock);
    was_running = running;
    running = 0;
    mutex_unlock(&net_lock);
    if (was_running) {
        mutex_lock(&queue_lock);
        stop_requested = 1;
        stack_kick_locked();
        mutex_unlock(&queue_lock);
        thread_join(&stack_thread);
    }
    npoll = 0; /* the stack thread is gone: nobody polls them any more */
    if (stack_wake[0] >= 0) {
        platform_wakeup_close(stack_wake);
        stack_wake[0] = stack_wake[1] = -1;
    }
    /* 3. close devices */
    mutex_lock(&net_lock);
    dev = devices;
    mutex_unlock(&net_lock);
    for (struct net_device *d = dev; d; d = d->next)
        net_device_close(d);
    /* 4. close what apps left open, free protocol state, then the queue,
     * devices and registries */
    sock_cleanup();
    tcp_cleanup();
    udp_cleanup();
    icmp_cleanup();
    ip_cleanup();
    arp_cleanup();
    mutex_lock(&queue_lock);
    pbuf_free_chain(queue_head);
    queue_head = queue_tail = NULL;
    queue_len = 0;
    mutex_unlock(&queue_lock);
    pbuf_pool_drain();
    mutex_lock(&net_lock);
    while ((dev = devices)) {
        devices = dev->next;
        net_device_hooks_release(dev);
        stats_unregister(&dev->stats);
        mutex_destroy(&dev->tx_lock);
        mem_free(dev->priv);
        mem_free(dev);
    }
    while ((proto = protocols)) {
        protocols = proto->next;
        mem_free(proto);
    }
    nbatch_end = 0;
    while ((n = notifiers)) {
        notifiers = n->next;
        mem_free(n);
    }
    next_index = 0;
    mutex_unlock(&net_lock);
    mutex_lock(&timer_lock);
    mem_free(heap);
    heap = NULL;
    heap_len = heap_cap = heap_reserved = 0;
    mutex_unlock(&timer_lock);
    cond_destroy(&input_cond);
    log_info(LOG_NET, "shut down");
}

size_t net_stats_format(char *buf, size_t size, int nonzero_only)
{
    return stats_format(buf, size, nonzero_only);
}
