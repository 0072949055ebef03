"""The Quickstart's first command, as a newcomer runs it (smaller, to keep the suite quick), and `citykpi demo
--serve`, which keeps it up with the report page until Ctrl-C."""

import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import urllib.request
from pathlib import Path

from base.periods import parse_period
from tests.helpers import wait_for


def test_demo_prints_the_six_sensor_indicators_and_exits_0() -> None:
    result = subprocess.run([sys.executable, "-m", "citykpi.cli", "demo", "--points-per-category", "4",
                             "--days", "1"], capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    rows = re.findall(r"^\s*(9|17|18|19|21|22)\s+\S.*?\s(\d+)/(\d+)\s+(\S+)\s+(provisional|final)\s*$",
                      result.stdout, flags=re.M)
    assert [r[0] for r in rows] == ["9", "17", "18", "19", "21", "22"]
    for _code, numerator, denominator, value, _status in rows:
        assert 0 <= int(numerator) <= int(denominator) > 0
        assert value.endswith("%")
    assert "dead-lettered" in result.stderr
    # Only the demo's planted gateway report is refused: the cameras its registry routes through gateways are not.
    assert "'gateway_not_bound': 1}" in result.stderr or "'gateway_not_bound': 1," in result.stderr


def _started_at(pid: int) -> str | None:
    """The process's start time (field 22 of /proc/PID/stat), None once it is gone: with the pid, it names one
    process even if the pid is used again."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19]
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return None


def _process_tree(pid: int) -> dict[int, tuple[str, str]]:
    """`pid` and every process below it (children as /proc/*/task/*/children lists them): pid → (start time,
    command name)."""
    found, todo = {}, [pid]
    while todo:
        current = todo.pop()
        started = _started_at(current)
        try:
            name = Path(f"/proc/{current}/comm").read_text().strip()
        except FileNotFoundError:
            continue
        if started is None:
            continue
        found[current] = (started, name)
        for children in Path(f"/proc/{current}/task").glob("*/children"):
            try:
                todo += [int(child) for child in children.read_text().split()]
            except FileNotFoundError:  # a thread that ended meanwhile
                continue
    return found


def _get(url: str) -> tuple[int, str]:
    with urllib.request.urlopen(url, timeout=120) as response:
        return response.status, response.read().decode()


def _trend(page: str, code: str) -> dict[str, str]:
    """The sparkline of an indicator's row on the report page: period → value, as its aria-label says."""
    row = re.search(rf'<tr data-code="{code}">.*?</tr>', page, flags=re.S)
    assert row is not None, f"no row for #{code}"
    label = re.search(r'aria-label="([^"]*)"', row.group(0))
    assert label is not None, f"no trend in the row of #{code}: {row.group(0)[:500]}"
    return dict(part.split(": ", 1) for part in label.group(1).split("; "))


def test_demo_serve_keeps_the_page_up_until_ctrl_c_then_stops_everything_it_started(tmp_path: Path) -> None:
    # The demo's temporary files go here, to be found afterwards. Not under tmp_path: as root, PostgreSQL runs
    # as another account, which must reach its folder (pytest's are 0700).
    scratch = Path(tempfile.mkdtemp(prefix="citykpi-test-demo-serve-"))
    scratch.chmod(0o755)
    stdout, stderr = tmp_path / "stdout", tmp_path / "stderr"
    with stdout.open("w") as out, stderr.open("w") as err:
        # A session of its own: Ctrl-C at a terminal signals the foreground process group, and so does the test.
        demo = subprocess.Popen([sys.executable, "-m", "citykpi.cli", "demo", "--serve", "--points-per-category", "2",
                                 "--days", "1"], stdout=out, stderr=err, stdin=subprocess.DEVNULL,
                                env={**os.environ, "TMPDIR": str(scratch)}, start_new_session=True)
    tree: dict[int, tuple[str, str]] = {}
    try:
        def serving() -> bool:
            assert demo.poll() is None, f"the demo exited with {demo.returncode}:\n{stderr.read_text()[-3000:]}"
            return "/?period=" in stdout.read_text()

        wait_for(serving, timeout_s=600, what="the demo's report URL")
        tree = _process_tree(demo.pid)
        printed = stdout.read_text()
        report_url, period = re.search(r"^\s+Trang báo cáo:\s+(http://127\.0\.0\.1:\d+/\?period=(\d{4}-\d{2}))$",
                                       printed, flags=re.M).groups()
        evidence_url = re.search(r"^\s+Bằng chứng chỉ số #17:\s+(http://\S+/kpi/17/evidence\?period=\S+)$", printed,
                                 flags=re.M).group(1)
        base = report_url.split("/?")[0]

        status, page = _get(report_url)
        assert status == 200
        assert [code for code in re.findall(r'<tr data-code="(\d+)">', page)
                if code in {"9", "17", "18", "19", "21", "22"}] == ["9", "17", "18", "19", "21", "22"]
        # The trend of the 5 months ending with this one: sensor history and monthly submissions behind each.
        months = [parse_period(period)]
        while len(months) < 5:
            months.insert(0, months[0].previous())
        labels = [m.label for m in months]
        for code in ("17", "10"):
            trend = _trend(page, code)
            assert list(trend) == labels
            # This month's sensor value may not exist yet in its first hour; the months before have theirs.
            assert all(re.fullmatch(r"\d+\.\d\d", trend[label]) for label in labels[:-1]), trend
        assert re.fullmatch(r"\d+\.\d\d", _trend(page, "10")[period])

        status, evidence = _get(evidence_url)
        assert status == 200
        assert "<th>Mã điểm</th>" in evidence

        status, live = _get(f"{base}/v1/live")
        assert status == 200
        indicators = json.loads(live)["indicators"]
        assert sorted(i["code"] for i in indicators) == sorted(["9", "17", "18", "19", "21", "22"])
        assert all(i["points"] > 0 for i in indicators)

        os.killpg(demo.pid, signal.SIGINT)
        assert demo.wait(timeout=180) == 0, stderr.read_text()[-3000:]
    finally:
        if demo.poll() is None:
            demo.kill()
            demo.wait()
        left = {pid: name for pid, (started, name) in tree.items() if _started_at(pid) == started}
        for pid in left:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)  # what it left behind must not outlive the test
        remaining = list(scratch.iterdir())
        shutil.rmtree(scratch, ignore_errors=True)
    # PostgreSQL (the postmaster and its backends) and the broker were running under it; all are gone, and their
    # folders with them.
    assert "postgres" in {name for _started, name in tree.values()}
    assert len(tree) >= 3
    assert left == {}
    assert remaining == []
