"""The experiments of the TCP chapters of docs/ (09 to 14), run as written,
with the lines and counters each chapter promises checked against what
really happens -- and, through doc_shows(), checked to be still in the
chapter, so that text and code cannot drift apart silently.

Each test runs one chapter's experiment in a fresh namespace from the
harness (kernel_ns: tap0 = 192.0.2.1/24, netstep = 192.0.2.2 with the MAC
derived from the tap's name, as the docs start it).  The Python the
chapters feed to `python3 -` is taken from the chapter itself.  Outputs the
chapters mark as varying (times, ports, sequence numbers, how many frames a
lossy run needs) are matched by pattern or by the relations the text
explains, not by value.

Every subprocess has a timeout; every process is started through the
namespace (Netns.popen / Netns.run), so the fixture kills it by PID and
deletes the namespace whatever happens.  The helpers come from
test_docs.py (chapters 1-7).
"""

import os
import queue
import re
import signal
import subprocess
import time

import pytest

import netstep
from netstep import bin_path
from test_docs import (PY, TS, App, Capture, doc_script, doc_shows, matching, need, one,
                       stop_ok)

CH09 = "09-tcp-header-and-state-machine.md"
CH10 = "10-tcp-handshake.md"
CH11 = "11-tcp-sending-and-receiving-windows.md"
CH12 = "12-tcp-retransmission-and-timers.md"
CH13 = "13-tcp-closing-and-time-wait.md"
CH14 = "14-tcp-socket-api.md"

READY_ECHO = r"^echo-server: listening on 192\.0\.2\.2:7 \(tcp, udp\)$"
READY_CHARGEN = r"^chargen-server: listening on 192\.0\.2\.2:19 \(tcp\)$"
LOGTCP = r"\[(\S+)\] tcp debug tcp_usrreq\.c:\d+ "   # thread, module, level, file:line


# --------------------------------------------------------------------------
# helpers

def dump_until(app, regex, timeout=5.0):
    """dump() until a socket-table line matches regex (the stack thread may
    not have taken in the peer's last ACK or FIN when the client returns)."""
    deadline = time.monotonic() + timeout
    while True:
        counters, sockets = dump(app)
        if matching(sockets, regex) or time.monotonic() > deadline:
            return counters, sockets
        time.sleep(0.05)


def dump(app, timeout=5.0):
    """SIGUSR1 -> (counters, socket-table lines) from one '--- stats ---'
    ... '--- sockets ---' ... '--- end ---' block."""
    while True:                        # forget what was printed before
        try:
            if app.out.q.get_nowait() is None:
                raise AssertionError("%s: stdout closed" % app.argv[0])
        except queue.Empty:
            break
    os.kill(app.pid, signal.SIGUSR1)
    deadline = time.monotonic() + timeout
    block = None
    while True:
        try:
            line = app.out.get(deadline)
        except queue.Empty:
            raise AssertionError("no complete stats block after SIGUSR1: %r" % block)
        if line is None:
            raise AssertionError("%s exited while dumping\n%s" % (app.argv[0], app.err.text()[-3000:]))
        if line == "--- stats ---":
            block = []
        elif line == "--- end ---" and block is not None:
            break
        elif block is not None:
            block.append(line)
    assert "--- sockets ---" in block, block
    i = block.index("--- sockets ---")
    return netstep.parse_stats(block[:i]), block[i + 1:]


def state_changes(lines, tuple_re):
    """[(thread, 'OLD -> NEW')] logged for the connection matching tuple_re."""
    out = []
    r = re.compile(TS + LOGTCP + tuple_re + r" (\S+ -> \S+)$")
    for l in lines:
        m = r.search(l)
        if m:
            out.append((m.group(1), m.group(2)))
    return out


def wait_listening(ns, port, timeout=5.0):
    """Until a kernel socket in the namespace listens on port."""
    deadline = time.monotonic() + timeout
    while True:
        r = ns.run(["ss", "-ltnH"], timeout=5)
        if re.search(r":%d\b" % port, r.stdout):
            return
        assert time.monotonic() < deadline, "nothing listens on %d: %s" % (port, r.stdout)
        time.sleep(0.05)


def run_bytes(ns, argv, timeout):
    """Run in the namespace; stdout as bytes."""
    return subprocess.run(ns.cmd(argv), capture_output=True, timeout=timeout,
                          stdin=subprocess.DEVNULL)


