"""The ingest benchmark's CPU budget adds up whole process trees: PostgreSQL's connections come and go, and a
closed one's time must still count (through its parent's reaped-children time)."""

import os
import subprocess
import sys

from bench.cpu import CpuMeter, tree_cpu_seconds

_BUSY_CHILD = "import time\nwhile time.process_time() < 0.5:\n    pass\n"
# /proc reports user and system time each truncated to clock ticks: a child that ran 0.5 s may show 0.49.
_AT_LEAST = 0.45


def test_a_reaped_child_still_counts_in_its_parents_tree() -> None:
    before = tree_cpu_seconds(os.getpid())
    subprocess.run([sys.executable, "-c", _BUSY_CHILD], check=True)
    assert tree_cpu_seconds(os.getpid()) - before >= _AT_LEAST


def test_a_meter_counts_grandchildren_and_skips_services_not_running() -> None:
    launcher = "import subprocess, sys\nsubprocess.run([sys.executable, '-c', sys.stdin.read()])\n"
    meter = CpuMeter({"tree": os.getpid(), "absent": None})
    with subprocess.Popen([sys.executable, "-c", launcher], stdin=subprocess.PIPE, text=True) as child:
        meter.start()
        child.communicate(_BUSY_CHILD, timeout=60)
    spent = meter.stop()
    assert set(spent) == {"tree"}
    assert spent["tree"] >= _AT_LEAST
