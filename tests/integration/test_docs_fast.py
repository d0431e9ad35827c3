"""Chapter 16 (docs/16-making-a-stack-fast.md): tools/profile, run as the
chapter runs it, with its output checked for the shape the chapter shows --
and, through doc_shows(), the chapter checked to still show that shape.

tools/profile makes its own namespace (nsp-PID, tap0 = 192.0.2.1/24), runs
one bulk transfer kernel -> netstep discard-server under `perf record -g`,
and prints the MB/s, the segment counters, and `perf report --no-children`
summed by symbol, by thread and by object.  Percentages and MB/s depend on
the machine, on what else runs, and on the build (NETSTEP_BUILD=build-asan
or build-tsan put the sanitizers' runtimes at the top), so only the shape is
asserted: no thresholds on time or speed.

The tap offloads (--set tap_offload=1) are checked the same way: both
directions through tools/profile, where a discard run must take far fewer
segments than one per MSS (super-frames), and the chapter's lab run of
chargen-server --stats, where the offload run writes fewer frames than
segments, a plain run right after it on the same tap works, and a capture
keeps the offloads off.  Counts, not speeds.

Every subprocess has a timeout; the last test interrupts a run and checks
that the script removed its namespace and ended every process it started.
"""

import os
import re
import select
import signal
import subprocess
import time

import pytest

import netstep
from test_docs import doc, doc_shows

CH16 = "16-making-a-stack-fast.md"
PROFILE = str(netstep.REPO_ROOT / "tools" / "profile")
MIB = 32

# the lines of tools/profile's output, as the chapter shows them
MBS_ANY = (r"^profile: (kernel -> netstep discard-server|netstep chargen-server -> kernel)"
           r"( \(--set tap_offload=1\))?, (\d+) MiB: (\d+\.\d) MB/s in (\d+\.\d\d) s$")
MBS = r"^profile: kernel -> netstep discard-server, (\d+) MiB: (\d+\.\d) MB/s in (\d+\.\d\d) s$"
SEGS = r"^counters: tcp\.in_segs (\d+), tcp\.out_segs (\d+)(?:, [a-z_]+\.[a-z_]+ \d+)*$"
PSTAT = r"^perf stat: (\d+) context switches, (\d+) ms of CPU \(stack thread: (\d+), (\d+) ms\)$"
PERF = (r"^perf: (\d+) samples of discard-server \(pid (\d+) and its threads\); "
        r"perf report --stdio --no-children$")
HEAD = r"^  overhead  object   symbol$"
ROW = r"^ +(\d+\.\d\d)%  (\S+) +(\S.*)$"
TOTAL = r"^ +(\d+\.\d\d)%  \(the top (\d+) together\)$"
SHARE = r"(\S+) (\d+\.\d)%"
THREADS = r"^by thread:  %s(?:, %s)*$" % (SHARE, SHARE)
OBJECTS = r"^by object:  %s(?:, %s)*$" % (SHARE, SHARE)
ACTIVITY_HEAD = r"^by activity \(the whole call chain of each sample\):$"
ACTIVITY = r"^ +(\d+\.\d\d)%  ([a-z].*)$"
ACTIVITIES = {"tap write: the kernel's TCP, run inside it", "tap write: the rest",
              "tap read and poll", "sleeping and waking (futex, scheduler)", "checksum (cksum16)",
              "copies (memcpy)", "locks without waiting (pthread)", "clock reads",
              "packet buffers (pbuf, malloc)", "everything else"}


def netstep_functions():
    """Names of the functions netstep's own sources define or call."""
    names = set()
    root = netstep.REPO_ROOT
    for sub in ("", "app", "driver", "proto", "util", "platform/linux"):
        for p in sorted((root / sub).glob("*.c")):
            names.update(re.findall(r"\b([A-Za-z_]\w*)\(", p.read_text(errors="replace")))
    return names


def run_profile(*args, timeout=55):
    """Run tools/profile; its output lines, once it has exited 0 and
    removed its namespace (nsp-PID)."""
    p = subprocess.Popen([PROFILE] + list(args), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         text=True, stdin=subprocess.DEVNULL)
    try:
        out, err = p.communicate(timeout=timeout)
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    assert p.returncode == 0, "tools/profile failed (%d)\n%s\n%s" % (p.returncode, out,
                                                                      err[-3000:])
    assert not ns_exists("nsp-%d" % p.pid), "tools/profile left its namespace behind"
    return out.splitlines()


