"""The experiments of docs/, run as written, with the lines the chapters
promise checked against what really happens.

Each chapter of docs/ ends with an Experiment: commands a reader runs as
root in a namespace "lab" where tap0 is 192.0.2.1/24 and netstep is
192.0.2.2 with the MAC derived from the tap's name.  Each test below runs
one chapter's experiment in a fresh namespace from the harness (the
kernel_ns fixture: topology (a) of the testing guide), asserts the key lines
and counter values the chapter shows, and -- through doc_shows() -- that the
chapter still shows them, so text and code cannot drift apart silently.
The Python the chapters feed to `python3 -` (scapy and socket snippets) is
taken from the chapter itself, not copied here.

Two tests look only at the text: every counter named in backticks must exist
in a real stats dump, and every function, constant or file named in
backticks must exist in the source tree.

Every subprocess has a timeout; every process is started through the
namespace (Netns.popen / Netns.run), so the fixture kills it by PID and
deletes the namespace whatever happens.
"""

import fnmatch
import os
import re
import shutil
import signal
import subprocess
import time

import pytest

import netstep
from netstep import bin_path, counter

DOCS = netstep.REPO_ROOT / "docs"
CHAPTERS = [
    "01-devices-and-the-stack-thread.md",
    "02-ethernet-over-tap.md",
    "03-arp.md",
    "04-ipv4-routing-and-fragments.md",
    "05-icmp-and-ping.md",
    "06-sockets-and-blocking-calls.md",
    "07-udp.md",
]
OTHER_PAGES = ["architecture.md", "locking.md"]

PY = "/usr/bin/python3"
DOC_MAC = "02:00:b5:4a:63:d6"        # ether_addr_from_name("tap0"), as the docs show it
MAC_RE = r"[0-9a-f]{2}(?::[0-9a-f]{2}){5}"
TS = r"^\d\d:\d\d:\d\d\.\d{3} "       # log line timestamp
SUMMARY = r"(\d+) packets transmitted, (\d+) received,(?: \+(\d+) errors,)? ([\d.]+)% packet loss"


# --------------------------------------------------------------------------
# reading the docs

def doc(name):
    return (DOCS / name).read_text()


def doc_shows(name, regex):
    """Assert that some line of docs/name matches regex (re.search)."""
    r = re.compile(regex)
    assert any(r.search(line) for line in doc(name).splitlines()), \
        "docs/%s no longer shows a line matching %r" % (name, regex)


def doc_script(name, marker):
    """The `python3 - <<'EOF' ... EOF` snippet of docs/name containing marker."""
    scripts = re.findall(r"python3 - <<'EOF'\n(.*?)\nEOF\n", doc(name), re.S)
    found = [s for s in scripts if marker in s]
    assert len(found) == 1, "docs/%s: expected one python snippet containing %r, found %d" % (
        name, marker, len(found))
    return found[0] + "\n"


def inline_code(text):
    """Backticked spans outside fenced code blocks."""
    text = re.sub(r"^```.*?^```", "", text, flags=re.S | re.M)
    return re.findall(r"`([^`\n]+)`", text)


# --------------------------------------------------------------------------
# running things in the namespace

def py(ns, script, timeout=30):
    """Run a Python snippet inside the namespace, as `ip netns exec lab python3 -`."""
    r = netstep.run(ns.cmd([PY, "-"]), timeout=timeout, check=False, input=script)
    assert r.returncode == 0, "snippet failed (%d)\n%s\nstdout: %s\nstderr: %s" % (
        r.returncode, script, r.stdout, r.stderr)
    return r.stdout


def sh(ns, argv, timeout=15, rc=None):
    r = ns.run(argv, timeout=timeout)
    if rc is not None:
        assert r.returncode == rc, "%s: exit %d, expected %d\nstdout: %s\nstderr: %s" % (
            " ".join(map(str, argv)), r.returncode, rc, r.stdout, r.stderr)
    return r


def wait_link(ns):
    """The kernel drops what it sends into a tap until linkwatch has
    activated it (see Netns.wait_link_up); wait for that if we can."""
    w = getattr(ns, "wait_link_up", None)
    if w:
        w()
    else:
        time.sleep(0.5)


def need(*tools):
    missing = [t for t in tools if not shutil.which(t)]
    if missing:
        pytest.skip("not installed: " + ", ".join(missing))


class App(netstep.Netstepd):
    """Any build/bin program, started as the docs start it (defaults for
    --tap, --addr, --gw, --mac) plus `args`; waits for a stdout line
    matching `ready`.  Stats (SIGUSR1) and stop() as Netstepd."""

    def __init__(self, ns, name, args=(), ready=r"listening on"):
        self.ns = ns
        self.READY_RE = re.compile(ready)
        self.argv = [bin_path(name)] + list(args)
        self.proc = ns.popen(self.argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             text=True, bufsize=1)
        self.out = netstep._LineReader(self.proc.stdout)
        self.err = netstep._LineReader(self.proc.stderr)
        self.out.start()
        self.err.start()
        self.ready_line = None
        self.result = None
        self._wait_ready()
        wait_link(ns)


def netstepd(ns, log=None, extra=()):
    d = netstep.Netstepd(ns, mac=DOC_MAC, log=log, extra=extra)
    wait_link(ns)
    return d


def stop_ok(app):
    rc, out, err = app.stop()
    assert rc == 0, "%s exit %s\nstderr (tail):\n%s" % (app.argv[0], rc, err[-3000:])
    return out, err


