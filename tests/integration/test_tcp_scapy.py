"""TCP against a scripted peer (topology b): hand-built segments.

tap0 has no address, so the kernel neither answers nor resets anything; the
raw peer (192.0.2.1, 02:00:00:00:00:01, netstep.RawPeer) builds TCP
segments with scapy, sends them on its packet socket and reads netstep's
replies.  netstep runs echo-server (port 7) or chargen-server (port 19) at
192.0.2.2.  `Conn` below is a minimal TCP endpoint kept by hand: it tracks
our sequence numbers and netstep's, reassembles what netstep sends and
ACKs it when asked to.
"""

import contextlib
import os
import random
import struct
import subprocess
import time

import pytest
from scapy.layers.inet import IP, TCP
from scapy.layers.l2 import Ether

import apps
import netstep
from netstep import NETSTEP_IP, NETSTEP_MAC, PEER_IP, PEER_MAC, delta, ip_checksum

pytestmark = pytest.mark.needs_bin("echo-server", "chargen-server", "tcp-client")

M32 = 0xffffffff
ECHO, CHARGEN = 7, 19
QUIET = 1.0     # how long "nothing comes back" is watched


def seq_add(a, b):
    return (a + b) & M32


def seq_diff(a, b):
    """a - b as a signed 32-bit distance."""
    d = (a - b) & M32
    return d - (1 << 32) if d >= 1 << 31 else d


def payload(p):
    """TCP payload of a parsed frame, without Ethernet padding."""
    ip = p[IP]
    raw = bytes(ip)
    return raw[ip.ihl * 4 + p[TCP].dataofs * 4:ip.len]


def flags(p):
    return str(p[TCP].flags)


# --------------------------------------------------------------------------
# a hand-kept TCP endpoint

class Conn:
    def __init__(self, peer, dport, sport=None, mss=1460, wnd=65535):
        self.peer = peer
        self.dport = dport
        self.sport = sport or random.randrange(20000, 60000)
        self.iss = random.randrange(1 << 32)
        self.snd_nxt = self.iss          # our next sequence number
        self.irs = None
        self.rcv_nxt = None              # netstep's next sequence number
        self.mss = mss
        self.wnd = wnd
        self.stream = bytearray()        # netstep's data, in order
        self.held = {}                   # seq -> data beyond rcv_nxt
        self.fin = False                 # netstep's FIN received in order
        self.cursor = peer.mark()        # frames before this are old news
        self.data_segs = []              # every data segment netstep sent us

    # -- building and sending
    def frame(self, fl="A", seq=None, ack=None, data=b"", wnd=None, options=None, chksum=None):
        t = TCP(sport=self.sport, dport=self.dport, flags=fl,
                seq=self.snd_nxt if seq is None else seq,
                ack=(self.rcv_nxt or 0) if ack is None else ack,
                window=self.wnd if wnd is None else wnd, options=options or [])
        if chksum is not None:
            t.chksum = chksum
        return Ether(dst=NETSTEP_MAC, src=PEER_MAC) / IP(src=PEER_IP, dst=NETSTEP_IP) / t / data

    def send(self, fl="A", seq=None, ack=None, data=b"", advance=False, **kw):
        f = self.frame(fl, seq, ack, data, **kw)
        self.peer.send(f)
        if advance:
            self.snd_nxt = seq_add(self.snd_nxt, len(data) + ("S" in fl) + ("F" in fl))
        return f

    def send_data(self, data, fl="PA", **kw):
        """Send data at snd_nxt in segments of at most 1400 bytes."""
        for i in range(0, len(data), 1400):
            self.send(fl, data=data[i:i + 1400], advance=True, **kw)

    def ack(self, wnd=None):
        self.send("A", wnd=wnd)

    # -- receiving
    def mine(self, p):
        return (IP in p and TCP in p and p[IP].src == NETSTEP_IP and p[IP].dst == PEER_IP
                and p[TCP].sport == self.dport and p[TCP].dport == self.sport)

    def wait(self, pred=lambda p: True, timeout=2.0, since=None):
        """Next segment of this connection matching pred (from the cursor,
        or `since`); advances the cursor past it.  None on timeout."""
        start = self.cursor if since is None else since
        p, i = self.peer.wait_for_index(lambda p: self.mine(p) and pred(p), timeout, start)
        if p is not None:
            self.cursor = i
        return p

    def segments(self, since, duration=0.0):
        return self.peer.collect(self.mine, duration, since=since)

    def absorb(self, p):
        """Take netstep's data/FIN from segment p into the stream."""
        t = p[TCP]
        d = payload(p)
        if d:
            self.data_segs.append(p)
            off = seq_diff(t.seq, self.rcv_nxt)
            if off < 0:
                d, off = d[-off:], 0
            if d:
                s = seq_add(self.rcv_nxt, off)
                if len(d) > len(self.held.get(s, b"")):
                    self.held[s] = d
        moved = True
        while moved:
            moved = False
            for s in list(self.held):
                off = seq_diff(self.rcv_nxt, s)
                d = self.held[s]
                if 0 <= off < len(d):
                    self.stream += d[off:]
                    self.rcv_nxt = seq_add(self.rcv_nxt, len(d) - off)
                    del self.held[s]
                    moved = True
                elif off >= len(d):
                    del self.held[s]
        if "F" in flags(p) and seq_add(t.seq, len(payload(p))) == self.rcv_nxt and not self.fin:
            self.fin = True
            self.rcv_nxt = seq_add(self.rcv_nxt, 1)

    def read(self, n, timeout=5.0, ack=True, until_fin=False):
        """Collect netstep's stream until it holds n bytes (and the FIN if
        until_fin), ACKing every segment if ack.  Returns the stream."""
        deadline = time.monotonic() + timeout
        while len(self.stream) < n or (until_fin and not self.fin):
            left = deadline - time.monotonic()
            if left <= 0:
                break
            p = self.wait(lambda p: payload(p) or "F" in flags(p), timeout=left)
            if p is None:
                break
            self.absorb(p)
            if ack:
                self.ack()
        return bytes(self.stream)

    # -- handshake
    def syn(self, options=None, timeout=2.0):
        """Send our SYN; returns netstep's SYN-ACK (or None)."""
        if options is None:
            options = [("MSS", self.mss)]
        self.send("S", seq=self.iss, ack=0, options=options)
        return self.wait(lambda p: flags(p) == "SA", timeout=timeout)

    def open(self, options=None, tries=3):
        for _ in range(tries):
            sa = self.syn(options)
            if sa is not None:
                break
        assert sa is not None, "no SYN-ACK\n" + self.peer.describe(self.cursor)
        assert sa[TCP].ack == seq_add(self.iss, 1), "SYN-ACK acks %d, not ISS+1" % sa[TCP].ack
        self.irs = sa[TCP].seq
        self.rcv_nxt = seq_add(self.irs, 1)
        self.snd_nxt = seq_add(self.iss, 1)
        self.ack()
        return sa

    def echo(self, data, timeout=5.0):
        """Send data to an echo server and read the same amount back."""
        start = len(self.stream)
        self.send_data(data)
        got = self.read(start + len(data), timeout=timeout)[start:]
        return got