def chargen_bytes(n):
    """The first n bytes chargen-server sends (RFC 864's rotating lines)."""
    period = b"".join(bytes(32 + (line + i) % 95 for i in range(72)) + b"\r\n"
                      for line in range(95))
    return (period * (n // len(period) + 1))[:n]


def tshark(argv, timeout=30):
    r = netstep.run(["tshark"] + argv, timeout=timeout, check=False)
    assert r.returncode == 0, r
    return r.stdout.splitlines()


# --------------------------------------------------------------------------
# chapter 9

@pytest.mark.needs_bin("echo-server")
def test_ch09_header_states_and_socket_table(kernel_ns):
    need("nc", "tcpdump")
    ns = kernel_ns
    cap = Capture(ns, ["-x", "-c", "2", "tcp[tcpflags] & tcp-syn != 0"])
    e = App(ns, "echo-server", ["--log", "tcp=debug"], ready=READY_ECHO)
    try:
        client = ns.popen(["sh", "-c", "(echo hello; sleep 2) | nc -N 192.0.2.2 7"],
                          stdout=subprocess.PIPE, text=True)
        time.sleep(1)
        _, sockets = dump(e)
        est = (r"^tcp ESTABLISHED  192\.0\.2\.2:7 192\.0\.2\.1:\d+ sendq=0 recvq=0 rto=\d+ "
               r"srtt=\d+ cwnd=\d+ ssthresh=4294967295 snd_wnd=(\d+) retrans=0$")
        lst = (r"^tcp LISTEN       192\.0\.2\.2:7 0\.0\.0\.0:0 sendq=0 recvq=0 rto=1000 srtt=0 "
               r"cwnd=0 ssthresh=4294967295 snd_wnd=0 retrans=0$")
        for regex in (est, lst, r"^udp -            192\.0\.2\.2:7 \*:0 sendq=0 recvq=0$"):
            one(sockets, regex, "in the socket table")
            doc_shows(CH09, regex)
        snd_wnd = int(re.search(est, one(sockets, est)).group(1))

        # the two SYNs in hex: decode netstep's SYN,ACK as the chapter does
        lines = cap.wait_exit(5)
        synack = r"IP 192\.0\.2\.2\.7 > 192\.0\.2\.1\.\d+: Flags \[S\.\], seq (\d+), ack (\d+), " \
                 r"win 65535, options \[mss 1460,sackOK,TS val (\d+) ecr (\d+),nop,wscale 3\], length 0$"
        syn = (r"IP 192\.0\.2\.1\.\d+ > 192\.0\.2\.2\.7: Flags \[S\], seq (\d+), win \d+, "
               r"options \[mss 1460,sackOK,TS val (\d+) ecr 0,nop,wscale (\d+)\]")
        i = [k for k, l in enumerate(lines) if re.search(synack, l)]
        assert i, "no SYN,ACK in:\n" + "\n".join(lines)
        m = re.search(synack, lines[i[0]])
        hexbytes = bytes.fromhex("".join(
            "".join(l.split(":", 1)[1].split()) for l in lines[i[0] + 1:i[0] + 5]))
        tcp = hexbytes[20:]
        assert tcp[0:2] == b"\x00\x07"
        assert int.from_bytes(tcp[4:8], "big") == int(m.group(1))
        assert int.from_bytes(tcp[8:12], "big") == int(m.group(2))
        # 40 bytes of header, laid out as Linux does: MSS 1460, SACK-permitted,
        # timestamps (TSecr = the kernel's TSval), NOP, window scale 3; the SYN's window unscaled
        assert tcp[12] == 0xa0 and tcp[13] == 0x12 and tcp[14:16] == b"\xff\xff", tcp[:16].hex()
        assert tcp[20:28] == bytes.fromhex("020405b40402080a") and len(tcp) == 40, tcp.hex()
        assert int.from_bytes(tcp[28:32], "big") == int(m.group(3)), tcp.hex()
        assert int.from_bytes(tcp[32:36], "big") == int(m.group(4)), tcp.hex()
        assert tcp[36:40] == bytes.fromhex("01030303"), tcp.hex()
        ms = re.search(syn, one(lines, syn))
        k, peer_tsval, peer_shift = int(ms.group(1)), int(ms.group(2)), int(ms.group(3))
        assert int(m.group(2)) == k + 1
        assert int(m.group(4)) == peer_tsval
        # both SYNs offered window scaling: snd_wnd is the kernel's field << its shift
        assert 0 < snd_wnd <= 65535 << peer_shift and snd_wnd % (1 << peer_shift) == 0, \
            (snd_wnd, peer_shift)
        doc_shows(CH09, synack)
        doc_shows(CH09, syn)
        doc_shows(CH09, r"^\s+0x0020:  a012 ffff [0-9a-f]{4} 0000 0204 05b4 0402 080a$")
        doc_shows(CH09, r"^\s+0x0030:  [0-9a-f]{4} [0-9a-f]{4} [0-9a-f]{4} [0-9a-f]{4} 0103 0303$")
        doc_shows(CH09, r"snd_wnd=64512 ")

        out, _ = client.communicate(timeout=10)
        assert out == "hello\n", out
        doc_shows(CH09, r"^hello$")
    finally:
        stop_ok(e)
    log = e.err.lines
    one(log, TS + r"\[main\] tcp debug tcp_usrreq\.c:\d+ 192\.0\.2\.2:7 0\.0\.0\.0:0 CLOSED -> LISTEN$")
    one(log, TS + r"\[main\] tcp debug tcp_usrreq\.c:\d+ 192\.0\.2\.2:7 0\.0\.0\.0:0 LISTEN -> CLOSED$")
    changes = state_changes(log, r"192\.0\.2\.2:7 192\.0\.2\.1:\d+")
    assert changes == [("stack", "CLOSED -> SYN-RECEIVED"), ("stack", "SYN-RECEIVED -> ESTABLISHED"),
                       ("stack", "ESTABLISHED -> CLOSE-WAIT"), ("echo-0", "CLOSE-WAIT -> LAST-ACK"),
                       ("stack", "LAST-ACK -> CLOSED")], changes
    for thread, change in changes + [("main", "CLOSED -> LISTEN"), ("main", "LISTEN -> CLOSED")]:
        doc_shows(CH09, TS + r"\[%s\] tcp debug tcp_usrreq\.c:\d+ 192\.0\.2\.2:7 \S+ %s$"
                  % (thread, re.escape(change)))


# --------------------------------------------------------------------------
# chapter 10

@pytest.mark.needs_bin("echo-server", "tcp-client")
def test_ch10_handshake_log_tshark_reset_and_active_open(kernel_ns, tmp_path):
    need("nc", "tshark")
    ns = kernel_ns
    pcap = tmp_path / "hs.pcap"
    e = App(ns, "echo-server", ["--log", "tcp=debug", "--pcap", str(pcap)], ready=READY_ECHO)
    try:
        r = netstep.run(ns.cmd(["nc", "-N", "192.0.2.2", "7"]), timeout=10, check=False,
                        input="hello\n")
        assert r.stdout == "hello\n", r
        r = ns.run(["nc", "-z", "192.0.2.2", "8"], timeout=10)
        assert r.returncode == 1, r
        doc_shows(CH10, r"^exit status 1$")
        counters, _ = dump(e)
        assert {n: counters[n] for n in ("tcp.passive_opens", "tcp.in_no_pcb", "tcp.out_rsts")} == \
            {"tcp.passive_opens": 1, "tcp.in_no_pcb": 1, "tcp.out_rsts": 1}, counters
    finally:
        stop_ok(e)

    # grep -m1 -B4 -- '-> ESTABLISHED'
    log = e.err.lines
    at = [k for k, l in enumerate(log) if "-> ESTABLISHED" in l]
    assert at and at[0] >= 4, "\n".join(log)
    got = log[at[0] - 4:at[0] + 1]
    hs = [
        r"\[stack\] tcp debug tcp_usrreq\.c:\d+ tcp 192\.0\.2\.1\.(\d+) > 192\.0\.2\.2\.7: Flags \[S\], "
        r"seq (\d+), ack 0, win \d+, length 0$",
        r"\[stack\] tcp debug tcp_usrreq\.c:\d+ 192\.0\.2\.2:7 192\.0\.2\.1:\d+ CLOSED -> SYN-RECEIVED$",
        r"\[stack\] tcp debug tcp_usrreq\.c:\d+ tcp 192\.0\.2\.2\.7 > 192\.0\.2\.1\.\d+: Flags \[S\.\], "
        r"seq (\d+), ack (\d+), win 65535, length 0$",
        r"\[stack\] tcp debug tcp_usrreq\.c:\d+ tcp 192\.0\.2\.1\.\d+ > 192\.0\.2\.2\.7: Flags \[\.\], "
        r"seq (\d+), ack (\d+), win (\d+), length 0$",
        r"\[stack\] tcp debug tcp_usrreq\.c:\d+ 192\.0\.2\.2:7 192\.0\.2\.1:\d+ SYN-RECEIVED -> ESTABLISHED$",
    ]
    ms = []
    for line, regex in zip(got, hs):
        m = re.search(TS + regex, line)
        assert m, "expected %r, got %r" % (regex, line)
        ms.append(m)
        doc_shows(CH10, TS + regex)
    client_isn, server_isn = int(ms[0].group(2)), int(ms[2].group(1))
    assert int(ms[2].group(2)) == client_isn + 1
    assert (int(ms[3].group(1)), int(ms[3].group(2))) == (client_isn + 1, server_isn + 1)
    kernel_field = int(ms[3].group(3))          # the kernel's scaled window, as on the wire
    doc_shows(CH10, TS + hs[3].replace(r"win (\d+)", "win 63"))

    lines = tshark(["-r", str(pcap), "--disable-protocol", "echo", "-Y", "tcp"])
    syn_re = (r"192\.0\.2\.1 → 192\.0\.2\.2    TCP 74 \d+ → 7 \[SYN\] Seq=0 Win=64240 Len=0 MSS=1460 "
              r"SACK_PERM TSval=(\d+) TSecr=0 WS=(\d+)$")
    synack_re = (r"192\.0\.2\.2 → 192\.0\.2\.1    TCP 74 7 → \d+ \[SYN, ACK\] Seq=0 Ack=1 Win=65535 "
                 r"Len=0 MSS=1460 SACK_PERM TSval=(\d+) TSecr=(\d+) WS=8$")
    ack_re = (r"192\.0\.2\.1 → 192\.0\.2\.2    TCP 66 \d+ → 7 \[ACK\] Seq=1 Ack=1 Win=(\d+) Len=0 "
              r"TSval=(\d+) TSecr=(\d+)$")
    for regex in [syn_re, synack_re, ack_re,
                  r"192\.0\.2\.1 → 192\.0\.2\.2    TCP 74 \d+ → 8 \[SYN\] Seq=0",
                  r"192\.0\.2\.2 → 192\.0\.2\.1    TCP 60 8 → \d+ \[RST, ACK\] Seq=1 Ack=1 Win=0 Len=0$"]:
        one(lines, regex, "in tshark's reading of the capture")
        doc_shows(CH10, regex)
    # tshark scales the kernel's third segment by the multiplier of its SYN, as netstep does
    ms, ma, mk = (re.search(r, one(lines, r)) for r in (syn_re, synack_re, ack_re))
    multiplier = int(ms.group(2))
    assert int(mk.group(1)) == kernel_field * multiplier
    # timestamps agreed: each SYN's TSval is echoed by the other side's next segment
    assert int(ma.group(2)) == int(ms.group(1)) and int(mk.group(3)) == int(ma.group(1)), (ms, ma, mk)
    doc_shows(CH10, r"TCP 66 \d+ → 7 \[ACK\] Seq=1 Ack=1 Win=64512 Len=0 TSval=\d+ TSecr=\d+$")
    # netstep's segments after its SYN,ACK: the whole 256 KiB buffer, scaled, and a
    # timestamp; 66 bytes, 72 with the echoed "hello\n" (the order of the echo, the ACK of
    # the FIN and our FIN varies)
    ours = matching(lines, r"192\.0\.2\.2 → 192\.0\.2\.1    TCP \d+ 7 → \d+ \[(?!SYN)[A-Z, ]+\] ")
    assert len(ours) >= 3 and all(re.search(r"TCP (66 .* Len=0|72 .* Len=6) TSval=\d+ TSecr=\d+$", l)
                                  and re.search(r" Win=262144 Len=", l) for l in ours), ours
    doc_shows(CH10, r"192\.0\.2\.2 → 192\.0\.2\.1    TCP 66 7 → \d+ \[ACK\] Seq=1 Ack=8 Win=262144 Len=0 "
                    r"TSval=\d+ TSecr=\d+$")
    rows = [l.split("\t") for l in tshark(["-r", str(pcap), "-Y", "tcp.flags.syn == 1", "-T", "fields",
                                           "-e", "tcp.srcport", "-e", "tcp.dstport", "-e", "tcp.seq_raw",
                                           "-e", "tcp.ack_raw", "-e", "tcp.options.mss_val",
                                           "-e", "tcp.options.wscale.shift",
                                           "-e", "tcp.options.timestamp.tsval",
                                           "-e", "tcp.options.timestamp.tsecr"])]
    assert len(rows) == 3, rows
    assert rows[0][1] == "7" and rows[1][0] == "7" and rows[2][1] == "8", rows
    assert int(rows[1][3]) == int(rows[0][2]) + 1 and all(r[4] == "1460" for r in rows), rows
    assert 1 << int(rows[0][5]) == multiplier and rows[1][5] == "3", rows   # our shift: 256 KiB >> 3
    assert rows[0][7] == "0" and rows[1][7] == rows[0][6] and rows[2][7] == "0", rows
    doc_shows(CH10, r"^\d+\t7\t\d+\t0\t1460\t\d+\t\d+\t0$")
    doc_shows(CH10, r"^7\t\d+\t\d+\t\d+\t1460\t3\t\d+\t\d+$")
    doc_shows(CH10, r"-e tcp\.options\.mss_val -e tcp\.options\.wscale\.shift "
                    r"-e tcp\.options\.timestamp\.tsval -e tcp\.options\.timestamp\.tsecr ")

    # the active open: netstep's tcp-client against the kernel's nc -l
    nc = ns.popen(["nc", "-l", "192.0.2.1", "7777"], stdout=subprocess.PIPE, text=True)
    wait_listening(ns, 7777)
    r = netstep.run(ns.cmd([bin_path("tcp-client"), "--log", "tcp=debug", "192.0.2.1", "7777"]),
                    timeout=15, check=False, input="hello\n")
    assert r.returncode == 0, r
    assert nc.communicate(timeout=10)[0] == "hello\n"
    head = r.stderr.splitlines()[:5]
    active = [
        r"\[main\] tcp debug tcp_usrreq\.c:\d+ 192\.0\.2\.2:\d+ 192\.0\.2\.1:7777 CLOSED -> SYN-SENT$",
        r"\[main\] tcp debug tcp_usrreq\.c:\d+ tcp 192\.0\.2\.2\.\d+ > 192\.0\.2\.1\.7777: Flags \[S\], "
        r"seq \d+, ack 0, win 65535, length 0$",
        r"\[stack\] tcp debug tcp_usrreq\.c:\d+ tcp 192\.0\.2\.1\.7777 > 192\.0\.2\.2\.\d+: Flags \[S\.\], "
        r"seq \d+, ack \d+, win \d+, length 0$",
        r"\[stack\] tcp debug tcp_usrreq\.c:\d+ 192\.0\.2\.2:\d+ 192\.0\.2\.1:7777 SYN-SENT -> ESTABLISHED$",
        r"\[stack\] tcp debug tcp_usrreq\.c:\d+ tcp 192\.0\.2\.2\.\d+ > 192\.0\.2\.1\.7777: Flags \[\.\], "
        r"seq \d+, ack \d+, win 32768, length 0$",        # 262144 >> 3: scaled, unlike the SYN
    ]
    assert len(head) == 5, r.stderr
    for line, regex in zip(head, active):
        assert re.search(TS + regex, line), "expected %r, got %r" % (regex, line)
        doc_shows(CH10, TS + regex)


# --------------------------------------------------------------------------
# chapter 11

def test_ch11_window_never_past_ring():
    """Chapter 11's rounding experiment: the unit test it names runs and
    prints the two lines the chapter shows."""
    t = netstep.build_dir() / "tests" / "proto" / "test_tcp_wscale"
    assert t.exists(), "%s not built (make test builds it first)" % t
    r = subprocess.run([str(t)], capture_output=True, text=True, timeout=60)
    out = r.stdout + r.stderr
    assert r.returncode == 0, out[-3000:]
    lines = [l for l in out.splitlines() if "never_past" in l]
    assert lines == ["[ RUN      ] test_window_never_past_ring",
                     "[       OK ] test_window_never_past_ring"], lines
    for l in lines:
        doc_shows(CH11, "^" + re.escape(l) + "$")


@pytest.mark.needs_bin("chargen-server")
def test_ch11_zero_window_persist_and_window_update(kernel_ns):
    need("tcpdump")
    ns = kernel_ns
    cap = Capture(ns, ["tcp"])
    c = App(ns, "chargen-server", ["--bytes", "1000000"], ready=READY_CHARGEN)
    try:
        reader = ns.popen([PY, "-"], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, text=True)
        reader.stdin.write(doc_script(CH11, "SO_RCVBUF"))
        reader.stdin.close()
        time.sleep(2)                          # (sleep 2; kill -USR1 $P)
        counters, sockets = dump(c)
        assert 2 <= counters["tcp.persist_probes"] <= 4, counters["tcp.persist_probes"]
        doc_shows(CH11, r"^tcp\.persist_probes [2-4]$")
        stalled = (r"^tcp ESTABLISHED  192\.0\.2\.2:19 192\.0\.2\.1:\d+ sendq=262144 recvq=0 rto=\d+ "
                   r"srtt=\d+ cwnd=\d+ ssthresh=4294967295 snd_wnd=0 retrans=0$")
        one(sockets, stalled, "(the stalled connection)")
        doc_shows(CH11, stalled)
        out = reader.stdout.read()
        reader.wait(timeout=20)
        assert reader.returncode == 0 and out == "received 1000000 bytes\n", (out, reader.stderr.read())
        doc_shows(CH11, r"^received 1000000 bytes$")
    finally:
        stop_ok(c)
    lines = cap.stop()
    tsopt = r"options \[nop,nop,TS val \d+ ecr \d+\]"       # every segment after the SYNs
    kernel_zero = r"IP 192\.0\.2\.1\.\d+ > 192\.0\.2\.2\.19: Flags \[\.\], ack (\d+), win 0, %s, length 0$" % tsopt
    # window scaling agreed, shift 0 for the kernel's small buffer and 3 for netstep's 256 KiB:
    # netstep's SYN,ACK says 65535 (never scaled), its later segments 32768 (262144 >> 3)
    synack = (r"IP 192\.0\.2\.2\.19 > 192\.0\.2\.1\.\d+: Flags \[S\.\], seq \d+, ack \d+, win 65535, "
              r"options \[mss 1460,sackOK,TS val \d+ ecr \d+,nop,wscale 3\], length 0$")
    one(lines, synack)
    one(lines, r"IP 192\.0\.2\.1\.\d+ > 192\.0\.2\.2\.19: Flags \[S\], .*options \[mss 1460,sackOK,TS val \d+ "
               r"ecr 0,nop,wscale 0\], length 0$")
    ours = matching(lines, r"IP 192\.0\.2\.2\.19 > 192\.0\.2\.1\.\d+: Flags \[[^S]*\], ")
    assert ours and all(", win 32768, " in l for l in ours), "\n".join(ours[:10])
    doc_shows(CH11, synack)
    # and every later segment of ours carries a timestamp: full ones hold 1460 - 12 = 1448 bytes
    assert all(re.search(r", %s, length \d+$" % tsopt, l) for l in ours), "\n".join(ours[:10])
    full = matching(lines, r"IP 192\.0\.2\.2\.19 > 192\.0\.2\.1\.\d+: Flags \[\.\], seq \d+:\d+, ack 1, "
                           r"win 32768, %s, length 1448$" % tsopt)
    assert len(full) > 600, len(full)            # 1000000 / 1448 = 690.6
    assert not matching(lines, r"length (1449|14[5-9]\d|1[5-9]\d\d)$")
    probe = (r"IP 192\.0\.2\.2\.19 > 192\.0\.2\.1\.\d+: Flags \[\.\], seq (\d+):(\d+), ack 1, win 32768, "
             r"%s, length 1$" % tsopt)
    zeros = [(k, re.search(kernel_zero, l)) for k, l in enumerate(lines) if re.search(kernel_zero, l)]
    probes = [(k, re.search(probe, l)) for k, l in enumerate(lines) if re.search(probe, l)]
    assert zeros and len(probes) >= 3, "\n".join(lines[:40])
    edge = int(zeros[0][1].group(1))
    for _, m in probes:            # one byte at the edge of the shut window
        assert (int(m.group(1)), int(m.group(2))) == (edge, edge + 1)
    after = [l for l in lines[probes[-1][0]:]
             if re.search(r"192\.0\.2\.1\.\d+ > 192\.0\.2\.2\.19: Flags \[\.\], ack %d, win [1-9]\d*, "
                          r"%s, length 0$" % (edge, tsopt), l)]
    assert after, "no window update after the probes:\n" + "\n".join(lines[:40])
    for regex in (kernel_zero, probe,
                  r"IP 192\.0\.2\.1\.\d+ > 192\.0\.2\.2\.19: Flags \[\.\], ack \d+, win [1-9]\d*, %s, "
                  r"length 0$" % tsopt,
                  r"IP 192\.0\.2\.2\.19 > 192\.0\.2\.1\.\d+: Flags \[\.\], seq \d+:\d+, ack 1, win 32768, "
                  r"%s, length 1448$" % tsopt):
        doc_shows(CH11, regex)


# --------------------------------------------------------------------------
# chapter 12

@pytest.mark.needs_bin("chargen-server")
def test_ch12_retransmission_under_loss(kernel_ns, tmp_path):
    need("nc")
    ns = kernel_ns
    pcap = tmp_path / "loss.pcap"
    c = App(ns, "chargen-server", ["--bytes", "1000000", "--drop", "0.05", "--seed", "3", "--stats",
                                   "--log", "tcp=debug", "--pcap", str(pcap)], ready=READY_CHARGEN)
    try:
        r = run_bytes(ns, ["nc", "-d", "192.0.2.2", "19"], timeout=60)
        assert len(r.stdout) == 1000000, (len(r.stdout), r.stderr)
        assert r.stdout == chargen_bytes(1000000), "the stream differs from RFC 864's pattern"
        doc_shows(CH12, r"^1000000$")
    finally:
        out, err = stop_ok(c)
    st = c.final_stats
    names = ["tcp.retrans_segs", "tcp.fast_retransmits", "tcp.rto_timeouts", "tcp.in_dup_acks",
             "tcp.sack_recoveries", "tcp.sack_retrans_segs", "tcp.tlp_probes",
             "fault.rx_dropped", "fault.tx_dropped"]
    v = {n: st[n] for n in names}
    for n in names:
        doc_shows(CH12, r"^%s \d+$" % re.escape(n))
    # lost frames both ways; every lost data segment sent again, by one of
    # the mechanisms; a few lost frames are not data (ARP, a last ACK)
    assert v["fault.tx_dropped"] > 0 and v["fault.rx_dropped"] > 0, v
    assert v["tcp.fast_retransmits"] + v["tcp.rto_timeouts"] > 0, v
    assert v["tcp.fast_retransmits"] <= v["tcp.retrans_segs"], v
    assert v["tcp.retrans_segs"] >= v["fault.tx_dropped"] - 4, v
    # the kernel offers SACK: every recovery (enter_recovery counts it in both) is
    # SACK-driven, resends holes counted among all resends, and starts on a
    # duplicate ACK -- not necessarily the third (RFC 6675 IsLost)
    assert v["tcp.sack_recoveries"] == v["tcp.fast_retransmits"] > 0, v
    assert v["tcp.fast_retransmits"] <= v["tcp.sack_retrans_segs"] <= v["tcp.retrans_segs"], v
    assert v["tcp.in_dup_acks"] >= v["tcp.fast_retransmits"], v
    assert st["tcp.in_sack_blocks"] > 0, st

    rto = matching(err.splitlines(), TS + r"\[stack\] tcp debug tcp_output\.c:\d+ rto: resend from \d+, "
                                          r"rto now \d+ ms, try \d+$")
    assert len(rto) <= v["tcp.rto_timeouts"] and (rto or v["tcp.rto_timeouts"] == 0), (len(rto), v)
    doc_shows(CH12, TS + r"\[stack\] tcp debug tcp_output\.c:\d+ rto: resend from \d+, rto now 400 ms, try 1$")
    tlp = matching(err.splitlines(), TS + r"\[stack\] tcp debug tcp_output\.c:\d+ tlp: probe at \d+, flight \d+$")
    assert len(tlp) <= v["tcp.tlp_probes"], (len(tlp), v)
    doc_shows(CH12, TS + r"\[stack\] tcp debug tcp_output\.c:\d+ tlp: probe at \d+, flight \d+$")

    if netstep.run(["sh", "-c", "command -v tshark"], check=False).returncode == 0:
        expert = tshark(["-r", str(pcap), "-q", "-z", "expert,note"], timeout=60)
        def count(what):
            ls = matching(expert, r"^\s+(\d+)\s+Sequence\s+TCP\s+This frame is a \(suspected\) %s$" % what)
            return int(ls[0].split()[0]) if ls else 0
        fast, retrans = count("fast retransmission"), count("retransmission")
        ooo = count("out-of-order segment")
        # tshark calls "fast" only a resend of what two duplicate ACKs asked for (a
        # recovery's first hole), and takes SACK recovery's quick resends of later holes
        # for reordering: together they are every resend. A recovery that starts on the
        # first duplicate ACK (RFC 6675 IsLost: that ACK already SACKs three segments,
        # as the kernel's stretched ACKs do on a busy machine) is not "fast" for tshark,
        # so the count may even be 0 (seen in CI at 86ec183: 0 of 19 recoveries)
        assert fast <= v["tcp.fast_retransmits"] + 2, (fast, v)
        assert fast <= retrans and abs(retrans + ooo - v["tcp.retrans_segs"]) <= 3, (retrans, ooo, v)
        doc_shows(CH12, r"^\s+\d+\s+Sequence\s+TCP\s+This frame is a \(suspected\) out-of-order segment$")
        doc_shows(CH12, r"^\s+\d+\s+Sequence\s+TCP\s+This frame is a \(suspected\) fast retransmission$")
        doc_shows(CH12, r"^\s+\d+\s+Sequence\s+TCP\s+This frame is a \(suspected\) retransmission$")


# --------------------------------------------------------------------------
# chapter 13

@pytest.mark.needs_bin("chargen-server", "echo-server")
def test_ch13_time_wait_recycling_and_the_kernels_time_wait(kernel_ns):
    need("nc", "ss")
    ns = kernel_ns

    def fetch():
        for _ in range(3):      # the kernel's port 40000 may still be in LAST-ACK for a moment
            r = run_bytes(ns, ["nc", "-d", "-p", "40000", "192.0.2.2", "19"], timeout=15)
            if b"in use" not in r.stderr:
                return r
            time.sleep(0.5)
        return r

    c = App(ns, "chargen-server", ["--bytes", "1000", "--log", "tcp=debug"], ready=READY_CHARGEN)
    try:
        r = fetch()
        assert r.stdout == chargen_bytes(1000), (len(r.stdout), r.stderr)
        doc_shows(CH13, r"^1000$")
        tw = (r"^tcp TIME-WAIT    192\.0\.2\.2:19 192\.0\.2\.1:40000 sendq=0 recvq=0 rto=\d+ srtt=\d+ "
              r"cwnd=\d+ ssthresh=4294967295 snd_wnd=\d+ retrans=0$")
        counters, sockets = dump_until(c, tw)
        one(sockets, tw, "(netstep closed first)")
        doc_shows(CH13, tw)
        assert counters["tcp.time_wait_recycled"] == 0
        changes = state_changes(c.err.lines, r"192\.0\.2\.2:19 192\.0\.2\.1:40000")
        expect = [("stack", "CLOSED -> SYN-RECEIVED"), ("stack", "SYN-RECEIVED -> ESTABLISHED"),
                  ("chargen-0", "ESTABLISHED -> FIN-WAIT-1"), ("stack", "FIN-WAIT-1 -> FIN-WAIT-2"),
                  ("stack", "FIN-WAIT-2 -> TIME-WAIT")]
        assert changes == expect, changes
        for thread, change in expect:
            doc_shows(CH13, TS + r"\[%s\] tcp debug tcp_usrreq\.c:\d+ 192\.0\.2\.2:19 192\.0\.2\.1:40000 %s$"
                      % (re.escape(thread), re.escape(change)))

        r = fetch()            # the same 4-tuple again, within the minute
        assert r.stdout == chargen_bytes(1000), (len(r.stdout), r.stderr)
        counters, sockets = dump_until(c, tw)
        assert counters["tcp.time_wait_recycled"] == 1, counters["tcp.time_wait_recycled"]
        doc_shows(CH13, r"^tcp\.time_wait_recycled 1$")
        one(sockets, tw, "(the second connection closed too)")
    finally:
        stop_ok(c)

    e = App(ns, "echo-server", ready=READY_ECHO)
    try:
        r = netstep.run(ns.cmd(["nc", "-N", "192.0.2.2", "7"]), timeout=10, check=False,
                        input="hello\n")
        assert r.stdout == "hello\n", r
        r = ns.run(["ss", "-tn", "state", "time-wait"], timeout=5)
        row = r"^0\s+0\s+192\.0\.2\.1:\d+\s+192\.0\.2\.2:7\s*$"
        one(r.stdout.splitlines(), row, "(the kernel closed first)")
        doc_shows(CH13, row)
    finally:
        stop_ok(e)


# --------------------------------------------------------------------------
# chapter 14

@pytest.mark.needs_bin("tcp-client")
def test_ch14_tcp_client_both_ways_refused_timeout_reset(kernel_ns):
    need("nc")
    ns = kernel_ns
    client = bin_path("tcp-client")

    nc = ns.popen(["nc", "-l", "192.0.2.1", "7777"], stdout=subprocess.PIPE, text=True)
    wait_listening(ns, 7777)
    r = netstep.run(ns.cmd([client, "192.0.2.1", "7777"]), timeout=15, check=False,
                    input="hello from netstep\n")
    assert r.returncode == 0, r
    assert nc.communicate(timeout=10)[0] == "hello from netstep\n"
    doc_shows(CH14, r"^hello from netstep$")

    nc = ns.popen(["sh", "-c", 'echo "hello from the kernel" | nc -N -l 192.0.2.1 7777'])
    wait_listening(ns, 7777)
    r = ns.run([client, "192.0.2.1", "7777"], timeout=15)
    assert r.returncode == 0 and r.stdout == "hello from the kernel\n", r
    nc.wait(timeout=10)
    doc_shows(CH14, r"^hello from the kernel$")
    doc_shows(CH14, r"^exit status 0$")

    r = ns.run([client, "--stats", "192.0.2.1", "7778"], timeout=15)
    line = "tcp-client: connect to 192.0.2.1 port 7778: Connection refused"
    assert r.returncode == 1 and r.stderr.splitlines() == [line], r
    st = netstep.parse_stats(r.stdout.splitlines())
    expect = {"tcp.active_opens": 1, "tcp.in_rsts": 1, "tcp.attempt_fails": 1}
    assert {n: st[n] for n in expect} == expect, st
    doc_shows(CH14, "^" + re.escape(line) + "$")
    for n, val in expect.items():
        doc_shows(CH14, r"^%s %d$" % (re.escape(n), val))
    doc_shows(CH14, r"^exit status 1$")

    t0 = time.monotonic()
    r = ns.run([client, "--timeout", "2", "192.0.2.3", "7777"], timeout=15)
    took = time.monotonic() - t0
    line = "tcp-client: connect to 192.0.2.3 port 7777: Connection timed out"
    assert r.returncode == 1 and r.stderr.splitlines() == [line], r
    assert 1.5 < took < 6, took
    doc_shows(CH14, "^" + re.escape(line) + "$")

    script = doc_script(CH14, "SO_LINGER")
    assert '"build/bin/tcp-client"' in script
    script = script.replace('"build/bin/tcp-client"', repr(str(client)))
    r = netstep.run(ns.cmd([PY, "-"]), timeout=30, check=False, input=script)
    assert r.returncode == 0, r
    assert r.stdout.splitlines() == ["one line, then a reset", "exit status 1"], r
    assert r.stderr.splitlines() == ["tcp-client: Connection reset by peer"], r
    for l in ("one line, then a reset", "tcp-client: Connection reset by peer", "exit status 1"):
        doc_shows(CH14, "^" + re.escape(l) + "$")
