/*
 * ether_tap.c — Ethernet over a Linux tap.
 *
 * The tap's file descriptor carries whole Ethernet frames (no preamble, no
 * FCS): read() returns one frame the kernel sent "on the wire", write()
 * puts one on it. An RX thread per tap blocks in poll() on the fd and a
 * wake-up pipe, reads each frame into a pbuf and queues it with net_input();
 * close() writes to the pipe and joins the thread.
 *
 * Entry points: ether_tap_init (app setup), ether_tap_open/close/transmit
 * (net.c through the ops table), tap_rx_main (the RX thread).
 */
#include "driver/ether_tap.h"

#include <errno.h>
#include <string.h>

#include "proto/ether.h"
#include "util/log.h"
#include "util/mem.h"

#define TAP_RX_HEADROOM 32
#define TAP_RX_BUF (ETHER_FRAME_SIZE_MAX + 4) /* room for an 802.1Q tag */

struct tap_priv {
    int fd;               /* [c] */
    int created;          /* [c] */
    int wake[2];          /* [c] pipe that stops the RX thread */
    struct thread rx;     /* [c] started by open, joined by close */
};

static void *tap_rx_main(void *arg)
{
    struct net_device *dev = arg;
    struct tap_priv *priv = dev->priv;

    thread_set_name("rx-tap");
    for (;;) {
        struct pbuf *pb = pbuf_alloc(TAP_RX_HEADROOM, TAP_RX_BUF);
        int n;

        if (!pb) { /* out of memory: wait a little rather than spin */
            if (platform_tap_read_or_wake(-1, priv->wake[0], NULL, 0, 10) == -EINTR)
                break;
            continue;
        }
        n = platform_tap_read_or_wake(priv->fd, priv->wake[0], pb->data, TAP_RX_BUF, -1);
        if (n <= 0) {
            pbuf_free(pb);
            if (n == 0)
                continue;
            if (n != -EINTR)
                log_error(LOG_DEV, "%s: read failed: %s", dev->name, strerror(-n));
            break;
        }
        pbuf_trim(pb, (size_t)n);
        log_trace(LOG_DEV, "%s: rx %d bytes", dev->name, n);
        net_input(dev, pb);
    }
    log_debug(LOG_DEV, "%s: rx thread stopped", dev->name);
    return NULL;
}

static int ether_tap_open(struct net_device *dev)
{
    struct tap_priv *priv = dev->priv;
    int err;

    /* Right after a tap is attached, the kernel drops what we write until
     * the link is operationally up: wait for it (briefly; a tap left
     * administratively down never comes up, and then we go on anyway). */
    if (platform_link_wait_up(dev->name, 1000) < 0)
        log_warn(LOG_DEV, "%s: link is not up; is it down on the kernel side? (ip link set %s up)",
                 dev->name, dev->name);
    if ((err = platform_wakeup_open(priv->wake)) < 0)
        return err;
    if ((err = thread_create(&priv->rx, "rx-tap", tap_rx_main, dev)) < 0) {
        platform_wakeup_close(priv->wake);
        return err;
    }
    return 0;
}

static int ether_tap_close(struct net_device *dev)
{
    struct tap_priv *priv = dev->priv;

    platform_wakeup_signal(priv->wake);
    thread_join(&priv->rx);
    platform_wakeup_close(priv->wake);
    platform_tap_close(priv->fd);
    priv->fd = -1;
    return 0;
}

static int ether_tap_transmit(struct net_device *dev, struct pbuf *pb)
{
    struct tap_priv *priv = dev->priv;
    int n = platform_tap_write(priv->fd, pb->data, pb->len);

    pbuf_free(pb);
    return n < 0 ? n : 0;
}

static const struct net_device_ops ether_tap_ops = {
    .open = ether_tap_open,
    .close = ether_tap_close,
    .transmit = ether_tap_transmit,
};

struct net_device *ether_tap_init(const char *name, const uint8_t *mac, int *err)
{
    struct net_device *dev;
    struct tap_priv *priv;
    int fd, created = 0;

    fd = platform_tap_open(name, &created);
    if (fd < 0) {
        *err = fd;
        return NULL;
    }
    dev = net_device_alloc();
    priv = mem_calloc(1, sizeof(*priv));
    if (!dev || !priv) {
        platform_tap_close(fd);
        mem_free(dev);
        mem_free(priv);
        *err = -ENOMEM;
        return NULL;
    }
    priv->fd = fd;
    priv->created = created;
    if (created && platform_link_set_up(name) < 0)
        log_warn(LOG_DEV, "%s: created, but could not bring it up", name);
    ether_setup_device(dev);
    if (mac)
        memcpy(dev->addr, mac, ETHER_ADDR_LEN);
    else
        ether_addr_from_name(name, dev->addr);
    dev->ops = &ether_tap_ops;
    dev->priv = priv;
    net_device_register(dev, name);
    return dev;
}

int ether_tap_created(struct net_device *dev)
{
    return ((struct tap_priv *)dev->priv)->created;
}
