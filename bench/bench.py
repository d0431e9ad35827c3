#!/usr/bin/env python3
"""make bench — netstep against the Linux kernel on the same machine, in one run.

Every figure is the median of RUNS runs and is printed beside its reference
measured in the same run — the raw tap ceiling, the kernel over a veth pair
between two namespaces, or a target from issue 6 — so the ratio is what to
read: the machine is shared and absolute numbers move.

Figures:
  raw tap ceiling        bench/tapread reading MTU-sized frames from tap0 while
                         the kernel blasts UDP at a static neighbour (udpbench blast)
  kernel TCP over veth   tcpbench source -> tcpbench sink, BULK (1 GiB)
  kernel -> discard      tcpbench source -> netstep discard-server, BULK
  chargen -> kernel      netstep chargen-server --bytes BULK -> tcpbench read
  echo round trip        100 MiB through echo-server (tcpbench echo: a writer
                         thread and a reader), vs tcpbench echoserver over veth
  ping RTT               kernel ping -> netstep (echo-server), 5 ms apart, vs kernel over veth
  UDP echo               udpbench client, 1 and 32 datagrams in flight
  connections/s          connect, 32 bytes echoed, close (tcpbench cps)
  1000 connections       opened, then rounds of 64 bytes echoed on each; memory
                         per connection from echo-server's VmRSS at idle
  loss                   kernel -> discard-server --drop P --seed RUN (each way), 5 s runs
  busypoll               ping RTT again with --set busy_poll_us=20000 (the stack
                         thread spins instead of sleeping for 20 ms after a frame)
  offload                discard, chargen and the echo round trip again with
                         --set tap_offload=1 (checksums and TCP segmentation
                         left to the kernel, super-frames both ways)

Only namespaces this script creates are touched, with addresses in
192.0.2.0/24 (tap) and 198.51.100.0/24 (veth); they are deleted at exit.
Every run is bounded in time. Run as root: make bench.
Environment: BENCH_RUNS (default 5), BENCH_SECONDS (default 2, per timed run),
BENCH_ONLY (comma-separated figure keys, for working on one figure:
ceiling,veth,discard,chargen,echo,ping,udp,cps,conns,loss,offload,busypoll).
"""

import atexit
import os
import platform
import re
import signal
import statistics
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BUILD = os.path.join(ROOT, os.environ.get("NETSTEP_BUILD", "build"))
RUNS = int(os.environ.get("BENCH_RUNS", "5"))
SECONDS = float(os.environ.get("BENCH_SECONDS", "2"))
ONLY = set(filter(None, os.environ.get("BENCH_ONLY", "").split(",")))
BENCHDIR = os.path.join(BUILD, "bench")
UDPBENCH = os.path.join(BENCHDIR, "udpbench")
TCPBENCH = os.path.join(BENCHDIR, "tcpbench")
TAPREAD = os.path.join(BENCHDIR, "tapread")

BULK = int(os.environ.get("BENCH_BULK_MIB", "1024")) << 20  # bytes per bulk run (issue 4: 1 GiB)
BULK_MAXSECS = 40.0     # a bulk run gives up (and reports what was acked) after this
ECHO = 100 << 20        # bytes of the echo round trip
LOSS_SECS = 5.0         # a lossy run reports what was acked after this
CONNS = 1000
CONN_ROUNDS = 10
NEIGH_MAC = "02:00:00:00:00:02"

namespaces = []
processes = []


def sh(cmd, timeout=60, check=True):
    r = subprocess.run(cmd, shell=True, capture_output=True, text=True, timeout=timeout)
    if check and r.returncode != 0:
        raise RuntimeError("%s: %s%s" % (cmd, r.stdout, r.stderr))
    return r.stdout


def ensure_tools():
    """The Makefile builds udpbench; build the other tools here if missing or stale."""
    for name in ("udpbench", "tcpbench", "tapread"):
        src = os.path.join(ROOT, "bench", name + ".c")
        out = os.path.join(BENCHDIR, name)
        if not os.path.exists(out) or os.path.getmtime(out) < os.path.getmtime(src):
            os.makedirs(BENCHDIR, exist_ok=True)
            sh("cc -O2 -g -Wall -Wextra -Werror -pthread -o %s %s" % (out, src), timeout=120)


