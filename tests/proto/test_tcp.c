/*
 * test_tcp.c — protocol tests of TCP (RFC 9293) opening connections and
 * checking segments: the three-way handshake both ways, the MSS option,
 * options a Linux peer sends, malformed headers, RST and SYN handling
 * after RFC 5961, the listen backlog, a SYN flood, initial sequence
 * numbers, and simultaneous open.
 *
 * The peer is scripted by tcp_peer.h: it injects crafted segments through
 * the in-memory test device and parses what the stack sent back. No stack
 * thread runs, so every socket is non-blocking. The rest of TCP's tests:
 *   test_tcp_data.c     data both ways, ACKs, reordering, windows, MSS
 *   test_tcp_timers.c   retransmission timer (RFC 6298) and keepalive
 *   test_tcp_close.c    FIN in each state, TIME-WAIT, aborts
 *   test_tcp_api.c      ICMP errors, reconnecting, SHUT_RD, send buffer
 *   test_tcp_random.c   long randomized transfers with invariants
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "tcp_peer.h"

#define PORT 8080

/* ---- passive and active open -------------------------------------------------------------- */

static void test_passive_open(void **state)
{
    int lsd = tp_listen(PORT, 8, 0);
    struct tp_conn c;
    struct tp_seg sa;
    struct sockaddr_in a;
    socklen_t len = sizeof(a);

    (void)state;
    /* nothing yet: accept says EAGAIN, the listener is not readable */
    expect_errno(sock_accept(lsd, TP_SA(a), &len), EAGAIN);
    assert_int_equal(tp_poll(lsd, POLLIN), 0);

    /* peer -> SYN <MSS 1460>; us -> SYN,ACK <MSS 1460> ack isn+1 */
    tp_syn_to_listener(&c, PORT, 40000, 1000, 1460, &sa);
    assert_int_equal(sa.ack, 1001);
    assert_int_equal(sa.mss, 1460); /* 1500 - 20 - 20 */
    assert_int_equal(sa.optlen, 4); /* the MSS option and nothing else */
    assert_int_equal(sa.dlen, 0);
    assert_true(sa.wnd > 0);
    assert_state(&c, "SYN-RECEIVED");
    /* half-open: still nothing to accept */
    expect_errno(sock_accept(lsd, TP_SA(a), &len), EAGAIN);

    /* peer -> ACK: established, nothing sent, accept returns it */
    tp_send(&c, ACK, NULL, 0);
    tp_expect_none();
    assert_state(&c, "ESTABLISHED");
    assert_true(tp_poll(lsd, POLLIN) & POLLIN);
    len = sizeof(a);
    c.sd = sock_accept(lsd, TP_SA(a), &len);
    assert_true(c.sd >= 0);
    tp_track(c.sd);
    assert_int_equal(a.sin_addr.s_addr, ts.peer_ip);
    assert_int_equal(ntohs(a.sin_port), 40000);
    len = sizeof(a);
    assert_int_equal(sock_getpeername(c.sd, TP_SA(a), &len), 0);
    assert_int_equal(a.sin_addr.s_addr, ts.peer_ip);
    assert_int_equal(ntohs(a.sin_port), 40000);
    len = sizeof(a);
    assert_int_equal(sock_getsockname(c.sd, TP_SA(a), &len), 0);
    assert_int_equal(a.sin_addr.s_addr, ts.our_ip);
    assert_int_equal(ntohs(a.sin_port), PORT);
    assert_true(tp_poll(c.sd, POLLOUT) & POLLOUT);
    assert_int_equal(tp_poll(c.sd, POLLIN), 0);
    assert_int_equal(tp_counter("tcp.passive_opens"), 1);
    tp_finish();
}

static void test_active_open(void **state)
{
    struct tp_conn c;
    struct tp_seg syn, ack;
    struct sockaddr_in a = tp_sin(TEST_PEER_IP, 80), name;
    socklen_t len = sizeof(name);
    uint8_t opt[4];

    (void)state;
    tp_connect_start(&c, 80, 0, &syn);
    assert_int_equal(syn.mss, 1460);
    /* MSS, SACK-permitted (RFC 2018), timestamps (RFC 7323 §3), then NOP +
     * window scale (RFC 7323 §2): 20 bytes, the layout Linux uses too */
    assert_int_equal(syn.optlen, 20);
    assert_int_equal(syn.opt[4], 4);  /* SACK-permitted */
    assert_int_equal(syn.opt[6], 8);  /* timestamps */
    assert_int_equal(syn.opt[17], 3); /* window scale */
    assert_int_equal(syn.dlen, 0);
    assert_true(syn.wnd > 0);
    assert_true(c.lport >= net_config.port_ephemeral_lo && c.lport <= net_config.port_ephemeral_hi);
    assert_state(&c, "SYN-SENT");
    /* in progress: EALREADY, not writable, no peer name yet */
    expect_errno(sock_connect(c.sd, TP_SA(a), sizeof(a)), EALREADY);
    assert_int_equal(tp_poll(c.sd, POLLOUT), 0);
    expect_errno(sock_getpeername(c.sd, TP_SA(name), &len), ENOTCONN);
    expect_errno(sock_send(c.sd, "x", 1, 0), EAGAIN);

    /* peer -> SYN,ACK <MSS 1460>; us -> ACK */
    tp_inject(80, c.lport, 5000, c.iss + 1, SYN | ACK, 65535, opt, tp_opt_mss(opt, 1460), NULL, 0);
    tp_expect(&ack, ACK);
    assert_int_equal(ack.seq, c.iss + 1);
    assert_int_equal(ack.ack, 5001);
    assert_int_equal(ack.optlen, 0);
    tp_expect_none();
    c.irs = 5000;
    c.pseq = 5001;
    c.pack = c.iss + 1;
    assert_state(&c, "ESTABLISHED");
    assert_true(tp_poll(c.sd, POLLOUT) & POLLOUT);
    expect_errno(sock_connect(c.sd, TP_SA(a), sizeof(a)), EISCONN);
    assert_int_equal(tp_so_error(c.sd), 0);
    len = sizeof(name);
    assert_int_equal(sock_getpeername(c.sd, TP_SA(name), &len), 0);
    assert_int_equal(name.sin_addr.s_addr, ts.peer_ip);
    assert_int_equal(ntohs(name.sin_port), 80);
    len = sizeof(name);
    assert_int_equal(sock_getsockname(c.sd, TP_SA(name), &len), 0);
    assert_int_equal(name.sin_addr.s_addr, ts.our_ip);
    assert_int_equal(ntohs(name.sin_port), c.lport);
    assert_int_equal(tp_counter("tcp.active_opens"), 1);

    /* a SYN,ACK again (our ACK was lost): answered with an ACK */
    tp_inject(80, c.lport, 5000, c.iss + 1, SYN | ACK, 65535, opt, tp_opt_mss(opt, 1460), NULL, 0);
    tp_expect(&ack, ACK);
    assert_int_equal(ack.ack, 5001);
    assert_state(&c, "ESTABLISHED");
    tp_finish();
}

