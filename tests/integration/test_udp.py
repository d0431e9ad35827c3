"""UDP (RFC 768) from the outside: issue 3's tests with real peers.

Kernel peer (topology a, tap0 = 192.0.2.1/24 in the namespace):
* 10,000 datagrams of random sizes 1-1472 through echo-server come back
  byte-exact and in order to a kernel socket;
* 8,000- and 60,000-byte datagrams both ways (IP fragments each way);
* a kernel socket connected to a closed netstep port gets ECONNREFUSED
  (netstep's ICMP port unreachable arrived), and netstep's udp-client gets
  the same from a closed kernel port;
* udp-client talks to a kernel socat UDP echo.

Scripted peer (topology b, raw frames built here):
* a bad checksum, a length field larger or smaller than the datagram:
  dropped, counted, no reply; a zero checksum (none computed) is accepted.

Every wait is bounded; nothing asserts a duration.
"""

import random
import socket
import struct
import subprocess
import time

import pytest
from scapy.layers.inet import IP, UDP

import apps
import netstep
from netstep import NETSTEP_IP, NETSTEP_MAC, PEER_IP, PEER_MAC, delta, ip_checksum, mac2bytes
from test_tcp_kernel import running
from test_tcp_scapy import scapy_app

pytestmark = pytest.mark.needs_bin("echo-server", "udp-client")


def udp_sock(ns, timeout=5.0):
    s = apps.ns_socket(ns, socket.AF_INET, socket.SOCK_DGRAM)
    s.settimeout(timeout)
    return s


def test_10000_datagrams_echoed_in_order(kernel_ns):
    rnd = random.Random(3)
    n, window = 10000, 16
    with running(kernel_ns, "echo-server") as app:
        s = udp_sock(kernel_ns)
        try:
            s.connect((NETSTEP_IP, 7))
            sent = []

            def send_one(i):
                size = rnd.randint(1, 1472)
                body = struct.pack("!I", i)[:size] + bytes(rnd.getrandbits(8) for _ in range(max(0, size - 4)))
                sent.append(body)
                s.send(body)

            for i in range(window):
                send_one(i)
            for i in range(n):
                got = s.recv(2048)
                assert got == sent[i], "datagram %d (%d bytes) came back as %d bytes, different or out of order" % (
                    i, len(sent[i]), len(got))
                if i + window < n:
                    send_one(i + window)
        finally:
            s.close()
        st = app.stats()
        assert st["udp.in_datagrams"] >= n and st["udp.out_datagrams"] >= n, st
        assert st.get("udp.rcvbuf_errors", 0) == 0, st


