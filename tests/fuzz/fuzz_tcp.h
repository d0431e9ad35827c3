/*
 * fuzz_tcp.h — shared by the TCP fuzz targets: a peer that builds TCP
 * segments from fuzz input. The first byte of each record says which
 * fields to make plausible (so the fuzzer gets past the checksum and the
 * window check into deeper states):
 *   bit 0  compute a correct checksum
 *   bit 1  seq := our rcv_nxt + (seq as given mod 2^16), if a pcb exists
 *   bit 2  ack := our snd_una + (ack as given mod 2^16)
 *   bits 3-4  move the virtual clock 0 / 10 / 300 / 5000 ms afterwards
 * Records: [ctl][len(2)][len bytes of TCP header+payload].
 */
#ifndef NETSTEP_FUZZ_TCP_H
#define NETSTEP_FUZZ_TCP_H

#include <errno.h>
#include <string.h>

#include "fuzz_common.h"
#include "proto/sock.h"
#include "proto/tcp_var.h"
#include "util/byteorder.h"
#include "util/cksum.h"

#define FUZZ_PEER_PORT 40000
#define FUZZ_PORT 7

static void fuzz_tcp_segment(uint8_t ctl, uint8_t *seg, size_t len)
{
    uint8_t frame[14 + 20 + 1600];
    struct tcp_pcb *pcb;

    if (len < 20 || len > 1600)
        return;
    mutex_lock(&tcp_lock);
    pcb = tcp_lookup_locked(ts.our_ip, load16(seg + 2), ts.peer_ip, load16(seg));
    if (pcb && pcb->state != TCPS_LISTEN) {
        if (ctl & 2)
            store32(seg + 4, pcb->rcv_nxt + (load32(seg + 4) & 0xffff));
        if (ctl & 4)
            store32(seg + 8, pcb->snd_una + (load32(seg + 8) & 0xffff));
    }
    mutex_unlock(&tcp_lock);
    if (ctl & 1) {
        store16(seg + 16, 0);
        store16(seg + 16, cksum16(seg, len, cksum_pseudo(ts.peer_ip, ts.our_ip, IP_PROTOCOL_TCP, (uint16_t)len)));
    }
    len = test_ip_frame(frame, IP_PROTOCOL_TCP, ts.peer_ip, ts.our_ip, 1, 0, seg, len);
    test_inject(frame, len);
    static const uint64_t steps[4] = { 0, 10, 300, 5000 };
    if ((ctl >> 3) & 3) {
        net_clock_advance(steps[(ctl >> 3) & 3]);
        net_poll();
    }
}

/* Run every record of the input through the stack. */
static void fuzz_tcp_records(const uint8_t *data, size_t size)
{
    uint8_t seg[1600];

    while (size >= 3) {
        uint8_t ctl = data[0];
        size_t len = load16(data + 1);
        data += 3;
        size -= 3;
        if (len > size)
            len = size;
        if (len > sizeof(seg))
            len = sizeof(seg);
        memcpy(seg, data, len);
        fuzz_tcp_segment(ctl, seg, len);
        data += len;
        size -= len;
    }
}

/* Accept whatever completed, read what arrived, close: memory stays flat. */
static void fuzz_tcp_drain(int lsd)
{
    uint8_t buf[4096];
    int sd;

    while ((sd = sock_accept(lsd, NULL, NULL)) >= 0) {
        while (sock_recv(sd, buf, sizeof(buf), MSG_DONTWAIT) > 0)
            ;
        sock_close(sd);
    }
    test_flush();
}

#endif