def netns(name):
    name = "nsb-%d-%s" % (os.getpid(), name)
    sh("ip netns add %s" % name)
    namespaces.append(name)
    sh("ip -n %s link set lo up" % name)
    sh("ip netns exec %s sysctl -qw net.ipv6.conf.all.disable_ipv6=1" % name)
    # Clients open tens of thousands of connections (connections/s): a wide
    # port range and no TIME_WAIT buckets keep them from running out of ports.
    sh("ip netns exec %s sysctl -qw net.ipv4.ip_local_port_range='1024 65000'" % name)
    sh("ip netns exec %s sysctl -qw net.ipv4.tcp_max_tw_buckets=0" % name)
    return name


def spawn(ns, argv, ready=None, stdin=None):
    p = subprocess.Popen(["ip", "netns", "exec", ns] + argv, stdout=subprocess.PIPE,
                         stderr=subprocess.DEVNULL, stdin=stdin, text=True)
    processes.append(p)
    if ready:
        deadline = time.time() + 10
        while time.time() < deadline:
            line = p.stdout.readline()
            if ready in line:
                break
            if not line and p.poll() is not None:
                raise RuntimeError("%s exited before it was ready" % argv[0])
        else:
            raise RuntimeError("%s did not become ready" % argv[0])
    return p


def stop(p):
    if p.poll() is None:
        p.send_signal(signal.SIGINT)
        try:
            p.wait(10)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()


def cleanup():
    for p in processes:
        stop(p)
    for ns in namespaces:
        subprocess.run(["ip", "netns", "del", ns], capture_output=True)


def tap_topology():
    """Namespace with tap0 = 192.0.2.1/24; netstep apps take 192.0.2.2."""
    ns = netns("tap")
    sh("ip -n %s tuntap add mode tap name tap0" % ns)
    sh("ip -n %s addr add 192.0.2.1/24 dev tap0" % ns)
    sh("ip -n %s link set tap0 up" % ns)
    return ns


def veth_topology():
    """Two namespaces joined by a veth pair: 198.51.100.1 <-> 198.51.100.2."""
    a, b = netns("va"), netns("vb")
    sh("ip link add vb-%d netns %s type veth peer name va-%d netns %s" % (os.getpid(), a, os.getpid(), b))
    sh("ip -n %s link set vb-%d name veth0" % (a, os.getpid()))
    sh("ip -n %s link set va-%d name veth0" % (b, os.getpid()))
    sh("ip -n %s addr add 198.51.100.1/24 dev veth0" % a)
    sh("ip -n %s addr add 198.51.100.2/24 dev veth0" % b)
    sh("ip -n %s link set veth0 up" % a)
    sh("ip -n %s link set veth0 up" % b)
    return a, b


def fields(out):
    """'key value key value ...' lines -> dict of floats (last line wins)."""
    d = {}
    for line in out.splitlines():
        toks = line.split()
        for k, v in zip(toks[::2], toks[1::2]):
            try:
                d[k] = float(v)
            except ValueError:
                pass
    return d


def tool(ns, args, timeout):
    """Run a bench tool; a failed run gives {} (its figure then says so)."""
    try:
        return fields(sh("ip netns exec %s %s" % (ns, args), timeout=timeout))
    except (RuntimeError, subprocess.TimeoutExpired) as e:
        print("bench: %s" % str(e).strip(), file=sys.stderr)
        return {}


def netstep(tap, prog, *args):
    ready = "up on" if prog == "netstepd" else "listening"
    return spawn(tap, [os.path.join(BUILD, "bin", prog), "--log", "error"] + list(args), ready=ready)


def pid_of(p):
    """The pid of the program `ip netns exec` runs (it execs; follow a child if not)."""
    pid = p.pid
    for _ in range(3):
        try:
            with open("/proc/%d/comm" % pid) as f:
                if f.read().strip() != "ip":
                    return pid
            with open("/proc/%d/task/%d/children" % (pid, pid)) as f:
                pid = int(f.read().split()[0])
        except (OSError, IndexError, ValueError):
            break
    return pid


