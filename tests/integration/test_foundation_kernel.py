"""Topology (a): the Linux kernel is netstep's peer.

tap0 in a fresh namespace has 192.0.2.1/24; netstep is 192.0.2.2 with MAC
02:00:00:00:00:02.  Real programs (iputils ping/arping, ip neigh) talk to it.
"""

import re
import time

import pytest

import netstep
from netstep import NETSTEP_IP, NETSTEP_MAC, PEER_IP, counter, delta

PING = "/usr/bin/ping"
ARPING = "/usr/bin/arping"

REPLY_RE = re.compile(r"^(\d+) bytes from (\S+): icmp_seq=(\d+) ttl=(\d+) time=([\d.]+) ms$")
SUMMARY_RE = re.compile(r"^(\d+) packets transmitted, (\d+) received,.* ([\d.]+)% packet loss"
                        r"(, time \d+ms)?$")
RTT_RE = re.compile(r"^rtt min/avg/max/mdev = [\d.]+/[\d.]+/[\d.]+/[\d.]+ ms$")


def _summary(out):
    for line in out.splitlines():
        m = SUMMARY_RE.match(line.strip())
        if m:
            return int(m.group(1)), int(m.group(2)), m.group(3)
    raise AssertionError("no ping summary line in output:\n" + out)


def _kernel_ping(topo, *args, timeout=30):
    r = topo.ns.run([PING, "-n", *args, NETSTEP_IP], timeout=timeout)
    return r


def test_kernel_ping_20_no_loss(kernel_peer):
    before = kernel_peer.netstepd.stats()
    r = _kernel_ping(kernel_peer, "-c", "20", "-i", "0.05", "-W", "2")
    after = kernel_peer.netstepd.stats()
    assert r.returncode == 0, r.stdout + r.stderr
    tx, rx, loss = _summary(r.stdout)
    assert (tx, rx) == (20, 20) and float(loss) == 0, r.stdout
    assert "DUP!" not in r.stdout and "wrong data" not in r.stdout, r.stdout
    assert delta(before, after, "icmp.in_echos") >= 20
    assert delta(before, after, "icmp.out_echo_replies") >= 20


def test_kernel_ping_full_mtu_unfragmented(kernel_peer):
    before = kernel_peer.netstepd.stats()
    # 1472 + 8 + 20 = 1500: exactly the MTU; -M do forbids fragmentation.
    r = _kernel_ping(kernel_peer, "-c", "3", "-i", "0.2", "-W", "2", "-s", "1472", "-M", "do")
    after = kernel_peer.netstepd.stats()
    assert r.returncode == 0, r.stdout + r.stderr
    tx, rx, _ = _summary(r.stdout)
    assert (tx, rx) == (3, 3), r.stdout
    assert "wrong data" not in r.stdout, r.stdout
    assert len([l for l in r.stdout.splitlines() if l.startswith("1480 bytes from")]) == 3, r.stdout
    assert delta(before, after, "ip.reass_fragments") == 0
    assert delta(before, after, "ip.out_fragmented") == 0


def test_kernel_ping_fragmented_both_ways(kernel_peer):
    before = kernel_peer.netstepd.stats()
    r = _kernel_ping(kernel_peer, "-c", "3", "-i", "0.2", "-W", "3", "-s", "4000")
    after = kernel_peer.netstepd.stats()
    assert r.returncode == 0, r.stdout + r.stderr
    tx, rx, _ = _summary(r.stdout)
    assert (tx, rx) == (3, 3), r.stdout
    # iputils checks the echoed pattern and prints "wrong data byte" otherwise
    assert "wrong data" not in r.stdout, r.stdout
    assert len([l for l in r.stdout.splitlines() if l.startswith("4008 bytes from")]) == 3, r.stdout
    assert delta(before, after, "ip.reass_fragments") >= 9     # 3 x 3 fragments
    assert delta(before, after, "ip.reass_ok") >= 3
    assert delta(before, after, "ip.out_fragmented") >= 3


def test_arping_gets_three_replies(kernel_peer):
    before = kernel_peer.netstepd.stats()
    r = kernel_peer.ns.run([ARPING, "-c", "3", "-w", "6", "-I", "tap0", NETSTEP_IP], timeout=20)
    after = kernel_peer.netstepd.stats()
    out = r.stdout
    assert r.returncode == 0, out + r.stderr
    assert re.search(r"Received 3 response\(s\)", out), out
    replies = [l for l in out.splitlines() if "reply from %s" % NETSTEP_IP in l]
    assert len(replies) == 3, out
    for l in replies:
        assert "[%s]" % NETSTEP_MAC.lower() in l.lower(), l
    assert delta(before, after, "arp.rx_requests") >= 3
    assert delta(before, after, "arp.tx_replies") >= 3


