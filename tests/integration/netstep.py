"""Helpers for netstep's integration tests: namespaces, taps, the netstepd
process, and a scripted raw-Ethernet peer.

How the pieces fit
------------------
* ``Netns`` creates a private network namespace (``nst-<pid>-<n>``) with
  ``lo`` up, IPv6 disabled, and a persistent ``tap0``.  Topology (a) gives
  ``tap0`` the address 192.0.2.1/24 so the Linux kernel is netstep's peer;
  topology (b) leaves it without an address so the kernel stays silent.
  Processes started through ``Netns.popen`` are remembered and killed (by
  PID) before the namespace is deleted, whatever happened in the test.

* ``Netstepd`` runs ``ip netns exec NS build/bin/netstepd --tap tap0 --stats``
  (``ip netns exec`` execs the binary in place, so the Popen PID is netstepd's
  own PID and signals reach it directly).  After the ready line it also waits
  for the kernel to report tap0 operationally UP: the kernel activates the
  tap's queue asynchronously after netstepd attaches, and frames sent into
  the tap before that are dropped (see Netns.wait_link_up).  stdout and stderr are drained by
  reader threads so a chatty log can never block the daemon; ``stats()``
  sends SIGUSR1 and parses the ``--- stats ---`` ... ``--- end ---`` block.

* ``RawPeer`` is the scripted peer for topology (b).  Choice: the test
  process itself opens the AF_PACKET socket *inside* the namespace by calling
  ``setns(2)`` (via ctypes; Python 3.11 has no ``os.setns``) on the current
  thread, creating and binding the socket, and switching straight back.  A
  socket stays in the namespace it was created in, so afterwards it can be
  used from any thread with no further namespace games, no child process and
  no IPC.  Frames are built and parsed with scapy but sent and received on
  this plain socket (scapy's own send/sniff helpers would open new sockets in
  the wrong namespace).  A background thread receives every frame, answers
  ARP requests for the peer's address (192.0.2.1) itself, and records frames
  for the test to wait on.

Kernel limitation worth knowing: AF_PACKET refuses to transmit frames shorter
than the 14-byte Ethernet header (EINVAL), so a truncated Ethernet header can
only be exercised by the C protocol tests.
"""

import ctypes
import itertools
import os
import queue
import random
import re
import select
import signal
import socket
import struct
import subprocess
import threading
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]

NETSTEP_IP = "192.0.2.2"
NETSTEP_MAC = "02:00:00:00:00:02"
PEER_IP = "192.0.2.1"
PEER_MAC = "02:00:00:00:00:01"
PREFIX = 24

READY_TIMEOUT = 10.0
STOP_TIMEOUT = 10.0
STATS_TIMEOUT = 5.0

ETH_P_ALL = 0x0003
ETH_P_IP = 0x0800
ETH_P_ARP = 0x0806
PACKET_OUTGOING = 4
SOL_PACKET = 263
PACKET_IGNORE_OUTGOING = 23
CLONE_NEWNET = 0x40000000


# --------------------------------------------------------------------------
# build directory and small process helpers

def build_dir():
    b = Path(os.environ.get("NETSTEP_BUILD", "build"))
    if not b.is_absolute():
        b = REPO_ROOT / b
    return b


def bin_path(name):
    return build_dir() / "bin" / name


def run(cmd, timeout=10, check=True, **kw):
    """subprocess.run with a timeout and captured text output."""
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, **kw)
    if check and r.returncode != 0:
        raise RuntimeError("command failed (%d): %s\nstdout: %s\nstderr: %s"
                           % (r.returncode, " ".join(map(str, cmd)), r.stdout, r.stderr))
    return r