@contextlib.contextmanager
def scapy_app(ns, name, extra=()):
    """RawPeer opened first (it sees the startup traffic), then the app;
    afterwards the app must exit 0 on SIGINT."""
    peer = netstep.RawPeer(ns)
    app = None
    ok = False
    try:
        app = apps.App(ns, name, extra=extra)
        yield peer, app
        ok = True
    finally:
        if app is not None:
            rc, _, _ = app.stop()
            if ok:
                assert rc == 0, "%s exit code %s after SIGINT\n%s" % (name, rc, app.describe())
        peer.close()


@pytest.fixture
def echo(scapy_ns):
    with scapy_app(scapy_ns, "echo-server") as (peer, app):
        yield peer, app


def assert_alive(peer, app):
    assert app.alive(), "app died\n" + app.describe()
    assert peer.ping_ok(), "netstep no longer answers ping\n" + app.describe()


def quiet(conn, pred=lambda p: True, duration=QUIET):
    """Segments of conn matching pred within `duration` from the cursor."""
    segs = [p for p in conn.segments(conn.cursor, duration) if pred(p)]
    return segs


# --------------------------------------------------------------------------
# handshake, MSS

def test_handshake_mss_option(echo):
    peer, app = echo
    before = app.stats()
    c = Conn(peer, ECHO)
    sa = c.open(options=[("MSS", 1460)])
    opts = dict((k, v) for k, v in sa[TCP].options if isinstance(k, str))
    assert "MSS" in opts, "SYN-ACK without MSS option: %r" % sa[TCP].options
    assert opts["MSS"] == 1460, "MSS %d announced on a 1500-byte MTU" % opts["MSS"]
    assert sa[TCP].window > 0
    assert ip_checksum(bytes(sa[IP])[:20]) == 0
    assert sa.dst == PEER_MAC and sa[IP].dst == PEER_IP
    assert c.echo(b"hello, netstep\n") == b"hello, netstep\n"
    after = app.stats()
    assert delta(before, after, "tcp.passive_opens") == 1


def test_linux_style_syn_options_parsed(echo):
    """A SYN with the options Linux sends (MSS, SACK-permitted, timestamps,
    window scale) is accepted, and netstep's SYN-ACK answers all four, in
    Linux's layout: MSS, SACK-permitted (RFC 2018), timestamps whose TSecr
    echoes the SYN's TSval (RFC 7323 §3), window scale (shift 3 for its
    256 KiB buffer)."""
    peer, app = echo
    c = Conn(peer, ECHO)
    sa = c.open(options=[("MSS", 1460), ("SAckOK", b""), ("Timestamp", (12345, 0)),
                         ("NOP", None), ("WScale", 7)])
    opts = [(k, v) for k, v in sa[TCP].options if k not in ("NOP", "EOL")]
    assert [k for k, _ in opts] == ["MSS", "SAckOK", "Timestamp", "WScale"], \
        "SYN-ACK options %r" % sa[TCP].options
    d = dict(opts)
    assert d["MSS"] == 1460 and d["WScale"] == 3, "SYN-ACK options %r" % sa[TCP].options
    tsval, tsecr = d["Timestamp"]
    assert tsecr == 12345, "SYN-ACK options %r" % sa[TCP].options
    # the same 20 option bytes as a Linux SYN: mss, sackOK, TS, nop, wscale
    assert [k for k, _ in sa[TCP].options] == ["MSS", "SAckOK", "Timestamp", "NOP", "WScale"], \
        "SYN-ACK options %r" % sa[TCP].options
    assert sa[TCP].dataofs == 10, sa[TCP].dataofs
    # windows are scaled from here on (our raw window field is only smaller
    # than what netstep means, so the peer here stays within it); netstep's
    # segments carry timestamps, its TSval not going backwards
    data = os.urandom(3000)
    assert c.echo(data) == data
    ts = [dict(p[TCP].options).get("Timestamp") for p in c.data_segs]
    assert ts and all(t is not None and (t[0] - tsval) % 2**32 < 2**31 for t in ts), ts


def test_peer_mss_536_respected(echo):
    peer, app = echo
    c = Conn(peer, ECHO, mss=536)
    c.open()
    data = os.urandom(5000)
    got = c.echo(data, timeout=8)
    assert got == data, "echo differs (%d of %d bytes)" % (len(got), len(data))
    sizes = [len(payload(p)) for p in c.data_segs]
    assert sizes and max(sizes) <= 536, "netstep sent segments of %s bytes to a peer with MSS 536" % (
        sorted(set(sizes)))
    assert max(sizes) == 536, "expected full 536-byte segments, got sizes %s" % sorted(set(sizes))


# --------------------------------------------------------------------------
# reassembly