static void test_connect_refused(void **state)
{
    struct tp_conn c, d;
    struct tp_seg syn;
    struct sockaddr_in a = tp_sin(TEST_PEER_IP, 81);
    short ev;

    (void)state;
    tp_connect_start(&c, 81, 0, &syn);
    /* a RST without ACK, or with a wrong ACK, is not for our SYN: ignored */
    tp_inject(81, c.lport, 0, 0, RST, 0, NULL, 0, NULL, 0);
    tp_inject(81, c.lport, 0, c.iss + 7, RST | ACK, 0, NULL, 0, NULL, 0);
    tp_expect_none();
    assert_state(&c, "SYN-SENT");
    /* RST,ACK acknowledging the SYN: refused */
    tp_inject(81, c.lport, 0, c.iss + 1, RST | ACK, 0, NULL, 0, NULL, 0);
    tp_expect_none();
    assert_state(&c, "");
    ev = tp_poll(c.sd, POLLOUT);
    assert_true(ev & (POLLERR | POLLHUP));
    assert_int_equal(tp_so_error(c.sd), ECONNREFUSED);
    assert_int_equal(tp_so_error(c.sd), 0); /* read once */

    /* the error also shows as connect's own result */
    tp_connect_start(&d, 81, 0, &syn);
    tp_inject(81, d.lport, 0, d.iss + 1, RST | ACK, 0, NULL, 0, NULL, 0);
    expect_errno(sock_connect(d.sd, TP_SA(a), sizeof(a)), ECONNREFUSED);
    assert_int_equal(tp_counter("tcp.attempt_fails"), 2);
    tp_finish();
}

/* RFC 9293 §3.8.1, RFC 6298 §5.5: the SYN is resent after 1 s, 2 s, 4 s, and
 * after tcp_syn_retries the connect fails with ETIMEDOUT. */
static void test_syn_retransmit_backoff(void **state)
{
    struct tp_conn c;
    struct tp_seg syn, again;
    long gaps[3];

    (void)state;
    net_config.tcp_syn_retries = 3;
    tp_connect_start(&c, 82, 0, &syn);
    for (int i = 0; i < 3; i++) {
        gaps[i] = tp_wait_send(20000);
        tp_expect(&again, SYN);
        assert_int_equal(again.seq, syn.seq);
        assert_int_equal(again.sport, c.lport);
        assert_int_equal(again.mss, 1460);
        tp_expect_none();
    }
    print_message("  SYN retransmitted after %ld, %ld, %ld ms\n", gaps[0], gaps[1], gaps[2]);
    assert_int_equal(gaps[0], 1000); /* RFC 6298 §2.1: initial RTO 1 s */
    assert_int_equal(gaps[1], 2000);
    assert_int_equal(gaps[2], 4000);
    assert_state(&c, "SYN-SENT");
    /* the last wait runs out: ETIMEDOUT, and nothing more is sent */
    assert_int_equal(tp_wait_send(8000), -1);
    assert_state(&c, "");
    assert_int_equal(tp_so_error(c.sd), ETIMEDOUT);
    assert_int_equal(tp_wait_send(30000), -1);
    assert_int_equal(tp_counter("tcp.conn_timeouts"), 1);
    tp_finish();
}

/* The SYN,ACK is resent too when the final ACK does not come, and the child
 * is forgotten after tcp_syn_retries. */
