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
 * Offload (net_config.tap_offload, off by default): the tap is opened with
 * a virtio-net header before every frame (IFF_VNET_HDR), the way a virtual
 * machine's NIC talks to the kernel. When the device comes up with no hook
 * on it, it takes NET_DEVICE_FLAG_TSO: TCP may hand it super-frames of up
 * to 64 KiB with the checksum left to the kernel, one write() instead of
 * forty; and the kernel is told (TUNSETOFFLOAD) that it may send us its
 * own super-frames, with checksums it never computed because the bytes
 * never left the machine. A capture or the fault injector must see frames
 * as a wire would carry them, so with a hook the header stays but says
 * nothing: every frame is a plain one.
 *
 * Entry points: ether_tap_init (app setup), ether_tap_open/close/transmit/
 * rx_fd/rx_poll (net.c through the ops table).
 */
#include "driver/ether_tap.h"

#include <errno.h>
#include <string.h>

#include "proto/ether.h"
#include "proto/ip.h"
#include "proto/tcp.h"
#include "util/log.h"
#include "util/mem.h"
#include "util/stats.h"

#define TAP_RX_HEADROOM 32
#define TAP_RX_BUF (ETHER_FRAME_SIZE_MAX + 4) /* room for an 802.1Q tag */
/* the largest super-frame: an IPv4 datagram of 64 KiB in an Ethernet frame */
#define TAP_RX_BIG (ETHER_HDR_SIZE + 65535 + 4)

struct tap_priv {
    int fd;               /* [c] */
    int created;          /* [c] */
    int vnet;             /* [c] frames carry a platform_vnet_hdr */
    int offload;          /* [c] offloads on: set by open, before the stack thread runs */
    uint8_t *spill;       /* [stack thread] the part of a super-frame beyond TAP_RX_BUF */
};

static int ether_tap_rx_fd(struct net_device *dev)
{
    return ((struct tap_priv *)dev->priv)->fd;
}

/* A frame read with its vnet header: strip the header and take in what
 * it says. Returns the frame, or NULL if it was dropped (counted). */
static struct pbuf *vnet_input(struct net_device *dev, struct pbuf *pb, const uint8_t *spill, size_t len)
{
    struct tap_priv *priv = dev->priv;
    struct platform_vnet_hdr h;

    if (len < PLATFORM_VNET_HDR_LEN) { /* the kernel always writes one: never seen */
        STAT_INC(&dev->stats, DEVSTAT_RX_BAD_OFFLOAD);
        log_debug(LOG_DEV, "%s: rx %zu bytes, shorter than a vnet header", dev->name, len);
        pbuf_free(pb);
        return NULL;
    }
    memcpy(&h, pb->data, PLATFORM_VNET_HDR_LEN);
    len -= PLATFORM_VNET_HDR_LEN;
    if (len > TAP_RX_BUF) { /* a super-frame spilled over: gather it */
        struct pbuf *big = pbuf_alloc(TAP_RX_HEADROOM, len);
        if (!big) {
            STAT_INC(&dev->stats, DEVSTAT_RX_NO_MEMORY);
            pbuf_free(pb);
            return NULL;
        }
        memcpy(big->data, pb->data + PLATFORM_VNET_HDR_LEN, TAP_RX_BUF);
        memcpy(big->data + TAP_RX_BUF, spill, len - TAP_RX_BUF);
        pbuf_free(pb);
        pb = big;
    } else {
        pbuf_pull(pb, PLATFORM_VNET_HDR_LEN);
        pbuf_trim(pb, len);
    }
    if (!priv->offload && (h.flags & PLATFORM_VNET_F_NEEDS_CSUM || h.gso_type != PLATFORM_VNET_GSO_NONE)) {
        /* we never allowed it: the kernel broke its side of TUNSETOFFLOAD */
        STAT_INC(&dev->stats, DEVSTAT_RX_BAD_OFFLOAD);
        log_debug(LOG_DEV, "%s: rx frame with offload flags %#x gso %u while offloads are off", dev->name,
                  h.flags, h.gso_type);
        pbuf_free(pb);
        return NULL;
    }
    if (h.flags & PLATFORM_VNET_F_NEEDS_CSUM) {
        pb->flags |= PBUF_FLAG_CSUM_PARTIAL;
        STAT_INC(&dev->stats, DEVSTAT_RX_CSUM_PARTIAL);
    }
    if (h.gso_type != PLATFORM_VNET_GSO_NONE) {
        pb->gso_size = h.gso_size;
        STAT_INC(&dev->stats, DEVSTAT_RX_SUPER_FRAMES);
    }
    return pb;
}