def test_out_of_order_duplicate_overlapping(echo):
    peer, app = echo
    c = Conn(peer, ECHO)
    c.open()
    data = os.urandom(6000)
    pieces = [
        (1000, 2000),   # ahead of a hole
        (3000, 4400),   # another island
        (0, 500),       # in order
        (0, 500),       # exact duplicate
        (200, 1500),    # old prefix + fills the hole + overlaps the island
        (1000, 2000),   # duplicate of held data
        (1800, 3200),   # overlaps both ends of the gap
        (4300, 5700),   # overlaps the island's end
        (5990, 6000),   # an island at the very end
        (5600, 6000),   # overlap, completes
        (0, 1400),      # all old
    ]
    before = app.stats()
    m0 = peer.mark()
    for a, b in pieces:
        c.send("PA", seq=seq_add(c.snd_nxt, a), data=data[a:b])
    c.snd_nxt = seq_add(c.snd_nxt, len(data))
    got = c.read(len(data), timeout=8)
    after = app.stats()
    assert got == data, "echoed stream differs: %d bytes back, first difference at %s" % (
        len(got), next((i for i in range(min(len(got), len(data))) if got[i] != data[i]), None))
    # netstep's ACKs now cover everything we sent
    assert any(p[TCP].ack == c.snd_nxt for p in c.segments(m0, 0.2)), "no ACK of the whole stream"
    assert delta(before, after, "tcp.in_ooo_segs") >= 2, netstep.changed(before, after)
    assert delta(before, after, "tcp.in_dup_segs") >= 2, netstep.changed(before, after)
    # and the connection still works
    assert c.echo(b"after the mess") == b"after the mess"


def test_many_holes_across_sequence_wrap(echo):
    """Our sequence numbers wrap through 2^32 while 50 islands arrive ahead
    of their holes (more than netstep holds out of order): after the holes
    are filled and everything is sent once more, the echo is exact."""
    peer, app = echo
    c = Conn(peer, ECHO)
    c.iss = (1 << 32) - 3000
    c.open()
    data = os.urandom(100 * 100)
    base = c.snd_nxt
    before = app.stats()
    for k in range(1, 100, 2):                    # islands: odd 100-byte pieces
        c.send("PA", seq=seq_add(base, 100 * k), data=data[100 * k:100 * k + 100])
    for k in range(0, 100, 2):                    # the holes
        c.send("PA", seq=seq_add(base, 100 * k), data=data[100 * k:100 * k + 100])
    c.snd_nxt = seq_add(base, len(data))
    got = c.read(len(data), timeout=3)
    first_pass = len(got)
    if len(got) < len(data):                      # whatever was dropped: resend all
        mid = app.stats()
        assert delta(before, mid, "tcp.in_ooo_dropped") > 0, (
            "only %d of %d bytes echoed, yet nothing was dropped: %s" % (
                len(got), len(data), netstep.changed(before, mid)))
        c.snd_nxt = base
        c.send_data(data)
        got = c.read(len(data), timeout=5)
    after = app.stats()
    assert seq_diff(c.snd_nxt, 0) > 0 and seq_diff(base, 0) < 0, "sequence did not wrap"
    assert got == data, "echo differs: %d of %d bytes, first difference at %s" % (
        len(got), len(data), next((i for i in range(min(len(got), len(data)))
                                   if got[i] != data[i]), None))
    assert delta(before, after, "tcp.in_ooo_segs") >= 20, netstep.changed(before, after)
    assert c.echo(b"after the wrap") == b"after the wrap"
    print("wrap test: %d of %d bytes on the first pass; counters %s" % (
        first_pass, len(data), netstep.changed(before, after)))


# --------------------------------------------------------------------------
# RST and SYN per RFC 5961

def test_rst_in_window_not_exact_gets_challenge_ack(echo):
    peer, app = echo
    c = Conn(peer, ECHO)
    c.open()
    assert c.echo(b"first") == b"first"
    before = app.stats()
    m = peer.mark()
    c.send("R", seq=seq_add(c.snd_nxt, 100), ack=0)
    ca = c.wait(lambda p: flags(p) == "A", timeout=2, since=m)
    after = app.stats()
    assert ca is not None, "no challenge ACK for an in-window RST\n" + peer.describe(m)
    assert ca[TCP].ack == c.snd_nxt, "challenge ACK acks %d, expected RCV.NXT %d" % (
        ca[TCP].ack, c.snd_nxt)
    assert ca[TCP].seq == c.rcv_nxt
    assert delta(before, after, "tcp.challenge_acks") >= 1
    assert delta(before, after, "tcp.estab_resets") == 0
    assert c.echo(b"still here") == b"still here", "connection did not survive"


def test_rst_out_of_window_ignored(echo):
    peer, app = echo
    c = Conn(peer, ECHO)
    c.open()
    assert c.echo(b"first") == b"first"
    before = app.stats()
    c.send("R", seq=seq_add(c.snd_nxt, 1 << 20), ack=0)        # far beyond the window
    c.send("R", seq=seq_add(c.snd_nxt, -(1 << 20)), ack=0)     # far behind
    c.send("RA", seq=seq_add(c.snd_nxt, -1), ack=c.rcv_nxt)    # just behind
    segs = quiet(c)
    after = app.stats()
    assert not segs, "netstep answered an out-of-window RST: %s" % [p.summary() for p in segs]
    assert delta(before, after, "tcp.in_out_of_window") >= 3, netstep.changed(before, after)
    assert delta(before, after, "tcp.in_rsts") == 0
    assert c.echo(b"still here") == b"still here", "connection did not survive"


def test_rst_beyond_advertised_window_ignored(echo):
    """A RST past RCV.NXT + the window netstep advertised (at most 65535
    without window scaling) is outside the receive window (RFC 9293
    §3.10.7.4, RFC 5961 §3.2): silently dropped, no challenge ACK."""
    peer, app = echo
    c = Conn(peer, ECHO)
    sa = c.open()
    assert c.echo(b"first") == b"first"
    last = c.data_segs[-1]
    adv = last[TCP].window
    assert adv <= 65535 and sa[TCP].window <= 65535
    before = app.stats()
    c.send("RA", seq=seq_add(c.snd_nxt, 100000), ack=c.rcv_nxt)
    segs = quiet(c)
    after = app.stats()
    assert not segs, ("a RST at RCV.NXT+100000, beyond the advertised window %d, was answered "
                      "(%s): the acceptance test does not use the advertised window" % (
                          adv, [p.summary() for p in segs]))
    assert delta(before, after, "tcp.in_rsts") == 0
    assert c.echo(b"still here") == b"still here", "connection did not survive"