def kill_pid(proc, timeout=5.0):
    """Kill one process we started (by its PID) and reap it."""
    if proc.poll() is None:
        try:
            os.kill(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        pass


# --------------------------------------------------------------------------
# network namespaces

_ns_counter = itertools.count(1)
NS_PREFIX = "nst-"


def _pid_alive(pid):
    try:
        os.kill(pid, 0)
        return True
    except ProcessLookupError:
        return False
    except PermissionError:
        return True


def cleanup_stale_namespaces():
    """Delete namespaces left by earlier runs of this suite (name nst-PID-N
    whose PID no longer exists).  Never touches anything else."""
    try:
        names = os.listdir("/var/run/netns")
    except OSError:
        return
    for name in names:
        m = re.fullmatch(r"nst-(\d+)-(\d+)", name)
        if m and not _pid_alive(int(m.group(1))):
            subprocess.run(["ip", "netns", "del", name], capture_output=True, timeout=10)


class Netns:
    """A private network namespace with tap0.

    address: None for topology (b) (link up, no address), or e.g.
    "192.0.2.1/24" for topology (a).
    """

    def __init__(self, address=None, tap="tap0", tap_mac=None):
        self.name = "%s%d-%d" % (NS_PREFIX, os.getpid(), next(_ns_counter))
        self.address = address
        self.tap = tap
        self.tap_mac = tap_mac
        self.procs = []
        self.created = False

    # -- lifecycle
    def __enter__(self):
        try:
            self.create()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc):
        self.close()
        return False

    def create(self):
        run(["ip", "netns", "add", self.name])
        self.created = True
        run(["ip", "-n", self.name, "link", "set", "lo", "up"])
        for scope in ("all", "default"):
            run(self.cmd(["sysctl", "-qw", "net.ipv6.conf.%s.disable_ipv6=1" % scope]))
        run(["ip", "-n", self.name, "tuntap", "add", "mode", "tap", "name", self.tap])
        if self.tap_mac:
            run(["ip", "-n", self.name, "link", "set", self.tap, "address", self.tap_mac])
        run(["ip", "-n", self.name, "link", "set", self.tap, "up"])
        if self.address:
            run(["ip", "-n", self.name, "addr", "add", self.address, "dev", self.tap])

    def close(self):
        for p in self.procs:
            kill_pid(p)
        self.procs = []
        if self.created:
            subprocess.run(["ip", "netns", "del", self.name], capture_output=True, timeout=10)
            self.created = False

    # -- running things inside
    def cmd(self, argv):
        return ["ip", "netns", "exec", self.name] + [str(a) for a in argv]

    def run(self, argv, timeout=10, check=False):
        return run(self.cmd(argv), timeout=timeout, check=check)

    def popen(self, argv, **kw):
        """Start a process in the namespace; it is killed (by PID) at close()."""
        kw.setdefault("stdin", subprocess.DEVNULL)
        p = subprocess.Popen(self.cmd(argv), **kw)
        self.procs.append(p)
        return p

    def path(self):
        return "/var/run/netns/" + self.name

    def wait_link_up(self, timeout=5.0):
        """Wait until the kernel reports tap0 operationally UP.

        When a process attaches to a tap, the kernel turns the carrier on but
        activates the device's qdisc asynchronously (linkwatch).  Until then
        every frame the kernel side transmits into the tap (our raw peer's
        frames, the kernel's own ARP replies) is silently dropped and counted
        as a TX drop on tap0.  operstate flips to UP in that same step."""
        deadline = time.monotonic() + timeout
        while True:
            r = run(["ip", "-n", self.name, "-o", "link", "show", "dev", self.tap], check=False)
            if re.search(r"\bstate UP\b", r.stdout):
                return
            if time.monotonic() > deadline:
                raise NetstepError("%s not operationally UP after %.0fs: %s"
                                   % (self.tap, timeout, r.stdout.strip()))
            time.sleep(0.01)


# --------------------------------------------------------------------------
# netstepd

def parse_stats(lines):
    """Parse 'group.counter value' lines into a dict of ints."""
    out = {}
    for line in lines:
        parts = line.split()
        if len(parts) == 2 and "." in parts[0]:
            try:
                out[parts[0]] = int(parts[1])
            except ValueError:
                pass
    return out


