/*
 * test_timer.c — tests of the stack's timer heap (net.c: net_timer_*) on
 * the virtual clock.
 *
 * Timers are run the way the stack thread runs them: move the clock
 * (net_clock_advance, or test_advance in 10 ms steps) and call
 * net_timer_run_due(). A clean core comes from teststack_up(); its own
 * timers (ARP, reassembly) share the heap, which is what the stack does
 * too, and the tests only look at the timers they armed.
 *
 * Timers here are static and destroyed before teststack_down(): net_shutdown
 * frees the heap, and a timer must not outlive its slot.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "net.h"
#include "testdev.h"
#include "util/pbuf.h"

#define MANY 1000

/* What fired, in order. */
struct firing {
    int who;            /* index of the timer */
    uint64_t at;        /* clock when it ran */
    uint64_t deadline;  /* the deadline it had */
};

static struct net_timer timers[MANY];
static int ninit;                 /* timers[0..ninit) are initialised */
static struct firing log_[MANY * 2];
static int nfired;
static int fired_count[MANY];
static long pbufs_before_up;

/* ---- helpers ------------------------------------------------------------- */

static void on_fire(void *arg)
{
    int who = (int)(intptr_t)arg;

    assert_true(nfired < (int)(sizeof(log_) / sizeof(log_[0])));
    log_[nfired].who = who;
    log_[nfired].at = net_now_ms();
    log_[nfired].deadline = timers[who].deadline;
    nfired++;
    fired_count[who]++;
}

/* Initialise timers[0..n) with on_fire (or fn when given). */
static void init_timers(int n, void (*fn)(void *))
{
    for (int i = 0; i < n; i++)
        assert_int_equal(net_timer_init(&timers[i], "test", fn ? fn : on_fire, (void *)(intptr_t)i), 0);
    ninit = n;
}

/* Move the virtual clock by ms and run whatever is due, in one pass. */
static int advance_and_run(uint64_t ms)
{
    net_clock_advance(ms);
    return net_timer_run_due();
}

/* A small deterministic generator (xorshift32): the same "random" delays
 * on every run, so a failure can be replayed. */
static uint32_t rng = 2463534242u;

static uint32_t rand32(void)
{
    rng ^= rng << 13;
    rng ^= rng >> 17;
    rng ^= rng << 5;
    return rng;
}

/* ---- fixtures ------------------------------------------------------------- */

static int setup(void **state)
{
    (void)state;
    pbufs_before_up = pbuf_outstanding();
    nfired = 0;
    ninit = 0;
    memset(fired_count, 0, sizeof(fired_count));
    return teststack_up();
}

static int teardown(void **state)
{
    (void)state;
    for (int i = 0; i < ninit; i++)
        net_timer_destroy(&timers[i]);
    ninit = 0;
    teststack_down();
    return pbuf_outstanding() == pbufs_before_up ? 0 : -1;
}

/* ---- tests ------------------------------------------------------------------ */

static void test_deadline_order(void **state)
{
    static const uint64_t delay[5] = { 50, 10, 40, 20, 30 };
    static const int expect[5] = { 1, 3, 4, 2, 0 };

    (void)state;
    init_timers(5, NULL);
    for (int i = 0; i < 5; i++)
        net_timer_arm(&timers[i], delay[i]);
    /* nothing is due yet */
    assert_int_equal(advance_and_run(9), 0);
    assert_int_equal(nfired, 0);
    /* all five are due at once: they run earliest deadline first */
    advance_and_run(100);
    assert_int_equal(nfired, 5);
    for (int i = 0; i < 5; i++) {
        assert_int_equal(log_[i].who, expect[i]);
        assert_int_equal(log_[i].deadline, 1000 + delay[expect[i]]);
    }
    for (int i = 0; i < 5; i++)
        assert_false(net_timer_armed(&timers[i]));
}

static void test_rearm_moves(void **state)
{
    (void)state;
    init_timers(2, NULL);
    /* timer 0: armed for 100 ms, then moved earlier, to 20 ms */
    net_timer_arm(&timers[0], 100);
    net_timer_arm(&timers[0], 20);
    /* timer 1: armed for 10 ms, then moved later, to 100 ms */
    net_timer_arm(&timers[1], 10);
    net_timer_arm(&timers[1], 100);
    advance_and_run(20);
    assert_int_equal(nfired, 1);
    assert_int_equal(log_[0].who, 0);
    assert_int_equal(log_[0].at, 1020);
    advance_and_run(79); /* 1099: timer 1 not yet */
    assert_int_equal(nfired, 1);
    advance_and_run(1);
    assert_int_equal(nfired, 2);
    assert_int_equal(log_[1].who, 1);
    /* each fired once: moving a timer does not leave a copy behind */
    advance_and_run(1000);
    assert_int_equal(fired_count[0], 1);
    assert_int_equal(fired_count[1], 1);
}