class Capture:
    """tcpdump on tap0 in the namespace; ready once it says "listening on"."""

    def __init__(self, ns, args, timeout=10.0):
        self.proc = ns.popen(["tcpdump", "-i", "tap0", "-n", "-l"] + list(args),
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, bufsize=1)
        self.out = netstep._LineReader(self.proc.stdout)
        self.err = netstep._LineReader(self.proc.stderr)
        self.out.start()
        self.err.start()
        deadline = time.monotonic() + timeout
        while not any("listening on" in l for l in self.err.lines):
            assert self.proc.poll() is None, "tcpdump exited: " + self.err.text()
            assert time.monotonic() < deadline, "tcpdump not ready: " + self.err.text()
            time.sleep(0.05)

    def stop(self, timeout=5.0):
        """Lines captured so far (stops tcpdump if it still runs)."""
        if self.proc.poll() is None:
            time.sleep(0.3)           # let the last frames through
            os.kill(self.proc.pid, signal.SIGINT)
        try:
            self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            netstep.kill_pid(self.proc)
        self.out.join(2)
        return list(self.out.lines)

    def wait_exit(self, timeout):
        """For `tcpdump -c N`: wait until it has its N frames."""
        try:
            self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            pass
        return self.stop()


def tasks(pid):
    """{thread name: tid} of a process."""
    out = {}
    # the oldest thread of a name wins: under ThreadSanitizer its runtime's
    # background thread is named after the thread that started it
    for tid in sorted(os.listdir("/proc/%d/task" % pid), key=int):
        with open("/proc/%d/task/%s/comm" % (pid, tid)) as f:
            out.setdefault(f.read().strip(), int(tid))
    return out


def task_field(pid, tid, name):
    with open("/proc/%d/task/%d/status" % (pid, tid)) as f:
        for line in f:
            if line.startswith(name + ":"):
                return line.split(":", 1)[1].strip()
    raise AssertionError("no %s in task status" % name)


def wchan(pid, tid):
    with open("/proc/%d/task/%d/wchan" % (pid, tid)) as f:
        return f.read().strip()


def voluntary(pid, tid):
    return int(task_field(pid, tid, "voluntary_ctxt_switches"))


def settled_voluntary(pid, tid, wait_in, timeout=5.0):
    """voluntary_ctxt_switches once the thread is back asleep in wait_in
    (a wchan substring) and its count has stopped moving: a thread that has
    just printed a stats block still has to free its buffers and go back
    to sleep, and that last sleep must not count as a wake-up."""
    deadline = time.monotonic() + timeout
    last = None
    while True:
        n = voluntary(pid, tid)
        if n == last and wait_in in wchan(pid, tid):
            return n
        assert time.monotonic() < deadline, \
            "thread %d never settled in %s (wchan %r)" % (tid, wait_in, wchan(pid, tid))
        last = n
        time.sleep(0.1)


def matching(lines, regex):
    r = re.compile(regex)
    return [l for l in lines if r.search(l)]


def one(lines, regex, what=""):
    found = matching(lines, regex)
    assert found, "no line matching %r %s in:\n%s" % (regex, what, "\n".join(lines)[-4000:])
    return found[0]


def summary(text):
    m = re.search(SUMMARY, text)
    assert m, "no ping summary in:\n" + text
    return int(m.group(1)), int(m.group(2)), int(m.group(3) or 0), m.group(4)


def deltas(before, after, names):
    return {n: counter(after, n) - counter(before, n) for n in names}


# --------------------------------------------------------------------------
# chapter 1

def test_ch01_stack_thread_sleeps_until_input_or_timer(kernel_ns):
    ch = CHAPTERS[0]
    d = netstepd(kernel_ns, log="net=debug,timer=trace")
    try:
        ready = "netstepd: up on tap0 192.0.2.2/24 mac %s" % DOC_MAC
        assert d.ready_line == ready
        doc_shows(ch, "^" + re.escape(ready) + "$")
        # exactly two threads: no RX thread, the stack thread reads the tap
        # (ThreadSanitizer's runtime adds a background thread of its own)
        th = tasks(d.pid)
        extra = 1 if os.environ.get("SANITIZER", "") == "tsan" else 0
        assert len(os.listdir("/proc/%d/task" % d.pid)) == 2 + extra and set(th) == {"main", "stack"}, th
        doc_shows(ch, r"^\s*\d+ main\s+Sl\s+do_sigtimedwait")
        doc_shows(ch, r"^\s*\d+ stack\s+Sl\s+poll_schedule_timeout")
        for page in CHAPTERS + OTHER_PAGES:
            assert "rx-tap" not in doc(page), "docs/%s still shows an rx-tap thread" % page
        # the stack thread sleeps in poll() (on the tap and its wake-up pipe),
        # not on a condition variable
        w = wchan(d.pid, th["stack"])
        assert "poll" in w and "futex" not in w, w

        # idle: the stack thread wakes only for the 1-second ARP timer (one
        # wake-up per timer run, none for anything else), main not at all
        st0 = d.stats()
        m0 = settled_voluntary(d.pid, th["main"], "sigtimedwait")
        s0 = voluntary(d.pid, th["stack"])
        t0 = time.monotonic()
        time.sleep(3.0)
        s1, m1 = voluntary(d.pid, th["stack"]), voluntary(d.pid, th["main"])
        idle = time.monotonic() - t0
        st1 = d.stats()
        assert m1 == m0, "main woke while idle"
        assert int(idle) - 1 <= s1 - s0 <= int(idle) + 2, \
            "stack thread woke %d times in %.1f s of idleness" % (s1 - s0, idle)
        dl = deltas(st0, st1, ["net.timers_run", "dev.tap0.rx_frames", "net.input_queued"])
        assert dl["dev.tap0.rx_frames"] == 0 and dl["net.input_queued"] == 0, dl
        # st0..st1 spans s0..s1, so every wake-up ran a timer (+1: poll()'s
        # millisecond timeout may end just before the deadline)
        assert s1 - s0 <= dl["net.timers_run"] + 1, (s1 - s0, dl)
        doc_shows(ch, r"^stack voluntary_ctxt_switches:\s+3$")
        doc_shows(ch, r"^stack voluntary_ctxt_switches:\s+8$")
        assert not re.search(r"(?m)^\S+ voluntary_ctxt_switches:", re.sub(
            r"(?m)^(main|stack) voluntary_ctxt_switches:.*$", "", doc(ch))), \
            "docs/%s shows a thread other than main and stack" % ch

        before = d.stats()
        r = sh(kernel_ns, ["ping", "-c", "3", "-q", "192.0.2.2"], rc=0)
        after = d.stats()
        assert summary(r.stdout)[:2] == (3, 3) and "0% packet loss" in r.stdout
        doc_shows(ch, r"^3 packets transmitted, 3 received, 0% packet loss")
        dl = deltas(before, after, ["net.input_queued", "dev.tap0.rx_frames", "net.timers_run"])
        # the kernel's ARP request and three echo requests (the kernel may
        # add a unicast ARP probe of its own)
        assert 4 <= dl["net.input_queued"] <= 5, dl
        assert dl["dev.tap0.rx_frames"] == dl["net.input_queued"], dl
        assert dl["net.timers_run"] >= 1, dl
        doc_shows(ch, r"^net\.input_queued 4$")
    finally:
        out, err = stop_ok(d)
    log = d.err.lines
    for regex in [TS + r"\[main\] timer trace net\.c:\d+ armed arp in 1000 ms$",
                  TS + r"\[stack\] net debug net\.c:\d+ stack thread running$",
                  TS + r"\[stack\] timer trace net\.c:\d+ running arp$",
                  TS + r"\[stack\] timer trace net\.c:\d+ armed arp in 1000 ms$",
                  TS + r"\[main\] net info net\.c:\d+ shutting down$",
                  TS + r"\[stack\] net debug net\.c:\d+ stack thread stopped$",
                  TS + r"\[main\] net info net\.c:\d+ shut down$"]:
        one(log, regex, "in netstepd's log")
        doc_shows(ch, regex)