class _LineReader(threading.Thread):
    """Drains a pipe into a list (and a queue of lines) so the child never
    blocks on a full pipe."""

    def __init__(self, pipe):
        super().__init__(daemon=True)
        self.pipe = pipe
        self.lines = []
        self.q = queue.Queue()

    def run(self):
        try:
            for line in iter(self.pipe.readline, ""):
                line = line.rstrip("\n")
                self.lines.append(line)
                self.q.put(line)
        except (ValueError, OSError):
            pass
        self.q.put(None)  # EOF

    def get(self, deadline):
        left = deadline - time.monotonic()
        if left <= 0:
            raise queue.Empty
        return self.q.get(timeout=left)

    def text(self):
        return "\n".join(self.lines)


class NetstepError(AssertionError):
    pass


class Netstepd:
    """netstepd running in a namespace, with stats access."""

    READY_RE = re.compile(r"^netstepd: up on (\S+) (\S+) mac (\S+)$")

    def __init__(self, ns, addr="%s/%d" % (NETSTEP_IP, PREFIX), gw=PEER_IP,
                 mac=NETSTEP_MAC, log=None, extra=()):
        self.ns = ns
        argv = [bin_path("netstepd"), "--tap", ns.tap, "--addr", addr, "--gw", gw,
                "--mac", mac, "--stats"]
        if log:
            argv += ["--log", log]
        argv += list(extra)
        self.argv = argv
        self.proc = ns.popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             text=True, bufsize=1)
        self.out = _LineReader(self.proc.stdout)
        self.err = _LineReader(self.proc.stderr)
        self.out.start()
        self.err.start()
        self.ready_line = None
        self.result = None
        self._wait_ready()

    @property
    def pid(self):
        return self.proc.pid

    def _wait_ready(self):
        deadline = time.monotonic() + READY_TIMEOUT
        while True:
            try:
                line = self.out.get(deadline)
            except queue.Empty:
                self.kill()
                raise NetstepError("netstepd not ready within %.0fs\nstdout:\n%s\nstderr:\n%s"
                                   % (READY_TIMEOUT, self.out.text(), self.err.text()))
            if line is None:
                self.proc.wait(timeout=5)
                raise NetstepError("netstepd exited (rc=%s) before ready\nstdout:\n%s\nstderr:\n%s"
                                   % (self.proc.returncode, self.out.text(), self.err.text()))
            if self.READY_RE.match(line):
                self.ready_line = line
                self.ns.wait_link_up()
                return

    def alive(self):
        return self.proc.poll() is None

    def stats(self, timeout=STATS_TIMEOUT):
        """SIGUSR1 -> dict of counters from the '--- stats ---' block."""
        if not self.alive():
            raise NetstepError("netstepd died (rc=%s)\nstderr:\n%s"
                               % (self.proc.returncode, self.err.text()[-4000:]))
        # Drop anything already queued so we parse the block this signal makes.
        while True:
            try:
                if self.out.q.get_nowait() is None:
                    raise NetstepError("netstepd stdout closed")
            except queue.Empty:
                break
        os.kill(self.proc.pid, signal.SIGUSR1)
        deadline = time.monotonic() + timeout
        block, inside = [], False
        while True:
            try:
                line = self.out.get(deadline)
            except queue.Empty:
                raise NetstepError("no complete stats block within %.0fs after SIGUSR1; got: %r"
                                   % (timeout, block))
            if line is None:
                raise NetstepError("netstepd exited while printing stats\nstderr:\n%s"
                                   % self.err.text()[-4000:])
            if line.strip() == "--- stats ---":
                block, inside = [], True
            elif line.strip() == "--- end ---" and inside:
                return parse_stats(block)
            elif inside:
                block.append(line)

    def stop(self, sig=signal.SIGINT, timeout=STOP_TIMEOUT):
        """Signal, wait (bounded), return (returncode, stdout, stderr).
        Final stats are in self.final_stats."""
        if self.result is not None:
            return self.result
        if self.alive():
            os.kill(self.proc.pid, sig)
        try:
            self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            self.out.join(2)
            self.err.join(2)
            self.result = (None, self.out.text(), self.err.text())
            self.final_stats = {}
            return self.result
        self.out.join(5)
        self.err.join(5)
        stdout = self.out.text()
        lines = stdout.splitlines()
        idx = [i for i, l in enumerate(lines) if l.strip() == "--- stats ---"]
        self.final_stats = parse_stats(lines[idx[-1] + 1:]) if idx else {}
        self.result = (self.proc.returncode, stdout, self.err.text())
        return self.result

    def kill(self):
        kill_pid(self.proc)