@pytest.mark.parametrize("size", [8000, 60000])
def test_fragmented_datagrams_both_ways(kernel_ns, size):
    rnd = random.Random(size)
    with running(kernel_ns, "echo-server") as app:
        before = app.stats()
        s = udp_sock(kernel_ns)
        try:
            for k in range(5):
                body = bytes(rnd.getrandbits(8) for _ in range(size))
                s.sendto(body, (NETSTEP_IP, 7))
                got, src = s.recvfrom(65536)
                assert src == (NETSTEP_IP, 7)
                assert got == body, "datagram %d of %d bytes came back different" % (k, size)
        finally:
            s.close()
        after = app.stats()
    frags = -(-(size + 8) // 1480)   # IP fragments of size + 8 bytes of UDP
    assert delta(before, after, "ip.reass_ok") >= 5 and delta(before, after, "ip.out_fragments") >= 5 * frags, \
        netstep.changed(before, after)


def test_closed_port_gives_econnrefused(kernel_ns):
    with running(kernel_ns, "echo-server") as app:
        before = app.stats()
        s = udp_sock(kernel_ns)
        try:
            s.connect((NETSTEP_IP, 9999))
            s.send(b"anyone there?")
            with pytest.raises(ConnectionRefusedError):
                s.recv(100)
        finally:
            s.close()
        after = app.stats()
    assert delta(before, after, "udp.no_port") == 1, netstep.changed(before, after)
    assert delta(before, after, "icmp.out_dest_unreachs") == 1, netstep.changed(before, after)


def test_udp_client_with_socat_echo(kernel_ns):
    netstep.run(["sh", "-c", "command -v socat"])
    echo = kernel_ns.popen(["socat", "-T", "10", "UDP4-RECVFROM:5555,bind=%s,fork" % PEER_IP, "PIPE"],
                           stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        for _ in range(50):  # socat is listening once the kernel shows its socket
            if ":5555" in kernel_ns.run(["ss", "-uln"], timeout=5).stdout:
                break
            time.sleep(0.1)
        else:
            raise AssertionError("socat never bound 192.0.2.1:5555")
        lines = ["line %d %s" % (i, "x" * (i * 37 % 300)) for i in range(20)]
        argv = [netstep.bin_path("udp-client")] + apps.common_flags(kernel_ns, stats=False) + \
            ["--timeout", "2", PEER_IP, "5555"]
        # each read of stdin goes out as one datagram, and socat echoes each
        r = netstep.run(kernel_ns.cmd(argv), timeout=30, check=False, input="".join(l + "\n" for l in lines))
        assert r.returncode == 0, (r.returncode, r.stdout, r.stderr)
        assert r.stdout.splitlines() == lines
    finally:
        netstep.kill_pid(echo)


def test_udp_client_refused_by_closed_kernel_port(kernel_ns):
    argv = [netstep.bin_path("udp-client")] + apps.common_flags(kernel_ns, stats=False) + \
        ["--timeout", "2", PEER_IP, "5556"]
    r = netstep.run(kernel_ns.cmd(argv), timeout=30, check=False, input="hello\nagain\n")
    assert r.returncode == 1, (r.returncode, r.stdout, r.stderr)
    assert "refused" in r.stderr.lower(), r.stderr


# --------------------------------------------------------------------------
# scripted peer: malformed datagrams

def udp_frame(payload, sport=40000, dport=7, length=None, checksum=None):
    """Ethernet + IPv4 + UDP, peer -> netstep; length and checksum as given
    (None: correct)."""
    ulen = 8 + len(payload) if length is None else length
    hdr = struct.pack("!HHHH", sport, dport, ulen, 0)
    if checksum is None:
        pseudo = (socket.inet_aton(PEER_IP) + socket.inet_aton(NETSTEP_IP) +
                  struct.pack("!BBH", 0, 17, 8 + len(payload)))
        checksum = ip_checksum(pseudo + hdr + payload) or 0xffff
    udp = hdr[:6] + struct.pack("!H", checksum) + payload
    ip = IP(src=PEER_IP, dst=NETSTEP_IP, proto=17, id=random.randint(0, 0xffff)) / bytes(udp)
    return mac2bytes(NETSTEP_MAC) + mac2bytes(PEER_MAC) + struct.pack("!H", 0x0800) + bytes(ip)


def replies(peer, m, payload, timeout=1.0):
    # (short frames are padded to 60 bytes: the UDP length says where the
    # payload ends)
    return peer.collect(lambda p: UDP in p and p[IP].src == NETSTEP_IP and p[UDP].sport == 7
                        and bytes(p[UDP].payload)[:p[UDP].len - 8] == payload, timeout, since=m)


@pytest.fixture
def udp_echo(scapy_ns):
    with scapy_app(scapy_ns, "echo-server") as (peer, app):
        yield peer, app


def test_good_and_zero_checksum_echoed(udp_echo):
    peer, app = udp_echo
    before = app.stats()
    m = peer.mark()
    peer.send(udp_frame(b"good checksum"))
    peer.send(udp_frame(b"no checksum", checksum=0))
    assert replies(peer, m, b"good checksum") and replies(peer, m, b"no checksum"), peer.describe(m)
    after = app.stats()
    assert delta(before, after, "udp.in_no_checksum") == 1, netstep.changed(before, after)


@pytest.mark.parametrize("what,kw,counter", [
    ("bad checksum", {"checksum": 0x1234}, "udp.in_bad_checksum"),
    ("length field larger than the datagram", {"length": 8 + 40}, "udp.in_bad_length"),
    ("length field smaller than the datagram", {"length": 8 + 4}, "udp.in_bad_length"),
])
def test_malformed_dropped_and_counted(udp_echo, what, kw, counter):
    peer, app = udp_echo
    payload = b"malformed: " + what.encode()
    before = app.stats()
    m = peer.mark()
    peer.send(udp_frame(payload, **kw))
    assert peer.ping_ok(), "netstep stopped answering after a datagram with a %s" % what
    got = replies(peer, m, payload, timeout=0.5)
    after = app.stats()
    assert not got, "a datagram with a %s was answered: %s" % (what, [p.summary() for p in got])
    assert delta(before, after, counter) == 1, netstep.changed(before, after)
    # and a good one still goes through
    m = peer.mark()
    peer.send(udp_frame(b"after " + payload))
    assert replies(peer, m, b"after " + payload), peer.describe(m)