def status(pid, key):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1])
    return 0


# ---------------------------------------------------------------- the table

class Fig:
    """Runs of one figure; median() of the values; whether any run timed out."""

    def __init__(self):
        self.values, self.partial = [], False

    def add(self, value, complete=True):
        if value != value:  # NaN: the run failed; leave it out, and say so
            self.partial = True
        else:
            self.values.append(value)
            self.partial |= not complete
        return value

    def median(self):
        return statistics.median(self.values) if self.values else float("nan")


def fmt(v):
    if v is None:
        return ""
    if v != v:
        return "n/a"
    if abs(v) >= 100:
        return "%.0f" % v
    if abs(v) >= 10:
        return "%.1f" % v
    return "%.2f" % v if abs(v) >= 1 else "%.3f" % v


rows = []


def row(name, ours, ref, unit, note=""):
    """ours/ref: a Fig, a constant, or None (a reference-only row). When both
    are Figs of paired runs (measured back to back), the ratio is the median
    of the per-run ratios; otherwise the ratio of the medians."""
    def val(x):
        return x.median() if isinstance(x, Fig) else x
    o, r = val(ours), val(ref)
    ratio = None
    if isinstance(ours, Fig) and isinstance(ref, Fig) and len(ours.values) == len(ref.values):
        pairs = [a / b for a, b in zip(ours.values, ref.values) if b]
        ratio = statistics.median(pairs) if pairs else None
    elif o is not None and r:
        ratio = o / r
    partial = any(isinstance(x, Fig) and x.partial for x in (ours, ref))
    rows.append("%-44s %10s %10s %7s  %s%s%s" % (name, fmt(o), fmt(r), fmt(ratio), unit,
                                                 "  " + note if note else "",
                                                 "  (some runs failed or hit their time limit)" if partial else ""))


def want(key):
    return not ONLY or key in ONLY


def progress(what):
    print("bench: %s" % what, file=sys.stderr)
    sys.stderr.flush()


# ---------------------------------------------------------------- figures

def ceiling_run(tap, fig):
    """MB/s a lone reader gets out of tap0 while the kernel blasts MTU-sized UDP
    at a static neighbour (no ARP)."""
    sh("ip -n %s neigh replace 192.0.2.2 lladdr %s dev tap0 nud permanent" % (tap, NEIGH_MAC))
    try:
        r = spawn(tap, [TAPREAD, "tap0", str(SECONDS)], ready="ready")
        sh("ip netns exec %s %s blast 192.0.2.2 9 1472 %s" % (tap, UDPBENCH, SECONDS + 0.5),
           timeout=SECONDS + 30)
        out, _ = r.communicate(timeout=SECONDS + 15)
        fig.add(fields(out).get("mb_s", float("nan")))
    finally:
        # netstep's apps have their own MAC: let the kernel learn it by ARP again
        sh("ip -n %s neigh del 192.0.2.2 dev tap0" % tap, check=False)


def bulk_send(ns, dst, port, fig, nbytes=BULK, maxsecs=BULK_MAXSECS, timed=False):
    """MB/s of a bulk send; a timed run (loss) ends at maxsecs by design and
    reports what the peer acknowledged."""
    d = tool(ns, "%s source %s %d %d %s" % (TCPBENCH, dst, port, nbytes, maxsecs), timeout=maxsecs + 30)
    fig.add(d.get("mb_s", float("nan")), timed or d.get("complete") == 1)


def bulk_read(ns, dst, port, fig, maxsecs=BULK_MAXSECS):
    d = tool(ns, "%s read %s %d %s" % (TCPBENCH, dst, port, maxsecs), timeout=maxsecs + 30)
    fig.add(d.get("mb_s", float("nan")), d.get("complete") == 1)


def echo_rt(ns, dst, fig):
    d = tool(ns, "%s echo %s 7 %d %s" % (TCPBENCH, dst, ECHO, BULK_MAXSECS), timeout=BULK_MAXSECS + 30)
    fig.add(d.get("seconds", float("nan")), d.get("complete") == 1)