static void test_cancel(void **state)
{
    (void)state;
    init_timers(3, NULL);
    net_timer_arm(&timers[0], 10);
    net_timer_arm(&timers[1], 20);
    net_timer_arm(&timers[2], 30);
    net_timer_cancel(&timers[1]);      /* from the middle of the heap */
    net_timer_cancel(&timers[1]);      /* twice is harmless */
    assert_false(net_timer_armed(&timers[1]));
    advance_and_run(100);
    assert_int_equal(nfired, 2);
    assert_int_equal(log_[0].who, 0);
    assert_int_equal(log_[1].who, 2);
    assert_int_equal(fired_count[1], 0);
    /* a cancelled timer can be armed again */
    net_timer_arm(&timers[1], 5);
    advance_and_run(5);
    assert_int_equal(fired_count[1], 1);
}

/* A callback that re-arms its own timer every 100 ms. */
static void periodic(void *arg)
{
    on_fire(arg);
    net_timer_arm(&timers[(intptr_t)arg], 100);
}

static void test_periodic(void **state)
{
    (void)state;
    init_timers(1, periodic);
    net_timer_arm(&timers[0], 100);
    test_advance(1000); /* 10 ms steps, as the stack thread would see time */
    assert_int_equal(fired_count[0], 10);
    for (int i = 0; i < nfired; i++)
        assert_int_equal(log_[i].at, 1000 + 100 * (uint64_t)(i + 1));
    /* a re-arm from inside its own callback is not run again in the same
     * pass, even when the clock jumps far ahead */
    advance_and_run(10000);
    assert_int_equal(fired_count[0], 11);
    assert_true(net_timer_armed(&timers[0]));
}

static void test_remaining(void **state)
{
    (void)state;
    init_timers(1, NULL);
    assert_int_equal(net_timer_remaining(&timers[0]), -1); /* not armed */
    net_timer_arm(&timers[0], 250);
    assert_int_equal(net_timer_remaining(&timers[0]), 250);
    net_clock_advance(100);
    assert_int_equal(net_timer_remaining(&timers[0]), 150);
    net_clock_advance(200); /* overdue but not yet run: 0, never negative */
    assert_int_equal(net_timer_remaining(&timers[0]), 0);
    net_timer_cancel(&timers[0]);
    assert_int_equal(net_timer_remaining(&timers[0]), -1);
}

/* 1000 timers with random delays; some cancelled, some moved: every live
 * one fires exactly once, never early, and in nondecreasing deadline order. */
static void test_many_random(void **state)
{
    static uint64_t deadline[MANY];
    static int cancelled[MANY];
    uint64_t start = net_now_ms();

    (void)state;
    memset(cancelled, 0, sizeof(cancelled));
    init_timers(MANY, NULL);
    for (int i = 0; i < MANY; i++) {
        uint64_t d = rand32() % 10000;
        net_timer_arm(&timers[i], d);
        deadline[i] = start + d;
    }
    /* shake the heap: cancel every 7th, move every 5th */
    for (int i = 0; i < MANY; i++) {
        if (i % 7 == 0) {
            net_timer_cancel(&timers[i]);
            cancelled[i] = 1;
        } else if (i % 5 == 0) {
            uint64_t d = rand32() % 10000;
            net_timer_arm(&timers[i], d);
            deadline[i] = start + d;
        }
    }
    /* run in uneven 7 ms steps: each fires in the step that reaches it */
    net_timer_run_due(); /* the ones with delay 0 */
    while (net_now_ms() < start + 10000 + 7)
        advance_and_run(7);
    for (int i = 0; i < MANY; i++)
        assert_int_equal(fired_count[i], cancelled[i] ? 0 : 1);
    for (int k = 0; k < nfired; k++) {
        int who = log_[k].who;
        assert_int_equal(log_[k].deadline, deadline[who]);
        assert_true(log_[k].at >= deadline[who]);    /* never early */
        assert_true(log_[k].at < deadline[who] + 7); /* nor a step late */
        if (k > 0)
            assert_true(log_[k - 1].deadline <= log_[k].deadline);
    }
    /* and once more, all due in a single pass: the heap pops them sorted */
    nfired = 0;
    memset(fired_count, 0, sizeof(fired_count));
    start = net_now_ms();
    for (int i = 0; i < MANY; i++)
        net_timer_arm(&timers[i], rand32() % 10000);
    assert_true(advance_and_run(10000) >= MANY);
    assert_int_equal(nfired, MANY);
    for (int k = 1; k < nfired; k++)
        assert_true(log_[k - 1].deadline <= log_[k].deadline);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_deadline_order, setup, teardown),
        cmocka_unit_test_setup_teardown(test_rearm_moves, setup, teardown),
        cmocka_unit_test_setup_teardown(test_cancel, setup, teardown),
        cmocka_unit_test_setup_teardown(test_periodic, setup, teardown),
        cmocka_unit_test_setup_teardown(test_remaining, setup, teardown),
        cmocka_unit_test_setup_teardown(test_many_random, setup, teardown),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
