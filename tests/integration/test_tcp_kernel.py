"""TCP with the Linux kernel as netstep's peer (topology a).

tap0 in a fresh namespace is 192.0.2.1/24; netstep's apps are 192.0.2.2.
Kernel-side clients and servers are Python sockets created inside the
namespace (apps.ns_socket), or real tools (curl, chromium, tcpdump) run with
`ip netns exec`.  Every transfer is checked byte for byte; every wait is
bounded.  Throughput figures are printed (also when pytest captures output)
as "ECHO_100MIB_SECONDS x", "DISCARD_MBPS x", "CHARGEN_MBPS x".
"""

import contextlib
import hashlib
import os
import re
import shutil
import signal
import socket
import struct
import subprocess
import tempfile
import threading
import time
import zlib
from pathlib import Path

import pytest

import apps
import netstep
from netstep import NETSTEP_IP, PEER_IP, delta

pytestmark = pytest.mark.needs_bin("echo-server", "discard-server", "chargen-server",
                                   "tcp-client", "http-server")

MiB = 1 << 20
# Under `make asan test` / `make tsan test` (tools/run-tests sets SANITIZER)
# the stack runs several times slower: bulk transfers shrink so the suite
# stays bounded; `make test` and `make bench` keep the full sizes.
SCALE = 8 if os.environ.get("SANITIZER") else 1
CHROMIUM = "/usr/bin/chromium"
CURL = shutil.which("curl")
TSHARK = shutil.which("tshark")
TCPDUMP = shutil.which("tcpdump")


# --------------------------------------------------------------------------
# helpers

@pytest.fixture
def report(capsys):
    """report("NAME", value): one 'NAME value' line on the real stdout, even
    when pytest captures output, so the figure can be copied from any run."""
    def _report(name, value):
        with capsys.disabled():
            print("\n%s %s" % (name, value), flush=True)
    return _report


@contextlib.contextmanager
def running(ns, name, extra=()):
    """A netstep app for the duration of the block; afterwards it must exit
    0 on SIGINT (checked only if the block itself succeeded)."""
    app = apps.App(ns, name, extra=extra)
    ok = False
    try:
        yield app
        ok = True
    finally:
        rc, out, err = app.stop()
        if ok:
            assert rc == 0, "%s exit code %s after SIGINT\n%s" % (name, rc, app.describe())


class Reader(threading.Thread):
    """Reads a socket until EOF (or an error), hashing and counting; keeps
    the data too if keep=True."""

    def __init__(self, sock, keep=False, limit=None):
        super().__init__(daemon=True)
        self.sock = sock
        self.keep = keep
        self.limit = limit
        self.h = hashlib.sha256()
        self.n = 0
        self.chunks = []
        self.error = None
        self.eof = False

    def run(self):
        try:
            while self.limit is None or self.n < self.limit:
                b = self.sock.recv(MiB)
                if not b:
                    self.eof = True
                    break
                self.h.update(b)
                self.n += len(b)
                if self.keep:
                    self.chunks.append(b)
        except OSError as e:
            self.error = e

    def data(self):
        return b"".join(self.chunks)


class SlowWatch(threading.Thread):
    """Samples `ss -tin FILTER` in the namespace every 2 s while a transfer
    runs, so a stall can be explained afterwards."""

    def __init__(self, ns, filt):
        super().__init__(daemon=True)
        self.ns, self.filt = ns, filt
        self.samples = []
        self.halt = threading.Event()
        self.start()

    def run(self):
        t0 = time.monotonic()
        while not self.halt.wait(2.0):
            r = self.ns.run(["ss", "-tin", self.filt], timeout=5)
            self.samples.append("t=%.0fs %s" % (time.monotonic() - t0,
                                                 " ".join(r.stdout.split())[-600:]))

    def stop(self):
        self.halt.set()
        self.join(6)