def test_rst_exact_closes_connection(echo):
    peer, app = echo
    c = Conn(peer, ECHO)
    c.open()
    assert c.echo(b"first") == b"first"
    before = app.stats()
    c.send("R", seq=c.snd_nxt, ack=0)
    time.sleep(0.3)
    m = peer.mark()
    c.send("PA", data=b"anyone?")
    rst = c.wait(lambda p: "R" in flags(p), timeout=2, since=m)
    after = app.stats()
    assert rst is not None, "no RST for a segment of a reset connection\n" + peer.describe(m)
    assert rst[TCP].seq == c.rcv_nxt, "RST seq %d, expected our ACK %d" % (rst[TCP].seq, c.rcv_nxt)
    echoed = [p for p in c.segments(m) if payload(p)]
    assert not echoed, "data echoed on a reset connection"
    assert delta(before, after, "tcp.in_rsts") >= 1
    assert delta(before, after, "tcp.estab_resets") >= 1
    # the server keeps serving
    c2 = Conn(peer, ECHO)
    c2.open()
    assert c2.echo(b"next") == b"next"


def test_syn_in_established_gets_challenge_ack(echo):
    peer, app = echo
    c = Conn(peer, ECHO)
    c.open()
    assert c.echo(b"first") == b"first"
    before = app.stats()
    m = peer.mark()
    c.send("S", seq=seq_add(c.snd_nxt, 1000), ack=0, options=[("MSS", 1460)])
    ca = c.wait(lambda p: True, timeout=2, since=m)
    after = app.stats()
    assert ca is not None, "no answer to a SYN in ESTABLISHED"
    assert flags(ca) == "A", "expected a challenge ACK, got %s" % ca.summary()
    assert ca[TCP].ack == c.snd_nxt and ca[TCP].seq == c.rcv_nxt
    assert delta(before, after, "tcp.challenge_acks") >= 1
    assert delta(before, after, "tcp.estab_resets") == 0
    assert c.echo(b"still here") == b"still here"


def test_bad_checksum_not_acked(echo):
    bad_checksum_dropped(*echo)


def bad_checksum_dropped(peer, app):
    """A segment with a wrong checksum gets no answer and is counted; the
    same bytes with the right one are echoed (also used by test_offload)."""
    c = Conn(peer, ECHO)
    c.open()
    assert c.echo(b"first") == b"first"
    before = app.stats()
    good = c.frame("PA", data=b"corrupted!")
    bad_sum = (TCP(bytes(good[TCP])).chksum ^ 0x5a5a) & 0xffff
    c.send("PA", data=b"corrupted!", chksum=bad_sum)
    segs = quiet(c)
    after = app.stats()
    assert not segs, "netstep answered a segment with a bad checksum: %s" % [
        p.summary() for p in segs]
    assert delta(before, after, "tcp.in_bad_checksum") == 1, netstep.changed(before, after)
    # the same bytes with a good checksum are taken
    assert c.echo(b"corrupted!") == b"corrupted!"


# --------------------------------------------------------------------------
# retransmission

def _retransmit_times(c, seq, n, timeout):
    """Times at which netstep sends data at `seq` (the original and the
    retransmissions), up to n of them."""
    times, pkts = [], []
    deadline = time.monotonic() + timeout
    while len(times) < n:
        left = deadline - time.monotonic()
        if left <= 0:
            break
        p = c.wait(lambda p: p[TCP].seq == seq and payload(p), timeout=left)
        if p is None:
            break
        times.append(time.monotonic())
        pkts.append(p)
    return times, pkts


def _check_backoff(times, min_first, max_first):
    gaps = [b - a for a, b in zip(times, times[1:])]
    assert len(gaps) >= 3, "only %d retransmissions seen (gaps %s)" % (len(gaps), gaps)
    assert min_first <= gaps[0] <= max_first, "first RTO %.3fs outside [%.1f, %.1f]" % (
        gaps[0], min_first, max_first)
    for a, b in zip(gaps, gaps[1:]):
        assert b >= 1.5 * a, "RTO not backed off: gaps %s" % ["%.3f" % g for g in gaps]
    return gaps


def test_retransmission_backoff_without_rtt_sample(echo):
    """netstep echoes; we never ACK it.  No RTT sample exists unless the
    handshake gave one: the first RTO is RFC 6298's 1 s (>= the 200 ms
    minimum in any case), then it doubles."""
    peer, app = echo
    c = Conn(peer, ECHO)
    c.open()
    before = app.stats()
    first_seq = c.rcv_nxt
    c.send_data(b"x" * 100)
    times, pkts = _retransmit_times(c, first_seq, 4, timeout=12)
    after = app.stats()
    gaps = _check_backoff(times, 0.2, 3.2)
    print("RTO gaps without a sample: %s" % ["%.3f" % g for g in gaps])
    assert delta(before, after, "tcp.rto_timeouts") >= 3
    assert delta(before, after, "tcp.retrans_segs") >= 3
    assert all(payload(p) == b"x" * 100 for p in pkts), "retransmission differs from the original"
    # and after all that, an ACK makes things normal again
    c.absorb(pkts[-1])
    c.ack()
    assert c.echo(b"recovered") == b"recovered"


def test_retransmission_backoff_after_rtt_sample(echo):
    """With a (tiny) RTT sample, the RTO is the 200 ms minimum, doubling."""
    peer, app = echo
    c = Conn(peer, ECHO)
    c.open()
    for i in range(3):                  # ACKed round trips give samples
        assert c.echo(b"sample %d" % i) == b"sample %d" % i
    time.sleep(0.1)
    first_seq = c.rcv_nxt
    c.send_data(b"y" * 100)
    times, _ = _retransmit_times(c, first_seq, 4, timeout=8)
    gaps = _check_backoff(times, 0.18, 1.5)
    print("RTO gaps with a sample: %s" % ["%.3f" % g for g in gaps])