static void test_synack_retransmit(void **state)
{
    struct tp_conn c;
    struct tp_seg sa, again;
    struct sockaddr_in a;
    socklen_t len = sizeof(a);

    (void)state;
    net_config.tcp_syn_retries = 2;
    tp_listen(PORT, 4, 0);
    tp_syn_to_listener(&c, PORT, 40001, 7000, 1460, &sa);
    assert_int_equal(tp_wait_send(5000), 1000);
    tp_expect(&again, SYN | ACK);
    assert_int_equal(again.seq, sa.seq);
    assert_int_equal(again.ack, 7001);
    assert_int_equal(tp_wait_send(5000), 2000);
    tp_expect(&again, SYN | ACK);
    /* the peer's SYN again: answered with the same SYN,ACK at once */
    tp_inject(40001, PORT, 7000, 0, SYN, 65535, NULL, 0, NULL, 0);
    tp_expect(&again, SYN | ACK);
    assert_int_equal(again.seq, sa.seq);
    assert_int_equal(tp_wait_send(8000), -1);
    assert_state(&c, "");
    /* a late ACK finds the listener: RST */
    tp_inject(40001, PORT, 7001, sa.seq + 1, ACK, 65535, NULL, 0, NULL, 0);
    tp_expect(&again, RST);
    assert_int_equal(again.seq, sa.seq + 1);
    expect_errno(sock_accept(tp.socks[0], TP_SA(a), &len), EAGAIN);
    tp_finish();
}

/* RFC 9293 §3.5 Figure 8: both sides send a SYN at once. */
static void test_simultaneous_open(void **state)
{
    struct tp_conn c;
    struct tp_seg syn, sa, s;
    uint8_t opt[4];

    (void)state;
    tp_connect_start(&c, 83, 0, &syn);
    /* peer -> SYN (its own, no ACK); us -> SYN,ACK with our same ISN */
    tp_inject(83, c.lport, 9000, 0, SYN, 65535, opt, tp_opt_mss(opt, 1460), NULL, 0);
    tp_expect(&sa, SYN | ACK);
    assert_int_equal(sa.seq, c.iss);
    assert_int_equal(sa.ack, 9001);
    assert_state(&c, "SYN-RECEIVED");
    c.irs = 9000;
    c.pseq = 9001;
    c.pack = c.iss + 1;
    /* peer -> its SYN,ACK (line 6 of Figure 8): acknowledged */
    tp_inject(83, c.lport, 9000, c.iss + 1, SYN | ACK, 65535, opt, tp_opt_mss(opt, 1460), NULL, 0);
    if (tp_take(&s)) {
        assert_true(s.flg & ACK);
        assert_int_equal(s.ack, 9001);
        assert_int_equal(s.seq, c.iss + 1);
    }
    tp_expect_none();
    /* peer -> ACK of our SYN,ACK: established for sure */
    tp_send(&c, ACK, NULL, 0);
    tp_expect_none();
    assert_state(&c, "ESTABLISHED");
    assert_true(tp_poll(c.sd, POLLOUT) & POLLOUT);
    assert_int_equal(tp_so_error(c.sd), 0);
    /* and data flows */
    assert_int_equal(sock_send(c.sd, "hello", 5, 0), 5);
    tp_expect(&s, ACK);
    assert_int_equal(s.seq, c.iss + 1);
    assert_int_equal(s.dlen, 5);
    assert_memory_equal(s.data, "hello", 5);
    tp_send(&c, ACK, "world", 5);
    tp_read_exact(c.sd, (const uint8_t *)"world", 5);
    tp_finish();
}

/* ---- options ------------------------------------------------------------------------------------- */

/* A SYN as Linux sends it: MSS, SACK-permitted, timestamps, NOP, window
 * scale 7. Parsed, the unknown ones ignored: our SYN,ACK carries the MSS
 * option only, and the peer's window is taken unscaled. */
static void test_linux_syn_options(void **state)
{
    static const uint8_t linux_opts[20] = { 0x02, 0x04, 0x05, 0xb4, 0x04, 0x02, 0x08, 0x0a, 0x00, 0x01,
                                            0x02, 0x03, 0x00, 0x00, 0x00, 0x00, 0x01, 0x03, 0x03, 0x07 };
    /* TSval moves on from the SYN's 0x00010203 (or PAWS would drop it) */
    static const uint8_t ts_opts[12] = { 0x01, 0x01, 0x08, 0x0a, 0, 1, 2, 9, 0, 0, 0, 0 };
    static uint8_t data[3000];
    struct tp_conn c;
    struct tp_seg sa, s;
    struct sockaddr_in a;
    socklen_t len = sizeof(a);
    int lsd = tp_listen(PORT, 4, 0);

    (void)state;
    memset(&c, 0, sizeof(c));
    c.lport = PORT;
    c.pport = 40002;
    /* windows in a SYN are never scaled (RFC 7323 §2.2); 1500 here keeps
     * sender SWS avoidance (half the largest window) out of the picture */
    tp_inject(40002, PORT, 100, 0, SYN, 1500, linux_opts, sizeof(linux_opts), NULL, 0);
    tp_expect(&sa, SYN | ACK);
    assert_int_equal(sa.ack, 101);
    /* MSS and, since the SYN offered it, our window scale: the shift that
     * fits a 256 KiB buffer into 16 bits is 3 (RFC 7323 §2.2); SACK and
     * timestamps are answered too, the SYN's TSval echoed */
    assert_int_equal(sa.optlen, 20);
    assert_int_equal(sa.mss, 1460);
    assert_int_equal(sa.opt[4], 4);
    assert_int_equal(sa.opt[6], 8);
    assert_memory_equal(sa.opt + 12, "\x00\x01\x02\x03", 4);
    assert_memory_equal(sa.opt + 16, "\x01\x03\x03\x03", 4);
    assert_int_equal(tp_counter("tcp.in_bad_options"), 0);
    c.iss = sa.seq;
    c.pseq = 101;
    c.pack = c.iss + 1;
    c.pwnd = 8; /* the peer's shift is 7: 8 << 7 = 1024 bytes */
    tp_inject(40002, PORT, 101, c.pack, ACK, 8, ts_opts, sizeof(ts_opts), NULL, 0);
    c.sd = sock_accept(lsd, TP_SA(a), &len);
    assert_true(c.sd >= 0);
    tp_track(c.sd);
    /* data with a timestamp option is accepted */
    tp_inject(40002, PORT, 101, c.pack, ACK | PSH, 8, ts_opts, sizeof(ts_opts), "linux", 5);
    c.pseq += 5;
    tp_read_exact(c.sd, (const uint8_t *)"linux", 5);
    test_advance(net_config.tcp_delack_ms + 10);
    tp_expect_ack(&c, NULL);
    /* 3000 bytes to send; the window is 8 << 7 = 1024: 1024 go, no more */
    tp_fill(data, sizeof(data), 1);
    assert_int_equal(sock_send(c.sd, data, sizeof(data), 0), (ssize_t)sizeof(data));
    {
        size_t sent = 0;
        while (tp_take(&s)) {
            assert_int_equal(s.seq, c.iss + 1 + sent);
            sent += s.dlen;
        }
        assert_int_equal(sent, 1024);
        assert_memory_equal(s.data + s.dlen - 10, data + 1014, 10);
    }
    c.pack += 1024;
    tp_send(&c, ACK, NULL, 0); /* window 1024 again from here */
    assert_true(tp_take(&s));
    assert_int_equal(s.seq, c.iss + 1025);
    assert_int_equal(s.dlen, 1024);
    tp_expect_none();
    tp_finish();
}