# --------------------------------------------------------------------------
# chapter 2

@pytest.mark.needs_bin("netstepd")
def test_ch02_tap_ends_ether_drops_and_capabilities(kernel_ns):
    need("tcpdump", "setpriv")
    ch = CHAPTERS[1]
    link = sh(kernel_ns, ["ip", "link", "show", "tap0"], rc=0).stdout
    assert "NO-CARRIER" in link and "state DOWN" in link, link
    doc_shows(ch, r"tap0: <NO-CARRIER,BROADCAST,MULTICAST,UP> .* state DOWN")

    cap = Capture(kernel_ns, ["-e", "-c", "1", "arp"])
    d = netstepd(kernel_ns)
    try:
        lines = cap.wait_exit(5)
        garp = (r"^\S+ %s > ff:ff:ff:ff:ff:ff, ethertype ARP \(0x0806\), length 60: "
                r"Request who-has 192\.0\.2\.2 tell 192\.0\.2\.2, length 46$" % DOC_MAC)
        one(lines, garp, "(the gratuitous ARP)")
        doc_shows(ch, garp)

        link = sh(kernel_ns, ["ip", "link", "show", "tap0"], rc=0).stdout
        assert "LOWER_UP" in link and "state UP" in link, link
        doc_shows(ch, r"tap0: <BROADCAST,MULTICAST,UP,LOWER_UP> .* state UP")
        # capabilities are per thread: every thread must hold none
        for name, tid in tasks(d.pid).items():
            for field in ("CapEff", "CapPrm", "CapInh"):
                assert task_field(d.pid, tid, field) == "0" * 16, (name, field)
        for field in ("CapEff", "CapPrm", "CapInh"):
            doc_shows(ch, r"^%s:\s+0{16}$" % field)

        before = d.stats()
        r1 = sh(kernel_ns, ["ping", "-c", "1", "-W", "1", "-I", "tap0", "224.0.0.1"])
        sh(kernel_ns, ["ip", "neigh", "add", "192.0.2.3", "lladdr", "02:00:00:00:00:99",
                       "dev", "tap0"], rc=0)
        r2 = sh(kernel_ns, ["ping", "-c", "1", "-W", "1", "192.0.2.3"])
        after = d.stats()
        assert "100% packet loss" in r1.stdout and "100% packet loss" in r2.stdout
        dl = deltas(before, after, ["ether.rx_frames", "ether.rx_multicast",
                                    "ether.rx_other_host", "dev.tap0.rx_frames"])
        assert dl == {"ether.rx_frames": 2, "ether.rx_multicast": 1,
                      "ether.rx_other_host": 1, "dev.tap0.rx_frames": 2}, dl
        for line in ("ether.rx_frames 2", "ether.rx_multicast 1", "ether.rx_other_host 1"):
            doc_shows(ch, "^" + re.escape(line) + "$")
    finally:
        stop_ok(d)

    # without CAP_NET_ADMIN, a tap that must be created is refused
    r = sh(kernel_ns, ["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups",
                       bin_path("netstepd"), "--tap", "tap1"], timeout=10)
    if "cannot open tap" not in r.stderr:
        pytest.skip("user nobody cannot run %s: %s" % (bin_path("netstepd"), r.stderr.strip()))
    assert r.returncode == 1, r
    first = r"^netstepd: cannot open tap tap1: (Permission denied|Operation not permitted)$"
    one(r.stderr.splitlines(), first)
    doc_shows(ch, first)
    for line in ["netstepd: this process lacks CAP_NET_ADMIN. Either run it as root, or create the tap",
                 "  for your user once:  sudo ip tuntap add mode tap user $USER name tap1 && sudo ip link set tap1 up",
                 "  or let the binaries open taps:  sudo make setcap"]:
        assert line in r.stderr.splitlines(), r.stderr
        doc_shows(ch, "^" + re.escape(line) + "$")


# --------------------------------------------------------------------------
# chapter 3

