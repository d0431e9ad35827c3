"""Running netstep's sample apps (echo-server, discard-server, chargen-server,
http-server, tcp-client) in a test namespace, and kernel sockets inside it.

* ``App`` starts a server app with the common flags (--tap --addr --gw --mac
  --stats), waits for its one ready line ("NAME: listening on ..."), drains
  stdout/stderr in reader threads, gives SIGUSR1 stats on demand and, at
  stop(), the final '--- stats ---' block.
* ``client_argv`` builds a tcp-client command line (a client prints no ready
  line; tests run it with Netns.popen / Netns.run).
* ``ns_socket`` creates a kernel socket inside the namespace (setns on the
  calling thread only, then straight back, as netstep.open_packet_socket
  does); the socket stays in that namespace and can be used from any thread.
"""

import os
import queue
import re
import signal
import socket
import subprocess
import time

import netstep
from netstep import NETSTEP_IP, NETSTEP_MAC, PEER_IP, PREFIX

READY_RE = re.compile(r"^(\S+): listening on (\S+):(\d+) \(")


def common_flags(ns, stats=True, log=None, extra=()):
    argv = ["--tap", ns.tap, "--addr", "%s/%d" % (NETSTEP_IP, PREFIX), "--gw", PEER_IP,
            "--mac", NETSTEP_MAC]
    if stats:
        argv.append("--stats")
    if log:
        argv += ["--log", log]
    return argv + list(extra)


class App:
    """A netstep server app in namespace ns.

    name: binary under build/bin; extra: app-specific flags (e.g.
    ["--bytes", "100"], ["--root", dir], ["--port", "7"])."""

    def __init__(self, ns, name, extra=(), log=None, wait_link=True):
        self.ns = ns
        self.name = name
        self.argv = [netstep.bin_path(name)] + common_flags(ns, log=log, extra=extra)
        self.proc = ns.popen(self.argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             text=True, bufsize=1)
        self.out = netstep._LineReader(self.proc.stdout)
        self.err = netstep._LineReader(self.proc.stderr)
        self.out.start()
        self.err.start()
        self.result = None
        self.final_stats = {}
        self.port = None
        deadline = time.monotonic() + netstep.READY_TIMEOUT
        while True:
            try:
                line = self.out.get(deadline)
            except queue.Empty:
                self.kill()
                raise netstep.NetstepError("%s not ready within %.0fs\nstdout:\n%s\nstderr:\n%s"
                                           % (name, netstep.READY_TIMEOUT, self.out.text(),
                                              self.err.text()))
            if line is None:
                self.proc.wait(timeout=5)
                raise netstep.NetstepError("%s exited (rc=%s) before ready\nstdout:\n%s\nstderr:\n%s"
                                           % (name, self.proc.returncode, self.out.text(),
                                              self.err.text()))
            m = READY_RE.match(line)
            if m:
                self.ready_line = line
                self.port = int(m.group(3))
                break
        if wait_link:
            ns.wait_link_up()

    @property
    def pid(self):
        return self.proc.pid

    def alive(self):
        return self.proc.poll() is None

    def stats(self, timeout=netstep.STATS_TIMEOUT):
        """SIGUSR1 -> dict of counters (same protocol as Netstepd.stats)."""
        return netstep.Netstepd.stats(self, timeout)

    def stop(self, sig=signal.SIGINT, timeout=netstep.STOP_TIMEOUT):
        """Signal, wait (bounded); returns (rc, stdout, stderr); final
        counters in self.final_stats.  rc None: it had to be killed."""
        return netstep.Netstepd.stop(self, sig, timeout)

    def kill(self):
        netstep.kill_pid(self.proc)

    def wait_stdout(self, regex, timeout=10.0):
        """First stdout line (already printed or to come) matching regex, as
        a match object; None on timeout."""
        r = re.compile(regex)
        deadline = time.monotonic() + timeout
        while True:
            for line in list(self.out.lines):
                m = r.search(line)
                if m:
                    return m
            if time.monotonic() > deadline:
                return None
            time.sleep(0.05)

    def describe(self):
        return "%s rc=%s\nstdout (tail):\n%s\nstderr (tail):\n%s" % (
            self.name, self.proc.poll(), self.out.text()[-3000:], self.err.text()[-3000:])


def client_argv(ns, host, port, timeout=None, extra=(), stats=False, log=None):
    """argv of tcp-client HOST PORT with the common flags."""
    argv = [netstep.bin_path("tcp-client")] + common_flags(ns, stats=stats, log=log, extra=extra)
    if timeout is not None:
        argv += ["--timeout", str(timeout)]
    return argv + [host, str(port)]


def ns_socket(ns, family=socket.AF_INET, type=socket.SOCK_STREAM, proto=0):
    """A kernel socket created inside namespace ns."""
    orig = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
    target = os.open(ns.path(), os.O_RDONLY)
    try:
        netstep._setns(target)
        try:
            return socket.socket(family, type, proto)
        finally:
            netstep._setns(orig)
    finally:
        os.close(orig)
        os.close(target)


def ns_connect(ns, addr, timeout=10.0):
    """A kernel TCP socket in ns connected to addr (host, port)."""
    s = ns_socket(ns)
    s.settimeout(timeout)
    try:
        s.connect(addr)
    except BaseException:
        s.close()
        raise
    return s


def ns_listener(ns, addr=(PEER_IP, 0), backlog=16):
    """A kernel TCP listener in ns; returns (socket, port)."""
    s = ns_socket(ns)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(addr)
    s.listen(backlog)
    return s, s.getsockname()[1]
