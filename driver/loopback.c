/*
 * loopback.c — every frame transmitted comes straight back as input.
 *
 * There is no link header: net_device_output() records the protocol in
 * pb->proto and the frame goes onto the stack's input queue with it, so
 * the stack thread hands it to ip_input like any other datagram. The input
 * queue bounds how much can be in flight.
 */
#include "driver/loopback.h"

#include <sys/socket.h>

#include "proto/ip.h"
#include "util/log.h"

#define LOOPBACK_MTU 65535

static int loopback_transmit(struct net_device *dev, struct pbuf *pb)
{
    log_debug(LOG_DEV, "%s: looping %zu bytes (type 0x%04x)", dev->name, pb->len, pb->proto);
    pb->flags |= PBUF_FLAG_NO_LINK;
    return net_input(dev, pb);
}

static const struct net_device_ops loopback_ops = {
    .transmit = loopback_transmit,
};

struct net_device *loopback_init(void)
{
    struct net_device *dev = net_device_alloc();
    uint32_t addr, mask;

    if (!dev)
        return NULL;
    dev->type = NET_DEVICE_TYPE_LOOPBACK;
    dev->mtu = LOOPBACK_MTU;
    atomic_fetch_or(&dev->flags, NET_DEVICE_FLAG_LOOPBACK);
    dev->ops = &loopback_ops;
    if (net_device_register(dev, "lo") < 0)
        return NULL;
    ip_prefix_pton("127.0.0.1/8", &addr, &mask);
    if (!ip_iface_add(dev, addr, mask, NULL))
        return NULL;
    return dev;
}