/* RFC 9293 §3.1: an option whose length is 0, 1, or runs past the header is
 * malformed; the segment is dropped and counted, and never answered. */
static void test_malformed_options(void **state)
{
    static const uint8_t bad[][4] = {
        { 0x02, 0x00, 0x05, 0xb4 }, /* length 0 */
        { 0x01, 0x01, 0x03, 0x01 }, /* length 1 */
        { 0x01, 0x01, 0x02, 0x08 }, /* an 8-byte option with 2 bytes of header left */
        { 0x02, 0x03, 0x05, 0x00 }, /* MSS of length 3 */
        { 0x01, 0x01, 0x01, 0x02 }, /* a kind with no length byte */
    };
    struct tp_conn c;
    int lsd = tp_listen(PORT, 4, 0);

    (void)state;
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        tp_inject((uint16_t)(41000 + i), PORT, 1, 0, SYN, 65535, bad[i], 4, NULL, 0);
        tp_expect_none();
    }
    assert_int_equal(tp_counter("tcp.in_bad_options"), 5);
    assert_int_equal(tp_counter("tcp.passive_opens"), 0);

    /* on an established connection: the data is neither taken nor acked */
    tp_open_passive(&c, lsd, PORT, 41100, 500, 1460);
    tp_inject(c.pport, c.lport, c.pseq, c.pack, ACK, 65535, bad[0], 4, "bad", 3);
    test_advance(500);
    tp_expect_none();
    {
        char b[8];
        expect_errno(sock_recv(c.sd, b, sizeof(b), MSG_DONTWAIT), EAGAIN);
    }
    assert_int_equal(tp_counter("tcp.in_bad_options"), 6);
    tp_send(&c, ACK, "good", 4);
    tp_read_exact(c.sd, (const uint8_t *)"good", 4);
    tp_finish();
}

/* Recompute the TCP checksum of the frame in tp.frame (TCP length n). */
static void refix_sum(size_t n)
{
    uint8_t *t = tp.frame + TP_T;

    store16(t + 16, 0);
    store16(t + 16, cksum16(t, n, cksum_pseudo(ts.peer_ip, ts.our_ip, IP_PROTOCOL_TCP, (uint16_t)n)));
}

/* A data offset under 5 words, or past the segment's end: dropped. */
static void test_bad_data_offset(void **state)
{
    size_t len;

    (void)state;
    tp_listen(PORT, 4, 0);
    len = tp_build(42000, PORT, 1, 0, SYN, 65535, NULL, 0, NULL, 0);
    tp.frame[TP_T + 12] = 4 << 4;
    refix_sum(20);
    test_inject(tp.frame, len);
    tp_expect_none();
    len = tp_build(42001, PORT, 1, 0, SYN, 65535, NULL, 0, "abcd", 4);
    tp.frame[TP_T + 12] = 7 << 4; /* 28 bytes claimed, 24 there */
    refix_sum(24);
    test_inject(tp.frame, len);
    tp_expect_none();
    len = tp_build(42002, PORT, 1, 0, SYN, 65535, NULL, 0, NULL, 0);
    tp.frame[TP_T + 12] = 15 << 4;
    refix_sum(20);
    test_inject(tp.frame, len);
    tp_expect_none();
    assert_int_equal(tp_counter("tcp.in_bad_offset"), 3);
    /* shorter than a header */
    len = tp_build(42003, PORT, 1, 0, SYN, 65535, NULL, 0, NULL, 0);
    len = test_ip_frame(tp.frame, IP_PROTOCOL_TCP, ts.peer_ip, ts.our_ip, 1, 0, tp.seg, 19);
    test_inject(tp.frame, len);
    tp_expect_none();
    assert_int_equal(tp_counter("tcp.in_too_short"), 1);
    tp_finish();
}