def one(lines, regex):
    found = [m for m in (re.match(regex, l) for l in lines) if m]
    assert len(found) == 1, "expected one line matching %r in:\n%s" % (regex, "\n".join(lines))
    return found[0]


def shares(line):
    return {name: float(pct) for name, pct in re.findall(SHARE, line)}


def ns_exists(name):
    return os.path.exists("/var/run/netns/" + name)


def pid_alive(pid):
    """True if pid is a live process (a zombie counts as gone)."""
    try:
        with open("/proc/%d/stat" % pid) as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False


@pytest.mark.needs_bin("discard-server")
def test_profile_output_has_the_documented_shape():
    lines = run_profile("--mib", str(MIB), "--top", "100")
    text = "\n".join(lines)

    m = one(lines, MBS)
    assert int(m.group(1)) == MIB and float(m.group(2)) > 0, m.group(0)
    m = one(lines, SEGS)
    # every byte arrived in segments of at most one MSS (1460): at least this many
    assert int(m.group(1)) >= (MIB << 20) // 1460, m.group(0)
    assert int(m.group(2)) > 0, m.group(0)
    m = one(lines, PSTAT)
    assert int(m.group(1)) > 0 and int(m.group(2)) > 0, m.group(0)
    assert int(m.group(3)) <= int(m.group(1)) and int(m.group(4)) <= int(m.group(2)), m.group(0)
    m = one(lines, PERF)
    assert int(m.group(1)) > 0, m.group(0)
    app_pid = int(m.group(2))

    # the symbol table: rows between the header and the total
    head = [i for i, l in enumerate(lines) if re.match(HEAD, l)]
    assert len(head) == 1, text
    rows = []
    for l in lines[head[0] + 1:]:
        t = re.match(TOTAL, l)
        if t:
            break
        r = re.match(ROW, l)
        assert r, "not a symbol row: %r\n%s" % (l, text)
        rows.append((float(r.group(1)), r.group(2), r.group(3)))
    else:
        raise AssertionError("no total line after the symbol table:\n" + text)
    assert rows, text
    pcts = [p for p, _, _ in rows]
    assert all(0 < p <= 100 for p in pcts), rows
    assert pcts == sorted(pcts, reverse=True), "rows not by overhead:\n" + text
    assert sum(pcts) <= 100.0 + 0.01 * len(pcts), "rows sum to %.2f%%" % sum(pcts)
    assert abs(float(t.group(1)) - sum(pcts)) <= 0.01 * len(pcts) + 0.01, t.group(0)
    assert int(t.group(2)) == len(rows), t.group(0)

    # at least one symbol is netstep's own code (the sanitizers add their
    # own functions to the binary: those do not count)
    ours = netstep_functions()
    mine = [s for _, obj, s in rows if obj == "netstep" and re.sub(r"\..*$", "", s) in ours]
    assert mine, "no netstep function among the symbols:\n" + text
    assert any(re.sub(r"\..*$", "", s) in ("tcp_input", "cksum16", "cksum_partial", "ip_input",
                                           "ring_peek", "ring_write_at", "pbuf_alloc")
               for s in mine), "none of netstep's per-packet functions shows:\n" + text

    th = shares(one(lines, THREADS).group(0))
    assert "stack" in th, th
    assert any(name.startswith("discard-") for name in th), th   # the connection's thread
    assert sum(th.values()) <= 100.0 + 0.1 * len(th), th
    ob = shares(one(lines, OBJECTS).group(0))
    assert {"kernel", "netstep"} <= set(ob), ob
    assert sum(ob.values()) <= 100.0 + 0.1 * len(ob), ob

    # nothing left behind (run_profile checked the namespace): the app is gone
    assert not pid_alive(app_pid), "discard-server (pid %d) still runs" % app_pid

    assert not any(re.match(ACTIVITY_HEAD, l) for l in lines), "by activity without dwarf"

    # the chapter shows the same lines
    for regex in (MBS, SEGS, PSTAT, PERF, HEAD, TOTAL, THREADS, OBJECTS, ACTIVITY_HEAD):
        doc_shows(CH16, regex)
    doc_shows(CH16, r"^ +\d+\.\d\d%  netstep  cksum16$")
    doc_shows(CH16, r"^ +\d+\.\d\d%  kernel   \S+$")
    doc_shows(CH16, r"^(sudo )?tools/profile --mib 32\b")


