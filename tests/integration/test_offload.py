"""Tap offloads (--set tap_offload=1, driver/ether_tap.c): netstep hands the
kernel TCP super-segments with the checksum left undone, and takes the
kernel's own super-frames, the way a virtual machine's virtio NIC does.

Kernel peer (topology a):
* a TCP echo of 32 MiB comes back byte-exact while super-frames go both
  ways (the counters say so) and no checksum is found bad;
* request/response with sizes that leave a short segment after whole ones
  never waits on Nagle for longer than a round trip (each answer arrives);
* UDP echo, fragmented and not, with checksums the kernel left undone;
* with a capture (--pcap) the offloads stay off: every frame in the file
  fits the MTU and the counters of super-frames stay at zero.

Scripted peer (topology b): a segment whose checksum is wrong is still
dropped and counted with offloads on -- only the kernel's own "never
computed" frames skip the check.

Nothing here asserts a speed: make bench compares offload on and off.
"""

import hashlib
import os
import random
import socket
import struct

import pytest

import apps
from netstep import NETSTEP_IP, delta
from test_tcp_kernel import SCALE, echo_roundtrip, running
from test_tcp_scapy import bad_checksum_dropped, scapy_app

pytestmark = pytest.mark.needs_bin("echo-server")

MiB = 1 << 20
OFFLOAD = ["--set", "tap_offload=1"]
SUPER = ["dev.tap0.offload_tx_super_frames", "dev.tap0.offload_rx_super_frames",
         "tcp.out_super_segs", "tcp.in_super_segs"]


def counter(stats, name):
    return stats.get(name, 0)


def test_offload_tcp_echo_byte_exact(kernel_ns):
    data = os.urandom(32 * MiB // SCALE)
    with running(kernel_ns, "echo-server", extra=OFFLOAD + ["--log", "dev=info"]) as app:
        before = app.stats()
        digest, n, _ = echo_roundtrip(kernel_ns, data, timeout=120)
        after = app.stats()
        assert n == len(data)
        assert digest == hashlib.sha256(data).hexdigest(), "echo came back different"
        d = {k: delta(before, after, k) for k in SUPER + ["tcp.in_bad_checksum", "tcp.out_segs",
                                                            "dev.tap0.tx_frames"]}
        # both directions used super-frames
        for k in SUPER:
            assert d[k] > 0, (k, d)
        assert d["tcp.in_bad_checksum"] == 0, d
        # out_segs counts the pieces the kernel cut: more than frames written
        assert d["tcp.out_segs"] > d["dev.tap0.tx_frames"], d
        assert any("offloads on" in l for l in app.err.lines), app.describe()


def test_offload_short_tail_never_waits(kernel_ns):
    """Answers of whole segments plus a short piece (Nagle's case): each
    request is answered in full, so the short piece never waits for an ACK
    that will not come."""
    rnd = random.Random(7)
    with running(kernel_ns, "echo-server", extra=OFFLOAD) as app:
        s = apps.ns_connect(kernel_ns, (NETSTEP_IP, 7))
        s.settimeout(10)
        try:
            for i in range(200 // SCALE + 10):
                size = rnd.choice([1, 100, 1447, 1449, 2 * 1448 + 1, 20000 + rnd.randrange(1448), 70000])
                msg = bytes([i & 0xff]) * size
                s.sendall(msg)
                got = b""
                while len(got) < size:
                    b = s.recv(size - len(got))
                    assert b, "echo closed after %d of %d bytes" % (len(got), size)
                    got += b
                assert got == msg, "request %d (%d bytes) came back different" % (i, size)
        finally:
            s.close()
        assert app.alive()


def test_offload_udp_echo(kernel_ns):
    rnd = random.Random(11)
    with running(kernel_ns, "echo-server", extra=OFFLOAD) as app:
        s = apps.ns_socket(kernel_ns, socket.AF_INET, socket.SOCK_DGRAM)
        s.settimeout(5)
        try:
            for i in range(300):
                size = 8000 if i % 50 == 0 else rnd.randrange(1, 1473)
                msg = struct.pack("!I", i) + os.urandom(size - 4) if size >= 4 else bytes([i & 0xff]) * size
                s.sendto(msg, (NETSTEP_IP, 7))
                got, _ = s.recvfrom(65536)
                assert got == msg, "datagram %d (%d bytes) came back different" % (i, size)
        finally:
            s.close()
        st = app.stats()
        assert counter(st, "udp.in_bad_checksum") == 0, st


def _pcap_frame_lengths(path):
    with open(path, "rb") as f:
        blob = f.read()
    magic = struct.unpack("<I", blob[:4])[0]
    end = "<" if magic in (0xa1b2c3d4, 0xa1b23c4d) else ">"
    off, lens = 24, []
    while off + 16 <= len(blob):
        incl, orig = struct.unpack(end + "II", blob[off + 8:off + 16])
        lens.append(orig)
        off += 16 + incl
    return lens


def test_offload_stays_off_under_capture(kernel_ns, tmp_path):
    pcap = tmp_path / "off.pcap"
    data = os.urandom(4 * MiB // SCALE)
    with running(kernel_ns, "echo-server", extra=OFFLOAD + ["--pcap", str(pcap), "--log", "dev=info"]) as app:
        digest, n, _ = echo_roundtrip(kernel_ns, data, timeout=60)
        assert digest == hashlib.sha256(data).hexdigest()
        st = app.stats()
        for k in SUPER:
            assert counter(st, k) == 0, (k, st.get(k))
        assert any("offloads stay off" in l for l in app.err.lines), app.describe()
    lens = _pcap_frame_lengths(pcap)
    # at least every data segment, both ways, was captured (sanitizer
    # builds move SCALE times less data)
    assert len(lens) >= 2 * len(data) // 1460, (len(lens), len(data))
    assert max(lens) <= 1514, "a frame of %d bytes in the capture" % max(lens)


@pytest.fixture
def echo_offload(scapy_ns):
    with scapy_app(scapy_ns, "echo-server", extra=OFFLOAD) as (peer, app):
        yield peer, app


def test_offload_bad_checksum_still_dropped(echo_offload):
    bad_checksum_dropped(*echo_offload)


def test_plain_run_after_offload_run_on_the_same_tap(kernel_ns):
    """The kernel keeps a tap's offload features after the process that set
    them is gone; a later plain run must not be handed super-frames or
    unfinished checksums (it clears them when it opens the tap)."""
    data = os.urandom(2 * MiB)
    with running(kernel_ns, "echo-server", extra=OFFLOAD):
        digest, _, _ = echo_roundtrip(kernel_ns, data, timeout=60)
        assert digest == hashlib.sha256(data).hexdigest()
    with running(kernel_ns, "echo-server") as app:
        digest, _, _ = echo_roundtrip(kernel_ns, data, timeout=60)
        assert digest == hashlib.sha256(data).hexdigest()
        st = app.stats()
        assert counter(st, "tcp.in_bad_checksum") == 0, st
        assert counter(st, "dev.tap0.offload_rx_refused") == 0, st
        for k in SUPER:
            assert counter(st, k) == 0, (k, st.get(k))
