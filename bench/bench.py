#!/usr/bin/env python3
"""make bench — netstep against the Linux kernel on the same machine, in one run.

Every figure is the median of RUNS runs, and is printed beside the same
figure for kernel-to-kernel over a veth pair between two namespaces, so the
ratio is what to read: the machine is shared and absolute numbers move.

Figures so far:
  ping RTT            kernel ping -> netstepd over tap   vs   kernel -> kernel over veth
  UDP echo, 1 in flight       kernel client -> netstep echo-server (tap)
                              vs  kernel client -> kernel echo server (veth)
  UDP echo, 32 in flight      the same with a window of 32 datagrams

Only namespaces this script creates are touched, with addresses in
192.0.2.0/24 (tap) and 198.51.100.0/24 (veth); they are deleted at exit.
Run as root: make bench.  Environment: BENCH_RUNS (default 5), BENCH_SECONDS.
"""

import atexit
import os
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
UDPBENCH = os.path.join(BUILD, "bench", "udpbench")

namespaces = []
processes = []


def sh(cmd, timeout=60, check=True):
    r = subprocess.run(cmd, shell=True, capture_output=True, text=True, timeout=timeout)
    if check and r.returncode != 0:
        raise RuntimeError("%s: %s%s" % (cmd, r.stdout, r.stderr))
    return r.stdout


def netns(name):
    name = "nsb-%d-%s" % (os.getpid(), name)
    sh("ip netns add %s" % name)
    namespaces.append(name)
    sh("ip -n %s link set lo up" % name)
    sh("ip netns exec %s sysctl -qw net.ipv6.conf.all.disable_ipv6=1" % name)
    return name


def spawn(ns, argv, ready=None):
    p = subprocess.Popen(["ip", "netns", "exec", ns] + argv, stdout=subprocess.PIPE,
                         stderr=subprocess.DEVNULL, text=True)
    processes.append(p)
    if ready:
        deadline = time.time() + 10
        while time.time() < deadline:
            line = p.stdout.readline()
            if ready in line:
                break
        else:
            raise RuntimeError("%s did not become ready" % argv[0])
    return p


def cleanup():
    for p in processes:
        if p.poll() is None:
            p.send_signal(signal.SIGINT)
            try:
                p.wait(5)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
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


def ping_rtt(ns, dst):
    out = sh("ip netns exec %s ping -q -c 200 -i 0.005 %s" % (ns, dst), timeout=60)
    m = re.search(r"= [\d.]+/([\d.]+)/", out)
    return float(m.group(1)) * 1000.0  # microseconds


def udp_echo(ns, dst, window, size=64):
    out = sh("ip netns exec %s %s client %s 7 %d %s %d" % (ns, UDPBENCH, dst, size, SECONDS, window),
             timeout=SECONDS + 30)
    return float(re.search(r"per_s (\d+)", out).group(1))


def median(f, n=RUNS):
    return statistics.median(f() for _ in range(n))


def row(name, unit, ours, kernel, better_low=False):
    ratio = ours / kernel if kernel else float("nan")
    note = "(netstep/kernel; lower is better)" if better_low else "(netstep/kernel)"
    print("%-34s %12.1f %12.1f %8.2f  %s %s" % (name, ours, kernel, ratio, unit, note))


def main():
    if os.geteuid() != 0:
        sys.exit("bench: needs root for namespaces and taps (sudo make bench)")
    atexit.register(cleanup)
    tap = tap_topology()
    va, vb = veth_topology()
    print("netstep bench: median of %d runs each, %s s per throughput run" % (RUNS, SECONDS))
    print("%-34s %12s %12s %8s" % ("figure", "netstep", "kernel", "ratio"))

    nsd = spawn(tap, [os.path.join(BUILD, "bin", "netstepd"), "--log", "error"], ready="up on")
    rtt_ns = median(lambda: ping_rtt(tap, "192.0.2.2"))
    rtt_k = median(lambda: ping_rtt(va, "198.51.100.2"))
    row("ping RTT (us)", "us", rtt_ns, rtt_k, better_low=True)
    nsd.send_signal(signal.SIGINT)
    nsd.wait(10)

    spawn(tap, [os.path.join(BUILD, "bin", "echo-server"), "--log", "error"], ready="listening")
    spawn(vb, [UDPBENCH, "server", "7"])
    time.sleep(0.2)
    for window in (1, 32):
        ours = median(lambda: udp_echo(tap, "192.0.2.2", window))
        kern = median(lambda: udp_echo(va, "198.51.100.2", window))
        row("UDP echo, %d in flight (per s)" % window, "round trips/s", ours, kern)


if __name__ == "__main__":
    main()