@pytest.mark.needs_bin("discard-server")
def test_profile_by_activity_with_dwarf_call_chains():
    """--call-graph dwarf adds the table the chapter reads the profile by:
    every sample in exactly one activity, so the shares sum to 100%."""
    lines = run_profile("--mib", "8", "--top", "3", "--call-graph", "dwarf")
    text = "\n".join(lines)
    one(lines, MBS)
    head = [i for i, l in enumerate(lines) if re.match(ACTIVITY_HEAD, l)]
    assert len(head) == 1, text
    acts = [re.match(ACTIVITY, l) for l in lines[head[0] + 1:]]
    assert acts and all(acts), "not an activity row in:\n" + text
    names = [m.group(2) for m in acts]
    assert set(names) <= ACTIVITIES and len(set(names)) == len(names), names
    assert abs(sum(float(m.group(1)) for m in acts) - 100.0) <= 0.01 * len(acts) + 0.01, text
    for name in names:
        doc_shows(CH16, r"^ +\d+\.\d\d%%  %s$" % re.escape(name))


OFFLOAD_MIB = 32
OFFLOAD_WHAT = {"discard": "kernel -> netstep discard-server",
                "chargen": "netstep chargen-server -> kernel"}


@pytest.mark.needs_bin("discard-server", "chargen-server")
@pytest.mark.parametrize("run", ["discard", "chargen"])
def test_profile_with_tap_offload(run):
    """The chapter's offload experiment: with --set tap_offload=1 a discard
    run takes the kernel's super-frames (tcp.in_segs far below one per
    MSS), and a chargen run still counts every MSS-sized piece in
    tcp.out_segs.  The MB/s only has to parse."""
    lines = run_profile("--mib", str(OFFLOAD_MIB), "--run", run, "--top", "5",
                        "--set", "tap_offload=1")
    text = "\n".join(lines)
    m = one(lines, MBS_ANY)
    assert m.group(1) == OFFLOAD_WHAT[run] and m.group(2), m.group(0)
    assert int(m.group(3)) == OFFLOAD_MIB and float(m.group(4)) > 0, m.group(0)
    m = one(lines, SEGS)
    in_segs, out_segs = int(m.group(1)), int(m.group(2))
    per_mss = (OFFLOAD_MIB << 20) // 1460
    if run == "discard":
        # one segment to TCP per super-frame: without offload it is at least
        # per_mss (the plain test above); with it, a quarter is generous
        assert 0 < in_segs < per_mss // 4, "no super-frames came in: " + m.group(0)
        assert out_segs > 0, m.group(0)
    else:
        # out_segs counts the pieces the kernel cuts, not the frames
        assert out_segs >= per_mss, m.group(0)
        assert in_segs > 0, m.group(0)
    one(lines, PSTAT)
    m = one(lines, r"^perf: (\d+) samples of %s-server \(pid (\d+) and its threads\); "
                   r"perf report --stdio --no-children$" % run)
    app_pid = int(m.group(2))
    assert not pid_alive(app_pid), "%s-server (pid %d) still runs" % (run, app_pid)
    one(lines, HEAD)
    one(lines, TOTAL)
    assert {"stack"} <= set(shares(one(lines, THREADS).group(0))), text

    # the chapter shows the commands and the lines they print
    doc_shows(CH16, r"^(sudo )?tools/profile --mib 64 --run %s --top 5$" % run)
    doc_shows(CH16, r"^(sudo )?tools/profile --mib 64 --run %s --top 5 --set tap_offload=1$" % run)
    what = re.escape(OFFLOAD_WHAT[run])
    doc_shows(CH16, r"^profile: %s, 64 MiB: \d+\.\d MB/s in \d+\.\d\d s$" % what)
    doc_shows(CH16, r"^profile: %s \(--set tap_offload=1\), 64 MiB: \d+\.\d MB/s in \d+\.\d\d s$"
              % what)
    # ... and what it shows there says the same as this run
    shown = doc_offload_counters(OFFLOAD_WHAT[run])
    if run == "discard":
        assert shown["in_segs"] * 4 < (64 << 20) // 1460, shown
    else:
        assert shown["out_segs"] >= (64 << 20) // 1460, shown