def matched(cmd, pattern, timeout):
    """float of pattern's group in cmd's output, or NaN if it failed."""
    try:
        m = re.search(pattern, sh(cmd, timeout=timeout))
        return float(m.group(1)) if m else float("nan")
    except (RuntimeError, subprocess.TimeoutExpired) as e:
        print("bench: %s" % str(e).strip(), file=sys.stderr)
        return float("nan")


def ping_rtt(ns, dst, fig):
    rtt = matched("ip netns exec %s ping -q -c 200 -i 0.005 -w 30 %s" % (ns, dst), r"= [\d.]+/([\d.]+)/", 60)
    fig.add(rtt * 1000.0)  # microseconds


def udp_echo(ns, dst, window, fig, size=64):
    fig.add(matched("ip netns exec %s %s client %s 7 %d %s %d" % (ns, UDPBENCH, dst, size, SECONDS, window),
                    r"per_s (\d+)", SECONDS + 30))


def cps(ns, dst, fig):
    d = tool(ns, "%s cps %s 7 32 %s" % (TCPBENCH, dst, SECONDS), timeout=SECONDS + 30)
    fig.add(d.get("per_s", float("nan")), d.get("failed", 0) == 0)


def many_conns(ns, dst, server_pid, rss, echoes, opening):
    """Open CONNS connections to the echo server at dst; then CONN_ROUNDS
    rounds of 64 bytes echoed on each. Adds the echo rate to echoes and, for
    netstep (server_pid), the VmRSS growth per connection at idle and after
    the rounds (KiB) to rss[0] and rss[1]; the time to open them to opening."""
    maxsecs = 30
    c = spawn(ns, [TCPBENCH, "conns", dst, "7", str(CONNS), "64", str(CONN_ROUNDS), str(maxsecs)],
              stdin=subprocess.PIPE)
    try:
        base_rss = status(server_pid, "VmRSS") if server_pid else 0
        base_threads = status(server_pid, "Threads") if server_pid else 0
        d = fields(c.stdout.readline())
        opened = d.get("opened", 0)
        opening.add(d.get("seconds", float("nan")), opened == CONNS)
        if server_pid:
            # wait (bounded) for the acceptor to give every connection its thread
            deadline = time.time() + 10
            while time.time() < deadline and status(server_pid, "Threads") < base_threads + opened:
                time.sleep(0.05)
            time.sleep(0.2)
            rss[0].add((status(server_pid, "VmRSS") - base_rss) / max(opened, 1), opened == CONNS)
        c.stdin.write("go\n")
        c.stdin.flush()
        d = fields(c.stdout.readline())
        echoes.add(d.get("per_s", float("nan")), d.get("echoes", 0) == CONNS * CONN_ROUNDS)
        if server_pid:
            rss[1].add((status(server_pid, "VmRSS") - base_rss) / max(opened, 1), opened == CONNS)
        c.stdin.write("close\n")
        c.stdin.flush()
        c.wait(maxsecs)
    finally:
        stop(c)


