/* fuzz_udp.c — any bytes as a UDP datagram inside a valid IPv4 datagram
 * from the peer (192.0.2.1) to us (192.0.2.2), with two sockets open so that
 * delivery, queueing, SO_RCVBUF drops, port unreachable and ICMP errors
 * reported to a connected socket are all reachable:
 *
 *   sd7   bound to 0.0.0.0:7 (takes unicast and broadcast datagrams)
 *   sdc   bound to 5000, connected to 192.0.2.1:9, SO_RCVBUF at the minimum
 *
 * The first input byte is control, the rest the datagram:
 *   bit 0  make the UDP checksum right (pseudo header included)
 *   bit 1  make the length field the datagram's real length
 *   bit 2  send it to the subnet broadcast 192.0.2.255
 *   bit 3  move the virtual clock on a second first (refills the ICMP
 *          rate limit, runs timers)
 *   bit 5  inject it twice (two large ones overflow sdc's SO_RCVBUF)
 *   bit 4  instead, send an ICMP destination unreachable (code: bits 5-7)
 *          quoting an IP header 192.0.2.2 -> 192.0.2.1, protocol UDP,
 *          followed by the bytes as the quoted UDP header and data
 * After each input both queues are drained with MSG_DONTWAIT (and pending
 * errors read), so memory stays bounded; a pbuf still outstanding after
 * that is a leak and aborts. */
#include <errno.h>
#include <string.h>

#include "fuzz_common.h"
#include "proto/icmp.h"
#include "proto/ip.h"
#include "proto/sock.h"
#include "proto/udp.h"
#include "util/byteorder.h"
#include "util/cksum.h"
#include "util/pbuf.h"

#define CTL_FIX_SUM 0x01
#define CTL_FIX_LEN 0x02
#define CTL_BCAST 0x04
#define CTL_TICK 0x08
#define CTL_ICMP 0x10
#define CTL_TWICE 0x20 /* without CTL_ICMP */

#define UDP_MAX (1500 - IP_HDR_SIZE_MIN)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int sd7 = -1, sdc = -1;
static long pbufs_idle; /* outstanding pbufs with both queues empty */

static void udp_fuzz_setup(void)
{
    struct sockaddr_in any7 = { .sin_family = AF_INET, .sin_port = htons(7) };
    struct sockaddr_in local = { .sin_family = AF_INET, .sin_port = htons(5000) };
    struct sockaddr_in peer = { .sin_family = AF_INET, .sin_port = htons(9) };
    int small = 0;

    fuzz_setup();
    if (sd7 >= 0)
        return;
    peer.sin_addr.s_addr = ts.peer_ip;
    sd7 = sock_open(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK, 0);
    sdc = sock_open(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK, 0);
    if (sd7 < 0 || sdc < 0 || sock_bind(sd7, (struct sockaddr *)&any7, sizeof(any7)) < 0 ||
        sock_bind(sdc, (struct sockaddr *)&local, sizeof(local)) < 0 ||
        sock_connect(sdc, (struct sockaddr *)&peer, sizeof(peer)) < 0 ||
        sock_setsockopt(sdc, SOL_SOCKET, SO_RCVBUF, &small, sizeof(small)) < 0)
        abort();
    test_flush();
    pbufs_idle = pbuf_outstanding();
}

/* Take everything queued (and any pending error) without waiting. */
static void drain(int sd)
{
    static uint8_t buf[2048];
    struct sockaddr_in from;

    for (int i = 0; i < 64; i++) {
        socklen_t len = sizeof(from);
        ssize_t n = sock_recvfrom(sd, buf, i % 2 ? 16 : sizeof(buf), i % 3 ? 0 : MSG_TRUNC,
                                  (struct sockaddr *)&from, &len);
        if (n < 0 && errno == EAGAIN)
            return;
        if (n < 0 && errno != ECONNREFUSED && errno != EHOSTUNREACH && errno != ENETUNREACH &&
            errno != EMSGSIZE)
            abort(); /* nothing else may come out of a datagram socket here */
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static uint8_t msg[UDP_MAX], frame[1600];
    uint32_t src, dst;
    uint8_t ctl;
    size_t len, flen;

    udp_fuzz_setup();
    if (size < 1 || size - 1 > UDP_MAX)
        return 0;
    ctl = data[0];
    len = size - 1;
    if (ctl & CTL_TICK)
        test_advance(1000);

    if (ctl & CTL_ICMP) {
        /* peer -> us: destination unreachable about "our" datagram */
        static const uint8_t codes[8] = { ICMP_CODE_NET_UNREACH, ICMP_CODE_HOST_UNREACH,
                                          ICMP_CODE_PROTO_UNREACH, ICMP_CODE_PORT_UNREACH,
                                          ICMP_CODE_FRAG_NEEDED, 5, 9, 13 };
        uint8_t *inner = msg + ICMP_HDR_SIZE;
        size_t ilen;

        if (len > UDP_MAX - ICMP_HDR_SIZE - IP_HDR_SIZE_MIN)
            len = UDP_MAX - ICMP_HDR_SIZE - IP_HDR_SIZE_MIN;
        ilen = IP_HDR_SIZE_MIN + len;
        memset(msg, 0, ICMP_HDR_SIZE + IP_HDR_SIZE_MIN);
        msg[0] = ICMP_TYPE_DEST_UNREACH;
        msg[1] = codes[ctl >> 5];
        if (msg[1] == ICMP_CODE_FRAG_NEEDED)
            store16(msg + 6, 576);
        inner[0] = 0x45;
        store16(inner + 2, (uint16_t)(ilen < 0xffff ? ilen : 0xffff));
        inner[8] = 64;
        inner[9] = IP_PROTOCOL_UDP;
        memcpy(inner + 12, &ts.our_ip, 4);
        memcpy(inner + 16, &ts.peer_ip, 4);
        store16(inner + 10, cksum16(inner, IP_HDR_SIZE_MIN, 0));
        memcpy(inner + IP_HDR_SIZE_MIN, data + 1, len);
        len += ICMP_HDR_SIZE + IP_HDR_SIZE_MIN;
        store16(msg + 2, cksum16(msg, len, 0));
        flen = test_ip_frame(frame, IP_PROTOCOL_ICMP, ts.peer_ip, ts.our_ip, (uint16_t)size, 0, msg, len);
    } else {
        src = ts.peer_ip;
        dst = (ctl & CTL_BCAST) ? ts.iface->broadcast : ts.our_ip;
        memcpy(msg, data + 1, len);
        if ((ctl & CTL_FIX_LEN) && len >= UDP_HDR_SIZE)
            store16(msg + 4, (uint16_t)len);
        if ((ctl & CTL_FIX_SUM) && len >= UDP_HDR_SIZE) {
            uint16_t sum;
            store16(msg + 6, 0);
            sum = cksum16(msg, len, cksum_pseudo(src, dst, IP_PROTOCOL_UDP, (uint16_t)len));
            store16(msg + 6, sum ? sum : 0xffff);
        }
        flen = test_ip_frame(frame, IP_PROTOCOL_UDP, src, dst, (uint16_t)size, 0, msg, len);
    }
    test_inject(frame, flen);
    if ((ctl & (CTL_ICMP | CTL_TWICE)) == CTL_TWICE)
        test_inject(frame, flen);
    drain(sd7);
    drain(sdc);
    test_flush();
    if (pbuf_outstanding() != pbufs_idle)
        abort(); /* a datagram, an error or a copy was leaked */
    return 0;
}