/* A segment with a bad checksum is dropped before anything else: not
 * acknowledged, its data not delivered (RFC 9293 §3.1, §3.10.7). */
static void test_bad_checksum_not_acked(void **state)
{
    int lsd = tp_listen(PORT, 4, 0);
    struct tp_conn c;
    size_t len;
    char b[16];

    (void)state;
    /* a SYN with a bad checksum: no SYN,ACK */
    len = tp_build(43000, PORT, 1, 0, SYN, 65535, NULL, 0, NULL, 0);
    tp.frame[TP_T + 16] ^= 0x55;
    test_inject(tp.frame, len);
    tp_expect_none();
    assert_int_equal(tp_counter("tcp.in_bad_checksum"), 1);

    tp_open_passive(&c, lsd, PORT, 43001, 1, 1460);
    len = tp_build(c.pport, c.lport, c.pseq, c.pack, ACK | PSH, 65535, NULL, 0, "corrupt", 7);
    tp.frame[len - 1] ^= 0x01; /* a bit of the payload flipped in transit */
    test_inject(tp.frame, len);
    test_advance(1000);
    tp_expect_none();
    expect_errno(sock_recv(c.sd, b, sizeof(b), MSG_DONTWAIT), EAGAIN);
    assert_int_equal(tp_counter("tcp.in_bad_checksum"), 2);
    /* the retransmission arrives intact */
    tp_send(&c, ACK | PSH, "corrupt", 7);
    tp_read_exact(c.sd, (const uint8_t *)"corrupt", 7);
    tp_finish();
}

/* ---- no connection, listeners --------------------------------------------------------------------- */

/* RFC 9293 §3.10.7.1: CLOSED answers every segment but a RST with a RST. */
static void test_closed_port_resets(void **state)
{
    struct tp_seg s;

    (void)state;
    tp_inject(44000, 9, 777, 0, SYN, 65535, NULL, 0, NULL, 0);
    tp_expect(&s, RST | ACK);
    assert_int_equal(s.seq, 0);
    assert_int_equal(s.ack, 778);
    assert_int_equal(s.sport, 9);
    assert_int_equal(s.dport, 44000);
    tp_inject(44000, 9, 777, 0, SYN | FIN, 65535, NULL, 0, "12345", 5);
    tp_expect(&s, RST | ACK);
    assert_int_equal(s.ack, 777 + 1 + 5 + 1);
    tp_inject(44000, 9, 777, 31337, ACK, 65535, NULL, 0, "xy", 2);
    tp_expect(&s, RST);
    assert_int_equal(s.seq, 31337);
    tp_inject(44000, 9, 777, 31337, RST | ACK, 65535, NULL, 0, NULL, 0);
    tp_expect_none();
    assert_int_equal(tp_counter("tcp.in_no_pcb"), 4);
    tp_finish();
}

/* RFC 9293 §3.10.7.2: LISTEN ignores a RST, resets an ACK, drops the rest. */
static void test_listen_other_segments(void **state)
{
    struct tp_seg s;
    struct sockaddr_in a;
    socklen_t len = sizeof(a);
    int lsd = tp_listen(PORT, 4, 0);

    (void)state;
    tp_inject(44100, PORT, 1, 0, RST, 65535, NULL, 0, NULL, 0);
    tp_expect_none();
    tp_inject(44100, PORT, 1, 5555, ACK, 65535, NULL, 0, NULL, 0);
    tp_expect(&s, RST);
    assert_int_equal(s.seq, 5555);
    tp_inject(44100, PORT, 1, 0, FIN, 65535, NULL, 0, NULL, 0);
    tp_inject(44100, PORT, 1, 0, 0, 65535, NULL, 0, "data", 4);
    tp_expect_none();
    expect_errno(sock_accept(lsd, TP_SA(a), &len), EAGAIN);
    tp_finish();
}

/* The accept queue holds backlog connections: a SYN beyond that is
 * dropped (the client retries), and taken again once accept made room. */
static void test_listen_backlog(void **state)
{
    int lsd = tp_listen(PORT, 2, 0);
    struct tp_conn c[3];
    struct tp_seg sa;
    struct sockaddr_in a;
    socklen_t len = sizeof(a);
    int sd;

    (void)state;
    for (int i = 0; i < 2; i++) {
        tp_syn_to_listener(&c[i], PORT, (uint16_t)(45000 + i), 100u * (unsigned)i, 1460, &sa);
        tp_send(&c[i], ACK, NULL, 0);
    }
    tp_inject(45002, PORT, 300, 0, SYN, 65535, NULL, 0, NULL, 0);
    tp_expect_none();
    assert_int_equal(tp_counter("tcp.accept_queue_full"), 1);
    sd = sock_accept(lsd, TP_SA(a), &len);
    assert_true(sd >= 0);
    tp_track(sd);
    assert_int_equal(ntohs(a.sin_port), 45000);
    /* the client's SYN again: room now */
    tp_syn_to_listener(&c[2], PORT, 45002, 300, 1460, &sa);
    tp_send(&c[2], ACK, NULL, 0);
    for (int i = 0; i < 2; i++) {
        len = sizeof(a);
        sd = sock_accept(lsd, TP_SA(a), &len);
        assert_true(sd >= 0);
        tp_track(sd);
        assert_int_equal(ntohs(a.sin_port), 45001 + i);
    }
    expect_errno(sock_accept(lsd, TP_SA(a), &len), EAGAIN);
    tp_finish();
}

