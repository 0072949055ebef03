"""`citykpi ingest` as a child process, run the way an operator runs it: the fault tests, the benchmarks and the
soak drive it through its /readyz, /metrics and signals, and read its CPU time and peak memory from /proc."""

import os
import signal
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

from devstack.ports import free_loopback_port, wait_until


class IngestProcess:
    """One process; `env` holds its CITYKPI_* settings (the parent's are not inherited), `log_path` its output.
    `verbose` logs at INFO (`citykpi -v`), which the tests read and the benchmarks leave out."""

    def __init__(self, *, source: str, env: dict[str, str], log_path: Path, verbose: bool = True) -> None:
        self.source = source
        self.port = free_loopback_port()
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("CITYKPI_")}
        self.env.update(env, CITYKPI_METRICS_HOST="127.0.0.1", CITYKPI_METRICS_PORT=str(self.port))
        self.log_path = log_path
        self.verbose = verbose
        self.process: subprocess.Popen[bytes] | None = None
        # VmHWM when `stop()` ended it: the most memory it ever held.
        self.peak_rss_kib = 0

    def start(self, timeout_s: float = 60) -> "IngestProcess":
        return self.launch().wait_ready(timeout_s)

    def launch(self) -> "IngestProcess":
        """Start it without waiting, so that several can start together (`wait_ready` each afterwards)."""
        command = [sys.executable, "-m", "citykpi.cli", *(["-v"] if self.verbose else []), "ingest",
                   "--source", self.source]
        with open(self.log_path, "ab") as log_file:
            self.process = subprocess.Popen(command, env=self.env, stdout=log_file, stderr=subprocess.STDOUT,
                                            stdin=subprocess.DEVNULL)
        return self

    def wait_ready(self, timeout_s: float = 60) -> "IngestProcess":
        """Until /readyz answers 200; raises RuntimeError with its log if it exits first, TimeoutError after
        `timeout_s`."""
        wait_until(self.ready, timeout_s=timeout_s,
                   what=f"/readyz of citykpi ingest --source {self.source} ({self.log_path})")
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
            raise RuntimeError(f"ingest exited with {self.process.returncode}:\n{self.log()}")
        return self._get("/readyz")[0] == 200

    def healthz(self) -> int:
        return self._get("/healthz")[0]

    def metric(self, name: str, labels: str = "") -> float | None:
        """One sample from /metrics, e.g. metric('citykpi_ingest_heartbeats_duplicate_total', 'source="mqtt"');
        the labels in any order."""
        _, text = self._get("/metrics")
        wanted = set(labels.split(",")) if labels else set()
        for line in text.splitlines():
            sample, _, value = line.rpartition(" ")
            sample_name, _, sample_labels = sample.partition("{")
            if sample_name == name and set(filter(None, sample_labels.rstrip("}").split(","))) == wanted:
                return float(value)
        return None

    def cpu_seconds(self) -> float:
        """User + system CPU the process has used so far: on a shared machine, a truer cost than wall time."""
        assert self.process is not None
        fields = Path(f"/proc/{self.process.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def kill(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(30)

    def terminate(self, timeout_s: float = 60) -> int:
        """SIGTERM; the exit status (raises if the process outlives `timeout_s`)."""
        assert self.process is not None
        self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout_s)

    def stop(self, timeout_s: float = 60) -> int:
        """`terminate`, noting the peak memory first (/proc forgets it once the process is gone)."""
        assert self.process is not None
        status = Path(f"/proc/{self.process.pid}/status")
        if status.exists():
            for line in status.read_text().splitlines():
                if line.startswith("VmHWM:"):
                    self.peak_rss_kib = int(line.split()[1])
        return self.terminate(timeout_s)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")[-5000:]

    def close(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(30)

