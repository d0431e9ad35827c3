"""Busy polling (--set busy_poll_us=N, net.c stack_thread_main): for N
microseconds after a frame the stack thread looks at the tap again at once
instead of sleeping in poll(), so a ping arriving within that time finds
it awake.

The check is what the thread does, not how fast: during a train of pings
10 ms apart, a sleeping stack thread goes to sleep (a voluntary context
switch) after nearly every one; a busy-polling one hardly ever does, and
net.busy_polls counts its looks. make bench measures the RTT.
"""

import pytest

from netstep import NETSTEP_IP
from test_docs import CHAPTERS, doc_shows, tasks, voluntary
from test_tcp_kernel import running

pytestmark = pytest.mark.needs_bin("echo-server")

PINGS = 30


def ping_train(ns, app):
    """(stack thread's voluntary switches, net.busy_polls) over a train of
    PINGS pings 10 ms apart; the first ping (outside the count) wakes it."""
    tid = tasks(app.pid)["stack"]
    ns.run(["ping", "-c", "1", "-W", "2", NETSTEP_IP], timeout=10)
    st0 = app.stats()
    v0 = voluntary(app.pid, tid)
    r = ns.run(["ping", "-q", "-c", str(PINGS), "-i", "0.01", "-W", "2", NETSTEP_IP], timeout=30)
    v1 = voluntary(app.pid, tid)
    st1 = app.stats()
    assert " %d received" % PINGS in r.stdout, r.stdout
    return v1 - v0, st1.get("net.busy_polls", 0) - st0.get("net.busy_polls", 0)


def test_busy_poll_keeps_the_stack_thread_awake(kernel_ns):
    # reading the stats (SIGUSR1) happens outside the measured window, but
    # the 1 s window must cover the ping train and its start-up
    with running(kernel_ns, "echo-server", extra=["--set", "busy_poll_us=1000000"]) as app:
        sleeps, polls = ping_train(kernel_ns, app)
    print("busy: sleeps", sleeps, "polls", polls)
    assert sleeps <= 5, "busy-polling stack thread slept %d times during %d pings" % (sleeps, PINGS)
    assert polls > 10 * PINGS, polls


def test_chapter_1_shows_the_experiment():
    """docs/01's busy-polling experiment: the commands this file runs and the
    shape of what they print."""
    ch = CHAPTERS[0]
    doc_shows(ch, r"^ip netns exec lab build/bin/netstepd --set busy_poll_us=1000000 ")
    doc_shows(ch, r"^ip netns exec lab ping -c 30 -i 0\.01 -q 192\.0\.2\.2$")
    doc_shows(ch, r"^30 packets transmitted, 30 received, 0% packet loss")
    doc_shows(ch, r"^net\.busy_polls \d{4,}$")
    doc_shows(ch, r"^voluntary_ctxt_switches:\t3$")


def test_without_busy_poll_the_stack_thread_sleeps(kernel_ns):
    with running(kernel_ns, "echo-server") as app:
        sleeps, polls = ping_train(kernel_ns, app)
    print("plain: sleeps", sleeps)
    assert sleeps >= PINGS - 5, "stack thread slept only %d times during %d pings" % (sleeps, PINGS)
    assert polls == 0, polls
