/* fuzz_tcp_estab.c — TCP segments against an established connection (peer
 * 192.0.2.1:40000 <-> 192.0.2.2:7), re-made whenever the fuzz input
 * closed or reset it; the application side keeps reading and echoing, so
 * data, windows, retransmissions and closing states are all reached. */
#include "fuzz_tcp.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int lsd = -1, csd = -1;
static uint32_t peer_seq = 1000;

static void handshake(void)
{
    uint8_t seg[20] = { 0 };
    struct tcp_pcb *pcb;
    uint32_t our_iss = 0;

    peer_seq += 100000;
    store16(seg, FUZZ_PEER_PORT);
    store16(seg + 2, FUZZ_PORT);
    store32(seg + 4, peer_seq);
    seg[12] = 5 << 4;
    seg[13] = TCP_FLG_SYN;
    store16(seg + 14, 65535);
    fuzz_tcp_segment(1, seg, sizeof(seg));
    mutex_lock(&tcp_lock);
    pcb = tcp_lookup_locked(ts.our_ip, FUZZ_PORT, ts.peer_ip, FUZZ_PEER_PORT);
    if (pcb && pcb->state == TCPS_SYN_RECEIVED)
        our_iss = pcb->iss;
    mutex_unlock(&tcp_lock);
    store32(seg + 4, peer_seq + 1);
    store32(seg + 8, our_iss + 1);
    seg[13] = TCP_FLG_ACK;
    fuzz_tcp_segment(1, seg, sizeof(seg));
    csd = sock_accept(lsd, NULL, NULL);
    test_flush();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    uint8_t buf[4096];
    ssize_t n;

    fuzz_setup();
    if (lsd < 0) {
        struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons(FUZZ_PORT) };
        lsd = sock_open(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
        if (lsd < 0 || sock_bind(lsd, (struct sockaddr *)&a, sizeof(a)) < 0 || sock_listen(lsd, 8) < 0)
            abort();
    }
    if (csd < 0)
        handshake();
    fuzz_tcp_records(data, size);
    /* the app: echo what arrived; a dead connection is closed and re-made */
    if (csd >= 0) {
        while ((n = sock_recv(csd, buf, sizeof(buf), MSG_DONTWAIT)) > 0)
            sock_send(csd, buf, (size_t)n, MSG_DONTWAIT);
        if (n == 0 || (n < 0 && errno != EAGAIN)) {
            sock_close(csd);
            csd = -1;
            net_clock_advance(200000); /* past TIME-WAIT and every retry */
            net_poll();
        }
    }
    fuzz_tcp_drain(lsd);
    return 0;
}