@pytest.mark.needs_bin("netstepd", "ping")
def test_ch03_arp(kernel_ns):
    need("arping", "tcpdump")
    ch = CHAPTERS[2]
    ns = kernel_ns
    d = netstepd(ns, log="arp=debug")
    try:
        before = d.stats()
        r = sh(ns, ["arping", "-c", "3", "-I", "tap0", "192.0.2.2"], rc=0)
        replies = matching(r.stdout.splitlines(),
                           r"^Unicast reply from 192\.0\.2\.2 \[02:00:B5:4A:63:D6\]  [\d.]+ms$")
        assert len(replies) == 3 and "Received 3 response(s)" in r.stdout, r.stdout
        doc_shows(ch, r"^Unicast reply from 192\.0\.2\.2 \[02:00:B5:4A:63:D6\]")
        doc_shows(ch, r"^Received 3 response\(s\)$")
        r = sh(ns, ["arping", "-c", "2", "-w", "3", "-I", "tap0", "192.0.2.3"], rc=1)
        assert "Received 0 response(s)" in r.stdout, r.stdout
        doc_shows(ch, r"^Received 0 response\(s\)$")

        sh(ns, ["ping", "-c", "1", "-q", "192.0.2.2"], rc=0)
        neigh = sh(ns, ["ip", "neigh", "show", "dev", "tap0"], rc=0).stdout
        line = r"^192\.0\.2\.2 lladdr %s (REACHABLE|DELAY|STALE)" % DOC_MAC
        one(neigh.splitlines(), line)
        doc_shows(ch, line)

        sh(ns, ["ip", "addr", "add", "192.0.2.2/32", "dev", "tap0"], rc=0)
        sh(ns, ["arping", "-U", "-c", "1", "-I", "tap0", "-s", "192.0.2.2", "192.0.2.2"])
        sh(ns, ["ip", "addr", "del", "192.0.2.2/32", "dev", "tap0"], rc=0)
        after = d.stats()
        dl = deltas(before, after, ["arp.rx_requests", "arp.rx_not_for_us", "arp.rx_conflict",
                                    "arp.tx_requests", "arp.tx_replies"])
        assert dl["arp.rx_not_for_us"] == 2 and dl["arp.rx_conflict"] == 1, dl
        assert dl["arp.tx_requests"] == 0, dl
        assert dl["arp.rx_requests"] >= 7, dl
        # every request for us was answered, and only those
        assert dl["arp.tx_replies"] == dl["arp.rx_requests"] - 2 - 1, dl
        assert counter(after, "arp.tx_gratuitous") == 1
        for l in ("arp.rx_not_for_us 2", "arp.rx_conflict 1", "arp.tx_requests 0",
                  "arp.tx_gratuitous 1", "arp.rx_requests 7", "arp.tx_replies 4"):
            doc_shows(ch, "^" + re.escape(l) + "$")
    finally:
        stop_ok(d)
    log = d.err.lines
    regexes = [
        TS + r"\[main\] arp debug arp\.c:\d+ arp request: 192\.0\.2\.2 \(%s\) -> 192\.0\.2\.2 "
             r"\(00:00:00:00:00:00\)$" % DOC_MAC,
        TS + r"\[stack\] arp debug arp\.c:\d+ arp request: 192\.0\.2\.1 \(%s\) -> 192\.0\.2\.2 "
             r"\(ff:ff:ff:ff:ff:ff\)$" % MAC_RE,
        TS + r"\[stack\] arp debug arp\.c:\d+ arp reply: 192\.0\.2\.2 \(%s\) -> 192\.0\.2\.1 \(%s\)$"
             % (DOC_MAC, MAC_RE),
        TS + r"\[stack\] arp debug arp\.c:\d+ arp request: 192\.0\.2\.1 \(%s\) -> 192\.0\.2\.3 "
             r"\(ff:ff:ff:ff:ff:ff\)$" % MAC_RE,
        TS + r"\[stack\] arp warn arp\.c:\d+ tap0: address conflict: %s also claims our address$"
             % MAC_RE,
    ]
    for regex in regexes:
        one(log, regex, "in netstepd's log")
        doc_shows(ch, regex)
    assert len(matching(log, regexes[2])) >= 3

    # the failure path: netstep's ping to an address nobody owns
    cap = Capture(ns, ["arp"])
    r = sh(ns, [bin_path("ping"), "-c", "3", "-W", "3", "--log", "arp=debug", "--stats",
                "192.0.2.3"], timeout=20, rc=1)
    lines = cap.stop()
    out = r.stdout.splitlines()
    for seq in (1, 2, 3):
        l = "From 192.0.2.2 icmp_seq=%d Destination Host Unreachable" % seq
        assert l in out, r.stdout
        doc_shows(ch, "^" + re.escape(l) + "$")
    assert summary(r.stdout) == (3, 0, 3, "100"), r.stdout
    doc_shows(ch, r"^3 packets transmitted, 0 received, \+3 errors, 100% packet loss")
    st = netstep.parse_stats(out)
    for name, v in (("arp.tx_requests", 3), ("arp.resolve_failed", 1),
                    ("arp.dropped_unresolved", 3)):
        assert counter(st, name) == v, (name, st)
        doc_shows(ch, r"^%s %d$" % (re.escape(name), v))
    fail = TS + r"\[stack\] arp debug arp\.c:\d+ 192\.0\.2\.3: no reply after 3 requests$"
    one(r.stderr.splitlines(), fail)
    doc_shows(ch, fail)
    reqs = matching(lines, r"ARP, Request who-has 192\.0\.2\.3 tell 192\.0\.2\.2, length 46$")
    assert len(reqs) == 3, lines
    doc_shows(ch, r"ARP, Request who-has 192\.0\.2\.3 tell 192\.0\.2\.2, length 46$")


# --------------------------------------------------------------------------
# chapter 4