# --------------------------------------------------------------------------
# zero window and persist

def test_zero_window_persist_then_update(echo):
    peer, app = echo
    c = Conn(peer, ECHO)
    c.open()
    before = app.stats()
    data = os.urandom(3000)
    m = peer.mark()
    c.send_data(data, wnd=0)              # "here is data; I can take none back"
    # netstep must not send the echo, only 1-byte persist probes
    probes = []
    deadline = time.monotonic() + 4.0
    while time.monotonic() < deadline:
        p = c.wait(lambda p: payload(p), timeout=max(0.05, deadline - time.monotonic()))
        if p is None:
            break
        probes.append(p)
        c.send("A", wnd=0)                # the probe byte is not taken
    mid = app.stats()
    big = [p for p in probes if len(payload(p)) > 1 or p[TCP].seq != c.rcv_nxt]
    assert not big, "netstep sent data into a zero window: %s" % [
        (p[TCP].seq - c.rcv_nxt, len(payload(p))) for p in big]
    assert len(probes) >= 2, "expected >= 2 persist probes in 4 s, got %d\n%s" % (
        len(probes), peer.describe(m))
    assert delta(before, mid, "tcp.persist_probes") >= 2
    # the window opens: everything comes
    c.ack(wnd=65535)
    got = c.read(len(data), timeout=5)
    assert got == data, "after the window update: %d of %d bytes, equal=%s" % (
        len(got), len(data), got == data[:len(got)])


# --------------------------------------------------------------------------
# closing

def test_fin_in_established_close_wait_last_ack(echo):
    peer, app = echo
    c = Conn(peer, ECHO)
    c.open()
    assert c.echo(b"bye soon") == b"bye soon"
    m = peer.mark()
    c.send("FA", advance=True)             # our FIN: netstep -> CLOSE-WAIT
    ack = c.wait(lambda p: p[TCP].ack == c.snd_nxt, timeout=2, since=m)
    assert ack is not None, "our FIN was not acknowledged\n" + peer.describe(m)
    # echo-server sees end of stream and closes: netstep's FIN (LAST-ACK)
    fin = c.wait(lambda p: "F" in flags(p), timeout=3, since=m)
    assert fin is not None, "no FIN after the app closed\n" + peer.describe(m)
    assert fin[TCP].seq == c.rcv_nxt and fin[TCP].ack == c.snd_nxt
    assert not payload(fin)
    c.absorb(fin)
    # LAST-ACK: a retransmission of our FIN is ACKed again
    m2 = peer.mark()
    c.send("FA", seq=seq_add(c.snd_nxt, -1), ack=fin[TCP].seq)
    again = c.wait(lambda p: p[TCP].ack == c.snd_nxt, timeout=2, since=m2)
    assert again is not None, "retransmitted FIN in LAST-ACK not acknowledged\n" + peer.describe(m2)
    # our ACK of its FIN closes it: a further segment gets a RST
    c.ack()
    time.sleep(0.2)
    m3 = peer.mark()
    c.send("PA", data=b"late")
    rst = c.wait(lambda p: "R" in flags(p), timeout=2, since=m3)
    assert rst is not None, "connection not closed after LAST-ACK\n" + peer.describe(m3)


def test_fin_with_handshake_ack(echo):
    """ACK of the SYN-ACK, data and FIN in one segment (SYN-RECEIVED ->
    ESTABLISHED -> CLOSE-WAIT): the data is echoed, the FIN ACKed, and the
    server closes."""
    peer, app = echo
    c = Conn(peer, ECHO)
    sa = c.syn()
    assert sa is not None
    c.irs = sa[TCP].seq
    c.rcv_nxt = seq_add(c.irs, 1)
    c.snd_nxt = seq_add(c.iss, 1)
    m = peer.mark()
    c.send("FPA", data=b"short and sweet", advance=True)
    got = c.read(15, timeout=3, until_fin=True)
    assert got == b"short and sweet", got
    assert c.fin, "no FIN from the server\n" + peer.describe(m)
    assert any(p[TCP].ack == c.snd_nxt for p in c.segments(m)), "our FIN never ACKed"


def test_fin_ahead_of_a_hole(echo):
    """Data + FIN arrive before the data that precedes them: the FIN is
    taken only once the hole is filled."""
    peer, app = echo
    c = Conn(peer, ECHO)
    c.open()
    data = os.urandom(1000)
    m = peer.mark()
    c.send("FPA", seq=seq_add(c.snd_nxt, 500), data=data[500:])
    time.sleep(0.2)
    early = [p for p in c.segments(m) if seq_diff(p[TCP].ack, c.snd_nxt) > 0]
    assert not early, "ACK beyond the hole: %s" % [p.summary() for p in early]
    c.send("PA", data=data[:500])
    c.snd_nxt = seq_add(c.snd_nxt, 1001)
    got = c.read(1000, timeout=3, until_fin=True)
    assert got == data, "echo differs (%d bytes)" % len(got)
    assert c.fin, "server did not close after our FIN\n" + peer.describe(m)
    assert any(p[TCP].ack == c.snd_nxt for p in c.segments(m)), "our FIN never ACKed"


def _chargen_until_fin(c, n=100):
    got = c.read(n, timeout=5, until_fin=True, ack=False)
    assert got == CHARGEN_START[:n], "chargen sent %r" % got[:80]
    assert c.fin, "no FIN after %d bytes" % n
    return got


CHARGEN_START = bytes(32 + i % 95 for i in range(72)) + b"\r\n" + \
    bytes(32 + (1 + i) % 95 for i in range(72)) + b"\r\n"