def doc_offload_counters(what):
    """The counters line the chapter shows after its offload profile line."""
    lines = doc(CH16).splitlines()
    head = r"^profile: %s \(--set tap_offload=1\), " % re.escape(what)
    at = [i for i, l in enumerate(lines) if re.match(head, l)]
    assert len(at) == 1, "docs/%s: expected one line matching %r" % (CH16, head)
    m = re.match(SEGS, lines[at[0] + 1])
    assert m, "docs/%s: no counters line after %r" % (CH16, lines[at[0]])
    return {"in_segs": int(m.group(1)), "out_segs": int(m.group(2))}


# the chapter's lab run: chargen-server --stats, read by tcpbench
LAB_BYTES = 16 << 20
LAB_COUNTERS = ("tcp.out_segs", "tcp.out_super_segs", "dev.tap0.tx_frames",
                "dev.tap0.offload_tx_super_frames", "dev.tap0.offload_rx_csum_partial")


def tcpbench():
    """build/bench/tcpbench, built the way tools/profile builds it if missing."""
    path = netstep.build_dir() / "bench" / "tcpbench"
    src = netstep.REPO_ROOT / "bench" / "tcpbench.c"
    if not path.exists() or path.stat().st_mtime < src.stat().st_mtime:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = "%s.%d" % (path, os.getpid())
        try:
            netstep.run(["cc", "-O2", "-g", "-Wall", "-Wextra", "-Werror", "-pthread", "-o", tmp,
                         str(src)], timeout=120)
            os.rename(tmp, str(path))
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
    return path


