/*
 * null.c — the simplest device: transmit frees the frame, nothing is ever
 * received. It shows the whole driver contract in a dozen lines
 * (docs/01-devices-and-the-stack-thread.md).
 */
#include "driver/null.h"

#include "util/log.h"

#define NULL_MTU 65535

static int null_transmit(struct net_device *dev, struct pbuf *pb)
{
    log_debug(LOG_DEV, "%s: dropping %zu bytes (type 0x%04x)", dev->name, pb->len, pb->proto);
    pbuf_free(pb);
    return 0;
}

static const struct net_device_ops null_ops = {
    .transmit = null_transmit,
};

struct net_device *null_init(void)
{
    struct net_device *dev = net_device_alloc();

    if (!dev)
        return NULL;
    dev->type = NET_DEVICE_TYPE_NULL;
    dev->mtu = NULL_MTU;
    dev->ops = &null_ops;
    if (net_device_register(dev, "null0") < 0)
        return NULL;
    return dev;
}