def test_time_wait_answers_retransmitted_fin(scapy_ns):
    """chargen --bytes 100: netstep sends 100 bytes and its FIN (active
    close).  We ACK both (FIN-WAIT-2), send our FIN (TIME-WAIT), and
    retransmit it: netstep must ACK it again."""
    with scapy_app(scapy_ns, "chargen-server", extra=["--bytes", "100"]) as (peer, app):
        c = Conn(peer, CHARGEN)
        c.open()
        _chargen_until_fin(c)
        c.ack()                                   # data and FIN: FIN-WAIT-2
        time.sleep(0.1)
        m = peer.mark()
        c.send("FA", advance=True)                # our FIN: TIME-WAIT
        ack = c.wait(lambda p: p[TCP].ack == c.snd_nxt, timeout=2, since=m)
        assert ack is not None, "our FIN not ACKed in FIN-WAIT-2\n" + peer.describe(m)
        assert flags(ack) == "A" and ack[TCP].seq == c.rcv_nxt
        for i in range(2):
            m = peer.mark()
            c.send("FA", seq=seq_add(c.snd_nxt, -1))
            again = c.wait(lambda p: p[TCP].ack == c.snd_nxt, timeout=2, since=m)
            assert again is not None, "TIME-WAIT did not ACK retransmitted FIN #%d\n%s" % (
                i + 1, peer.describe(m))
            assert flags(again) == "A" and again[TCP].seq == c.rcv_nxt, again.summary()
        assert_alive(peer, app)


def test_simultaneous_close_closing_state(scapy_ns):
    """chargen --bytes 100 sends data + FIN; we ACK only the data and send
    our FIN (netstep in FIN-WAIT-1 -> CLOSING); netstep ACKs our FIN; then
    we ACK its FIN (TIME-WAIT) and a retransmitted FIN is ACKed again."""
    with scapy_app(scapy_ns, "chargen-server", extra=["--bytes", "100"]) as (peer, app):
        c = Conn(peer, CHARGEN)
        c.open()
        _chargen_until_fin(c)
        fin_seq = seq_add(c.rcv_nxt, -1)
        m = peer.mark()
        c.send("FA", ack=fin_seq, advance=True)    # data acked, its FIN not
        ack = c.wait(lambda p: p[TCP].ack == c.snd_nxt, timeout=2, since=m)
        assert ack is not None, "our FIN not ACKed in FIN-WAIT-1\n" + peer.describe(m)
        # CLOSING: a retransmission of our FIN is ACKed again
        m = peer.mark()
        c.send("FA", seq=seq_add(c.snd_nxt, -1), ack=fin_seq)
        again = c.wait(lambda p: p[TCP].ack == c.snd_nxt, timeout=2, since=m)
        assert again is not None, "retransmitted FIN in CLOSING not ACKed\n" + peer.describe(m)
        c.ack()                                    # now its FIN: CLOSING -> TIME-WAIT
        time.sleep(0.1)
        m = peer.mark()
        c.send("FA", seq=seq_add(c.snd_nxt, -1))
        again = c.wait(lambda p: p[TCP].ack == c.snd_nxt, timeout=2, since=m)
        assert again is not None, "TIME-WAIT did not ACK a retransmitted FIN\n" + peer.describe(m)
        assert_alive(peer, app)


# --------------------------------------------------------------------------
# SYN flood

def test_syn_flood_then_connection_succeeds(echo):
    peer, app = echo
    before = app.stats()
    base = 10000
    frames = [Ether(dst=NETSTEP_MAC, src=PEER_MAC) / IP(src=PEER_IP, dst=NETSTEP_IP) /
              TCP(sport=base + i, dport=ECHO, flags="S", seq=random.randrange(1 << 32),
                  window=65535, options=[("MSS", 1460)]) for i in range(1500)]
    peer.send_many(frames, burst=32, pause=0.003)
    time.sleep(0.5)
    assert app.alive(), "echo-server died under a SYN flood\n" + app.describe()
    c = Conn(peer, ECHO, sport=40000)
    c.open(tries=5)
    assert c.echo(b"through the flood") == b"through the flood"
    after = app.stats()
    assert delta(before, after, "tcp.syn_queue_evicted") > 0, netstep.changed(before, after)
    assert delta(before, after, "tcp.passive_opens") >= 1000, netstep.changed(before, after)
    assert_alive(peer, app)


# --------------------------------------------------------------------------
# netstep's receive window: closes when the app stops reading, reopens by
# itself when the app reads again

@pytest.fixture
def small_echo(scapy_ns):
    """echo-server with 16 KiB socket buffers: its window closes after
    about 32 KiB, quickly even under the sanitizers."""
    with scapy_app(scapy_ns, "echo-server", extra=["--set", "sock_rcvbuf_default=16384",
                                                   "--set", "sock_sndbuf_default=16384"]) as pa:
        yield pa


def test_receive_window_closes_and_reopens(small_echo):
    """We advertise window 0, so echo-server cannot send its echo; it stops
    reading, and netstep's receive window must close to 0.  When we open
    ours, the echo flows, the app reads again and netstep must reopen its
    window without being asked."""
    peer, app = small_echo
    c = Conn(peer, ECHO)
    sa = c.open()
    win, acked = sa[TCP].window, c.snd_nxt
    sent = bytearray()
    i = c.cursor
    deadline = time.monotonic() + 20
    closed = False
    while not closed and time.monotonic() < deadline and len(sent) < 4_000_000:
        # send what netstep's window allows, then read its ACKs
        room = win - seq_diff(c.snd_nxt, acked)
        while room > 0:
            chunk = os.urandom(min(room, 1400))
            c.send("A", data=chunk, wnd=0, advance=True)
            sent += chunk
            room -= len(chunk)
        p, i = peer.wait_for_index(lambda p: c.mine(p) and not payload(p), 0.5, i)
        while p is not None:
            if seq_diff(p[TCP].ack, acked) >= 0:
                acked, win = p[TCP].ack, p[TCP].window
            p, i = peer.wait_for_index(lambda p: c.mine(p) and not payload(p), 0.05, i)
        if win == 0 and acked == c.snd_nxt:
            closed = True
    assert closed, "netstep's window never closed (win %d after %d bytes)" % (win, len(sent))
    c.cursor = i
    m = peer.mark()
    c.ack(wnd=65535)                                   # now we read
    got = c.read(len(sent), timeout=25)
    assert len(got) == len(sent), "echo stalled at %d of %d bytes\n%s" % (
        len(got), len(sent), peer.describe(m, limit=10))
    assert got == bytes(sent), "echo differs"
    reopened = [p for p in c.segments(m) if p[TCP].window > 0]
    assert reopened, "netstep never reopened its receive window"
    assert c.echo(b"and more") == b"and more"