static int ether_tap_rx_poll(struct net_device *dev, unsigned budget)
{
    struct tap_priv *priv = dev->priv;
    size_t hdr = priv->vnet ? PLATFORM_VNET_HDR_LEN : 0;
    unsigned n;

    for (n = 0; n < budget; n++) {
        struct pbuf *pb = pbuf_alloc(TAP_RX_HEADROOM - hdr, TAP_RX_BUF + hdr);
        int len;

        if (!pb) /* out of memory: the frame waits in the kernel for now */
            break;
        if (priv->offload)
            len = platform_tap_read2_nb(priv->fd, pb->data, TAP_RX_BUF + hdr, priv->spill, TAP_RX_BIG - TAP_RX_BUF);
        else
            len = platform_tap_read_nb(priv->fd, pb->data, TAP_RX_BUF + hdr);
        if (len <= 0) {
            pbuf_free(pb);
            if (len < 0)
                log_error(LOG_DEV, "%s: read failed: %s", dev->name, strerror(-len));
            break; /* nothing more waiting */
        }
        log_trace(LOG_DEV, "%s: rx %d bytes", dev->name, len);
        if (hdr) {
            if (!(pb = vnet_input(dev, pb, priv->spill, (size_t)len)))
                continue;
        } else {
            pbuf_trim(pb, (size_t)len);
        }
        net_input(dev, pb);
    }
    return (int)n;
}

static int ether_tap_open(struct net_device *dev)
{
    struct tap_priv *priv = dev->priv;

    /* Right after a tap is attached, the kernel drops what we write until
     * the link is operationally up: wait for it (briefly; a tap left
     * administratively down never comes up, and then we go on anyway). */
    if (platform_link_wait_up(dev->name, 1000) < 0)
        log_warn(LOG_DEV, "%s: link is not up; is it down on the kernel side? (ip link set %s up)",
                 dev->name, dev->name);
    /* TUNSETOFFLOAD sets the kernel device's features, which outlive us:
     * a tap an earlier run left with offloads on would hand us super-frames
     * and unfinished checksums we never asked for. Say "off" first. */
    if (platform_tap_set_offload(priv->fd, 0, 0) < 0)
        log_debug(LOG_DEV, "%s: could not clear offloads", dev->name);
    if (priv->vnet && dev->hook_lower) {
        log_info(LOG_DEV, "%s: offloads stay off: a hook must see frames as a wire carries them", dev->name);
    } else if (priv->vnet) {
        int err;
        if (!priv->spill && !(priv->spill = mem_alloc(TAP_RX_BIG - TAP_RX_BUF)))
            return -ENOMEM;
        if ((err = platform_tap_set_offload(priv->fd, 1, 1)) < 0) {
            log_warn(LOG_DEV, "%s: the kernel refused offloads (%s): plain frames only", dev->name,
                     strerror(-err));
        } else {
            priv->offload = 1;
            atomic_fetch_or(&dev->flags, NET_DEVICE_FLAG_TSO);
            log_info(LOG_DEV, "%s: offloads on: checksums and TCP segmentation left to the kernel", dev->name);
        }
    }
    return 0;
}

static int ether_tap_close(struct net_device *dev)
{
    struct tap_priv *priv = dev->priv;

    if (priv->offload) /* leave the tap as we found it, for whoever comes next */
        platform_tap_set_offload(priv->fd, 0, 0);
    platform_tap_close(priv->fd);
    priv->fd = -1;
    mem_free(priv->spill);
    priv->spill = NULL;
    return 0;
}

/* What the kernel must finish in a frame we built (see PBUF_FLAG_CSUM_PARTIAL
 * and gso_size): the TCP checksum, and cutting a super-frame into segments.
 * Offsets come from the frame itself: Ethernet, then IPv4 with its IHL. */
static void vnet_hdr_for(const struct pbuf *pb, struct platform_vnet_hdr *h)
{
    size_t ip = ETHER_HDR_SIZE, ihl, thl;

    memset(h, 0, sizeof(*h));
    if (!(pb->flags & PBUF_FLAG_CSUM_PARTIAL) || pb->len < ip + IP_HDR_SIZE_MIN)
        return;
    ihl = (size_t)(pb->data[ip] & 0x0f) * 4;
    if (pb->len < ip + ihl + TCP_HDR_SIZE_MIN)
        return;
    thl = (size_t)(pb->data[ip + ihl + 12] >> 4) * 4;
    h->flags = PLATFORM_VNET_F_NEEDS_CSUM;
    h->csum_start = (uint16_t)(ip + ihl);
    h->csum_offset = 16; /* the TCP checksum field (RFC 9293 §3.1) */
    if (pb->gso_size) {
        h->gso_type = PLATFORM_VNET_GSO_TCPV4;
        h->gso_size = pb->gso_size;
        h->hdr_len = (uint16_t)(ip + ihl + thl);
    }
}

static int ether_tap_transmit(struct net_device *dev, struct pbuf *pb)
{
    struct tap_priv *priv = dev->priv;
    int n;

    if (priv->vnet) {
        struct platform_vnet_hdr h;
        vnet_hdr_for(pb, &h);
        n = platform_tap_write_vnet(priv->fd, &h, pb->data, pb->len);
    } else {
        n = platform_tap_write(priv->fd, pb->data, pb->len);
    }
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

    fd = platform_tap_open(name, &created, net_config.tap_offload != 0);
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
    priv->vnet = net_config.tap_offload != 0;
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
