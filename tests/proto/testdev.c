/*
 * testdev.c — the in-memory test device and stack. See testdev.h.
 */
#include "testdev.h"

#include <string.h>
#include <sys/socket.h>

#include "proto/arp.h"
#include "proto/ether.h"
#include "util/byteorder.h"
#include "util/cksum.h"
#include "util/mem.h"

const uint8_t TEST_OUR_MAC[6] = { 0x02, 0, 0, 0, 0, 0x02 };
const uint8_t TEST_PEER_MAC[6] = { 0x02, 0, 0, 0, 0, 0x01 };

struct test_stack ts;

struct testdev_priv {
    struct mutex lock;
    struct pbuf *head, *tail; /* [lock] transmitted frames */
    size_t count;             /* [lock] */
};

static int testdev_transmit(struct net_device *dev, struct pbuf *pb)
{
    struct testdev_priv *p = dev->priv;

    pb->next = NULL;
    mutex_lock(&p->lock);
    if (p->tail)
        p->tail->next = pb;
    else
        p->head = pb;
    p->tail = pb;
    p->count++;
    mutex_unlock(&p->lock);
    return 0;
}

static int testdev_close(struct net_device *dev)
{
    struct testdev_priv *p = dev->priv;

    mutex_lock(&p->lock);
    pbuf_free_chain(p->head);
    p->head = p->tail = NULL;
    p->count = 0;
    mutex_unlock(&p->lock);
    return 0;
}

static const struct net_device_ops testdev_ops = {
    .close = testdev_close,
    .transmit = testdev_transmit,
};

static struct net_device *testdev_init(void)
{
    struct net_device *dev = net_device_alloc();
    struct testdev_priv *p = mem_calloc(1, sizeof(*p));

    if (!dev || !p) {
        mem_free(dev);
        mem_free(p);
        return NULL;
    }
    mutex_init(&p->lock);
    ether_setup_device(dev);
    memcpy(dev->addr, TEST_OUR_MAC, 6);
    dev->ops = &testdev_ops;
    dev->priv = p;
    net_device_register(dev, "test0");
    return dev;
}

int teststack_up(void)
{
    uint32_t mask;
    int err;

    memset(&ts, 0, sizeof(ts));
    net_clock_set_virtual(1000);
    if ((err = net_init()) < 0)
        return err;
    if (!(ts.dev = testdev_init()))
        return -1;
    ip_prefix_pton(TEST_OUR_IP "/24", &ts.our_ip, &mask);
    ip_addr_pton(TEST_PEER_IP, &ts.peer_ip);
    if (!(ts.iface = ip_iface_add(ts.dev, ts.our_ip, mask, &err)))
        return err;
    ip_route_set_default(ts.peer_ip, ts.iface);
    if ((err = net_run_polled()) < 0)
        return err;
    net_poll();
    test_flush(); /* the gratuitous ARP */
    return 0;
}

int teststack_up_resolved(void)
{
    int err = teststack_up();

    if (err == 0)
        err = arp_cache_add_static(ts.iface, ts.peer_ip, TEST_PEER_MAC);
    return err;
}

void teststack_down(void)
{
    net_shutdown();
    memset(&ts, 0, sizeof(ts));
}

void test_inject(const void *frame, size_t len)
{
    struct pbuf *pb = pbuf_alloc(32, len);

    if (!pb)
        return;
    memcpy(pb->data, frame, len);
    net_input(ts.dev, pb);
    net_poll();
}

void test_advance(uint64_t ms)
{
    /* step in small increments so periodic timers fire as they would */
    while (ms > 0) {
        uint64_t step = ms < 10 ? ms : 10;
        net_clock_advance(step);
        net_poll();
        ms -= step;
    }
}

struct pbuf *test_take(void)
{
    struct testdev_priv *p = ts.dev->priv;
    struct pbuf *pb;

    net_poll(); /* frames looped back or queued by timers */
    mutex_lock(&p->lock);
    pb = p->head;
    if (pb) {
        p->head = pb->next;
        if (!p->head)
            p->tail = NULL;
        p->count--;
        pb->next = NULL;
    }
    mutex_unlock(&p->lock);
    return pb;
}

size_t test_sent_count(void)
{
    struct testdev_priv *p = ts.dev->priv;
    size_t n;

    net_poll();
    mutex_lock(&p->lock);
    n = p->count;
    mutex_unlock(&p->lock);
    return n;
}

void test_flush(void)
{
    struct pbuf *pb;

    while ((pb = test_take()))
        pbuf_free(pb);
}

size_t test_eth_frame(uint8_t *buf, const uint8_t *dst, const uint8_t *src, uint16_t type,
                      const void *payload, size_t len)
{
    memcpy(buf, dst, 6);
    memcpy(buf + 6, src, 6);
    store16(buf + 12, type);
    if (len)
        memcpy(buf + ETHER_HDR_SIZE, payload, len);
    return ETHER_HDR_SIZE + len;
}

size_t test_ip_frame(uint8_t *buf, uint8_t proto, uint32_t src, uint32_t dst, uint16_t id,
                     uint16_t frag, const void *payload, size_t len)
{
    uint8_t *ip = buf + ETHER_HDR_SIZE;

    memcpy(buf, TEST_OUR_MAC, 6);
    memcpy(buf + 6, TEST_PEER_MAC, 6);
    store16(buf + 12, ETHER_TYPE_IP);
    memset(ip, 0, IP_HDR_SIZE_MIN);
    ip[0] = 0x45;
    store16(ip + 2, (uint16_t)(IP_HDR_SIZE_MIN + len));
    store16(ip + 4, id);
    store16(ip + 6, frag);
    ip[8] = 64;
    ip[9] = proto;
    memcpy(ip + 12, &src, 4);
    memcpy(ip + 16, &dst, 4);
    store16(ip + 10, cksum16(ip, IP_HDR_SIZE_MIN, 0));
    if (len)
        memcpy(ip + IP_HDR_SIZE_MIN, payload, len);
    return ETHER_HDR_SIZE + IP_HDR_SIZE_MIN + len;
}

size_t test_icmp_echo(uint8_t *buf, uint8_t type, uint16_t id, uint16_t seq, const void *data, size_t len)
{
    buf[0] = type;
    buf[1] = 0;
    store16(buf + 2, 0);
    store16(buf + 4, id);
    store16(buf + 6, seq);
    if (len)
        memcpy(buf + 8, data, len);
    store16(buf + 2, cksum16(buf, 8 + len, 0));
    return 8 + len;
}