@pytest.mark.needs_bin("netstepd", "ping")
def test_ch04_ip_checks_fragments_timeout_and_routing(kernel_ns):
    need("tcpdump")
    ch = CHAPTERS[3]
    ns = kernel_ns
    d = netstepd(ns)
    try:
        # the reassembly timeout takes 30 s: start it first, check it last
        te = Capture(ns, ["-v", "-c", "1", "icmp[icmptype] == 11"])
        py(ns, doc_script(ch, "id=4242"))
        t_frag = time.monotonic()

        cap = Capture(ns, ["-v", "icmp"])
        before = d.stats()
        r = sh(ns, ["ping", "-c", "1", "-s", "4000", "192.0.2.2"], rc=0)
        lines = cap.stop()
        after = d.stats()
        assert summary(r.stdout)[:2] == (1, 1), r.stdout
        hdrs = matching(lines, r"IP \(tos 0x0, ttl 64, id \d+, offset \d+, flags \[[+a-z]+\], "
                               r"proto ICMP \(1\), length \d+\)$")
        offsets = [int(re.search(r"offset (\d+)", h).group(1)) for h in hdrs]
        lengths = [int(re.search(r"length (\d+)\)$", h).group(1)) for h in hdrs]
        assert offsets == [0, 1480, 2960] * 2, lines
        assert lengths == [1500, 1500, 1068] * 2, lines
        one(lines, r"192\.0\.2\.2 > 192\.0\.2\.1: ICMP echo reply, id \d+, seq 1, length 1480$")
        doc_shows(ch, r"offset 2960, flags \[none\], proto ICMP \(1\), length 1068\)$")
        dl = deltas(before, after, ["ip.out_fragmented", "ip.out_fragments",
                                    "ip.reass_fragments", "ip.reass_ok"])
        assert dl == {"ip.out_fragmented": 1, "ip.out_fragments": 3,
                      "ip.reass_fragments": 3, "ip.reass_ok": 1}, dl
        for n, v in dl.items():
            doc_shows(ch, r"^%s %d$" % (re.escape(n), v))

        before = d.stats()
        sh(ns, ["ip", "route", "add", "192.0.2.200/32", "via", "192.0.2.2"], rc=0)
        r = sh(ns, ["ping", "-c", "1", "-W", "1", "192.0.2.200"])
        sh(ns, ["ip", "route", "del", "192.0.2.200/32"], rc=0)
        assert "100% packet loss" in r.stdout
        py(ns, doc_script(ch, "chksum=0x1234"))
        after = d.stats()
        names = ["ip.in_not_for_us", "ip.in_bad_version", "ip.in_bad_hdr_len",
                 "ip.in_bad_total_len", "ip.in_bad_checksum", "ip.in_bad_source"]
        dl = deltas(before, after, names + ["ip.in_too_short", "ip.in_delivers"])
        assert all(dl[n] == 1 for n in names), dl
        assert dl["ip.in_too_short"] == 0 and dl["ip.in_delivers"] == 0, dl
        for n in names:
            doc_shows(ch, r"^%s 1$" % re.escape(n))
        doc_shows(ch, r"^ip\.in_receives 9$")

        lines = te.wait_exit(max(1.0, 40 - (time.monotonic() - t_frag)))
        waited = time.monotonic() - t_frag
        te_line = r"192\.0\.2\.2 > 192\.0\.2\.1: ICMP ip reassembly time exceeded, length 36$"
        one(lines, te_line)
        one(lines, r"IP \(tos 0x0, ttl 64, id 4242, offset 0, flags \[\+\], proto ICMP \(1\), length 1500\)$")
        doc_shows(ch, te_line)
        assert waited >= 29, "time exceeded after only %.1f s" % waited
        st = d.stats()
        assert counter(st, "ip.reass_timeout") == 1 and counter(st, "icmp.out_time_exceeds") == 1
        doc_shows(ch, r"^ip\.reass_timeout 1$")
        doc_shows(ch, r"^icmp\.out_time_exceeds 1$")
    finally:
        stop_ok(d)

    # routing: a /25 puts 192.0.2.200 behind the default gateway
    kmac = sh(ns, ["cat", "/sys/class/net/tap0/address"], rc=0).stdout.strip()
    cap = Capture(ns, ["-e"])
    r = sh(ns, [bin_path("ping"), "-c", "1", "-W", "1", "--addr", "192.0.2.2/25",
                "192.0.2.200"], rc=1)
    lines = cap.stop()
    one(lines, r"Request who-has 192\.0\.2\.1 tell 192\.0\.2\.2, length 46$")
    assert not matching(lines, r"who-has 192\.0\.2\.200"), lines
    echo = (r"%s > %s, ethertype IPv4 \(0x0800\), length 98: 192\.0\.2\.2 > 192\.0\.2\.200: "
            r"ICMP echo request" % (DOC_MAC, re.escape(kmac)))
    one(lines, echo)
    doc_shows(ch, echo.replace(re.escape(kmac), MAC_RE))
    r = sh(ns, [bin_path("ping"), "-c", "1", "-W", "1", "--addr", "192.0.2.2/25", "--gw", "",
                "--stats", "192.0.2.200"], rc=1)
    assert "ping: sendmsg: Network is unreachable" in r.stdout.splitlines(), r.stdout
    assert counter(netstep.parse_stats(r.stdout.splitlines()), "ip.out_no_route") == 1
    doc_shows(ch, r"^ping: sendmsg: Network is unreachable$")
    doc_shows(ch, r"^ip\.out_no_route 1$")


# --------------------------------------------------------------------------
# chapter 5