def counter(stats, name):
    """A counter's value; fails loudly (listing the real names) if the stack
    does not report it, so a renamed counter never passes as zero."""
    if name not in stats:
        raise NetstepError("counter %r not in stats dump; available: %s"
                           % (name, ", ".join(sorted(stats))))
    return stats[name]


def delta(before, after, name):
    return counter(after, name) - counter(before, name)


def changed(before, after):
    """Counters that changed between two dumps (for failure messages)."""
    return {k: after[k] - before.get(k, 0) for k in after if after[k] != before.get(k, 0)}


# --------------------------------------------------------------------------
# raw peer for topology (b)

_libc = ctypes.CDLL(None, use_errno=True)


def _setns(fd):
    if _libc.setns(fd, CLONE_NEWNET) != 0:
        e = ctypes.get_errno()
        raise OSError(e, "setns: " + os.strerror(e))


def open_packet_socket(ns_path, ifname):
    """AF_PACKET socket bound to ifname inside the namespace at ns_path.
    Only the calling thread switches namespace, and only while creating the
    socket."""
    orig = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
    target = os.open(ns_path, os.O_RDONLY)
    try:
        _setns(target)
        try:
            s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
            try:
                try:
                    s.setsockopt(SOL_PACKET, PACKET_IGNORE_OUTGOING, 1)
                except OSError:
                    pass  # old kernel: outgoing frames are filtered by pkttype
                s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
                s.bind((ifname, ETH_P_ALL))
            except BaseException:
                s.close()
                raise
        finally:
            _setns(orig)
    finally:
        os.close(orig)
        os.close(target)
    return s


def mac2bytes(mac):
    return bytes(int(x, 16) for x in mac.split(":"))


def ip2bytes(ip):
    return socket.inet_aton(ip)


