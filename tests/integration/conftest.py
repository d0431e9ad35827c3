"""Fixtures for netstep's integration tests (see netstep.py for the design).

Every test here needs root (CAP_NET_ADMIN), /dev/net/tun, the ability to
create network namespaces, and the built binaries.  If any of these is
missing, every test is reported as SKIPPED with the reason -- never passed.

Run:  cd <repo> && NETSTEP_BUILD=build /usr/bin/python3 -m pytest -q tests/integration
"""

import importlib
import os
import signal
import subprocess
import sys

import pytest

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import netstep  # noqa: E402

# Per-test wall-clock limit (setup + call + teardown); pytest-timeout is not
# in Debian's python3-pytest, so SIGALRM does the job.
TEST_TIME_LIMIT = float(os.environ.get("NETSTEP_TEST_TIME_LIMIT", "60"))

# Tests need build/bin/netstepd unless marked @pytest.mark.needs_bin("ping", ...)
DEFAULT_BINARIES = ("netstepd",)


def _has_net_admin():
    if os.geteuid() == 0:
        return True
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("CapEff:"):
                    return bool(int(line.split()[1], 16) & (1 << 12))
    except OSError:
        pass
    return False


def _prerequisite_problem():
    """None if integration tests can run, else the reason they cannot."""
    if not sys.platform.startswith("linux"):
        return "integration tests need Linux"
    if not _has_net_admin():
        return "integration tests need root or CAP_NET_ADMIN"
    if not os.path.exists("/dev/net/tun"):
        return "/dev/net/tun does not exist (no tun/tap support)"
    try:
        importlib.import_module("scapy.layers.l2")
    except Exception as e:  # pragma: no cover
        return "scapy not importable (apt install python3-scapy; use /usr/bin/python3): %s" % e
    netstep.cleanup_stale_namespaces()
    probe = "nst-%d-probe" % os.getpid()
    try:
        r = subprocess.run(["ip", "netns", "add", probe], capture_output=True, text=True,
                           timeout=10)
    except (OSError, subprocess.TimeoutExpired) as e:
        return "cannot run 'ip netns add': %s" % e
    if r.returncode != 0:
        return "'ip netns add' failed: %s" % r.stderr.strip()
    try:
        r = subprocess.run(["ip", "-n", probe, "tuntap", "add", "mode", "tap", "name", "tap0"],
                           capture_output=True, text=True, timeout=10)
        if r.returncode != 0:
            return "cannot create a tap in a namespace: %s" % r.stderr.strip()
    finally:
        subprocess.run(["ip", "netns", "del", probe], capture_output=True, timeout=10)
    return None


def pytest_collection_modifyitems(config, items):
    here = os.path.dirname(os.path.abspath(__file__))
    ours = [it for it in items if str(it.fspath).startswith(here)]
    if not ours:
        return
    _problem = _prerequisite_problem()
    if _problem:
        mark = pytest.mark.skip(reason=_problem)
        for it in ours:
            it.add_marker(mark)
        return
    for it in ours:
        m = it.get_closest_marker("needs_bin")
        needed = m.args if m else DEFAULT_BINARIES
        missing = [b for b in needed if not os.access(netstep.bin_path(b), os.X_OK)]
        if missing:
            it.add_marker(pytest.mark.skip(
                reason="binaries missing in %s: %s (run make first, or set NETSTEP_BUILD)"
                % (netstep.build_dir() / "bin", ", ".join(missing))))


def pytest_configure(config):
    config.addinivalue_line("markers", "needs_bin(*names): build/bin programs the test runs "
                            "(default: netstepd)")


def pytest_report_header(config):
    return "netstep build dir: %s" % netstep.build_dir()


class TimeLimitExceeded(Exception):
    pass


@pytest.fixture(autouse=True)
def _time_limit(request):
    def on_alarm(signum, frame):
        raise TimeLimitExceeded("test exceeded %gs (NETSTEP_TEST_TIME_LIMIT)" % TEST_TIME_LIMIT)
    old = signal.signal(signal.SIGALRM, on_alarm)
    signal.setitimer(signal.ITIMER_REAL, TEST_TIME_LIMIT)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


class Topology:
    """What a fixture hands to a test: ns, netstepd (may be None), peer."""

    def __init__(self, ns, netstepd=None, peer=None):
        self.ns = ns
        self.netstepd = netstepd
        self.peer = peer


def _assert_clean_exit(rc, err):
    """Every netstepd must exit 0 on SIGINT, whatever the test did to it."""
    assert rc == 0, "netstepd exit code %s after SIGINT\nstderr (tail):\n%s" % (rc, err[-3000:])


@pytest.fixture
def kernel_ns():
    """Topology (a) without netstepd: tap0 = 192.0.2.1/24 in a fresh netns."""
    with netstep.Netns(address="%s/%d" % (netstep.PEER_IP, netstep.PREFIX)) as ns:
        yield ns


@pytest.fixture
def kernel_peer(kernel_ns):
    """Topology (a): the kernel (192.0.2.1 on tap0) is the peer; netstepd is
    192.0.2.2 with MAC 02:00:00:00:00:02."""
    d = netstep.Netstepd(kernel_ns)
    try:
        yield Topology(kernel_ns, d)
    finally:
        rc, _, err = d.stop()
    _assert_clean_exit(rc, err)


@pytest.fixture
def scapy_ns():
    """Topology (b) without netstepd: tap0 up, no address, IPv6 off."""
    with netstep.Netns(address=None) as ns:
        yield ns


@pytest.fixture
def scapy_peer(scapy_ns):
    """Topology (b): raw peer 192.0.2.1 / 02:00:00:00:00:01 on tap0 (opened
    before netstepd starts, so it sees the startup traffic) + netstepd."""
    peer = netstep.RawPeer(scapy_ns)
    d = None
    try:
        d = netstep.Netstepd(scapy_ns)
        yield Topology(scapy_ns, d, peer)
    finally:
        rc, err = None, ""
        if d is not None:
            rc, _, err = d.stop()
        peer.close()
    _assert_clean_exit(rc, err)