@pytest.mark.needs_bin("netstepd", "ping")
def test_ch05_icmp_errors_rules_rate_limit_and_ping(kernel_ns):
    ch = CHAPTERS[4]
    ns = kernel_ns
    d = netstepd(ns)
    try:
        r = sh(ns, ["ping", "-c", "3", "-i", "0.2", "192.0.2.2"], rc=0)
        assert summary(r.stdout)[:2] == (3, 3) and " 0% packet loss" in r.stdout, r.stdout
        reply = r"^64 bytes from 192\.0\.2\.2: icmp_seq=\d ttl=64 time=[\d.]+ ms$"
        assert len(matching(r.stdout.splitlines(), reply)) == 3
        doc_shows(ch, reply)
        r = sh(ns, ["ping", "-b", "-c", "2", "-i", "0.2", "-W", "1", "192.0.2.255"])
        assert summary(r.stdout)[:2] == (2, 0), r.stdout
        st = d.stats()
        expect = {"icmp.in_echos": 5, "icmp.in_broadcast_echo": 2, "icmp.out_echo_replies": 3}
        assert {n: counter(st, n) for n in expect} == expect
        for n, v in expect.items():
            doc_shows(ch, r"^%s %d$" % (re.escape(n), v))

        out = py(ns, doc_script(ch, "proto=253"))
        line = "IP / ICMP 192.0.2.2 > 192.0.2.1 dest-unreach protocol-unreachable / IPerror / Raw"
        assert line in out.splitlines(), out
        doc_shows(ch, "^" + re.escape(line) + "$")
        time.sleep(1.5)               # as the chapter: the next burst starts a new window
        py(ns, doc_script(ch, "range(300)"))
        time.sleep(0.5)
        st = d.stats()
        expect = {"ip.in_unknown_protocol": 1, "icmp.out_dest_unreachs": 101,
                  "icmp.out_ratelimited": 200, "udp.no_port": 301}
        assert {n: counter(st, n) for n in expect} == expect
        for n, v in expect.items():
            doc_shows(ch, r"^%s %d$" % (re.escape(n), v))
    finally:
        stop_ok(d)

    r = sh(ns, [bin_path("ping"), "-c", "3", "-i", "0.2", "192.0.2.1"], rc=0)
    reply = r"^64 bytes from 192\.0\.2\.1: icmp_seq=\d ttl=64 time=[\d.]+ ms$"
    assert len(matching(r.stdout.splitlines(), reply)) == 3, r.stdout
    assert summary(r.stdout)[:2] == (3, 3) and " 0% packet loss" in r.stdout
    one(r.stdout.splitlines(), r"^rtt min/avg/max/mdev = [\d.]+/[\d.]+/[\d.]+/[\d.]+ ms$")
    doc_shows(ch, reply)
    r = sh(ns, [bin_path("ping"), "-c", "1", "-s", "2000", "192.0.2.1"], rc=0)
    big = r"^2008 bytes from 192\.0\.2\.1: icmp_seq=1 ttl=64 time=[\d.]+ ms$"
    one(r.stdout.splitlines(), big)
    doc_shows(ch, big)


# --------------------------------------------------------------------------
# chapter 6

READY_ECHO = r"^echo-server: listening on 192\.0\.2\.2:7 \((tcp, )?udp\)$"


def udp_client(ns, host, port, tries=3):
    """udp-client with `hello` on stdin.  Retried (up to `tries`) only when
    it exits 0 where an ICMP error was expected: once in a while the kernel
    is slow to answer within udp-client's one-second wait."""
    for _ in range(tries):
        r = netstep.run(ns.cmd([bin_path("udp-client"), host, str(port)]), timeout=15,
                        check=False, input="hello\n")
        if r.returncode != 0 or port != 9 or host != "192.0.2.1":
            return r
        time.sleep(1.1)
    return r


@pytest.mark.needs_bin("echo-server", "udp-client")
def test_ch06_blocking_close_and_errno(kernel_ns):
    need("nc")
    ch = CHAPTERS[5]
    ns = kernel_ns
    e = App(ns, "echo-server", ready=READY_ECHO)
    try:
        doc_shows(ch, READY_ECHO)
        th = tasks(e.pid)
        assert {"main", "stack", "echo-udp"} <= set(th) and "rx-tap" not in th, th
        assert "futex" in wchan(e.pid, th["echo-udp"])
        assert "poll" in wchan(e.pid, th["stack"]), wchan(e.pid, th["stack"])
        doc_shows(ch, r"^\s*\d+ echo-udp\s+Sl\s+futex")
        doc_shows(ch, r"^\s*\d+ stack\s+Sl\s+poll_schedule_timeout")
        r = netstep.run(ns.cmd(["nc", "-u", "-w1", "192.0.2.2", "7"]), timeout=10,
                        check=False, input="hello\n")
        assert r.stdout == "hello\n", r
        v0 = voluntary(e.pid, th["echo-udp"])
        time.sleep(2.0)
        assert voluntary(e.pid, th["echo-udp"]) == v0, "the blocked reader woke while idle"
    finally:
        out, err = stop_ok(e)     # SIGINT: main closes the socket under echo-udp
    line = "echo-server: udp: echoed 1 datagrams, 6 bytes"
    assert line in out.splitlines(), out
    doc_shows(ch, "^" + re.escape(line) + "$")
    doc_shows(ch, r"^exit status 0$")

    r = udp_client(ns, "192.0.2.1", 9)
    assert r.returncode == 1 and \
        "udp-client: connection refused (ICMP port unreachable)" in r.stderr.splitlines(), r
    doc_shows(ch, r"^udp-client: connection refused \(ICMP port unreachable\)$")
    r = udp_client(ns, "192.0.2.255", 9)
    assert r.returncode == 1 and "udp-client: Permission denied" in r.stderr.splitlines(), r
    doc_shows(ch, r"^udp-client: Permission denied$")


# --------------------------------------------------------------------------
# chapter 7