# --------------------------------------------------------------------------
# netstep as the client (tcp-client)

def _start_client(ns, port, timeout):
    return ns.popen(apps.client_argv(ns, PEER_IP, port, timeout=timeout),
                    stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def _syn_to(port):
    return lambda p: (IP in p and TCP in p and p[IP].src == NETSTEP_IP and p[TCP].dport == port
                      and flags(p) == "S")


def test_syn_retransmission_initial_rto(scapy_ns):
    """tcp-client to a peer that never answers: no RTT sample exists, so
    the SYN is retransmitted after RFC 6298's initial RTO (1 s), then with
    the interval doubling; connect fails at --timeout with ETIMEDOUT."""
    port = 8123
    with netstep.RawPeer(scapy_ns) as peer:
        m = peer.mark()
        t0 = time.monotonic()
        p = _start_client(scapy_ns, port, 8)
        times, syns, i = [], [], m
        while len(syns) < 4 and time.monotonic() - t0 < 12:
            syn, i = peer.wait_for_index(_syn_to(port), 12 - (time.monotonic() - t0), i)
            if syn is None:
                break
            times.append(time.monotonic())
            syns.append(syn)
        try:
            out, err = p.communicate(timeout=15)
        except subprocess.TimeoutExpired:
            netstep.kill_pid(p)
            raise AssertionError("tcp-client did not give up after --timeout 8")
        elapsed = time.monotonic() - t0
    gaps = _check_backoff(times, 0.9, 3.2)
    print("SYN retransmission gaps: %s" % ["%.3f" % g for g in gaps])
    assert len({s[TCP].seq for s in syns}) == 1, "retransmitted SYNs differ in ISS"
    assert len({s[TCP].sport for s in syns}) == 1
    for s in syns:
        assert ("MSS", 1460) in s[TCP].options, s[TCP].options
    assert p.returncode == 1, "rc=%s stderr=%s" % (p.returncode, err)
    assert b"timed out" in err.lower(), err
    assert elapsed < 8 + 4, "connect with --timeout 8 gave up after %.1fs" % elapsed


def test_simultaneous_open(scapy_ns):
    """netstep's SYN is answered by our own SYN (RFC 9293 §3.5, Figure 8):
    netstep goes SYN-SENT -> SYN-RECEIVED, sends SYN,ACK; our ACK makes it
    ESTABLISHED and the connect() succeeds; data and close follow."""
    port = 8124
    with netstep.RawPeer(scapy_ns) as peer:
        m = peer.mark()
        p = _start_client(scapy_ns, port, 10)
        try:
            syn = peer.wait_for(_syn_to(port), timeout=5, since=m)
            assert syn is not None, "no SYN from tcp-client\n" + peer.describe(m)
            c = Conn(peer, dport=syn[TCP].sport, sport=port)
            c.cursor = m
            c.irs = syn[TCP].seq
            c.rcv_nxt = seq_add(c.irs, 1)
            c.send("S", seq=c.iss, ack=0, options=[("MSS", 1460)])      # crossing SYN
            sa = c.wait(lambda p: flags(p) == "SA", timeout=3)
            assert sa is not None, "no SYN,ACK after a simultaneous open\n" + peer.describe(m)
            assert sa[TCP].seq == c.irs and sa[TCP].ack == seq_add(c.iss, 1), sa.summary()
            c.snd_nxt = seq_add(c.iss, 1)
            c.ack()
            p.stdin.write(b"simultaneous hello\n")
            p.stdin.flush()
            got = c.read(19, timeout=5)
            assert got == b"simultaneous hello\n", got
            c.send_data(b"reply\n")
            p.stdin.close()                                  # tcp-client: FIN
            c.read(19, timeout=5, until_fin=True)
            assert c.fin, "no FIN from tcp-client after stdin EOF\n" + peer.describe(m)
            c.send("FA", advance=True)
            p.wait(timeout=10)
            out, err = p.stdout.read(), p.stderr.read()
        finally:
            netstep.kill_pid(p)
    assert p.returncode == 0, "rc=%s stderr=%s" % (p.returncode, err)
    assert out == b"reply\n", out


# --------------------------------------------------------------------------
# more segment-arrival rules

def test_syn_ack_retransmitted_then_data_completes(echo):
    """Our ACK of the SYN-ACK is "lost": netstep retransmits the SYN-ACK
    (same ISS) after its initial RTO; a data segment carrying the ACK then
    completes the handshake and is echoed."""
    peer, app = echo
    c = Conn(peer, ECHO)
    sa = c.syn()
    assert sa is not None
    t0 = time.monotonic()
    again = c.wait(lambda p: flags(p) == "SA", timeout=4)
    gap = time.monotonic() - t0
    assert again is not None, "SYN-ACK not retransmitted within 4 s"
    assert again[TCP].seq == sa[TCP].seq and again[TCP].ack == sa[TCP].ack
    assert 0.5 <= gap <= 3.5, "SYN-ACK retransmitted after %.2fs" % gap
    c.irs = sa[TCP].seq
    c.rcv_nxt = seq_add(c.irs, 1)
    c.snd_nxt = seq_add(c.iss, 1)
    assert c.echo(b"late ack") == b"late ack"


def test_isns_unpredictable(echo):
    """RFC 6528: ISNs of connections from different ports are not a counter."""
    peer, app = echo
    isns = []
    for i in range(6):
        c = Conn(peer, ECHO, sport=30000 + i)
        sa = c.syn()
        assert sa is not None
        isns.append(sa[TCP].seq)
        c.send("R", seq=seq_add(c.iss, 1), ack=0)
    close = [(a, b) for i, a in enumerate(isns) for b in isns[i + 1:] if abs(seq_diff(a, b)) < 4096]
    assert not close, "ISNs too close to each other: %s" % ["%08x" % x for x in isns]


def test_segment_to_closed_port_gets_rst(echo):
    peer, app = echo
    c = Conn(peer, 12345)
    m = peer.mark()
    c.send("S", seq=c.iss, ack=0)
    r = c.wait(lambda p: "R" in flags(p), timeout=2, since=m)
    assert r is not None, "no RST for a SYN to a closed port"
    assert flags(r) == "RA" and r[TCP].seq == 0 and r[TCP].ack == seq_add(c.iss, 1), r.summary()
    m = peer.mark()
    c.send("A", seq=seq_add(c.iss, 1), ack=0x12345678)
    r = c.wait(lambda p: "R" in flags(p), timeout=2, since=m)
    assert r is not None, "no RST for an ACK to a closed port"
    assert flags(r) == "R" and r[TCP].seq == 0x12345678, r.summary()
    m = peer.mark()
    c.send("R", seq=seq_add(c.iss, 1), ack=0)
    assert not c.segments(m, QUIET), "a RST was answered"


def test_ack_of_unsent_data_is_dropped(echo):
    """RFC 9293 §3.10.7.4 fifth: an ACK of something not yet sent gets an
    ACK and the segment (with its data) is dropped."""
    peer, app = echo
    c = Conn(peer, ECHO)
    c.open()
    assert c.echo(b"first") == b"first"
    before = app.stats()
    m = peer.mark()
    c.send("PA", data=b"evil", ack=seq_add(c.rcv_nxt, 100000))
    r = c.wait(lambda p: True, timeout=2, since=m)
    time.sleep(0.3)
    after = app.stats()
    assert r is not None, "no ACK for an ACK of unsent data"
    assert flags(r) == "A" and r[TCP].ack == c.snd_nxt and not payload(r), \
        "expected a bare ACK of %d, got %s ack %d" % (c.snd_nxt, r.summary(), r[TCP].ack)
    echoed = [p for p in c.segments(m) if payload(p)]
    assert not echoed, "data of a segment with an unacceptable ACK was delivered: %r" % [
        payload(p) for p in echoed]
    assert delta(before, after, "tcp.in_future_ack") >= 1
    assert c.echo(b"good") == b"good"


def _tcp_raw(sport, dport, seq, ack, fl, data=b"", off=5, hdr_len=20):
    h = struct.pack("!HHIIBBHHH", sport, dport, seq, ack, off << 4, fl, 65535, 0, 0)
    h = (h + bytes(max(0, hdr_len - 20)))[:hdr_len]
    seg = h + data
    pseudo = netstep.ip2bytes(PEER_IP) + netstep.ip2bytes(NETSTEP_IP) + struct.pack("!BBH", 0, 6, len(seg))
    ck = ip_checksum(pseudo + seg)
    if len(seg) >= 18:
        seg = seg[:16] + struct.pack("!H", ck) + seg[18:]
    return (netstep.mac2bytes(NETSTEP_MAC) + netstep.mac2bytes(PEER_MAC) + b"\x08\x00" +
            netstep.ipv4_header(PEER_IP, NETSTEP_IP, 6, len(seg)) + seg)


@pytest.mark.parametrize("case,counters", [
    ("offset_below_5", ("tcp.in_bad_offset",)),
    ("offset_beyond_segment", ("tcp.in_bad_offset",)),
    ("truncated_header", ("tcp.in_too_short",)),
    ("bad_option_length", ("tcp.in_bad_options",)),
])
def test_malformed_tcp_header_dropped(echo, case, counters):
    peer, app = echo
    c = Conn(peer, ECHO)
    c.open()
    seq, ack = c.snd_nxt, c.rcv_nxt
    if case == "offset_below_5":
        f = _tcp_raw(c.sport, ECHO, seq, ack, 0x18, b"data", off=4)
    elif case == "offset_beyond_segment":
        f = _tcp_raw(c.sport, ECHO, seq, ack, 0x18, b"data", off=15)
    elif case == "truncated_header":
        f = _tcp_raw(c.sport, ECHO, seq, ack, 0x18, hdr_len=12)
    else:  # an MSS option claiming 40 bytes in a 24-byte header, on a SYN
        f = _tcp_raw(c.sport + 1, ECHO, 7, 0, 0x02, off=6, hdr_len=24)
        f = f[:-4] + b"\x02\x28\x05\xb4"
        seg = f[34:]
        pseudo = (netstep.ip2bytes(PEER_IP) + netstep.ip2bytes(NETSTEP_IP) +
                  struct.pack("!BBH", 0, 6, len(seg)))
        seg = seg[:16] + b"\0\0" + seg[18:]
        seg = seg[:16] + struct.pack("!H", ip_checksum(pseudo + seg)) + seg[18:]
        f = f[:34] + seg
    before = app.stats()
    m = peer.mark()
    peer.send(f)
    assert_alive(peer, app)
    after = app.stats()
    answered = [p for p in peer.collect(lambda p: TCP in p and p[IP].src == NETSTEP_IP, 0, since=m)]
    assert not answered, "malformed segment answered: %s" % [p.summary() for p in answered]
    got = {k: delta(before, after, k) for k in counters}
    assert sum(got.values()) >= 1, "not counted: %s (changed: %s)" % (got, netstep.changed(before, after))
    assert c.echo(b"fine") == b"fine"


def test_time_wait_reused_by_new_syn(scapy_ns):
    """RFC 9293 §3.10.7.4 / RFC 6191: a SYN for a 4-tuple in TIME-WAIT with a
    sequence number beyond the old connection's starts a new connection."""
    with scapy_app(scapy_ns, "chargen-server", extra=["--bytes", "100"]) as (peer, app):
        c = Conn(peer, CHARGEN, sport=45678)
        c.open()
        _chargen_until_fin(c)
        c.ack()
        c.send("FA", advance=True)
        assert c.wait(lambda p: p[TCP].ack == c.snd_nxt, timeout=2) is not None
        before = app.stats()
        c2 = Conn(peer, CHARGEN, sport=45678)
        c2.iss = seq_add(c.snd_nxt, 100000)
        c2.open()
        _chargen_until_fin(c2)
        after = app.stats()
        assert delta(before, after, "tcp.time_wait_recycled") == 1, netstep.changed(before, after)