def main():
    if os.geteuid() != 0:
        sys.exit("bench: needs root for namespaces and taps (sudo make bench)")
    ensure_tools()
    atexit.register(cleanup)
    t0 = time.time()
    tap = tap_topology()
    va, vb = veth_topology()
    f = {k: Fig() for k in ("ceil", "veth", "discard", "chargen", "loss1", "loss5", "echo", "kecho",
                            "ping", "kping", "udp1", "kudp1", "udp32", "kudp32", "cps", "kcps",
                            "conns", "kconns", "rss_idle", "rss_busy", "open", "kopen",
                            "discard_o", "chargen_o", "echo_o", "kecho_o", "ping_b", "kping_b")}
    offload = ("--set", "tap_offload=1")

    # Bulk figures. tap0 takes one reader at a time, so each run measures
    # the ceiling, the kernel over veth and each netstep figure back to back,
    # and every ratio pairs figures of the same run.
    bulk = [k for k in ("ceiling", "veth", "discard", "chargen", "loss", "offload") if want(k)]
    if bulk:
        sink = spawn(vb, [TCPBENCH, "sink", "5001"], ready="listening")
        for run in range(RUNS):
            progress("bulk run %d/%d: %s" % (run + 1, RUNS, ", ".join(bulk)))
            ceiling_run(tap, f["ceil"])
            bulk_send(va, "198.51.100.2", 5001, f["veth"])
            if want("discard") or want("loss"):
                srv = netstep(tap, "discard-server")
                bulk_send(tap, "192.0.2.2", 9, f["discard"])
                stop(srv)
            if want("chargen"):
                srv = netstep(tap, "chargen-server", "--bytes", str(BULK))
                bulk_read(tap, "192.0.2.2", 19, f["chargen"])
                stop(srv)
            if want("offload"):
                srv = netstep(tap, "discard-server", *offload)
                bulk_send(tap, "192.0.2.2", 9, f["discard_o"])
                stop(srv)
                srv = netstep(tap, "chargen-server", "--bytes", str(BULK), *offload)
                bulk_read(tap, "192.0.2.2", 19, f["chargen_o"])
                stop(srv)
            if want("loss"):
                for loss, key in ((0.01, "loss1"), (0.05, "loss5")):
                    srv = netstep(tap, "discard-server", "--drop", str(loss), "--seed", str(run + 1))
                    bulk_send(tap, "192.0.2.2", 9, f[key], maxsecs=LOSS_SECS, timed=True)
                    stop(srv)
        stop(sink)

    # Request/response figures: netstep's echo-server on the tap and the
    # kernel's echo servers on the veth are up together; each run measures
    # netstep, then the kernel.
    rr = [k for k in ("echo", "ping", "udp", "cps") if want(k)]
    if rr or want("conns") or want("offload"):
        kecho = spawn(vb, [TCPBENCH, "echoserver", "7"], ready="listening")
        kudp = spawn(vb, [UDPBENCH, "server", "7"])
    if rr:
        srv = netstep(tap, "echo-server")
        for run in range(RUNS):
            progress("request/response run %d/%d: %s" % (run + 1, RUNS, ", ".join(rr)))
            if want("echo"):
                echo_rt(tap, "192.0.2.2", f["echo"])
                echo_rt(va, "198.51.100.2", f["kecho"])
            if want("ping"):
                ping_rtt(tap, "192.0.2.2", f["ping"])
                ping_rtt(va, "198.51.100.2", f["kping"])
            if want("udp"):
                for w in (1, 32):
                    udp_echo(tap, "192.0.2.2", w, f["udp%d" % w])
                    udp_echo(va, "198.51.100.2", w, f["kudp%d" % w])
            if want("cps"):
                cps(tap, "192.0.2.2", f["cps"])
                cps(va, "198.51.100.2", f["kcps"])
        stop(srv)
    if want("busypoll"):
        srv = netstep(tap, "echo-server", "--set", "busy_poll_us=20000")
        for run in range(RUNS):
            progress("ping with busy polling run %d/%d" % (run + 1, RUNS))
            ping_rtt(tap, "192.0.2.2", f["ping_b"])
            ping_rtt(va, "198.51.100.2", f["kping_b"])
        stop(srv)
    if want("offload"):
        srv = netstep(tap, "echo-server", *offload)
        for run in range(RUNS):
            progress("echo with tap offload run %d/%d" % (run + 1, RUNS))
            echo_rt(tap, "192.0.2.2", f["echo_o"])
            echo_rt(va, "198.51.100.2", f["kecho_o"])
        stop(srv)
    if want("conns"):
        for run in range(RUNS):
            progress("%d connections run %d/%d" % (CONNS, run + 1, RUNS))
            srv = netstep(tap, "echo-server")  # fresh each run: RSS from a clean start
            many_conns(tap, "192.0.2.2", pid_of(srv), (f["rss_idle"], f["rss_busy"]), f["conns"], f["open"])
            stop(srv)
            many_conns(va, "198.51.100.2", None, None, f["kconns"], f["kopen"])
    if rr or want("conns") or want("offload"):
        stop(kecho)
        stop(kudp)

    cpu = ""
    try:
        with open("/proc/cpuinfo") as fh:
            cpu = next((l.split(":", 1)[1].strip() for l in fh if l.startswith("model name")), "")
    except OSError:
        pass
    if bulk:
        row("raw tap ceiling (MTU frames read from tap0)", None, f["ceil"], "MB/s", "bench/tapread")
        row("kernel -> kernel TCP over veth, %d MiB" % (BULK >> 20), None, f["veth"], "MB/s", "tcpbench source -> sink")
    if want("discard"):
        row("kernel -> netstep discard, %d MiB" % (BULK >> 20), f["discard"], f["ceil"], "MB/s",
            "vs tap ceiling (target >= 0.6)")
        row("  same", f["discard"], f["veth"], "MB/s", "vs kernel over veth")
    if want("chargen"):
        row("netstep chargen -> kernel, %d MiB" % (BULK >> 20), f["chargen"], f["ceil"], "MB/s",
            "vs tap ceiling (target >= 0.6)")
        row("  same", f["chargen"], f["veth"], "MB/s", "vs kernel over veth")
    if want("echo"):
        row("echo round trip, 100 MiB", f["echo"], f["kecho"], "s",
            "vs kernel echo over veth; lower (target <= 0.35 s)")
    if want("ping"):
        row("ping RTT (200 pings, 5 ms apart)", f["ping"], f["kping"], "us",
            "vs kernel over veth; lower (target ratio <= 3)")
    if want("udp"):
        for w in (1, 32):
            row("UDP echo, %d in flight, 64 B" % w, f["udp%d" % w], f["kudp%d" % w], "round trips/s",
                "vs kernel over veth")
    if want("cps"):
        row("connections/s (connect, 32 B echo, close)", f["cps"], f["kcps"], "conn/s", "vs kernel over veth")
    if want("conns"):
        row("%d conns: time to open them (one by one)" % CONNS, f["open"], f["kopen"], "s",
            "vs kernel echo over veth; lower")
        row("%d conns: echo rounds, 64 B on each" % CONNS, f["conns"], f["kconns"], "echoes/s",
            "vs kernel echo over veth")
        row("%d conns: memory per connection, idle" % CONNS, f["rss_idle"], 64.0, "KiB",
            "netstep VmRSS growth; vs target 64 KiB; lower")
        row("%d conns: memory per conn. after rounds" % CONNS, f["rss_busy"], 64.0, "KiB",
            "netstep VmRSS growth; vs target 64 KiB; lower")
    if want("busypoll"):
        row("ping RTT, busy polling (busy_poll_us=20000)", f["ping_b"], f["kping_b"], "us",
            "vs kernel over veth; lower (target ratio <= 3); costs a CPU")
    if want("offload"):
        row("with tap offload: kernel -> discard", f["discard_o"], f["ceil"], "MB/s",
            "--set tap_offload=1; vs tap ceiling")
        row("with tap offload: chargen -> kernel", f["chargen_o"], f["ceil"], "MB/s",
            "--set tap_offload=1; vs tap ceiling")
        row("with tap offload: echo round trip, 100 MiB", f["echo_o"], f["kecho_o"], "s",
            "--set tap_offload=1; vs kernel echo over veth; lower (target <= 0.35 s)")
    if want("loss"):
        row("kernel -> discard, 1% loss each way", f["loss1"], f["discard"], "MB/s",
            "vs loss-free; acked in %g s runs (target >= 0.3)" % LOSS_SECS)
        row("kernel -> discard, 5% loss each way", f["loss5"], f["discard"], "MB/s",
            "vs loss-free; acked in %g s runs" % LOSS_SECS)

    print("netstep bench: %d CPUs (%s), Linux %s; median of %d runs, %g s per timed run; took %.0f s"
          % (os.cpu_count(), cpu, platform.release(), RUNS, SECONDS, time.time() - t0))
    print("MB = 1e6 bytes; ratio = median of per-run netstep/reference ratios (measured back to back);")
    print("'lower' marks figures where lower is better")
    print("%-44s %10s %10s %7s  %s" % ("figure", "netstep", "reference", "ratio", "unit, reference"))
    print("-" * 112)
    for line in rows:
        print(line)


if __name__ == "__main__":
    main()
