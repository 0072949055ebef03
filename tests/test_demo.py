"""The Quickstart's first command, as a newcomer runs it (smaller, to keep the suite quick)."""

import re
import subprocess
import sys


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
