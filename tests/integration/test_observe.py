"""Seeing inside the stack from outside: --pcap read back by tshark, the
fault injector's counters against what the kernel saw, and the experiment
of docs/08-debugging-a-network-stack.md.

Topology (a) of docs/testing: the kernel is 192.0.2.1 on tap0 of a fresh
namespace, netstep is 192.0.2.2.  Every process is started through the
namespace (killed by PID at the end) and every wait is bounded.
"""

import os
import re
import shutil
import signal
import struct
import subprocess
import time
from pathlib import Path

import pytest

import netstep
from netstep import NETSTEP_IP, NETSTEP_MAC, PEER_IP, PREFIX, counter

TSHARK = shutil.which("tshark")
DOC = netstep.REPO_ROOT / "docs" / "08-debugging-a-network-stack.md"

needs_tshark = pytest.mark.skipif(TSHARK is None, reason="tshark not installed (apt install tshark)")


# --------------------------------------------------------------------------
# helpers

class App:
    """Any netstep app in the namespace, with the common flags; waits for
    its ready line and parses the '--- stats ---' block it prints at exit."""

    def __init__(self, ns, name, ready, extra=()):
        argv = [netstep.bin_path(name), "--tap", ns.tap, "--addr", "%s/%d" % (NETSTEP_IP, PREFIX),
                "--gw", PEER_IP, "--mac", NETSTEP_MAC, "--stats"] + list(extra)
        self.proc = ns.popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                             bufsize=1)
        self.out = netstep._LineReader(self.proc.stdout)
        self.err = netstep._LineReader(self.proc.stderr)
        self.out.start()
        self.err.start()
        deadline = time.monotonic() + netstep.READY_TIMEOUT
        while True:
            line = self.out.get(deadline)  # raises queue.Empty on timeout
            if line is None:
                raise AssertionError("%s exited before ready:\n%s" % (name, self.err.text()))
            if ready in line:
                return

    def stop(self):
        """SIGINT; returns (rc, stdout, stderr, final stats)."""
        os.kill(self.proc.pid, signal.SIGINT)
        try:
            self.proc.wait(timeout=netstep.STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            netstep.kill_pid(self.proc)
        self.out.join(5)
        self.err.join(5)
        lines = self.out.text().splitlines()
        idx = [i for i, l in enumerate(lines) if l.strip() == "--- stats ---"]
        stats = netstep.parse_stats(lines[idx[-1] + 1:]) if idx else {}
        return self.proc.returncode, self.out.text(), self.err.text(), stats


def tshark(*args, timeout=60):
    r = subprocess.run([TSHARK] + list(args), capture_output=True, text=True, timeout=timeout)
    assert r.returncode == 0, "tshark %s failed: %s" % (" ".join(args), r.stderr)
    return r.stdout


def tshark_count(path, display_filter):
    out = tshark("-r", str(path), "-Y", display_filter, "-T", "fields", "-e", "frame.number")
    return len(out.split())


def pcap_records(path):
    """(linktype, number of records) of a classic pcap file, checked by hand."""
    data = Path(path).read_bytes()
    assert len(data) >= 24, "no pcap file header"
    magic, vmaj, vmin, _zone, _sigfigs, snaplen, linktype = struct.unpack("=IHHiIII", data[:24])
    assert (magic, vmaj, vmin, snaplen) == (0xa1b2c3d4, 2, 4, 65535)
    off, n = 24, 0
    while off < len(data):
        _s, usec, incl, orig = struct.unpack("=IIII", data[off:off + 16])
        assert usec < 1000000 and incl == orig and off + 16 + incl <= len(data)
        off += 16 + incl
        n += 1
    return linktype, n


def ping(ns, count, size=56, interval=0.2, wait=2):
    """Kernel pings netstep; returns (transmitted, received, output).
    wait=None: ping's own default (as a reader would type it)."""
    argv = ["ping", "-n", "-c", count, "-s", size, "-i", interval] + (["-W", wait] if wait else [])
    r = ns.run(argv + [NETSTEP_IP], timeout=count * interval + (wait or 10) + 15)
    m = re.search(r"(\d+) packets transmitted, (\d+) received", r.stdout)
    assert m, "no ping summary:\n%s%s" % (r.stdout, r.stderr)
    return int(m.group(1)), int(m.group(2)), r.stdout


UDP_CLIENT = r"""
import socket, sys, time
n = int(sys.argv[1])
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.connect(("%s", 7))
s.setblocking(False)
got = set()
def drain():
    while True:
        try:
            got.add(s.recv(2048))
        except BlockingIOError:
            return
for i in range(n):
    s.send(b"netstep-observe-%%d" %% i)
    time.sleep(0.003)
    drain()
end = time.monotonic() + 2.0
while time.monotonic() < end:
    time.sleep(0.05)
    drain()
print(len(got))
""" % NETSTEP_IP


def udp_echo_run(ns, n, seed):
    """echo-server with 20% rx loss; the kernel sends n datagrams.
    Returns (replies the kernel got, echo-server's final stats).

    The kernel knows netstep's MAC beforehand (a permanent neighbour), so it
    puts every datagram on the wire at once and sends nothing but them and
    its answers to netstep's ARP requests."""
    ns.run(["ip", "neigh", "replace", NETSTEP_IP, "lladdr", NETSTEP_MAC, "dev", ns.tap,
            "nud", "permanent"], check=True)
    app = App(ns, "echo-server", "listening on", ["--drop", "rx:0.2", "--seed", seed])
    try:
        r = ns.run(["/usr/bin/python3", "-c", UDP_CLIENT, n], timeout=60)
        assert r.returncode == 0, r.stderr
        replies = int(r.stdout.strip())
    finally:
        rc, out, err, stats = app.stop()
    assert rc == 0, "echo-server exit %s\n%s" % (rc, err[-3000:])
    return replies, stats


# --------------------------------------------------------------------------
# capture

@needs_tshark
@pytest.mark.needs_bin("netstepd")
def test_pcap_of_ping_and_arp_reads_clean_in_tshark(kernel_ns, tmp_path):
    cap = tmp_path / "netstepd.pcap"
    d = netstep.Netstepd(kernel_ns, extra=["--pcap", str(cap)])
    try:
        assert ping(kernel_ns, 3)[:2] == (3, 3)
        assert ping(kernel_ns, 2, size=4000)[:2] == (2, 2)  # fragments both ways
        r = kernel_ns.run(["arping", "-c", "2", "-w", "5", "-I", kernel_ns.tap, NETSTEP_IP],
                          timeout=15)
        assert "Received 2 response" in r.stdout, r.stdout + r.stderr
        live = d.stats()  # SIGUSR1 while running: the dump parses
        assert counter(live, "pcap.frames") > 0
    finally:
        rc, _, err = d.stop()
    assert rc == 0, err[-3000:]

    linktype, records = pcap_records(cap)
    assert linktype == 1
    # the capture holds exactly what crossed the device
    st = d.final_stats
    assert records == counter(st, "pcap.frames")
    assert records == counter(st, "dev.tap0.rx_frames") + counter(st, "dev.tap0.tx_frames")
    assert counter(st, "pcap.write_errors") == 0

    expert = tshark("-r", str(cap), "-o", "ip.check_checksum:TRUE", "-o", "udp.check_checksum:TRUE",
                    "-o", "tcp.check_checksum:TRUE", "-q", "-z", "expert")
    for bad in ("Errors", "Malformed", "Bad checksum", "checksum"):
        assert bad not in expert, "tshark expert info:\n" + expert
    # tshark reassembles the 4000-byte pings: 5 requests, 5 replies
    assert tshark_count(cap, "icmp.type == 8 && ip.src == %s" % PEER_IP) == 5
    assert tshark_count(cap, "icmp.type == 0 && ip.src == %s" % NETSTEP_IP) == 5
    assert tshark_count(cap, "arp.opcode == 1 && arp.dst.proto_ipv4 == %s" % NETSTEP_IP) >= 2
    assert tshark_count(cap, "arp.opcode == 2 && arp.src.proto_ipv4 == %s" % NETSTEP_IP) >= 2
    assert tshark_count(cap, "_ws.malformed") == 0


@needs_tshark
@pytest.mark.needs_bin("echo-server")
def test_pcap_of_udp_echo_reads_clean_in_tshark(kernel_ns, tmp_path):
    cap = tmp_path / "echo.pcap"
    app = App(kernel_ns, "echo-server", "listening on", ["--pcap", str(cap)])
    try:
        r = kernel_ns.run(["/usr/bin/python3", "-c", UDP_CLIENT, 20], timeout=30)
        assert r.returncode == 0 and int(r.stdout) == 20, r.stdout + r.stderr
    finally:
        rc, _, err, st = app.stop()
    assert rc == 0, err[-3000:]
    assert pcap_records(cap)[1] == counter(st, "pcap.frames")
    expert = tshark("-r", str(cap), "-o", "ip.check_checksum:TRUE", "-o", "udp.check_checksum:TRUE",
                    "-q", "-z", "expert")
    for bad in ("Errors", "Malformed", "checksum"):
        assert bad not in expert, "tshark expert info:\n" + expert
    assert tshark_count(cap, "udp.dstport == 7 && ip.src == %s" % PEER_IP) == 20
    assert tshark_count(cap, "udp.srcport == 7 && ip.src == %s" % NETSTEP_IP) == 20


@pytest.mark.needs_bin("netstepd")
def test_bad_pcap_path_and_bad_fault_option_exit_with_one_line(kernel_ns):
    base = [netstep.bin_path("netstepd"), "--tap", kernel_ns.tap]
    r = kernel_ns.run(base + ["--pcap", "/nonexistent-netstep-dir/x.pcap"], timeout=10)
    assert r.returncode == 1
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and "--pcap" in lines[0] and "No such file" in lines[0], r.stderr
    r = kernel_ns.run(base + ["--drop", "rx:1.5"], timeout=10)
    assert r.returncode == 2 and "--drop rx:1.5" in r.stderr, r.stderr


# --------------------------------------------------------------------------
# fault injection against the kernel

@pytest.mark.needs_bin("echo-server")
def test_udp_echo_with_rx_loss_counts_and_replays(kernel_ns):
    n = 200
    replies, st = udp_echo_run(kernel_ns, n, 7)
    frames, dropped = counter(st, "fault.rx_frames"), counter(st, "fault.rx_dropped")
    # the kernel sent n datagrams and an ARP reply or two; about 20% were lost
    assert n < frames <= n + 10, st
    assert 0.10 * frames < dropped < 0.30 * frames, (dropped, frames)
    assert counter(st, "fault.tx_frames") > 0 and counter(st, "fault.tx_dropped") == 0
    # every frame the injector let through reached Ethernet input
    assert frames - dropped == counter(st, "ether.rx_frames") + counter(st, "net.input_queue_full")
    # every frame dropped was a datagram or an ARP reply that never arrived
    delivered = counter(st, "udp.in_datagrams")
    arp_lost = (frames - n) - counter(st, "arp.rx_packets")
    assert dropped == (n - delivered) + arp_lost, st
    # what got through came back (tx is clean), short of any reply that
    # waited in ARP for a lost ARP frame
    assert replies <= delivered
    assert replies >= delivered - counter(st, "arp.queue_full") - counter(st, "arp.dropped_unresolved")

    # the same seed makes the same decisions: the same number of frames
    # gives the same number dropped (the kernel's timing may add an ARP frame)
    replies2, st2 = udp_echo_run(kernel_ns, n, 7)
    if counter(st2, "fault.rx_frames") == frames:
        assert counter(st2, "fault.rx_dropped") == dropped
    else:
        assert 0.10 * frames < counter(st2, "fault.rx_dropped") < 0.30 * frames


# --------------------------------------------------------------------------
# the experiment of docs/08-debugging-a-network-stack.md

EXPERIMENT_FLAGS = ["--drop", "0.1", "--seed", "5"]
EXPERIMENT_PINGS = 50


@pytest.mark.needs_bin("netstepd")
def test_debugging_doc_ping_loss_experiment(kernel_ns):
    """netstepd --drop 0.1 --seed 5; ping -c 50: each lost ping is an echo
    request dropped on the way in or a reply dropped on the way out, and
    the fault counters account for every one (plus any ARP frame lost)."""
    text = DOC.read_text()
    assert "build/bin/netstepd %s --stats" % " ".join(EXPERIMENT_FLAGS) in text
    assert "ping -c %d -i 0.2 192.0.2.2" % EXPERIMENT_PINGS in text

    d = netstep.Netstepd(kernel_ns, extra=EXPERIMENT_FLAGS)
    try:
        sent, received, out = ping(kernel_ns, EXPERIMENT_PINGS, interval=0.2, wait=None)
    finally:
        rc, _, err = d.stop()
    assert rc == 0, err[-3000:]
    st = d.final_stats
    assert sent == EXPERIMENT_PINGS
    lost = sent - received
    # the kernel puts all 50 requests on the wire (it waits for ARP rather
    # than drop them), and netstep learns the kernel's MAC from the kernel's
    # ARP request, so a reply never waits: each loss is one dropped frame
    requests_lost = sent - counter(st, "icmp.in_echos")
    replies_lost = counter(st, "icmp.out_echo_replies") - received
    assert lost == requests_lost + replies_lost, (out, st)
    # a round trip survives 0.9 * 0.9 of the time: about 19% lost
    assert 0.04 * sent <= lost <= 0.40 * sent, out
    # rx: every frame in was an echo request or an ARP request
    arp_in_lost = counter(st, "fault.rx_frames") - sent - counter(st, "arp.rx_packets")
    assert counter(st, "fault.rx_dropped") == requests_lost + arp_in_lost, st
    # tx: replies lost, plus ARP frames (announcement, replies) lost
    arp_out = counter(st, "arp.tx_replies") + counter(st, "arp.tx_gratuitous") + counter(st, "arp.tx_requests")
    assert replies_lost <= counter(st, "fault.tx_dropped") <= replies_lost + arp_out, st
