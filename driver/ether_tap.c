/*
 * ether_tap.c — Ethernet over a Linux tap.
 *
 * The tap's file descriptor carries whole Ethernet frames (no preamble, no
 * FCS): read() returns one frame the kernel sent "on the wire", write()
 * puts one on it. The descriptor is non-blocking and has no thread of its
 * own: the stack thread sleeps in poll() on it (net.c, stack_thread_main)
 * and, when it is readable, calls ether_tap_rx_poll(), which reads what is
 * waiting, a bounded batch of frames, into pbufs and passes each to
 * net_input(). A frame is read and processed on the same thread, with no
 * hand-off in between.
 *
 * Entry points: ether_tap_init (app setup), ether_tap_open/close/transmit/
 * rx_fd/rx_poll (net.c through the ops table).
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
};

static int ether_tap_rx_fd(struct net_device *dev)
{
    return ((struct tap_priv *)dev->priv)->fd;
}

static int ether_tap_rx_poll(struct net_device *dev, unsigned budget)
{
    struct tap_priv *priv = dev->priv;
    unsigned n;

    for (n = 0; n < budget; n++) {
        struct pbuf *pb = pbuf_alloc(TAP_RX_HEADROOM, TAP_RX_BUF);
        int len;

        if (!pb) /* out of memory: the frame waits in the kernel for now */
            break;
        len = platform_tap_read_nb(priv->fd, pb->data, TAP_RX_BUF);
        if (len <= 0) {
            pbuf_free(pb);
            if (len < 0)
                log_error(LOG_DEV, "%s: read failed: %s", dev->name, strerror(-len));
            break; /* nothing more waiting */
        }
        pbuf_trim(pb, (size_t)len);
        log_trace(LOG_DEV, "%s: rx %d bytes", dev->name, len);
        net_input(dev, pb);
    }
    return (int)n;
}

static int ether_tap_open(struct net_device *dev)
{
    /* Right after a tap is attached, the kernel drops what we write until
     * the link is operationally up: wait for it (briefly; a tap left
     * administratively down never comes up, and then we go on anyway). */
    if (platform_link_wait_up(dev->name, 1000) < 0)
        log_warn(LOG_DEV, "%s: link is not up; is it down on the kernel side? (ip link set %s up)",
                 dev->name, dev->name);
    return 0;
}

static int ether_tap_close(struct net_device *dev)
{
    struct tap_priv *priv = dev->priv;

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
    .rx_fd = ether_tap_rx_fd,
    .rx_poll = ether_tap_rx_poll,
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
