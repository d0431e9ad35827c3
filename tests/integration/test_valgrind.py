"""An app under valgrind: start, serve ping, UDP and TCP, SIGINT -> no leaks.

This is the guide's leak check (testing.md §4) as a test. valgrind cannot
run the sanitizer builds, so it always uses the plain build in build/
(which `make test` makes first, in CI too).
"""
import os
import re
import signal
import subprocess
import time

import pytest

import netstep

BUILD = netstep.REPO_ROOT / "build" / "bin"


def test_echo_server_frees_everything(kernel_ns, tmp_path):
    if not (BUILD / "echo-server").exists():
        pytest.fail("build/bin/echo-server is missing: run make first")
    if subprocess.run(["which", "valgrind"], capture_output=True).returncode != 0:
        pytest.fail("valgrind is not installed (tools/install-deps installs it)")
    out, err = tmp_path / "out", tmp_path / "err"
    with open(out, "w") as fo, open(err, "w") as fe:
        proc = kernel_ns.popen(["valgrind", "--leak-check=full", "--error-exitcode=3",
                                str(BUILD / "echo-server"), "--tap", "tap0"], stdout=fo, stderr=fe)
    try:
        deadline = time.monotonic() + 30
        while "listening" not in out.read_text():
            assert proc.poll() is None, err.read_text()[-3000:]
            assert time.monotonic() < deadline, "echo-server did not start under valgrind"
            time.sleep(0.2)
        r = kernel_ns.run(["ping", "-c", "3", "-i", "0.2", "-s", "3000", netstep.NETSTEP_IP], timeout=20)
        assert " 0% packet loss" in r.stdout
        r = kernel_ns.run(["sh", "-c", "echo hi | nc -u -w1 %s 7" % netstep.NETSTEP_IP], timeout=10)
        assert r.stdout.strip() == "hi"
        r = kernel_ns.run(["sh", "-c", "head -c 1000000 /dev/zero | nc -N %s 7 | wc -c" % netstep.NETSTEP_IP],
                          timeout=60)
        assert r.stdout.strip() == "1000000"
        proc.send_signal(signal.SIGINT)
        rc = proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    report = err.read_text()
    assert rc == 0, report[-3000:]
    assert "ERROR SUMMARY: 0 errors" in report, report[-3000:]
    assert re.search(r"All heap blocks were freed|definitely lost: 0 bytes", report), report[-3000:]