/* Three handshakes in flight at once on a backlog of 2: all three SYNs
 * are answered (the queue was empty then), but only two completed
 * connections may go into the accept queue; the third ACK must not make
 * a third (Linux drops it and lets the SYN,ACK be resent). */
static void test_listen_backlog_bound_on_ack(void **state)
{
    int lsd = tp_listen(PORT, 2, 0), accepted = 0;
    struct tp_conn c[3];
    struct tp_seg sa;
    struct sockaddr_in a;
    socklen_t len = sizeof(a);

    (void)state;
    for (int i = 0; i < 3; i++)
        tp_syn_to_listener(&c[i], PORT, (uint16_t)(45100 + i), 1000u * (unsigned)i, 1460, &sa);
    for (int i = 0; i < 3; i++)
        tp_send(&c[i], ACK, NULL, 0);
    test_flush();
    for (int i = 0; i < 3; i++) {
        int sd = sock_accept(lsd, TP_SA(a), &len);
        if (sd >= 0) {
            tp_track(sd);
            accepted++;
        }
    }
    print_message("  backlog 2, three handshakes completed: %d accepted\n", accepted);
    assert_int_equal(accepted, 2);
    tp_finish();
}

/* 1,500 SYNs that never complete, from as many ports: the SYN queue keeps
 * tcp_syn_backlog of them, dropping the oldest, and a real client still
 * gets in. */
static void test_syn_flood(void **state)
{
    int lsd = tp_listen(PORT, 16, 0), synacks = 0;
    struct tp_conn c;

    (void)state;
    for (int i = 0; i < 1500; i++) {
        tp_inject((uint16_t)(10000 + i), PORT, 12345u * (unsigned)i, 0, SYN, 65535, NULL, 0, NULL, 0);
        while (tp_take(NULL))
            synacks++;
    }
    print_message("  1500 SYNs: %d SYN,ACKs, %lld evicted, %d pcbs\n", synacks,
                  (long long)tp_counter("tcp.syn_queue_evicted"), tp_pcb_lines());
    assert_int_equal(synacks, 1500);
    assert_int_equal(tp_counter("tcp.syn_queue_evicted"), 1500 - (int)net_config.tcp_syn_backlog);
    assert_true(tp_pcb_lines() <= (int)net_config.tcp_syn_backlog + 1);
    tp_open_passive(&c, lsd, PORT, 60000, 42, 1460);
    tp_send(&c, ACK | PSH, "hi", 2);
    tp_read_exact(c.sd, (const uint8_t *)"hi", 2);
    tp_finish();
}

/* ---- RST and SYN on an established connection (RFC 5961) ------------------------------------------------- */

static void test_rst_out_of_window_ignored(void **state)
{
    int lsd = tp_listen(PORT, 4, 0);
    struct tp_conn c;

    (void)state;
    tp_open_passive(&c, lsd, PORT, 46000, 1000, 1460);
    tp_send_at(&c, c.pseq + 1000000, RST, NULL, 0);
    tp_send_at(&c, c.pseq - 1, RST | ACK, NULL, 0);
    tp_send_at(&c, c.pseq - 70000, RST, NULL, 0);
    tp_expect_none();
    assert_state(&c, "ESTABLISHED");
    tp_send(&c, ACK, "ok", 2);
    tp_read_exact(c.sd, (const uint8_t *)"ok", 2);
    tp_finish();
}

/* RFC 5961 §3.2: "If the RST bit is set and the sequence number is outside
 * the current receive window, silently drop the segment." The window is
 * what we advertised (RCV.WND, at most 65535 without window scaling), not
 * the receive buffer behind it (256 KiB by default): a blind attacker must
 * not get four times the odds. */
static void test_rst_beyond_advertised_window(void **state)
{
    int lsd = tp_listen(PORT, 4, 0);
    struct tp_conn c;
    struct tp_seg s;

    (void)state;
    tp_open_passive(&c, lsd, PORT, 46050, 1000, 1460);
    tp_send(&c, ACK | PSH, "x", 1);
    test_advance(net_config.tcp_delack_ms + 10);
    tp_expect_ack(&c, &s);
    assert_true(s.wnd >= 65534); /* the right edge stays: 65535 minus the byte */
    tp_send_at(&c, c.pseq + 70000, RST, NULL, 0); /* beyond RCV.NXT + RCV.WND */
    tp_expect_none();
    assert_state(&c, "ESTABLISHED");
    tp_finish();
}

static void test_rst_in_window_challenge_ack(void **state)
{
    int lsd = tp_listen(PORT, 4, 0);
    struct tp_conn c;
    struct tp_seg s;

    (void)state;
    tp_open_passive(&c, lsd, PORT, 46100, 1000, 1460);
    tp_send_at(&c, c.pseq + 100, RST, NULL, 0);
    tp_expect(&s, ACK); /* RFC 5961 §3.2: <SEQ=SND.NXT><ACK=RCV.NXT><CTL=ACK> */
    assert_int_equal(s.seq, c.iss + 1);
    assert_int_equal(s.ack, c.pseq);
    tp_expect_none();
    assert_state(&c, "ESTABLISHED");
    assert_int_equal(tp_counter("tcp.challenge_acks"), 1);
    /* the real peer answers with a RST at the exact sequence number */
    tp_send_at(&c, c.pseq, RST, NULL, 0);
    tp_expect_none();
    assert_state(&c, "");
    tp_finish();
}

