"""The experiment of docs/15-congestion-control.md, run as written, and
tools/plot-cwnd, which the chapter uses to draw it.

Three transfers of the chapter, each 3,000,000 bytes from chargen-server to
the kernel's nc through a lossy, delayed injector: NewReno with SACK (the
default), CUBIC, and NewReno without SACK.  Every `--log cc=debug` line is
parsed and held to the rules the chapter states: the format, the initial
window, slow start at most one SMSS per ACK, NewReno's SMSS*SMSS/cwnd in
congestion avoidance, ssthresh = max(flight * beta, 2 SMSS) and
cwnd = ssthresh on entering recovery, one segment after a timeout,
cwnd = ssthresh when recovery ends, no `ack` line inside a recovery.  How
many losses a run meets varies with timing, so the tests count nothing
exactly except what the rules fix; no test looks at a clock.

doc_shows() checks that the chapter still shows lines of the shapes really
observed; the chapter's own example cc lines are parsed too and must obey
the same rules, so a number edited by hand cannot slip in.  The helpers
come from test_docs.py.
"""

import collections
import re
import subprocess
import time
import xml.etree.ElementTree as ET

import pytest

import netstep
from test_docs import DOCS, PY, TS, App, doc, doc_shows, need, stop_ok

CH15 = "15-congestion-control.md"
PLOT = netstep.REPO_ROOT / "tools" / "plot-cwnd"
READY_CHARGEN = r"^chargen-server: listening on 192\.0\.2\.2:19 \(tcp\)$"

BYTES = 3000000
EXPERIMENT = ["--bytes", str(BYTES), "--drop", "0.01", "--delay", "tx:10", "--seed", "1"]
SMSS = 1460                 # snd_mss: the kernel's MSS option on a 1500-byte tap
IW = 14600                  # RFC 6928: min(10 * 1460, max(2 * 1460, 14600))
INFINITE = 4294967295
FAST = ("fast-retransmit", "sack-recovery")
LOSS = FAST + ("rto",)
EVENTS = ("ack", "fast-retransmit", "sack-recovery", "recovered", "rto")

CC_RE = re.compile(
    TS + r"\[stack\] cc debug tcp_output\.c:\d+ 192\.0\.2\.2:19 192\.0\.2\.1:(\d+) (newreno|cubic) "
    r"(ack|fast-retransmit|sack-recovery|recovered|rto) cwnd (\d+) ssthresh (\d+) flight (\d+) "
    r"pipe (\d+) srtt (\d+) rto (\d+)$")

# the shape of each line of `tools/plot-cwnd --summary`
SUMMARY_RE = [
    r"^connection 192\.0\.2\.2:19 192\.0\.2\.1:(\d+)$",
    r"^algorithm (newreno|cubic)$",
    r"^lines (\d+)$",
    r"^skipped (\d+) \(not cc lines, or another connection's\)$",
    r"^duration (\d+\.\d{3}) s$",
    r"^events ack=(\d+) fast-retransmit=(\d+) sack-recovery=(\d+) recovered=(\d+) rto=(\d+)$",
    r"^loss events (\d+)$",
    r"^max cwnd (\d+) bytes \(\d+\.\d KiB\) at \d+\.\d{3} s$",
    r"^final cwnd (\d+) bytes \(\d+\.\d KiB\)$",
    r"^final ssthresh (\d+) bytes \(\d+\.\d KiB\)$",
    r"^min finite ssthresh (\d+) bytes$",
]

Row = collections.namedtuple("Row", "port algo event cwnd ssthresh flight pipe srtt rto")


# --------------------------------------------------------------------------
# the log and its rules

def parse(lines):
    """Rows of every cc line; any cc line not in the documented format fails."""
    rows = []
    for line in lines:
        if "] cc " not in line:
            continue
        m = CC_RE.search(line)
        assert m, "cc line not in the documented format: %r" % line
        rows.append(Row(int(m.group(1)), m.group(2), m.group(3), *(int(x) for x in m.group(*range(4, 10)))))
    return rows