@pytest.mark.needs_bin("echo-server", "discard-server", "udp-client")
def test_ch07_udp(kernel_ns, tmp_path):
    need("nc", "tcpdump", "socat")
    ch = CHAPTERS[6]
    ns = kernel_ns
    e = App(ns, "echo-server", ["--stats"], ready=READY_ECHO)
    try:
        before = e.stats()
        r = netstep.run(ns.cmd(["nc", "-u", "-w1", "192.0.2.2", "7"]), timeout=10,
                        check=False, input="hello\n")
        assert r.stdout == "hello\n", r
        cap = Capture(ns, ["-vv", "udp"])
        out = py(ns, doc_script(ch, "chksum=0)"))
        lines = cap.stop()
        assert out.splitlines() == ["b'no checksum'"], out
        doc_shows(ch, r"^b'no checksum'$")
        for regex in [r"192\.0\.2\.1\.5000 > 192\.0\.2\.2\.7: \[no cksum\] UDP, length 11$",
                      r"192\.0\.2\.2\.7 > 192\.0\.2\.1\.5000: \[udp sum ok\] UDP, length 11$",
                      r"192\.0\.2\.1\.5000 > 192\.0\.2\.2\.7: \[bad udp cksum 0x1234 -> 0x[0-9a-f]+!\] "
                      r"UDP, length 12$"]:
            one(lines, regex)
            doc_shows(ch, regex)
        assert len(matching(lines, r"192\.0\.2\.2\.7 > ")) == 1, "answered the bad checksum"

        out = py(ns, doc_script(ch, "anyone there?"))
        assert out.splitlines() == ["[Errno 111] Connection refused"], out
        doc_shows(ch, r"^\[Errno 111\] Connection refused$")
        after = e.stats()
        expect = {"icmp.in_dest_unreachs": 1, "icmp.out_dest_unreachs": 1,
                  "udp.in_datagrams": 4, "udp.in_bad_checksum": 1, "udp.in_no_checksum": 1,
                  "udp.no_port": 1, "udp.out_datagrams": 2}
        dl = deltas(before, after, list(expect) + ["udp.in_icmp_errors"])
        assert dl.pop("udp.in_icmp_errors") == 0
        assert dl == expect, dl
        for n, v in expect.items():
            doc_shows(ch, r"^%s %d$" % (re.escape(n), v))
    finally:
        stop_ok(e)

    dsrv = App(ns, "discard-server", ["--stats"],
               ready=r"^discard-server: listening on 192\.0\.2\.2:9 \((tcp, )?udp\)$")
    try:
        before = dsrv.stats()
        # from a regular file, so that each of nc's reads returns a full
        # buffer (16384 bytes) and the split into 7 datagrams does not
        # depend on how fast a pipe is filled
        (tmp_path / "zeros").write_bytes(b"\0" * 100000)
        with open(str(tmp_path / "zeros"), "rb") as zeros:
            netstep.run(ns.cmd(["nc", "-u", "-w1", "192.0.2.2", "9"]), timeout=10, check=False,
                        stdin=zeros)
        netstep.run(ns.cmd(["nc", "-u", "-b", "-w1", "192.0.2.255", "9"]), timeout=10,
                    check=False, input="broadcast\n")
        after = dsrv.stats()
    finally:
        out, _ = stop_ok(dsrv)
    line = r"^discard-server: udp: discarded 7 datagrams, 100000 bytes( in [\d.]+ s \([\d.]+ MB/s\))?$"
    one(out.splitlines(), line)
    doc_shows(ch, line)
    # the broadcast: no socket bound to the wildcard, so no socket, and no ICMP
    expect = {"ip.reass_ok": 7, "udp.in_datagrams": 8, "udp.no_port": 1,
              "icmp.out_dest_unreachs": 0}
    assert deltas(before, after, list(expect)) == expect
    for n, v in expect.items():
        doc_shows(ch, r"^%s %d$" % (re.escape(n), v))

    sc = ns.popen(["socat", "UDP4-LISTEN:7777", "EXEC:cat"])
    time.sleep(0.5)
    r = netstep.run(ns.cmd([bin_path("udp-client"), "192.0.2.1", "7777"]), timeout=15,
                    check=False, input="hello\n")
    netstep.kill_pid(sc)
    assert r.returncode == 0 and r.stdout == "hello\n", r
    doc_shows(ch, r"^hello$")


# --------------------------------------------------------------------------
# architecture.md and locking.md

def test_architecture_packet_path(kernel_ns):
    page = "architecture.md"
    d = netstepd(kernel_ns, log="dev=debug,ether=debug,ip=debug,icmp=debug")
    try:
        r = sh(kernel_ns, ["ping", "-c", "2", "-i", "0.5", "-q", "192.0.2.2"], rc=0)
        assert summary(r.stdout)[:2] == (2, 2)
    finally:
        stop_ok(d)
    log = d.err.lines
    # no thread but main (start-up, shutdown) and stack: the stack thread
    # reads the tap itself
    others = [l for l in log if re.match(TS, l) and not re.match(TS + r"\[(main|stack)\] ", l)]
    assert not others, others[:5]
    doc_shows(page, r"no line from any thread but `main`")
    start = [i for i, l in enumerate(log) if re.search(r"tap0 In  IP .* seq 2, length 64$", l)]
    assert start, "no 'tap0 In' line for seq 2 in:\n" + "\n".join(log)[-4000:]
    path = log[start[0]:start[0] + 8]
    expect = [
        r"\[stack\] dev debug net\.c:\d+ tap0 In  IP 192\.0\.2\.1 > 192\.0\.2\.2: ICMP echo request, id \d+, seq 2, length 64$",
        r"\[stack\] ether debug ether\.c:\d+ ether %s > %s, type 0x0800, length 98$" % (MAC_RE, DOC_MAC),
        r"\[stack\] ip debug ip\.c:\d+ ip 192\.0\.2\.1 > 192\.0\.2\.2: proto 1, ihl 5, ",
        r"\[stack\] icmp debug icmp\.c:\d+ icmp echo request, id \d+, seq 2, length 64$",
        r"\[stack\] icmp debug icmp\.c:\d+ icmp echo reply, id \d+, seq 2, length 64$",
        r"\[stack\] ip debug ip\.c:\d+ ip 192\.0\.2\.2 > 192\.0\.2\.1: proto 1, ihl 5, ",
        r"\[stack\] ether debug ether\.c:\d+ ether %s > %s, type 0x0800, length 98$" % (DOC_MAC, MAC_RE),
        r"\[stack\] dev debug net\.c:\d+ tap0 Out IP 192\.0\.2\.2 > 192\.0\.2\.1: ICMP echo reply, id \d+, seq 2, length 64$",
    ]
    assert len(path) == len(expect), path
    for line, regex in zip(path, expect):
        assert re.search(TS + regex, line), "expected %r, got %r" % (regex, line)
        doc_shows(page, TS + regex)