static void test_rst_exact_resets(void **state)
{
    int lsd = tp_listen(PORT, 4, 0);
    struct tp_conn c;
    char b[8];

    (void)state;
    tp_open_passive(&c, lsd, PORT, 46200, 1000, 1460);
    tp_send_at(&c, c.pseq, RST | ACK, NULL, 0);
    tp_expect_none();
    assert_state(&c, "");
    assert_true(tp_poll(c.sd, POLLIN) & (POLLERR | POLLHUP));
    expect_errno(sock_recv(c.sd, b, sizeof(b), MSG_DONTWAIT), ECONNRESET);
    expect_errno(sock_send(c.sd, "x", 1, 0), EPIPE);
    assert_int_equal(tp_counter("tcp.estab_resets"), 1);
    /* nothing of the connection answers now: the listener resets an ACK */
    tp_send(&c, ACK, "late", 4);
    tp_expect(NULL, RST);
    tp_finish();
}

/* RFC 5961 §4.2: a SYN in a synchronized state gets a challenge ACK and
 * the connection stays. */
static void test_syn_in_established(void **state)
{
    int lsd = tp_listen(PORT, 4, 0);
    struct tp_conn c;
    struct tp_seg s;

    (void)state;
    tp_open_passive(&c, lsd, PORT, 46300, 1000, 1460);
    tp_send_at(&c, c.pseq, SYN, NULL, 0);
    tp_expect(&s, ACK);
    assert_int_equal(s.ack, c.pseq);
    assert_int_equal(s.seq, c.iss + 1);
    tp_expect_none();
    tp_send_at(&c, c.irs, SYN, NULL, 0); /* the old SYN replayed, out of window */
    tp_expect(&s, ACK);
    assert_int_equal(s.ack, c.pseq);
    tp_send_at(&c, c.pseq + 50, SYN | ACK, NULL, 0);
    tp_expect(&s, ACK);
    assert_int_equal(s.ack, c.pseq);
    tp_expect_none();
    assert_state(&c, "ESTABLISHED");
    tp_send(&c, ACK, "still", 5);
    tp_read_exact(c.sd, (const uint8_t *)"still", 5);
    tp_finish();
}

/* RFC 5961 §7: challenge ACKs are rate limited. */
static void test_challenge_ack_rate_limit(void **state)
{
    int lsd = tp_listen(PORT, 4, 0), n = 0;
    struct tp_conn c;

    (void)state;
    net_config.tcp_challenge_ack_per_s = 3;
    /* the limiter's second is global and outlives a stack restart (the
     * virtual clock starts at 1000 ms each test): start a fresh one */
    test_advance(1000);
    tp_open_passive(&c, lsd, PORT, 46400, 1000, 1460);
    for (int i = 0; i < 8; i++) {
        tp_send_at(&c, c.pseq + 10 + (uint32_t)i, RST, NULL, 0);
        while (tp_take(NULL))
            n++;
    }
    assert_int_equal(n, 3);
    assert_int_equal(tp_counter("tcp.challenge_acks"), 3);
    assert_int_equal(tp_counter("tcp.challenge_acks_limited"), 5);
    assert_state(&c, "ESTABLISHED");
    test_advance(1000);
    tp_send_at(&c, c.pseq + 10, RST, NULL, 0);
    tp_expect(NULL, ACK);
    tp_finish();
}

/* RFC 9293 §3.10.7.4, fifth: an ACK of something not yet sent is answered
 * with an ACK and the segment dropped; RFC 5961 §5.2 likewise for an ACK
 * older than SND.UNA - MAX.SND.WND. */
static void test_unacceptable_acks(void **state)
{
    int lsd = tp_listen(PORT, 4, 0);
    struct tp_conn c;
    struct tp_seg s;
    char b[8];

    (void)state;
    tp_open_passive(&c, lsd, PORT, 46500, 1000, 1460);
    tp_inject(c.pport, c.lport, c.pseq, c.iss + 1 + 5000, ACK | PSH, 65535, NULL, 0, "future", 6);
    tp_expect(&s, ACK);
    assert_int_equal(s.ack, c.pseq); /* the data was not taken */
    assert_int_equal(s.seq, c.iss + 1);
    expect_errno(sock_recv(c.sd, b, sizeof(b), MSG_DONTWAIT), EAGAIN);
    assert_int_equal(tp_counter("tcp.in_future_ack"), 1);
    tp_inject(c.pport, c.lport, c.pseq, c.iss - 200000, ACK | PSH, 65535, NULL, 0, "old", 3);
    tp_expect(&s, ACK);
    assert_int_equal(s.ack, c.pseq);
    expect_errno(sock_recv(c.sd, b, sizeof(b), MSG_DONTWAIT), EAGAIN);
    assert_int_equal(tp_counter("tcp.in_old_ack"), 1);
    assert_state(&c, "ESTABLISHED");
    tp_finish();
}

/* A segment without ACK in a synchronized state is dropped (RFC 9293
 * §3.10.7.4, fifth: "if the ACK bit is off, drop the segment"). */
static void test_no_ack_bit_dropped(void **state)
{
    int lsd = tp_listen(PORT, 4, 0);
    struct tp_conn c;
    char b[8];

    (void)state;
    tp_open_passive(&c, lsd, PORT, 46600, 1000, 1460);
    tp_send_at(&c, c.pseq, PSH, "noack", 5);
    test_advance(500);
    tp_expect_none();
    expect_errno(sock_recv(c.sd, b, sizeof(b), MSG_DONTWAIT), EAGAIN);
    tp_finish();
}

/* ---- initial sequence numbers ---------------------------------------------------------------------- */