class RawPeer:
    """Scripted Ethernet peer on tap0 of a namespace (topology b).

    Received frames are kept (as bytes, with a receive sequence number).
    Tests call ``mark()`` before sending and ``wait_for(pred, since=mark)``
    afterwards, so earlier traffic never satisfies a later expectation.
    """

    def __init__(self, ns, ip=PEER_IP, mac=PEER_MAC, answer_arp=True):
        self.ns = ns
        self.ip = ip
        self.mac = mac
        self.ipb = ip2bytes(ip)
        self.macb = mac2bytes(mac)
        self.answer_arp = answer_arp
        self.sock = open_packet_socket(ns.path(), ns.tap)
        self.frames = []            # list of bytes, index = sequence number
        self.cv = threading.Condition()
        self.arp_replies_sent = 0
        self._stop = False
        self._thread = threading.Thread(target=self._rx_loop, daemon=True)
        self._thread.start()

    # -- lifecycle
    def close(self):
        self._stop = True
        self._thread.join(2)
        try:
            self.sock.close()
        except OSError:
            pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False

    # -- receive side
    def _rx_loop(self):
        while not self._stop:
            try:
                r, _, _ = select.select([self.sock], [], [], 0.1)
                if not r:
                    continue
                data, addr = self.sock.recvfrom(65536)
            except OSError:
                if self._stop:
                    return
                continue
            if addr[2] == PACKET_OUTGOING:
                continue
            if self.answer_arp:
                self._maybe_answer_arp(data)
            with self.cv:
                self.frames.append(data)
                self.cv.notify_all()

    def _maybe_answer_arp(self, f):
        # Ethernet(14) + ARP(28): htype 1, ptype 0x0800, hlen 6, plen 4, op 1
        if len(f) < 42 or f[12:14] != b"\x08\x06":
            return
        htype, ptype, hlen, plen, op = struct.unpack("!HHBBH", f[14:22])
        if (htype, ptype, hlen, plen, op) != (1, ETH_P_IP, 6, 4, 1):
            return
        sha, spa, tpa = f[22:28], f[28:32], f[38:42]
        if tpa != self.ipb:
            return
        reply = (sha + self.macb + b"\x08\x06" +
                 struct.pack("!HHBBH", 1, ETH_P_IP, 6, 4, 2) +
                 self.macb + self.ipb + sha + spa)
        try:
            self.sock.send(reply)
            self.arp_replies_sent += 1
        except OSError:
            pass

    def mark(self):
        with self.cv:
            return len(self.frames)

    def wait_for(self, pred, timeout=2.0, since=0):
        """First frame (from index `since`) for which pred(scapy Ether)
        is true, as a scapy packet; None on timeout."""
        return self.wait_for_index(pred, timeout, since)[0]

    def wait_for_index(self, pred, timeout=2.0, since=0):
        """Like wait_for, but returns (packet, index just after it) so a
        caller can keep scanning from there; (None, index) on timeout."""
        from scapy.layers.l2 import Ether
        deadline = time.monotonic() + timeout
        i = since
        while True:
            with self.cv:
                if i >= len(self.frames):
                    left = deadline - time.monotonic()
                    if left <= 0:
                        return None, i
                    self.cv.wait(left)
                new = self.frames[i:]
            for raw in new:       # parse outside the lock: the RX thread
                i += 1            # must keep answering ARP meanwhile
                pkt = Ether(raw)
                try:
                    if pred(pkt):
                        return pkt, i
                except (AttributeError, IndexError, TypeError):
                    pass

    def collect(self, pred, duration, since=0):
        """All frames matching pred within `duration` seconds."""
        time.sleep(duration)
        from scapy.layers.l2 import Ether
        with self.cv:
            frames = self.frames[since:]
        out = []
        for raw in frames:
            pkt = Ether(raw)
            try:
                if pred(pkt):
                    out.append(pkt)
            except (AttributeError, IndexError, TypeError):
                pass
        return out

    def describe(self, since=0, limit=40):
        """Summaries of frames received since `since`, for failure messages."""
        from scapy.layers.l2 import Ether
        with self.cv:
            frames = self.frames[since:]
        lines = ["  %s" % Ether(f).summary() for f in frames[:limit]]
        if len(frames) > limit:
            lines.append("  ... %d more" % (len(frames) - limit))
        return "frames received since mark (%d):\n%s" % (len(frames), "\n".join(lines))

    # -- send side
    def send(self, frame):
        """Send a scapy packet or raw bytes; returns bytes sent."""
        return self.sock.send(bytes(frame))

    def send_many(self, frames, burst=64, pause=0.002):
        n = 0
        for i, f in enumerate(frames):
            n += self.sock.send(bytes(f))
            if burst and (i + 1) % burst == 0:
                time.sleep(pause)
        return n

    # -- convenience
    def ether(self, dst=NETSTEP_MAC, type=ETH_P_IP):
        from scapy.layers.l2 import Ether
        return Ether(dst=dst, src=self.mac, type=type)

    def echo_request(self, ident, seq, payload=b"", dst=NETSTEP_IP, dst_mac=NETSTEP_MAC,
                     ip_id=None):
        from scapy.layers.inet import IP, ICMP
        ip = IP(src=self.ip, dst=dst, ttl=64)
        if ip_id is not None:
            ip.id = ip_id
        return self.ether(dst=dst_mac) / ip / ICMP(type=8, code=0, id=ident, seq=seq) / payload

    @staticmethod
    def is_echo_reply(ident, seq, src=NETSTEP_IP):
        from scapy.layers.inet import IP, ICMP

        def pred(p):
            return (IP in p and p[IP].src == src and ICMP in p and p[IP].frag == 0
                    and not p[IP].flags.MF
                    and p[ICMP].type == 0 and p[ICMP].id == ident and p[ICMP].seq == seq)
        return pred

    def ping(self, ident=None, seq=1, payload=b"netstep-alive-check", timeout=2.0):
        """One echo request; returns the reply packet or None."""
        if ident is None:
            ident = random.randrange(1, 0xffff)
        m = self.mark()
        self.send(self.echo_request(ident, seq, payload))
        return self.wait_for(self.is_echo_reply(ident, seq), timeout=timeout, since=m)

    def ping_ok(self, tries=3, timeout=1.5):
        """True if the stack answers an echo request (a few tries, so one
        frame lost to a full input queue right after a flood is forgiven)."""
        for i in range(tries):
            if self.ping(seq=i + 1, timeout=timeout) is not None:
                return True
        return False


