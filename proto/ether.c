/*
 * ether.c — Ethernet II framing (RFC 894: IP over Ethernet).
 *
 * Called in the order  net_input_process -> ether_input -> handler by
 * EtherType (arp_input, ip_input); and  net_device_output -> ether_output
 * -> net_device_transmit.
 *
 * We accept frames addressed to our MAC or to broadcast. Everything else a
 * tap hands us (multicast such as IPv6 neighbour discovery, unicast for
 * another host) is dropped and counted by reason.
 */
#include "proto/ether.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "util/byteorder.h"
#include "util/log.h"

const uint8_t ETHER_ADDR_BROADCAST[ETHER_ADDR_LEN] = { 0xff, 0xff, 0xff, 0xff, 0xff, 0xff };

static const char *const ether_stat_names[ETHERSTAT_COUNT] = {
    [ETHERSTAT_RX_FRAMES] = "rx_frames",
    [ETHERSTAT_RX_TOO_SHORT] = "rx_too_short",
    [ETHERSTAT_RX_OTHER_HOST] = "rx_other_host",
    [ETHERSTAT_RX_MULTICAST] = "rx_multicast",
    [ETHERSTAT_RX_BAD_SOURCE] = "rx_bad_source",
    [ETHERSTAT_RX_LOOPED] = "rx_looped",
    [ETHERSTAT_TX_FRAMES] = "tx_frames",
    [ETHERSTAT_TX_NO_HEADROOM] = "tx_no_headroom",
};
struct stats_group ether_stats = STATS_GROUP("ether", ether_stat_names);

int ether_init(void)
{
    stats_register(&ether_stats);
    return 0;
}

void ether_setup_device(struct net_device *dev)
{
    dev->type = NET_DEVICE_TYPE_ETHERNET;
    dev->mtu = ETHER_PAYLOAD_SIZE_MAX;
    dev->hlen = ETHER_HDR_SIZE;
    dev->alen = ETHER_ADDR_LEN;
    atomic_fetch_or(&dev->flags, NET_DEVICE_FLAG_BROADCAST | NET_DEVICE_FLAG_NEED_ARP);
    memcpy(dev->broadcast, ETHER_ADDR_BROADCAST, ETHER_ADDR_LEN);
}

void ether_addr_from_name(const char *name, uint8_t addr[ETHER_ADDR_LEN])
{
    /* FNV-1a of the name: stable across runs, different per tap name. */
    uint32_t h = 2166136261u;

    for (const char *p = name; *p; p++)
        h = (h ^ (uint8_t)*p) * 16777619u;
    addr[0] = 0x02; /* locally administered, unicast (IEEE 802 §8.2) */
    addr[1] = 0x00;
    addr[2] = (uint8_t)(h >> 24);
    addr[3] = (uint8_t)(h >> 16);
    addr[4] = (uint8_t)(h >> 8);
    addr[5] = (uint8_t)h;
}

void ether_dump(const uint8_t *frame, size_t len)
{
    char src[24], dst[24];

    if (len < ETHER_HDR_SIZE)
        return;
    net_hwaddr_ntop(frame + 6, ETHER_ADDR_LEN, src, sizeof(src));
    net_hwaddr_ntop(frame, ETHER_ADDR_LEN, dst, sizeof(dst));
    log_debug(LOG_ETHER, "ether %s > %s, type 0x%04x, length %zu", src, dst, load16(frame + 12), len);
}

static int is_multicast(const uint8_t *addr)
{
    return addr[0] & 0x01; /* the I/G bit; broadcast has it too */
}

int ether_input(struct net_device *dev, struct pbuf *pb)
{
    const struct ether_hdr *hdr;
    const char *why = NULL;
    int reason = -1;

    STAT_INC(&ether_stats, ETHERSTAT_RX_FRAMES);
    if (pb->len < ETHER_HDR_SIZE) {
        reason = ETHERSTAT_RX_TOO_SHORT, why = "shorter than a header";
        goto drop;
    }
    hdr = (const struct ether_hdr *)pb->data;
    if (log_enabled(LOG_ETHER, LOG_LEVEL_DEBUG))
        ether_dump(pb->data, pb->len);
    if (is_multicast(hdr->src)) {
        reason = ETHERSTAT_RX_BAD_SOURCE, why = "group source address";
        goto drop;
    }
    if (memcmp(hdr->src, dev->addr, ETHER_ADDR_LEN) == 0) {
        reason = ETHERSTAT_RX_LOOPED, why = "our own source address";
        goto drop;
    }
    if (memcmp(hdr->dst, dev->addr, ETHER_ADDR_LEN) != 0) {
        if (memcmp(hdr->dst, ETHER_ADDR_BROADCAST, ETHER_ADDR_LEN) == 0) {
            pb->flags |= PBUF_FLAG_LINK_BCAST;
        } else if (is_multicast(hdr->dst)) {
            reason = ETHERSTAT_RX_MULTICAST, why = "multicast";
            goto drop;
        } else {
            reason = ETHERSTAT_RX_OTHER_HOST, why = "for another host";
            goto drop;
        }
    }
    pb->proto = load16(&hdr->type);
    pbuf_pull(pb, ETHER_HDR_SIZE);
    return 0;
drop:
    STAT_INC(&ether_stats, reason);
    log_debug(LOG_ETHER, "%s: drop frame (%zu bytes): %s", dev->name, pb->len, why);
    pbuf_free(pb);
    return -1;
}

int ether_output(struct net_device *dev, uint16_t type, struct pbuf *pb, const uint8_t *dst)
{
    struct ether_hdr *hdr;
    size_t pad;

    /* Short frames are padded to the minimum (IEEE 802.3 §3.2.8); padding
     * is tailroom we need to have, so pad into a fresh buffer if missing. */
    if (pb->len + ETHER_HDR_SIZE < ETHER_FRAME_SIZE_MIN) {
        pad = ETHER_FRAME_SIZE_MIN - ETHER_HDR_SIZE - pb->len;
        if ((size_t)(pb->buf + pb->cap - (pb->data + pb->len)) < pad) {
            struct pbuf *bigger = pbuf_alloc(PBUF_HEADROOM, pb->len + pad);
            if (!bigger) {
                pbuf_free(pb);
                return -ENOMEM;
            }
            memcpy(bigger->data, pb->data, pb->len);
            bigger->len = pb->len;
            pbuf_free(pb);
            pb = bigger;
        }
        memset(pb->data + pb->len, 0, pad);
        pb->len += pad;
    }
    hdr = (struct ether_hdr *)pbuf_push(pb, ETHER_HDR_SIZE);
    if (!hdr) {
        STAT_INC(&ether_stats, ETHERSTAT_TX_NO_HEADROOM);
        log_debug(LOG_ETHER, "%s: no headroom for the header, dropped", dev->name);
        pbuf_free(pb);
        return -ENOBUFS;
    }
    memcpy(hdr->dst, dst, ETHER_ADDR_LEN);
    memcpy(hdr->src, dev->addr, ETHER_ADDR_LEN);
    store16(&hdr->type, type);
    STAT_INC(&ether_stats, ETHERSTAT_TX_FRAMES);
    if (log_enabled(LOG_ETHER, LOG_LEVEL_DEBUG))
        ether_dump(pb->data, pb->len);
    return net_device_transmit(dev, pb);
}
