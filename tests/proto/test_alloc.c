/*
 * test_alloc.c — every allocation the stack makes may fail, and each
 * failure must end in a counted drop: no crash, no leak, and the stack
 * still working afterwards (the picoTCP/SQLite habit, guide §2).
 *
 * For n = 1, 2, ... a fresh stack is brought up, mem_fail_after(n) makes
 * the n-th allocation from then on fail, and a scenario is run (frames
 * injected, pings sent). Then failures are switched off and:
 *   - time is moved past every timeout (reassembly, ARP retries), so
 *     whatever was held half-done is released;
 *   - pbuf_outstanding() must be back at its value before the scenario;
 *   - an echo request from the peer must still get exactly one reply;
 *   - after teststack_down() nothing at all is outstanding.
 * n goes up to at least 40, and on until a run sees no failure at all, so
 * every allocation point the scenario reaches has been made to fail once.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "net.h"
#include "proto/arp.h"
#include "proto/ether.h"
#include "proto/icmp.h"
#include "proto/ip.h"
#include "testdev.h"
#include "util/byteorder.h"
#include "util/mem.h"
#include "util/pbuf.h"

#define N_MIN 40
#define N_MAX 400
#define BIG 3000

static uint8_t msg[BIG + 8], frame[ETHER_FRAME_SIZE_MAX];
static struct icmp_ping *ping;
static int stack_is_up;

/* ---- helpers -------------------------------------------------------------------- */

/* Inject an echo request from the peer carrying len bytes, as fragments of
 * at most 1480 bytes when it does not fit in one frame. */
static void inject_echo(uint16_t ipid, uint16_t seq, size_t len)
{
    static uint8_t data[BIG];
    size_t mlen;

    memset(data, 0x5a, len);
    mlen = test_icmp_echo(msg, ICMP_TYPE_ECHO, 0x99, seq, data, len);
    for (size_t off = 0; off < mlen; off += 1480) {
        size_t part = mlen - off < 1480 ? mlen - off : 1480;
        uint16_t frag = (uint16_t)((off + part < mlen ? IP_FLAG_MF : 0) | (off / 8));
        size_t n = test_ip_frame(frame, IP_PROTOCOL_ICMP, ts.peer_ip, ts.our_ip, ipid, frag,
                                 msg + off, part);
        test_inject(frame, n);
    }
}

/* The peer answers our ARP request: 192.0.2.1 is at 02:..:01. */
static void inject_arp_reply(void)
{
    uint8_t arp[28];
    size_t n;

    store16(arp, ARP_HRD_ETHER);
    store16(arp + 2, ETHER_TYPE_IP);
    arp[4] = 6;
    arp[5] = 4;
    store16(arp + 6, ARP_OP_REPLY);
    memcpy(arp + 8, TEST_PEER_MAC, 6);
    memcpy(arp + 14, &ts.peer_ip, 4);
    memcpy(arp + 18, TEST_OUR_MAC, 6);
    memcpy(arp + 24, &ts.our_ip, 4);
    n = test_eth_frame(frame, TEST_OUR_MAC, TEST_PEER_MAC, ETHER_TYPE_ARP, arp, sizeof(arp));
    test_inject(frame, n);
}

/* One small echo from the peer gets exactly one echo reply. */
static int stack_answers_echo(void)
{
    struct pbuf *pb;
    int ok;

    test_flush();
    inject_echo(0x7777, 99, 16);
    pb = test_take();
    ok = pb && pb->len >= ETHER_HDR_SIZE + IP_HDR_SIZE_MIN + 8 &&
         pb->data[ETHER_HDR_SIZE + IP_HDR_SIZE_MIN] == ICMP_TYPE_ECHOREPLY;
    pbuf_free(pb);
    return ok && test_sent_count() == 0;
}

/* ---- scenarios (run with failures armed) ---------------------------------------- */

/* An echo request, then a 3000-byte echo in three fragments. */
static void scenario_echo(void)
{
    inject_echo(1, 1, 56);
    inject_echo(2, 2, BIG);
}

/* Ping the unresolved peer twice (small and fragmented), then its ARP reply
 * arrives and the held datagrams leave. */
static void scenario_arp(void)
{
    icmp_ping_send(ping, ts.peer_ip, 1, msg, 56);
    icmp_ping_send(ping, ts.peer_ip, 2, msg, BIG);
    inject_arp_reply();
}

/* ---- the driver ------------------------------------------------------------------ */

/* Run scenario with the n-th allocation failing; returns 1 if a failure
 * actually happened. resolved: start with the peer in the ARP cache. */
static int run_once(long n, void (*scenario)(void), int resolved)
{
    long before_up = pbuf_outstanding(), baseline, failures;

    assert_int_equal(resolved ? teststack_up_resolved() : teststack_up(), 0);
    stack_is_up = 1;
    assert_int_equal(icmp_ping_open(&ping), 0);
    baseline = pbuf_outstanding();
    failures = mem_failures();

    mem_fail_after(n);
    scenario();
    mem_fail_after(0);
    failures = mem_failures() - failures;

    /* let every timer run out: reassembly, ARP retries, ... */
    test_flush();
    test_advance(net_config.ip_reass_timeout_ms + net_config.arp_retries * net_config.arp_retry_ms + 1000);
    test_flush();
    if (pbuf_outstanding() != baseline)
        fail_msg("n=%ld: %ld pbufs leaked", n, pbuf_outstanding() - baseline);
    /* the stack still works (the peer may have been left unresolved) */
    arp_cache_add_static(ts.iface, ts.peer_ip, TEST_PEER_MAC);
    if (!stack_answers_echo())
        fail_msg("n=%ld: no echo reply after the failure", n);

    icmp_ping_close(ping);
    ping = NULL;
    teststack_down();
    stack_is_up = 0;
    if (pbuf_outstanding() != before_up)
        fail_msg("n=%ld: %ld pbufs outstanding after shutdown", n, pbuf_outstanding() - before_up);
    return failures > 0;
}

static void run_all(void (*scenario)(void), int resolved)
{
    long n, hit = 0;

    for (n = 1; n <= N_MAX; n++) {
        int failed = run_once(n, scenario, resolved);
        hit += failed;
        if (!failed && n >= N_MIN)
            break; /* n is past the scenario's last allocation */
    }
    assert_true(n <= N_MAX);
    assert_true(hit > 0);
    print_message("  %ld allocation points failed in turn\n", hit);
}

static int teardown(void **state)
{
    (void)state;
    mem_fail_after(0);
    if (ping)
        icmp_ping_close(ping);
    ping = NULL;
    if (stack_is_up)
        teststack_down();
    stack_is_up = 0;
    return 0;
}

static void test_alloc_failures_echo(void **state)
{
    (void)state;
    run_all(scenario_echo, 1);
}

static void test_alloc_failures_arp(void **state)
{
    (void)state;
    run_all(scenario_arp, 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(test_alloc_failures_echo, teardown),
        cmocka_unit_test_teardown(test_alloc_failures_arp, teardown),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
