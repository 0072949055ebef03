"""`python -m citykpi.cli ingest` as a child process, run the way an operator runs it, for the fault tests."""

import os
import signal
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

from citykpi.services.ports import free_loopback_port
from tests.helpers import wait_for


class IngestProcess:
    def __init__(self, *, source: str, env: dict[str, str], log_path: Path) -> None:
        self.source = source
        self.port = free_loopback_port()
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("CITYKPI_")}
        self.env.update(env, CITYKPI_METRICS_HOST="127.0.0.1", CITYKPI_METRICS_PORT=str(self.port))
        self.log_path = log_path
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> "IngestProcess":
        with open(self.log_path, "ab") as log_file:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "citykpi.cli", "-v", "ingest", "--source", self.source], env=self.env,
                stdout=log_file, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        wait_for(self.ready, timeout_s=60, what=f"/readyz of the ingest process ({self.log_path})")
        return self

    def _get(self, path: str) -> tuple[int, str]:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}{path}", timeout=5) as response:
                return response.status, response.read().decode()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read().decode()
        except OSError:
            return 0, ""

    def ready(self) -> bool:
        assert self.process is not None
        if self.process.poll() is not None:
            raise AssertionError(f"ingest exited with {self.process.returncode}:\n{self.log()}")
        return self._get("/readyz")[0] == 200

    def healthz(self) -> int:
        return self._get("/healthz")[0]

    def metric(self, name: str, labels: str = "") -> float | None:
        """One sample from /metrics, e.g. metric('citykpi_ingest_heartbeats_duplicate_total', 'source="mqtt"')."""
        _, text = self._get("/metrics")
        wanted = f"{name}{{{labels}}}" if labels else name
        for line in text.splitlines():
            if line.startswith(wanted + " "):
                return float(line.rsplit(" ", 1)[1])
        return None

    def kill(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(30)

    def terminate(self, timeout_s: float = 60) -> int:
        """SIGTERM; the exit status (raises if the process outlives `timeout_s`)."""
        assert self.process is not None
        self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout_s)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")[-5000:]

    def close(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(30)