def test_kernel_neighbour_table_has_netstep_mac(kernel_peer):
    r = _kernel_ping(kernel_peer, "-c", "1", "-W", "2")
    assert r.returncode == 0, r.stdout + r.stderr
    n = kernel_peer.ns.run(["ip", "neigh", "show", "dev", "tap0"], timeout=5, check=True)
    line = [l for l in n.stdout.splitlines() if l.split()[:1] == [NETSTEP_IP]]
    assert line, n.stdout
    assert "lladdr %s" % NETSTEP_MAC in line[0].lower(), line[0]
    assert not re.search(r"FAILED|INCOMPLETE", line[0]), line[0]


def _netstep_ping(ns, *args, timeout=30):
    argv = [netstep.bin_path("ping"), "--tap", "tap0", "--addr", "%s/24" % NETSTEP_IP,
            "--gw", PEER_IP, "--mac", NETSTEP_MAC, *args]
    t0 = time.monotonic()
    r = ns.run(argv, timeout=timeout)
    return r, time.monotonic() - t0


@pytest.mark.needs_bin("ping")
def test_netstep_ping_app_to_kernel(kernel_ns):
    """The netstep ping app (its own stack on tap0) pings the kernel."""
    r, elapsed = _netstep_ping(kernel_ns, "-c", "3", "-i", "0.2", "-W", "4", PEER_IP)
    assert r.returncode == 0, r.stdout + r.stderr
    lines = [l.strip() for l in r.stdout.splitlines()]
    replies = [REPLY_RE.match(l) for l in lines if REPLY_RE.match(l)]
    assert len(replies) == 3, r.stdout
    assert [int(m.group(3)) for m in replies] == [1, 2, 3], r.stdout
    for m in replies:
        assert m.group(1) == "64" and m.group(2) == PEER_IP and m.group(4) == "64", m.group(0)
    tx, rx, loss = _summary(r.stdout)
    assert (tx, rx) == (3, 3) and float(loss) == 0, r.stdout
    assert [l for l in lines if SUMMARY_RE.match(l) and ", time " in l], \
        "summary lacks ', time Nms': " + r.stdout
    assert any(RTT_RE.match(l) for l in lines), r.stdout
    # Like iputils: -W only matters while replies are missing; with every
    # reply in, ping ends right after the last one (~0.4s of sending here),
    # not after waiting out the 4s timeout.
    assert elapsed < 3.0, "ping with all replies received took %.1fs (-W 4)" % elapsed


@pytest.mark.needs_bin("ping")
def test_netstep_ping_app_unreachable_host(kernel_ns):
    """No host at 192.0.2.77: ARP never resolves; ping must give up within
    its timeout and exit 1."""
    r, elapsed = _netstep_ping(kernel_ns, "-c", "2", "-i", "0.2", "-W", "2", "192.0.2.77")
    out = r.stdout + r.stderr
    assert r.returncode == 1, out
    assert elapsed < 15, "took %.1fs" % elapsed
    assert re.search(r"100% packet loss|[Uu]nreachable", out), out
    assert not REPLY_RE.search(r.stdout), out


def test_gratuitous_arp_at_startup(kernel_ns):
    """netstepd announces itself once up: ARP with sender = target = 192.0.2.2."""
    from scapy.layers.l2 import ARP
    with netstep.RawPeer(kernel_ns, answer_arp=False) as cap:
        d = netstep.Netstepd(kernel_ns)
        try:
            garp = cap.wait_for(lambda p: ARP in p and p[ARP].psrc == NETSTEP_IP
                                and p[ARP].pdst == NETSTEP_IP, timeout=3)
            s = d.stats()
        finally:
            d.stop()
    assert garp is not None, "no gratuitous ARP seen within 3s of startup"
    assert garp[ARP].hwsrc == NETSTEP_MAC and garp.src == NETSTEP_MAC, garp.summary()
    assert garp.dst == "ff:ff:ff:ff:ff:ff", garp.summary()
    assert counter(s, "arp.tx_gratuitous") >= 1