def echo_roundtrip(ns, data, port=7, timeout=30.0):
    """Send data through netstep's echo server from a kernel socket, reading
    concurrently; returns (sha256 of what came back, bytes back, seconds)."""
    s = apps.ns_connect(ns, (NETSTEP_IP, port))
    s.settimeout(timeout)
    try:
        r = Reader(s, limit=len(data))
        t0 = time.monotonic()
        r.start()
        s.sendall(data)
        r.join(timeout)
        elapsed = time.monotonic() - t0
        assert not r.is_alive(), "echo: only %d of %d bytes back within %.0fs" % (
            r.n, len(data), timeout)
        assert r.error is None, "echo: reading failed after %d bytes: %r" % (r.n, r.error)
        # graceful end: our FIN, then the server's
        s.shutdown(socket.SHUT_WR)
        s.settimeout(5)
        assert s.recv(1) == b"", "echo server sent more than it was sent"
        return r.h.hexdigest(), r.n, elapsed
    finally:
        s.close()


# --------------------------------------------------------------------------
# bulk transfers

def test_echo_100mib_sha256(kernel_ns, report):
    data = os.urandom(100 * MiB // SCALE)
    with running(kernel_ns, "echo-server") as app:
        digest, n, secs = echo_roundtrip(kernel_ns, data, timeout=45)
        assert n == len(data)
        assert digest == hashlib.sha256(data).hexdigest(), "echoed 100 MiB differ (sha256)"
        assert app.alive()
    report("ECHO_100MIB_SECONDS", "%.3f" % secs)


def test_echo_64_concurrent_clients(kernel_ns):
    nclients, size = 64, MiB // SCALE
    payloads = [os.urandom(size) for _ in range(nclients)]
    results = [None] * nclients

    def client(i):
        try:
            results[i] = echo_roundtrip(kernel_ns, payloads[i], timeout=40)
        except BaseException as e:  # noqa: B902 - reported below
            results[i] = e

    with running(kernel_ns, "echo-server") as app:
        before = app.stats()
        threads = [threading.Thread(target=client, args=(i,), daemon=True) for i in range(nclients)]
        for t in threads:
            t.start()
        deadline = time.monotonic() + 45
        for t in threads:
            t.join(max(0.1, deadline - time.monotonic()))
        stuck = [i for i, t in enumerate(threads) if t.is_alive()]
        assert not stuck, "clients %s did not finish within 45s" % stuck
        bad = {}
        for i, r in enumerate(results):
            if isinstance(r, BaseException):
                bad[i] = repr(r)
            elif r[0] != hashlib.sha256(payloads[i]).hexdigest() or r[1] != size:
                bad[i] = "data differ (%d bytes back)" % r[1]
        assert not bad, "%d of %d clients failed: %s" % (len(bad), nclients, bad)
        after = app.stats()
        assert delta(before, after, "tcp.passive_opens") >= nclients


DISCARD_RE = r"discard-server: tcp %s:%d: discarded (\d+) bytes in ([\d.]+) s \(([\d.]+) MB/s\)(.*)$"


def test_discard_256mib(kernel_ns, report):
    total = 256 * MiB // SCALE
    block = os.urandom(MiB)
    with running(kernel_ns, "discard-server") as app:
        before = app.stats()
        s = apps.ns_connect(kernel_ns, (NETSTEP_IP, 9))
        s.settimeout(45)
        lport = s.getsockname()[1]
        watch = SlowWatch(kernel_ns, "dport = :9")
        try:
            t0 = time.monotonic()
            mv = memoryview(block)
            for _ in range(total // MiB):
                s.sendall(mv)
            s.shutdown(socket.SHUT_WR)
            assert s.recv(1) == b"", "discard server sent data"   # its FIN
            secs = time.monotonic() - t0
        finally:
            watch.stop()
            s.close()
        after = app.stats()
        if secs > 10:
            report("DISCARD_SLOW", "%.1fs; netstep counters: %s; kernel socket: %s" % (
                secs, {k: v for k, v in netstep.changed(before, after).items()
                       if k.startswith(("tcp.", "net.", "dev."))}, watch.samples[-3:]))
        m = app.wait_stdout(DISCARD_RE % (re.escape(PEER_IP), lport), timeout=10)
        assert m, "no discard report for our connection\n" + app.describe()
        assert int(m.group(1)) == total, "discard-server counted %s bytes, we sent %d" % (
            m.group(1), total)
        assert "error" not in m.group(4), m.group(0)
    report("DISCARD_MBPS", "%.1f" % (total / secs / 1e6))


def chargen_pattern():
    """One period of the RFC 864 stream: 95 lines of 72 chars + CRLF, line k
    starting at printable character k."""
    lines = []
    for k in range(95):
        lines.append(bytes(32 + (k + i) % 95 for i in range(72)) + b"\r\n")
    return b"".join(lines)


def test_chargen_256mib(kernel_ns, report):
    total = 256 * MiB // SCALE
    period = chargen_pattern()
    plen = len(period)
    big = period * (2 * MiB // plen + 2)       # any 1 MiB window at any phase
    with running(kernel_ns, "chargen-server", extra=["--bytes", str(total)]):
        s = apps.ns_connect(kernel_ns, (NETSTEP_IP, 19))
        s.settimeout(30)
        try:
            n, first, bad_at = 0, b"", None
            t0 = time.monotonic()
            while True:
                b = s.recv(MiB)
                if not b:
                    break
                if len(first) < 4096:
                    first += b[:4096 - len(first)]
                ph = n % plen
                if bad_at is None and b != big[ph:ph + len(b)]:
                    exp = big[ph:ph + len(b)]
                    i = next(j for j in range(len(b)) if j >= len(exp) or b[j] != exp[j])
                    bad_at = n + i
                n += len(b)
                if n > total:
                    break
            secs = time.monotonic() - t0
        finally:
            s.close()
    assert n == total, "received %d bytes from chargen --bytes %d" % (n, total)
    assert bad_at is None, "RFC 864 pattern wrong at byte %d" % bad_at
    lines = first.split(b"\r\n")
    assert lines[0] == bytes(range(32, 104)), lines[0]              # ' ' .. 'g'
    assert lines[1] == bytes(range(33, 105)), lines[1]              # '!' .. 'h'
    assert lines[0][0:1] == b" " and lines[1][0:1] == b"!" and lines[2][0:1] == b'"'
    assert all(len(l) == 72 for l in lines[:50])
    report("CHARGEN_MBPS", "%.1f" % (total / secs / 1e6))


# --------------------------------------------------------------------------
# tcp-client against kernel servers

def _write_tmp(tmp_path, name, data):
    p = tmp_path / name
    p.write_bytes(data)
    return p


def _run_client(ns, tmp_path, host, port, stdin_data=None, stdin=None, timeout=10, wall=30):
    """tcp-client with stdin from a file (or a given pipe); returns
    (rc, stdout bytes, stderr text, seconds)."""
    out_path = tmp_path / "client.out"
    err_path = tmp_path / "client.err"
    stdin_f = None
    if stdin is None:
        stdin_f = open(_write_tmp(tmp_path, "client.in", stdin_data or b""), "rb")
        stdin = stdin_f
    with open(out_path, "wb") as out, open(err_path, "wb") as err:
        t0 = time.monotonic()
        p = ns.popen(apps.client_argv(ns, host, port, timeout=timeout), stdin=stdin, stdout=out,
                     stderr=err)
        try:
            p.wait(timeout=wall)
        except subprocess.TimeoutExpired:
            netstep.kill_pid(p)
            raise AssertionError("tcp-client still running after %ss:\n%s" % (
                wall, err_path.read_text(errors="replace")))
        finally:
            if stdin_f:
                stdin_f.close()
        secs = time.monotonic() - t0
    return p.returncode, out_path.read_bytes(), err_path.read_text(errors="replace"), secs


class KernelServer(threading.Thread):
    """One-connection kernel server in ns; `handler(conn)` does the talking."""

    def __init__(self, ns, handler):
        super().__init__(daemon=True)
        self.lsock, self.port = apps.ns_listener(ns)
        self.lsock.settimeout(20)
        self.handler = handler
        self.error = None
        self.result = None

    def run(self):
        try:
            conn, _ = self.lsock.accept()
            conn.settimeout(20)
            with conn:
                self.result = self.handler(conn)
        except BaseException as e:  # noqa: B902 - reported by the test
            self.error = e
        finally:
            self.lsock.close()


def _recv_all(conn):
    chunks = []
    while True:
        b = conn.recv(MiB)
        if not b:
            return b"".join(chunks)
        chunks.append(b)


def test_tcp_client_half_close_then_reply(kernel_ns, tmp_path):
    """3 MB client -> kernel; the client half-closes at stdin EOF; only then
    does the kernel reply with 3 MB, which the client still receives."""
    up, down = os.urandom(3_000_000), os.urandom(3_000_000)

    def handler(conn):
        got = _recv_all(conn)          # ends at the client's FIN
        conn.sendall(down)             # the client's read side is still open
        return got

    srv = KernelServer(kernel_ns, handler)
    srv.start()
    rc, out, err, _ = _run_client(kernel_ns, tmp_path, PEER_IP, srv.port, stdin_data=up)
    srv.join(10)
    assert srv.error is None, "kernel server: %r" % srv.error
    assert srv.result is not None and len(srv.result) == len(up), \
        "kernel got %s of %d bytes" % (srv.result and len(srv.result), len(up))
    assert srv.result == up, "bytes the kernel received differ"
    assert rc == 0, "tcp-client rc=%s: %s" % (rc, err)
    assert len(out) == len(down), "client printed %d of %d bytes" % (len(out), len(down))
    assert out == down, "bytes the client received differ"


def test_tcp_client_full_duplex(kernel_ns, tmp_path):
    """3 MB each way at the same time."""
    up, down = os.urandom(3_000_000), os.urandom(3_000_000)

    def handler(conn):
        sender = threading.Thread(target=conn.sendall, args=(down,), daemon=True)
        sender.start()
        got = _recv_all(conn)
        sender.join(20)
        assert not sender.is_alive(), "kernel could not send its 3 MB"
        return got

    srv = KernelServer(kernel_ns, handler)
    srv.start()
    rc, out, err, _ = _run_client(kernel_ns, tmp_path, PEER_IP, srv.port, stdin_data=up)
    srv.join(10)
    assert srv.error is None, "kernel server: %r" % srv.error
    assert srv.result == up, "bytes the kernel received differ (%s of %d)" % (
        srv.result and len(srv.result), len(up))
    assert rc == 0, "tcp-client rc=%s: %s" % (rc, err)
    assert out == down, "bytes the client received differ (%d of %d)" % (len(out), len(down))


# --------------------------------------------------------------------------
# refused, reset, timeout

def test_tcp_client_connection_refused(kernel_ns, tmp_path):
    s, port = apps.ns_listener(kernel_ns)      # find a free port, then free it
    s.close()
    rc, out, err, secs = _run_client(kernel_ns, tmp_path, PEER_IP, port, timeout=5)
    assert rc == 1, "rc=%s stderr=%s" % (rc, err)
    assert re.search(r"refused", err, re.I), err
    assert secs < 5, "a refused connect took %.1fs" % secs


def test_tcp_client_reset_while_reading(kernel_ns, tmp_path):
    """The kernel accepts, sends a little, then aborts (SO_LINGER {1,0} -> RST)
    while tcp-client is blocked reading with stdin still open."""
    def handler(conn):
        conn.sendall(b"hello before the reset\n")
        time.sleep(0.5)
        conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))

    srv = KernelServer(kernel_ns, handler)
    srv.start()
    r, w = os.pipe()             # stdin stays open: the client only reads
    try:
        rc, out, err, secs = _run_client(kernel_ns, tmp_path, PEER_IP, srv.port, stdin=r,
                                         timeout=10, wall=15)
    finally:
        os.close(r)
        os.close(w)
    srv.join(5)
    assert srv.error is None, repr(srv.error)
    assert out == b"hello before the reset\n", out
    assert rc == 1, "rc=%s stderr=%s" % (rc, err)
    assert re.search(r"reset", err, re.I), err
    assert secs < 8, "tcp-client took %.1fs to notice the reset" % secs


def test_kernel_reset_mid_transfer_leaves_echo_server_serving(kernel_ns):
    with running(kernel_ns, "echo-server") as app:
        before = app.stats()
        s = apps.ns_connect(kernel_ns, (NETSTEP_IP, 7))
        s.settimeout(10)
        # 2 MB in without reading the echo: both directions fill up
        s.setblocking(False)
        sent, blob = 0, os.urandom(2 * MiB)
        deadline = time.monotonic() + 3
        while sent < len(blob) and time.monotonic() < deadline:
            try:
                sent += s.send(blob[sent:sent + 65536])
            except BlockingIOError:
                time.sleep(0.01)
        assert sent > 100_000, "could only send %d bytes" % sent
        s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        s.close()                                   # RST
        time.sleep(0.5)
        assert app.alive(), "echo-server died after a RST\n" + app.describe()
        data = os.urandom(200_000)
        digest, n, _ = echo_roundtrip(kernel_ns, data, timeout=10)
        assert n == len(data) and digest == hashlib.sha256(data).hexdigest()
        after = app.stats()
        assert delta(before, after, "tcp.in_rsts") >= 1, netstep.changed(before, after)
        assert delta(before, after, "tcp.passive_opens") == 2


def test_tcp_client_connect_timeout_no_host(kernel_ns, tmp_path):
    """192.0.2.77 does not exist: ARP never resolves; --timeout 3 bounds it."""
    rc, out, err, secs = _run_client(kernel_ns, tmp_path, "192.0.2.77", 80, timeout=3, wall=20)
    assert rc == 1, "rc=%s stderr=%s" % (rc, err)
    assert re.search(r"timed out|unreachable", err, re.I), err
    assert secs < 3 + 5, "tcp-client --timeout 3 took %.1fs: %s" % (secs, err)


# --------------------------------------------------------------------------
# http-server with curl and chromium

INDEX_COLOR = (0x1e, 0x90, 0xff)     # dodgerblue
INDEX_HTML = ("<!doctype html><html><head><title>netstep</title><style>"
              "html,body{margin:0;height:100%%;background:#%02x%02x%02x}</style></head>"
              "<body></body></html>\n" % INDEX_COLOR)


def _site(tmp_path):
    root = tmp_path / "www"
    (root / "sub").mkdir(parents=True)
    files = {
        "index.html": INDEX_HTML.encode(),
        "hello.txt": b"hello from netstep\n",
        "style.css": b"body { color: red }\n" * 50,
        "big.bin": os.urandom(5_000_000),
        "sub/page.html": b"<p>sub</p>\n" * 1000,
    }
    for name, data in files.items():
        (root / name).write_bytes(data)
    os.chmod(tmp_path, 0o755)
    return root, files


def _curl(ns, *args, timeout=30):
    return ns.run([CURL, "-sS", "--max-time", "20", *args], timeout=timeout)


@pytest.mark.skipif(CURL is None, reason="curl not installed (apt install curl)")
def test_http_server_with_curl(kernel_ns, tmp_path):
    root, files = _site(tmp_path)
    with running(kernel_ns, "http-server", extra=["--root", str(root)]) as app:
        for name, data in files.items():
            out = tmp_path / "got"
            r = _curl(kernel_ns, "-o", out, "-w", "%{http_code} %{size_download}",
                      "http://%s/%s" % (NETSTEP_IP, name))
            assert r.returncode == 0, "curl %s: %s" % (name, r.stderr)
            assert r.stdout == "200 %d" % len(data), "%s: %s" % (name, r.stdout)
            assert out.read_bytes() == data, "%s differs" % name

        # keep-alive: two URLs, one curl; the second reuses the connection
        before = app.stats()
        r = _curl(kernel_ns, "-o", "/dev/null", "-o", "/dev/null", "-w", "%{num_connects}\n",
                  "http://%s/hello.txt" % NETSTEP_IP, "http://%s/big.bin" % NETSTEP_IP)
        after = app.stats()
        assert r.returncode == 0, r.stderr
        assert r.stdout.split() == ["1", "0"], \
            "num_connects per transfer %r: the second did not reuse the connection" % r.stdout
        assert delta(before, after, "tcp.passive_opens") == 1

        r = _curl(kernel_ns, "-o", "/dev/null", "-w", "%{http_code}",
                  "http://%s/no-such-file.html" % NETSTEP_IP)
        assert r.stdout == "404", r.stdout + r.stderr
        r = _curl(kernel_ns, "--path-as-is", "-o", "/dev/null", "-w", "%{http_code}",
                  "http://%s/../etc/passwd" % NETSTEP_IP)
        assert r.stdout == "403", r.stdout + r.stderr
        r = _curl(kernel_ns, "--path-as-is", "-o", "/dev/null", "-w", "%{http_code}",
                  "http://%s/sub/../../etc/passwd" % NETSTEP_IP)
        assert r.stdout == "403", r.stdout + r.stderr
        # a directory gives its index.html
        r = _curl(kernel_ns, "http://%s/" % NETSTEP_IP)
        assert r.returncode == 0 and r.stdout == INDEX_HTML, r.stdout[:200] + r.stderr


def png_pixels(path):
    """Decode an 8-bit RGB/RGBA non-interlaced PNG (what Chromium writes):
    returns (width, height, channels, rows as bytes)."""
    b = Path(path).read_bytes()
    assert b[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    i, idat, hdr = 8, b"", None
    while i < len(b):
        n, typ = struct.unpack("!I4s", b[i:i + 8])
        body = b[i + 8:i + 8 + n]
        if typ == b"IHDR":
            hdr = struct.unpack("!IIBBBBB", body)
        elif typ == b"IDAT":
            idat += body
        elif typ == b"IEND":
            break
        i += 12 + n
    w, h, depth, ctype, _, _, interlace = hdr
    assert depth == 8 and ctype in (2, 6) and interlace == 0, "unsupported PNG %r" % (hdr,)
    ch = 3 if ctype == 2 else 4
    raw = zlib.decompress(idat)
    stride = w * ch
    rows, prev, pos = [], bytearray(stride), 0
    for _ in range(h):
        f = raw[pos]
        line = bytearray(raw[pos + 1:pos + 1 + stride])
        pos += 1 + stride
        if f == 1:
            for x in range(ch, stride):
                line[x] = (line[x] + line[x - ch]) & 0xff
        elif f == 2:
            for x in range(stride):
                line[x] = (line[x] + prev[x]) & 0xff
        elif f == 3:
            for x in range(stride):
                left = line[x - ch] if x >= ch else 0
                line[x] = (line[x] + ((left + prev[x]) >> 1)) & 0xff
        elif f == 4:
            for x in range(stride):
                a = line[x - ch] if x >= ch else 0
                c = prev[x - ch] if x >= ch else 0
                bb = prev[x]
                p = a + bb - c
                pa, pb, pc = abs(p - a), abs(p - bb), abs(p - c)
                pr = a if pa <= pb and pa <= pc else (bb if pb <= pc else c)
                line[x] = (line[x] + pr) & 0xff
        rows.append(bytes(line))
        prev = line
    return w, h, ch, rows


@pytest.mark.skipif(not os.access(CHROMIUM, os.X_OK),
                    reason="chromium not installed (apt-get install chromium)")
def test_chromium_loads_page(kernel_ns, tmp_path):
    root, _ = _site(tmp_path)
    shot = tmp_path / "shot.png"
    profile = tempfile.mkdtemp(prefix="nst-chromium-")
    try:
        with running(kernel_ns, "http-server", extra=["--root", str(root)]) as app:
            before = app.stats()
            r = kernel_ns.run([CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu",
                               "--disable-quic", "--no-first-run", "--disable-background-networking",
                               "--disable-component-update", "--disable-sync",
                               "--disable-dev-shm-usage", "--user-data-dir=" + profile,
                               "--screenshot=" + str(shot), "--window-size=800,600",
                               "http://%s/index.html" % NETSTEP_IP], timeout=45)
            after = app.stats()
    finally:
        shutil.rmtree(profile, ignore_errors=True)
    assert shot.exists(), "chromium wrote no screenshot (rc=%s)\n%s" % (r.returncode, r.stderr[-2000:])
    assert delta(before, after, "tcp.passive_opens") >= 1, "chromium never connected"
    w, h, ch, rows = png_pixels(shot)
    assert (w, h) == (800, 600), (w, h)
    total = match = white = 0
    for y in range(0, h, 4):
        row = rows[y]
        for x in range(0, w, 4):
            px = row[x * ch:x * ch + 3]
            total += 1
            if all(abs(px[k] - INDEX_COLOR[k]) <= 8 for k in range(3)):
                match += 1
            elif px == b"\xff\xff\xff":
                white += 1
    assert match > 0.9 * total, "only %d of %d sampled pixels have the page colour (%d white)" % (
        match, total, white)


# --------------------------------------------------------------------------
# the capture of a small session is clean

@pytest.mark.skipif(TSHARK is None or TCPDUMP is None, reason="tshark/tcpdump not installed")
def test_capture_clean_in_tshark(kernel_ns, tmp_path):
    cap = tmp_path / "echo.pcap"
    os.chmod(tmp_path, 0o777)
    dump = kernel_ns.popen([TCPDUMP, "-i", "tap0", "-U", "--immediate-mode", "-n", "-Z", "root", "-w", cap],
                           stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 5
        while not (cap.exists() and cap.stat().st_size >= 24) and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(0.3)
        with running(kernel_ns, "echo-server"):
            for i in range(3):
                msg = os.urandom(3000 * (i + 1))
                digest, n, _ = echo_roundtrip(kernel_ns, msg, timeout=10)
                assert digest == hashlib.sha256(msg).hexdigest()
            time.sleep(0.3)
    finally:
        if dump.poll() is None:
            os.kill(dump.pid, signal.SIGINT)
        try:
            dump.wait(5)
        except subprocess.TimeoutExpired:
            netstep.kill_pid(dump)
    dump_err = dump.stderr.read().decode(errors="replace")
    r = subprocess.run([TSHARK, "-r", str(cap), "-o", "tcp.check_checksum:TRUE",
                        "-o", "ip.check_checksum:TRUE", "-q", "-z", "expert"],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert not re.search(r"^\s*Errors \(\d+\)", r.stdout, re.M), "tshark expert errors:\n" + r.stdout
    assert "Malformed" not in r.stdout, r.stdout
    bad = subprocess.run([TSHARK, "-r", str(cap), "-o", "tcp.check_checksum:TRUE",
                          "-o", "ip.check_checksum:TRUE", "-Y",
                          "_ws.malformed || _ws.expert.severity == error || "
                          "tcp.checksum.status == 0 || ip.checksum.status == 0",
                          "-T", "fields", "-e", "frame.number"],
                         capture_output=True, text=True, timeout=60)
    assert bad.returncode == 0, bad.stderr
    assert bad.stdout.split() == [], "bad frames: %s\n%s" % (bad.stdout.split(), r.stdout)
    n = subprocess.run([TSHARK, "-r", str(cap), "-Y", "tcp.port == 7", "-T", "fields",
                        "-e", "frame.number"], capture_output=True, text=True, timeout=60)
    assert len(n.stdout.split()) >= 20, "capture holds too few TCP frames: %s\ntcpdump: %s" % (
        n.stdout, dump_err)