@pytest.mark.needs_bin()
def test_locking_experiment_under_tsan(kernel_ns):
    need("nc")
    tsan = netstep.REPO_ROOT / "build-tsan" / "bin" / "echo-server"
    if not os.access(tsan, os.X_OK):
        pytest.skip("no ThreadSanitizer build (make -j2 tsan)")
    page = "locking.md"
    ns = kernel_ns
    p = ns.popen([tsan], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, bufsize=1)
    out = netstep._LineReader(p.stdout)
    err = netstep._LineReader(p.stderr)
    out.start()
    err.start()
    deadline = time.monotonic() + 20
    while not matching(out.lines, READY_ECHO):
        assert p.poll() is None and time.monotonic() < deadline, out.text() + err.text()
        time.sleep(0.05)
    wait_link(ns)
    for i in (1, 2, 3):
        r = netstep.run(ns.cmd(["nc", "-u", "-w1", "192.0.2.2", "7"]), timeout=10, check=False,
                        input="hello %d\n" % i)
        assert r.stdout == "hello %d\n" % i, r
    r = sh(ns, ["ping", "-c", "3", "-i", "0.2", "-q", "192.0.2.2"], rc=0)
    os.kill(p.pid, signal.SIGINT)
    try:
        rc = p.wait(timeout=20)
    except subprocess.TimeoutExpired:
        netstep.kill_pid(p)
        rc = None
    out.join(5)
    err.join(5)
    assert rc == 0, "exit %s\n%s" % (rc, err.text()[-4000:])
    assert "WARNING: ThreadSanitizer" not in err.text(), err.text()[-6000:]
    line = "echo-server: udp: echoed 3 datagrams, 24 bytes"
    assert line in out.lines, out.text()
    doc_shows(page, "^" + re.escape(line) + "$")


# --------------------------------------------------------------------------
# the text itself

COUNTER_RE = re.compile(r"^(?:[a-z]+|dev\.(?:[a-z0-9]+|<name>))\.[a-z_*][a-z0-9_*]*$")


def doc_pages():
    return sorted(p.name for p in DOCS.glob("*.md"))


def test_docs_counters_exist(kernel_ns, tmp_path):
    """Every `group.counter` named in backticks in docs/*.md is in a real
    stats dump (netstepd with the capture and a no-op fault injector, so
    that every group registers)."""
    d = netstepd(kernel_ns, extra=["--pcap", str(tmp_path / "c.pcap"), "--size-limit", "65535"])
    try:
        stats = d.stats()
    finally:
        stop_ok(d)
    groups = {n.split(".")[0] for n in stats}
    missing = []
    checked = 0
    for page in doc_pages():
        for code in inline_code(doc(page)):
            if re.search(r"\.(c|h|md|py|txt|pcap)$", code) or not COUNTER_RE.match(code):
                continue
            if code.split(".")[0] not in groups:
                continue          # e.g. `net_config.x`, `util.h`: not a counter
            name = code.replace("<name>", "tap0")
            checked += 1
            if "*" in name:
                ok = any(fnmatch.fnmatchcase(n, name) for n in stats)
            else:
                ok = name in stats
            if not ok:
                missing.append("%s: `%s`" % (page, code))
    assert checked >= 100, "only %d counter names found in docs/" % checked
    assert not missing, "counters named in docs/ but absent from the stats dump:\n" + \
        "\n".join(missing)


# names the docs use that belong to Linux or its tools, not to netstep
EXTERNAL_NAMES = {"LOWER_UP", "NO_CARRIER", "CAP_NET_ADMIN", "IFF_TAP", "IFF_NO_PI"}


def _source_text():
    parts = []
    for sub in ("", "app", "driver", "proto", "util", "platform/linux", "tests/proto",
                "tests/unit", "tests/fuzz", "tests/integration", "tools"):
        base = netstep.REPO_ROOT / sub
        for p in sorted(base.glob("*")):
            if p.is_file() and (p.suffix in (".c", ".h", ".py") or sub == "tools"
                                or p.name == "Makefile"):
                parts.append(p.read_text(errors="replace"))
    return "\n".join(parts)


def test_docs_name_what_exists():
    """Functions, constants, struct fields and files named in backticks in
    docs/*.md exist in the tree (so a renamed function breaks this test,
    not a reader's afternoon); README lists the chapters in order, and each
    chapter has an Experiment."""
    src = _source_text()
    words = set(re.findall(r"[A-Za-z_][A-Za-z0-9_]*", src)) | EXTERNAL_NAMES
    missing = []
    for page in doc_pages():
        for code in inline_code(doc(page)):
            c = code.strip()
            if re.fullmatch(r"(?:\.\./)?[\w./-]+\.(?:c|h|py|md)", c) and "/" in c:
                if c.startswith("../"):
                    continue
                if not ((netstep.REPO_ROOT / c).exists() or (DOCS / c).exists()):
                    missing.append("%s: file `%s`" % (page, c))
                continue
            c = re.sub(r"^struct ", "", c)
            m = re.fullmatch(r"([A-Za-z_][A-Za-z0-9_]*)(\(.*\))?", c)
            if not m or c.startswith("_") or "_" not in m.group(1):
                continue
            if m.group(1) not in words:
                missing.append("%s: `%s`" % (page, code))
    assert not missing, "named in docs/ but not found in the source:\n" + "\n".join(missing)

    readme = doc("README.md")
    pos = [readme.find("(%s)" % c) for c in CHAPTERS]
    assert all(p >= 0 for p in pos) and pos == sorted(pos), "README must link chapters 1-7 in order"
    for page in OTHER_PAGES:
        assert "(%s)" % page in readme, page
    for c in CHAPTERS:
        assert re.search(r"^## Experiment$", doc(c), re.M), "%s has no Experiment section" % c