def loss_ssthresh(algo, flight):
    """What the congestion hook sets ssthresh to: RFC 5681 eq. 4, or
    RFC 9438 §4.6 (flight * 0.7, truncated as the C double is)."""
    cut = flight // 2 if algo == "newreno" else int(flight * 0.7)
    return max(cut, 2 * SMSS)


def rule_problems(rows, whole_log=True):
    """What in rows breaks the chapter's rules, as a list of strings.
    rows are consecutive lines of one connection: a whole run, or (not
    whole_log) an excerpt the chapter shows."""
    bad = []
    if whole_log:
        first = rows[0]
        if not (first.event == "ack" and first.ssthresh == INFINITE and IW < first.cwnd <= IW + SMSS):
            bad.append("first line is not the initial window plus one ACK of slow start: %s" % (first,))
    for r in rows:                       # what each hook leaves behind
        if r.event in FAST:
            ok = r.ssthresh == loss_ssthresh(r.algo, r.flight) and r.cwnd == r.ssthresh
        elif r.event == "recovered":
            ok = r.cwnd == r.ssthresh
        elif r.event == "rto":
            ok = r.cwnd == SMSS
        else:
            ok = True
        if not ok:
            bad.append("%s" % (r,))
    for prev, r in zip(rows, rows[1:]):  # each line against the one before it
        d = r.cwnd - prev.cwnd
        # a recovery's next line ends it; no ack hook runs inside one
        ok = (r.event in ("recovered", "rto")) if prev.event in FAST else r.event != "recovered"
        if r.event == "ack":
            if prev.cwnd < prev.ssthresh:
                grew = 0 < d <= SMSS                 # slow start: min(acked, SMSS)
            elif r.algo == "newreno":
                grew = d == max(1, SMSS * SMSS // prev.cwnd)
            else:
                grew = d >= 0                        # CUBIC never shrinks cwnd on an ACK
            ok = ok and grew and r.ssthresh == prev.ssthresh
        elif r.event == "rto":                       # a second one in a row cuts nothing
            want = loss_ssthresh(r.algo, r.flight)
            if prev.event in FAST:                   # a timeout in recovery never raises
                want = min(want, prev.ssthresh)      # the threshold recovery set
            ok = ok and (r.ssthresh == want or
                         (prev.event == "rto" and r.ssthresh == prev.ssthresh))
        if not ok:
            bad.append("%s\n  -> %s" % (prev, r))
    return bad


def check_connection(rows, algo):
    """The rules of the chapter on one whole run; returns {event: count}."""
    assert rows, "no cc lines with --log cc=debug"
    assert {r.algo for r in rows} == {algo}, {r.algo for r in rows}
    assert len({r.port for r in rows}) == 1, "one connection expected: %s" % {r.port for r in rows}
    bad = rule_problems(rows)
    assert not bad, "%d lines break the chapter's rules:\n%s" % (len(bad), "\n".join(bad[:10]))
    counts = collections.Counter(r.event for r in rows)
    losses = [i for i, r in enumerate(rows) if r.event in LOSS]
    assert losses, "no loss event under --drop 0.01: %s" % counts
    # the first loss ends the initial slow start; ssthresh is finite from then on
    assert all(r.event == "ack" and r.ssthresh == INFINITE for r in rows[:losses[0]])
    assert all(r.ssthresh != INFINITE for r in rows[losses[0]:])
    # cwnd falls at a loss and climbs again afterwards
    assert any(rows[i].cwnd < rows[i - 1].cwnd and any(r.cwnd > rows[i].cwnd for r in rows[i + 1:])
               for i in losses if i > 0), "cwnd never fell at a loss and grew again"
    # pipe: RFC 6675's estimate, never above the flight; the flight itself outside SACK recovery
    assert all(r.pipe <= r.flight for r in rows)
    assert all(r.pipe == r.flight for r in rows if r.event not in ("sack-recovery", "rto"))
    return counts


def run_experiment(ns, extra=()):
    """The chapter's command (plus extra); (rows, stderr, final counters)."""
    need("nc")
    c = App(ns, "chargen-server", EXPERIMENT + list(extra) + ["--stats", "--log", "cc=debug"],
            ready=READY_CHARGEN)
    try:
        r = netstep.run(ns.cmd(["sh", "-c", "nc -d 192.0.2.2 19 | wc -c"]), timeout=45, check=False,
                        stdin=subprocess.DEVNULL)
        assert r.stdout.strip() == str(BYTES), r
    finally:
        _, err = stop_ok(c)
    return parse(err.splitlines()), err, c.final_stats


def check_counters(st, counts):
    assert st["tcp.fast_retransmits"] == counts["fast-retransmit"] + counts["sack-recovery"], (st, counts)
    assert st["tcp.sack_recoveries"] == counts["sack-recovery"], (st, counts)
    assert st["tcp.rto_timeouts"] >= counts["rto"], (st, counts)
    assert st["fault.tx_dropped"] > 0 and st["tcp.retrans_segs"] > 0, st


def others(text):
    """Non-blank lines that are not cc lines (sanitizer builds may add some)."""
    return sum(1 for l in text.splitlines() if l.strip() and not CC_RE.search(l))


def summary_of(text, argv=()):
    r = netstep.run([PY, str(PLOT), "--summary"] + list(argv), timeout=30, check=False, input=text)
    assert r.returncode == 0, r
    return r.stdout.splitlines()


def check_summary(lines, rows, skipped=0):
    """tools/plot-cwnd --summary against the rows; every line of the shape the chapter shows."""
    assert len(lines) == len(SUMMARY_RE), lines
    ms = []
    for line, regex in zip(lines, SUMMARY_RE):
        m = re.search(regex, line)
        assert m, "summary line %r does not match %r" % (line, regex)
        ms.append(m)
    counts = collections.Counter(r.event for r in rows)
    finite = [r.ssthresh for r in rows if r.ssthresh != INFINITE]
    assert int(ms[0].group(1)) == rows[0].port
    assert ms[1].group(1) == rows[0].algo
    assert int(ms[2].group(1)) == len(rows)
    assert int(ms[3].group(1)) == skipped
    assert [int(x) for x in ms[5].groups()] == [counts[e] for e in EVENTS], (lines[5], counts)
    assert int(ms[6].group(1)) == sum(counts[e] for e in LOSS)
    assert int(ms[7].group(1)) == max(r.cwnd for r in rows)
    assert int(ms[8].group(1)) == rows[-1].cwnd
    assert int(ms[9].group(1)) == rows[-1].ssthresh
    assert int(ms[10].group(1)) == min(finite)


def check_svg(path, rows):
    """A well-formed SVG: the two curves, one marker per loss event, the legend's counts."""
    ns = "{http://www.w3.org/2000/svg}"
    root = ET.parse(str(path)).getroot()
    assert root.tag == ns + "svg", root.tag
    paths = {p.get("id"): p for p in root.iter(ns + "path") if p.get("id")}
    assert paths["cwnd"].get("d", "").startswith("M"), "no cwnd curve"
    assert paths["ssthresh"].get("d", "").startswith("M"), "no ssthresh curve"
    counts = collections.Counter(r.event for r in rows)
    texts = [t.text or "" for t in root.iter(ns + "text")]
    for event, label in (("fast-retransmit", "fast retransmit"), ("sack-recovery", "SACK recovery"),
                         ("rto", "timeout (RTO)")):
        marks = [e for e in root.iter() if e.get("class") == "event " + event]
        assert len(marks) == counts[event], (event, len(marks), counts)
        assert "%s (%d)" % (label, counts[event]) in texts, texts


def doc_rows():
    """The cc lines the chapter shows, one list per fenced block; every
    line there that looks like a cc log line must be in the format."""
    blocks = re.findall(r"^```[a-z]*\n(.*?)^```", doc(CH15), re.S | re.M)
    out = []
    for b in blocks:
        rows = parse(l for l in b.splitlines() if re.match(TS, l))
        if rows:
            out.append(rows)
    return out


# --------------------------------------------------------------------------
# the three transfers

@pytest.mark.needs_bin("chargen-server")
def test_ch15_newreno_sack_sawtooth_summary_and_plot(kernel_ns, tmp_path):
    ns = kernel_ns
    doc_shows(CH15, r"chargen-server --bytes 3000000 --drop 0\.01 --delay tx:10 --seed 1 \\$")
    rows, err, st = run_experiment(ns)
    doc_shows(CH15, r"^3000000$")
    counts = check_connection(rows, "newreno")
    assert counts["sack-recovery"] > 0 and counts["fast-retransmit"] == 0, counts
    assert any(r.event == "sack-recovery" and r.pipe < r.flight for r in rows)
    check_counters(st, counts)
    # stretch ACKs: a whole burst acknowledged at once, in congestion avoidance
    assert any(r.event == "ack" and r.flight == 0 and p.cwnd >= p.ssthresh != INFINITE
               for p, r in zip(rows, rows[1:])), "no ACK in congestion avoidance covered a whole burst"

    # the lines the chapter shows, in the shapes observed
    line = TS + (r"\[stack\] cc debug tcp_output\.c:\d+ 192\.0\.2\.2:19 192\.0\.2\.1:\d+ newreno %s "
                 r"cwnd \d+ ssthresh %s flight \d+ pipe \d+ srtt \d+ rto \d+$")
    doc_shows(CH15, line % ("ack", "4294967295"))
    doc_shows(CH15, line % ("sack-recovery", r"\d+"))
    doc_shows(CH15, line % ("recovered", r"\d+"))
    doc_shows(CH15, line % ("ack", r"\d+"))
    for name in ("tcp.retrans_segs", "tcp.fast_retransmits", "tcp.rto_timeouts", "tcp.sack_recoveries",
                 "fault.rx_dropped", "fault.tx_dropped"):
        doc_shows(CH15, r"^%s \d+$" % re.escape(name))

    # tools/plot-cwnd: the summary matches the log, from a file and from stdin among other lines
    log = tmp_path / "cc.log"
    log.write_text(err + "\n")
    lines = summary_of("", [str(log)])
    check_summary(lines, rows, skipped=others(err))
    for regex in SUMMARY_RE:
        doc_shows(CH15, regex)
    noisy = "chargen-server: listening on 192.0.2.2:19 (tcp)\n" + err + "\nsomething else\n"
    check_summary(summary_of(noisy), rows, skipped=others(err) + 2)
    svg = tmp_path / "cwnd-newreno.svg"
    r = netstep.run([PY, str(PLOT), str(log), "-o", str(svg)], timeout=30, check=False)
    assert r.returncode == 0 and r.stdout == "", r
    check_svg(svg, rows)
    doc_shows(CH15, r"^tools/plot-cwnd /tmp/cc\.log -o /tmp/cwnd-newreno\.svg$")


@pytest.mark.needs_bin("chargen-server")
def test_ch15_cubic(kernel_ns, tmp_path):
    doc_shows(CH15, r"chargen-server --bytes 3000000 --drop 0\.01 --delay tx:10 --seed 1 --cc cubic \\$")
    rows, err, st = run_experiment(kernel_ns, ["--cc", "cubic"])
    counts = check_connection(rows, "cubic")
    assert counts["sack-recovery"] > 0, counts
    check_counters(st, counts)
    doc_shows(CH15, TS + r"\[stack\] cc debug tcp_output\.c:\d+ 192\.0\.2\.2:19 192\.0\.2\.1:\d+ cubic "
                         r"sack-recovery cwnd \d+ ssthresh \d+ flight \d+ pipe \d+ srtt \d+ rto \d+$")
    log = tmp_path / "cc-cubic.log"
    log.write_text(err)
    lines = summary_of("", [str(log)])
    check_summary(lines, rows, skipped=others(err))
    for regex in (SUMMARY_RE[4], SUMMARY_RE[5]):
        doc_shows(CH15, regex)
    svg = tmp_path / "cwnd-cubic.svg"
    assert netstep.run([PY, str(PLOT), str(log), "-o", str(svg)], timeout=30, check=False).returncode == 0
    check_svg(svg, rows)


@pytest.mark.needs_bin("chargen-server")
def test_ch15_newreno_without_sack(kernel_ns):
    doc_shows(CH15, r"`--set tcp_sack=0`")
    rows, err, st = run_experiment(kernel_ns, ["--set", "tcp_sack=0"])
    counts = check_connection(rows, "newreno")
    assert counts["fast-retransmit"] > 0 and counts["sack-recovery"] == 0, counts
    assert st["tcp.sack_recoveries"] == 0, st
    check_counters(st, counts)
    doc_shows(CH15, TS + r"\[stack\] cc debug tcp_output\.c:\d+ 192\.0\.2\.2:19 192\.0\.2\.1:\d+ newreno "
                         r"fast-retransmit cwnd \d+ ssthresh \d+ flight (\d+) pipe \1 srtt \d+ rto \d+$")
    doc_shows(CH15, r"^events ack=\d+ fast-retransmit=[1-9]\d* sack-recovery=0 recovered=\d+ rto=\d+$")


# --------------------------------------------------------------------------
# the text itself, and the tool on its own

@pytest.mark.needs_bin("chargen-server")
def test_ch15_unknown_name_and_the_chapter_examples():
    r = netstep.run([str(netstep.bin_path("chargen-server")), "--cc", "foo"], timeout=10, check=False,
                    stdin=subprocess.DEVNULL)
    assert r.returncode != 0, r
    line = r.stderr.strip().splitlines()[-1]
    assert re.fullmatch(r"chargen-server: --cc foo: unknown; one of: .*\bnewreno\b.*\bcubic\b.*", line), r
    doc_shows(CH15, "^" + re.escape(line) + "$")

    # every cc line in the chapter parses, and each excerpt obeys the rules
    blocks = doc_rows()
    assert len(blocks) >= 5, blocks
    for rows in blocks:
        bad = rule_problems(rows, whole_log=False)
        assert not bad, "the chapter's example lines break its rules:\n" + "\n".join(bad)
    first = blocks[0]
    assert first[0].ssthresh == INFINITE and IW < first[0].cwnd <= IW + SMSS, first[0]

    # the pictures: well-formed SVG, referenced from the chapter
    for name in ("15-cwnd-newreno.svg", "15-cwnd-cubic.svg"):
        root = ET.parse(str(DOCS / "img" / name)).getroot()
        assert root.tag == "{http://www.w3.org/2000/svg}svg"
        doc_shows(CH15, r"\(img/%s\)" % re.escape(name))


SYNTHETIC = """\
chargen-server: listening on 192.0.2.2:19 (tcp)
23:59:59.990 [stack] cc debug tcp_output.c:1 192.0.2.2:19 192.0.2.1:40000 newreno ack cwnd 16060 ssthresh 4294967295 flight 2920 pipe 2920 srtt 1 rto 200
23:59:59.995 [stack] tcp debug tcp_usrreq.c:1 tcp 192.0.2.1.40000 > 192.0.2.2.19: Flags [.], ack 2, win 344, length 0
23:59:59.999 [stack] cc debug tcp_output.c:1 192.0.2.2:19 192.0.2.1:40001 cubic ack cwnd 16060 ssthresh 4294967295 flight 2920 pipe 2920 srtt 1 rto 200
00:00:00.010 [stack] cc debug tcp_output.c:1 192.0.2.2:19 192.0.2.1:40000 newreno rto cwnd 1460 ssthresh 2920 flight 2920 pipe 2920 srtt 1 rto 400
00:00:00.020 [stack] cc debug tcp_output.c:1 192.0.2.2:19 192.0.2.1:40000 newreno fast-retransmit cwnd 2920 ssthresh 2920 flight 5840 pipe 5840 srtt 1 rto 200

00:00:00.030 [stack] cc debug tcp_output.c:1 192.0.2.2:19 192.0.2.1:40000 newreno sack-recovery cwnd 2920 ssthresh 2920 flight 5840 pipe 1460 srtt 1 rto 200
00:00:00.040 [stack] cc debug tcp_output.c:1 192.0.2.2:19 192.0.2.1:40000 newreno recovered cwnd 3000 ssthresh 3000 flight 0 pipe 0 srtt 1 rto 200
"""


@pytest.mark.needs_bin("discard-server")
def test_ch15_dsack_counted_by_the_kernel(kernel_ns):
    """The D-SACK experiment: every duplicate the fault injector makes on
    the way in is reported in a D-SACK block the kernel counts."""
    need("nc")
    need("nstat")
    ns = kernel_ns
    d = App(ns, "discard-server", ["--duplicate", "rx:0.05", "--seed", "1"],
            ready=r"^discard-server: listening on 192\.0\.2\.2:9 ")
    try:
        assert ns.run(["nstat", "-n"], timeout=10).returncode == 0
        r = netstep.run(ns.cmd(["sh", "-c", "head -c 4000000 /dev/zero | timeout 20 nc -N 192.0.2.2 9"]),
                        timeout=45, check=False, stdin=subprocess.DEVNULL)
        assert r.returncode == 0, r
        # the last ACKs may still be on their way to the kernel
        kernel = 0
        for _ in range(20):
            k = ns.run(["nstat", "-a", "TcpExtTCPDSACKRecv"], timeout=10).stdout
            m = re.search(r"(?m)^TcpExtTCPDSACKRecv\s+(\d+)", k)
            st = d.stats()
            kernel = int(m.group(1)) if m else 0
            if kernel == st.get("tcp.out_dsacks", 0):
                break
            time.sleep(0.1)
    finally:
        stop_ok(d)
    assert st["fault.rx_duplicated"] > 0, st
    assert 0 < st["tcp.out_dsacks"] <= st["fault.rx_duplicated"], st
    assert kernel == st["tcp.out_dsacks"], (kernel, st["tcp.out_dsacks"])
    doc_shows(CH15, r"^ip netns exec lab build/bin/discard-server --duplicate rx:0\.05 --seed 1 ")
    doc_shows(CH15, r"^ip netns exec lab nstat TcpExtTCPDSACKRecv$")
    doc_shows(CH15, r"^TcpExtTCPDSACKRecv\s+\d+\s+0\.0$")
    doc_shows(CH15, r"^tcp\.out_dsacks \d+$")
    doc_shows(CH15, r"^fault\.rx_duplicated \d+$")


@pytest.mark.needs_bin()
def test_plot_cwnd_connections_midnight_and_infinite_ssthresh(tmp_path):
    """No stack needed: a made-up log with two connections, other lines,
    a blank line, midnight in the middle and a connection whose ssthresh
    never becomes finite."""
    r = netstep.run([PY, str(PLOT), "--list"], timeout=30, check=False, input=SYNTHETIC)
    assert r.stdout.splitlines() == ["192.0.2.2:19 192.0.2.1:40000 newreno 5 lines",
                                     "192.0.2.2:19 192.0.2.1:40001 cubic 1 lines"], r
    r = netstep.run([PY, str(PLOT), "--summary"], timeout=30, check=False, input=SYNTHETIC)
    assert r.returncode == 0 and "2 connections in the log" in r.stderr, r
    lines = r.stdout.splitlines()
    assert lines[0] == "connection 192.0.2.2:19 192.0.2.1:40000", lines
    assert "skipped 3 (not cc lines, or another connection's)" in lines
    assert "duration 0.050 s" in lines              # 23:59:59.990 -> 00:00:00.040
    assert "events ack=1 fast-retransmit=1 sack-recovery=1 recovered=1 rto=1" in lines
    assert "loss events 3" in lines and "final ssthresh 3000 bytes (2.9 KiB)" in lines
    r = netstep.run([PY, str(PLOT), "--summary", "--conn", ":40001"], timeout=30, check=False,
                    input=SYNTHETIC)
    assert "final ssthresh infinite" in r.stdout and "min finite ssthresh none" in r.stdout, r
    svg = tmp_path / "one.svg"
    r = netstep.run([PY, str(PLOT), "--conn", ":40001", "--units", "segments", "-o", str(svg)],
                    timeout=30, check=False, input=SYNTHETIC)
    assert r.returncode == 0, r
    root = ET.parse(str(svg)).getroot()
    ids = {p.get("id") for p in root.iter("{http://www.w3.org/2000/svg}path")}
    assert "cwnd" in ids and "ssthresh" not in ids, ids     # infinite: not drawn
    r = netstep.run([PY, str(PLOT)], timeout=30, check=False, input="no cc lines here\n")
    assert r.returncode == 1 and "--log cc=debug" in r.stderr, r
