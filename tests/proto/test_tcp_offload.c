/*
 * test_tcp_offload.c — TCP on a device that takes super-segments and
 * completes checksums (NET_DEVICE_FLAG_TSO, the tap with tap_offload=1):
 * new data leaves as one super-segment of whole MSS-sized pieces with
 * gso_size set and the checksum field holding the pseudo-header sum; a
 * short tail goes along only when Nagle would let it go alone; resends are
 * one plain segment.
 *
 * Frames are read raw (tcp_peer.h's tp_take insists on finished checksums
 * and MTU-sized frames, which these are not).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "tcp_peer.h"

#define PORT 7300
#define MSS 1460

struct raw_seg {
    uint32_t seq, ack;
    size_t dlen;
    uint16_t gso_size;
    int partial;
    uint8_t flg;
};

/* The next frame: an IPv4 TCP segment of any length. A partial checksum is
 * completed the way the kernel does (sum from the TCP header on, the field
 * holding the pseudo-header sum, complement stored), and must then check. */
static int take_raw(struct raw_seg *r)
{
    struct pbuf *pb = test_take();
    uint8_t *b, *t;
    size_t iplen, tlen, hlen;
    uint32_t pseudo;

    if (!pb)
        return 0;
    b = pb->data;
    assert_true(pb->len >= TP_T + TCP_HDR_SIZE_MIN);
    assert_int_equal(load16(b + 12), ETHER_TYPE_IP);
    assert_int_equal(cksum16(b + TP_E, IP_HDR_SIZE_MIN, 0), 0);
    assert_int_equal(b[TP_E + 9], IP_PROTOCOL_TCP);
    iplen = load16(b + TP_E + 2);
    assert_true(TP_E + iplen <= pb->len); /* short frames are padded to 60 bytes */
    tlen = iplen - IP_HDR_SIZE_MIN;
    t = b + TP_T;
    hlen = (size_t)(t[12] >> 4) * 4;
    pseudo = cksum_pseudo(ts.our_ip, ts.peer_ip, IP_PROTOCOL_TCP, (uint16_t)tlen);
    r->partial = (pb->flags & PBUF_FLAG_CSUM_PARTIAL) != 0;
    if (r->partial) {
        /* the field holds fold(pseudo), not inverted */
        assert_int_equal(load16(t + 16), (uint16_t)~cksum_finish(pseudo));
        store16(t + 16, cksum16(t, tlen, 0));
    }
    assert_int_equal(cksum16(t, tlen, pseudo), 0);
    r->seq = load32(t + 4);
    r->ack = load32(t + 8);
    r->flg = t[13];
    r->dlen = tlen - hlen;
    r->gso_size = pb->gso_size;
    pbuf_free(pb);
    return 1;
}

static void open_offloaded(struct tp_conn *c, uint16_t port)
{
    int lsd;

    atomic_fetch_or(&ts.dev->flags, NET_DEVICE_FLAG_TSO);
    lsd = tp_listen(port, 4, 0);
    tp_open_passive(c, lsd, port, 42000, 5000, MSS);
}

static void peer_acks(struct tp_conn *c, uint32_t upto)
{
    c->pack = upto;
    tp_send(c, ACK, NULL, 0);
}

/* The initial window (10 segments, RFC 6928) leaves as one super-segment;
 * after its ACK, the grown window as another. */
static void test_flight_is_one_super_segment(void **state)
{
    static uint8_t data[100000];
    struct tp_conn c;
    struct raw_seg r;
    int64_t segs0;

    (void)state;
    open_offloaded(&c, PORT);
    segs0 = tp_counter("tcp.out_segs");
    tp_fill(data, sizeof(data), 1);
    assert_int_equal(sock_send(c.sd, data, sizeof(data), 0), (ssize_t)sizeof(data));
    assert_true(take_raw(&r));
    assert_int_equal(r.seq, c.iss + 1);
    assert_int_equal(r.dlen, 10 * MSS);
    assert_int_equal(r.gso_size, MSS);
    assert_true(r.partial);
    assert_int_equal(test_sent_count(), 0);
    assert_int_equal(tp_counter("tcp.out_super_segs"), 1);
    assert_int_equal(tp_counter("tcp.out_segs") - segs0, 10); /* the pieces on the wire */
    peer_acks(&c, r.seq + (uint32_t)r.dlen);
    assert_true(take_raw(&r));
    assert_int_equal(r.seq, c.iss + 1 + 10 * MSS);
    assert_true(r.dlen > 10 * MSS && r.dlen % MSS == 0);
    assert_int_equal(r.gso_size, MSS);
    tp_finish();
}

/* Whole segments and a short one: with nothing in flight the short one goes
 * along; with data in flight it waits for the ACK (Nagle, RFC 896), then
 * goes alone as a plain segment. */