/* RFC 6528: ISNs are a keyed hash of the 4-tuple plus a clock; two
 * connections made one after the other are not a small step apart. */
static void test_isn_unrelated(void **state)
{
    struct tp_conn a, b, d;
    struct tp_seg syn, sa1, sa2;
    int32_t diff1, diff2, diff3;

    (void)state;
    tp_connect_start(&a, 84, 0, &syn);
    tp_connect_start(&b, 85, 0, &syn);
    tp_connect_start(&d, 84, 0, &syn);
    tp_listen(PORT, 4, 0);
    tp_inject(47000, PORT, 1, 0, SYN, 65535, NULL, 0, NULL, 0);
    tp_expect(&sa1, SYN | ACK);
    tp_inject(47001, PORT, 1, 0, SYN, 65535, NULL, 0, NULL, 0);
    tp_expect(&sa2, SYN | ACK);
    diff1 = (int32_t)(b.iss - a.iss);
    diff2 = (int32_t)(d.iss - a.iss);
    diff3 = (int32_t)(sa2.seq - sa1.seq);
    print_message("  ISNs %08x %08x %08x; passive %08x %08x\n", a.iss, b.iss, d.iss, sa1.seq, sa2.seq);
    assert_true(diff1 > 1 << 20 || diff1 < -(1 << 20));
    assert_true(diff2 > 1 << 20 || diff2 < -(1 << 20));
    assert_true(diff3 > 1 << 20 || diff3 < -(1 << 20));
    tp_finish();
}

/* ---- the SYN,ACK's window ------------------------------------------------------------------------------- */

/* RFC 9293 §3.8.6: the window offered is what the receive buffer can take.
 * With SO_RCVBUF 2048 on the listener the SYN,ACK must offer at most 2048,
 * whatever the peer's ISN. */
static void test_synack_window_fits_rcvbuf(void **state)
{
    static const uint32_t isns[] = { 1000, 0x7fffff00u, 0x80000100u, 0x90000000u, 0xfffff000u, 0xffffff00u };
    struct tp_conn c;
    struct tp_seg sa;

    (void)state;
    tp_listen(PORT, 16, 2048);
    for (size_t i = 0; i < sizeof(isns) / sizeof(isns[0]); i++) {
        tp_syn_to_listener(&c, PORT, (uint16_t)(48000 + i), isns[i], 1460, &sa);
        print_message("  peer ISN %08x: SYN,ACK window %u\n", isns[i], sa.wnd);
        if (sa.wnd > 2048)
            fail_msg("peer ISN %08x: SYN,ACK offers %u bytes, the buffer holds 2048", isns[i], sa.wnd);
    }
    tp_finish();
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_passive_open, tp_setup, tp_teardown),
        cmocka_unit_test_setup_teardown(test_active_open, tp_setup, tp_teardown),
        cmocka_unit_test_setup_teardown(test_connect_refused, tp_setup, tp_teardown),
        cmocka_unit_test_setup_teardown(test_syn_retransmit_backoff, tp_setup, tp_teardown),
        cmocka_unit_test_setup_teardown(test_synack_retransmit, tp_setup, tp_teardown),
        cmocka_unit_test_setup_teardown(test_simultaneous_open, tp_setup, tp_teardown),
        cmocka_unit_test_setup_teardown(test_linux_syn_options, tp_setup, tp_teardown),
        cmocka_unit_test_setup_teardown(test_malformed_options, tp_setup, tp_teardown),
        cmocka_unit_test_setup_teardown(test_bad_data_offset, tp_setup, tp_teardown),
        cmocka_unit_test_setup_teardown(test_bad_checksum_not_acked, tp_setup, tp_teardown),
        cmocka_unit_test_setup_teardown(test_closed_port_resets, tp_setup, tp_teardown),
        cmocka_unit_test_setup_teardown(test_listen_other_segments, tp_setup, tp_teardown),
        cmocka_unit_test_setup_teardown(test_listen_backlog, tp_setup, tp_teardown),
        cmocka_unit_test_setup_teardown(test_listen_backlog_bound_on_ack, tp_setup, tp_teardown),
        cmocka_unit_test_setup_teardown(test_syn_flood, tp_setup, tp_teardown),
        cmocka_unit_test_setup_teardown(test_rst_out_of_window_ignored, tp_setup, tp_teardown),
        cmocka_unit_test_setup_teardown(test_rst_beyond_advertised_window, tp_setup, tp_teardown),
        cmocka_unit_test_setup_teardown(test_rst_in_window_challenge_ack, tp_setup, tp_teardown),
        cmocka_unit_test_setup_teardown(test_rst_exact_resets, tp_setup, tp_teardown),
        cmocka_unit_test_setup_teardown(test_syn_in_established, tp_setup, tp_teardown),
        cmocka_unit_test_setup_teardown(test_challenge_ack_rate_limit, tp_setup, tp_teardown),
        cmocka_unit_test_setup_teardown(test_unacceptable_acks, tp_setup, tp_teardown),
        cmocka_unit_test_setup_teardown(test_no_ack_bit_dropped, tp_setup, tp_teardown),
        cmocka_unit_test_setup_teardown(test_isn_unrelated, tp_setup, tp_teardown),
        cmocka_unit_test_setup_teardown(test_synack_window_fits_rcvbuf, tp_setup, tp_teardown),
    };

    tp.default_config = net_config;
    return cmocka_run_group_tests(tests, NULL, NULL);
}
