"""What every local service does with its child process: stop it within a bound, and quote its log."""

import signal
import subprocess
from pathlib import Path


def stop_process(process: subprocess.Popen | None, *, sig: int = signal.SIGTERM, timeout_s: float = 15) -> None:
    """Ask with `sig`, then kill after `timeout_s`: a service never outlives its stop()."""
    if process is None or process.poll() is not None:
        return
    process.send_signal(sig)
    try:
        process.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def log_tail(path: Path, lines: int = 30) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""
