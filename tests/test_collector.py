"""Spacing out the garbage collector's passes (ingest/collector.py) must not stop it: reference cycles made
while streaming are still freed, at most `YOUNG_PASS_EVERY` container allocations late. In a process of its
own, since the setting is process-wide."""

import subprocess
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

SCRIPT = textwrap.dedent("""
    import gc
    import weakref

    from ingest.collector import YOUNG_PASS_EVERY, settle_for_streaming

    class Node:
        pass

    settle_for_streaming()
    made = 3 * YOUNG_PASS_EVERY
    refs = []
    for _ in range(made):
        a, b = Node(), Node()
        a.other, b.other = b, a  # a cycle: reference counting alone never frees it
        refs.append(weakref.ref(a))
        del a, b
    print(made, sum(ref() is not None for ref in refs), YOUNG_PASS_EVERY, gc.get_freeze_count(), gc.isenabled())
""")


def test_cycles_made_after_settling_are_still_collected() -> None:
    done = subprocess.run([sys.executable, "-c", SCRIPT], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    made, alive, young_pass_every, frozen, enabled = done.stdout.split()
    assert enabled == "True"
    assert int(frozen) > 0  # start-up's objects are out of every later pass
    # Each cycle is at least two containers: a young pass runs at least once every young_pass_every / 2
    # cycles and frees every cycle made before it. Without the collector, all would be alive.
    assert int(alive) <= int(young_pass_every) // 2, (made, alive)