# --------------------------------------------------------------------------
# IPv4 fragment helpers (by hand, so malformed trains are easy to express)

def ip_checksum(b):
    if len(b) % 2:
        b += b"\0"
    s = sum(struct.unpack("!%dH" % (len(b) // 2), b))
    while s >> 16:
        s = (s & 0xffff) + (s >> 16)
    return (~s) & 0xffff


def ipv4_header(src, dst, proto, payload_len, ident=0, flags_frag=0, ttl=64,
                ihl=5, total_len=None, version=4, options=b"", checksum=None):
    """Raw IPv4 header bytes; total_len/ihl/version/checksum may be forced to
    wrong values.  The checksum covers the bytes actually produced."""
    if total_len is None:
        total_len = ihl * 4 + payload_len
    hdr = struct.pack("!BBHHHBBH4s4s", (version << 4) | (ihl & 0xf), 0, total_len & 0xffff,
                      ident, flags_frag, ttl, proto, 0, ip2bytes(src), ip2bytes(dst)) + options
    if checksum is None:
        checksum = ip_checksum(hdr)
    return hdr[:10] + struct.pack("!H", checksum) + hdr[12:]


def fragments(src, dst, proto, payload, ident, size):
    """Split payload into (offset_bytes, more_fragments, chunk) tuples, size
    a multiple of 8."""
    assert size % 8 == 0
    out = []
    for off in range(0, len(payload), size):
        chunk = payload[off:off + size]
        out.append((off, off + size < len(payload), chunk))
    return out


def fragment_frame(src_mac, dst_mac, src, dst, proto, ident, off, mf, chunk):
    ff = (0x2000 if mf else 0) | (off // 8)
    hdr = ipv4_header(src, dst, proto, len(chunk), ident=ident, flags_frag=ff)
    return mac2bytes(dst_mac) + mac2bytes(src_mac) + b"\x08\x00" + hdr + chunk


def reassemble(frags):
    """Reassemble scapy IP fragments (same id) into the payload bytes after
    the IP header; raises AssertionError on gaps or a missing last fragment."""
    from scapy.layers.inet import IP
    parts = sorted(((p[IP].frag * 8, bytes(p[IP].payload)[:p[IP].len - p[IP].ihl * 4],
                     bool(p[IP].flags.MF)) for p in frags), key=lambda t: t[0])
    data = b""
    last_seen = False
    for off, chunk, mf in parts:
        assert off == len(data), "gap or overlap in reply fragments at offset %d (have %d)" % (off, len(data))
        data += chunk
        if not mf:
            last_seen = True
    assert last_seen, "last fragment (MF=0) of the reply missing"
    return data