def lab_chargen(ns, *extra):
    """One chargen transfer of LAB_BYTES as the chapter runs it; the
    counters chargen-server --stats printed at exit."""
    app = ns.popen([netstep.bin_path("chargen-server"), "--bytes", str(LAB_BYTES), "--stats",
                    "--log", "error"] + list(extra),
                   stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        ready, _, _ = select.select([app.stdout], [], [], 20)
        line = app.stdout.readline() if ready else ""
        assert "listening" in line, "chargen-server did not start: %r" % line
        r = ns.run([tcpbench(), "read", netstep.NETSTEP_IP, "19", "20"], timeout=40)
        assert r.returncode == 0, "tcpbench failed: %s%s" % (r.stdout, r.stderr)
        got = {k: float(v) for k, v in zip(r.stdout.split()[::2], r.stdout.split()[1::2])}
        assert got.get("bytes") == LAB_BYTES and got.get("complete") == 1, r.stdout
        app.send_signal(signal.SIGINT)
        out, err = app.communicate(timeout=20)
    finally:
        netstep.kill_pid(app)
    assert app.returncode == 0, "chargen-server exited %s: %s" % (app.returncode, err[-3000:])
    stats = netstep.parse_stats(out.splitlines())
    return {name: netstep.counter(stats, name)
            for name in LAB_COUNTERS + ("tcp.in_bad_checksum", "dev.tap0.offload_rx_refused")}


@pytest.mark.needs_bin("chargen-server")
def test_lab_chargen_frames_with_and_without_offload(kernel_ns, tmp_path):
    """The chapter's lab run: with the offloads, the same pieces leave in
    fewer frames, most of them super-frames; a plain run right after it on
    the same tap works (the offload run switched the features off); a
    capture keeps the offloads off."""
    per_mss = LAB_BYTES // 1460

    c = lab_chargen(kernel_ns, "--set", "tap_offload=1")
    assert c["tcp.out_segs"] >= per_mss, c
    assert c["tcp.out_super_segs"] > 0 and c["dev.tap0.offload_tx_super_frames"] > 0, c
    assert c["dev.tap0.tx_frames"] < c["tcp.out_segs"], c
    assert c["dev.tap0.offload_rx_csum_partial"] > 0, c
    assert c["dev.tap0.offload_rx_refused"] == 0, c

    # the same tap0, without the offloads: nothing left switched on
    c = lab_chargen(kernel_ns)
    assert c["tcp.out_segs"] >= per_mss, c
    assert c["tcp.out_super_segs"] == 0 and c["dev.tap0.offload_tx_super_frames"] == 0, c
    assert c["dev.tap0.tx_frames"] >= c["tcp.out_segs"], c
    assert c["dev.tap0.offload_rx_csum_partial"] == 0 and c["tcp.in_bad_checksum"] == 0, c

    # a hook on the device: the offloads stay off
    c = lab_chargen(kernel_ns, "--set", "tap_offload=1", "--pcap", str(tmp_path / "cg.pcap"))
    assert c["tcp.out_super_segs"] == 0 and c["dev.tap0.offload_tx_super_frames"] == 0, c
    assert c["dev.tap0.tx_frames"] >= c["tcp.out_segs"], c
    assert c["dev.tap0.offload_rx_csum_partial"] == 0, c

    # the chapter shows the commands and the counters
    doc_shows(CH16, r"^ip netns exec lab build/bin/chargen-server --bytes \d+ --stats "
                    r"--set tap_offload=1 >/tmp/cg\.out & P=\$!$")
    doc_shows(CH16, r"^ip netns exec lab build/bench/tcpbench read 192\.0\.2\.2 19 \d+$")
    for name in LAB_COUNTERS:
        doc_shows(CH16, r"^%s \d+$" % re.escape(name))
    doc_shows(CH16, r"^tcp\.out_super_segs [1-9]\d*$")
    doc_shows(CH16, r"^tcp\.out_super_segs 0$")
    doc_shows(CH16, r"--pcap /tmp/cg\.pcap")


@pytest.mark.needs_bin("discard-server")
def test_profile_cleans_up_when_interrupted():
    """SIGTERM in the middle of a transfer: the namespace goes, and every
    process tools/profile started (the app, perf record and perf stat and
    their children, tcpbench) ends."""
    p = subprocess.Popen([PROFILE, "--mib", "4096"], stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True, stdin=subprocess.DEVNULL)
    ns = "nsp-%d" % p.pid
    started = {}
    try:
        deadline = time.monotonic() + 20
        # wait until the transfer runs: perf is attached, and the app and
        # tcpbench are in the namespace
        while time.monotonic() < deadline and p.poll() is None:
            started = descendants(p.pid)
            comms = set(started.values())
            if "perf" in comms and "tcpbench" in comms and "discard-server" in comms:
                break
            time.sleep(0.05)
        assert p.poll() is None, "tools/profile ended early:\n%s%s" % p.communicate()
        assert {"perf", "tcpbench", "discard-server"} <= set(started.values()), started
        assert ns_exists(ns), "no namespace %s while the transfer runs" % ns
        p.send_signal(signal.SIGTERM)
        out, err = p.communicate(timeout=30)
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    assert p.returncode != 0, "an interrupted run must not succeed:\n" + out
    assert not ns_exists(ns), "namespace %s left behind" % ns
    left = sorted("%d (%s)" % (pid, comm) for pid, comm in started.items() if pid_alive(pid))
    assert not left, "processes left running: %s" % left


def descendants(pid):
    """{pid: program name} of every live descendant of pid (from argv[0]:
    netstep's apps rename their main thread, so comm will not do)."""
    out, todo = {}, [pid]
    while todo:
        parent = todo.pop()
        try:
            tasks = os.listdir("/proc/%d/task" % parent)
        except OSError:
            continue
        for tid in tasks:
            try:
                with open("/proc/%d/task/%s/children" % (parent, tid)) as f:
                    kids = [int(x) for x in f.read().split()]
            except OSError:
                continue
            for k in kids:
                try:
                    with open("/proc/%d/cmdline" % k, "rb") as f:
                        argv0 = f.read().split(b"\0")[0].decode(errors="replace")
                except OSError:
                    continue
                out[k] = os.path.basename(argv0)
                todo.append(k)
    return out