static void test_short_tail_follows_nagle(void **state)
{
    static uint8_t data[3 * MSS + 100];
    struct tp_conn c;
    struct raw_seg r;

    (void)state;
    open_offloaded(&c, PORT + 1);
    tp_fill(data, sizeof(data), 2);
    assert_int_equal(sock_send(c.sd, data, 3 * MSS + 100, 0), 3 * MSS + 100);
    assert_true(take_raw(&r));
    assert_int_equal(r.dlen, 3 * MSS + 100); /* alone: the tail goes too */
    assert_int_equal(r.gso_size, MSS);
    assert_int_equal(test_sent_count(), 0);
    /* unacknowledged data in flight: two whole segments go, 100 bytes wait */
    assert_int_equal(sock_send(c.sd, data, 2 * MSS + 100, 0), 2 * MSS + 100);
    assert_true(take_raw(&r));
    assert_int_equal(r.seq, c.iss + 1 + 3 * MSS + 100);
    assert_int_equal(r.dlen, 2 * MSS);
    assert_int_equal(r.gso_size, MSS);
    assert_int_equal(test_sent_count(), 0);
    peer_acks(&c, r.seq + 2 * MSS);
    assert_true(take_raw(&r));
    assert_int_equal(r.seq, c.iss + 1 + 5 * MSS + 100);
    assert_int_equal(r.dlen, 100);
    assert_int_equal(r.gso_size, 0); /* one segment: nothing to cut */
    assert_true(r.partial);          /* but the kernel still sums it */
    tp_finish();
}

/* A timeout resends one MSS, as a plain segment. */
static void test_resend_is_one_segment(void **state)
{
    static uint8_t data[10 * MSS];
    struct tp_conn c;
    struct raw_seg r;
    long waited;

    (void)state;
    open_offloaded(&c, PORT + 2);
    tp_fill(data, sizeof(data), 3);
    assert_int_equal(sock_send(c.sd, data, sizeof(data), 0), (ssize_t)sizeof(data));
    assert_true(take_raw(&r));
    assert_int_equal(r.dlen, 10 * MSS);
    waited = tp_wait_send(5000);
    assert_true(waited > 0);
    assert_true(take_raw(&r));
    assert_int_equal(r.seq, c.iss + 1);
    assert_int_equal(r.dlen, MSS);
    assert_int_equal(r.gso_size, 0);
    assert_true(tp_counter("tcp.retrans_segs") >= 1);
    tp_finish();
}

/* A super-frame in (the kernel's, through an offloading tap): one segment
 * of 10 MSS. It holds more than two full-sized segments, so it is ACKed
 * at the end of its batch, not after the delayed-ACK timer. */
static void test_super_frame_in_is_acked_at_once(void **state)
{
    static uint8_t seg[TCP_HDR_SIZE_MIN + 10 * MSS], frame[TP_E + IP_HDR_SIZE_MIN + sizeof(seg)], data[10 * MSS];
    struct tp_conn c;
    struct raw_seg r;
    size_t n = sizeof(seg), len;

    (void)state;
    open_offloaded(&c, PORT + 3);
    tp_fill(data, sizeof(data), 4);
    memset(seg, 0, TCP_HDR_SIZE_MIN);
    store16(seg, c.pport);
    store16(seg + 2, c.lport);
    store32(seg + 4, c.pseq);
    store32(seg + 8, c.pack);
    seg[12] = (TCP_HDR_SIZE_MIN / 4) << 4;
    seg[13] = ACK | PSH;
    store16(seg + 14, 65535);
    memcpy(seg + TCP_HDR_SIZE_MIN, data, sizeof(data));
    store16(seg + 16, cksum16(seg, n, cksum_pseudo(ts.peer_ip, ts.our_ip, IP_PROTOCOL_TCP, (uint16_t)n)));
    len = test_ip_frame(frame, IP_PROTOCOL_TCP, ts.peer_ip, ts.our_ip, 0x4321, 0, seg, n);
    test_inject(frame, len);
    c.pseq += sizeof(data);
    assert_true(take_raw(&r)); /* no test_advance: the ACK is already out */
    assert_int_equal(r.ack, c.pseq);
    assert_int_equal(r.dlen, 0);
    {
        static uint8_t got[10 * MSS];
        assert_int_equal(sock_recv(c.sd, got, sizeof(got), 0), (ssize_t)sizeof(got));
        assert_memory_equal(got, data, sizeof(got));
    }
    tp_finish();
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_flight_is_one_super_segment, tp_setup, tp_teardown),
        cmocka_unit_test_setup_teardown(test_short_tail_follows_nagle, tp_setup, tp_teardown),
        cmocka_unit_test_setup_teardown(test_resend_is_one_segment, tp_setup, tp_teardown),
        cmocka_unit_test_setup_teardown(test_super_frame_in_is_acked_at_once, tp_setup, tp_teardown),
    };

    tp.default_config = net_config;
    return cmocka_run_group_tests(tests, NULL, NULL);
}
