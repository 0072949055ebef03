"""What every local service does with its child process: stop it within a bound, quote its log, clean up."""

import shutil
import signal
import subprocess
from pathlib import Path
from typing import Self


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


class ChildService:
    """A server started as a child process, on loopback, in a working folder. `close()` (or leaving a `with`
    block) stops it and removes the folder when this object made it; `stop()` keeps the folder, so that
    `start()` brings the same data back. Subclasses start it and say where it logs.

    A subclass starts its process in a process group of its own (`process_group=0`): Ctrl-C at a terminal
    signals the whole foreground group, and a service must stop when its owner says, after what uses it (the
    demo drains its ingest into the database after Ctrl-C), not at the keypress."""

    stop_signal: int = signal.SIGTERM
    stop_timeout_s: float = 15

    def __init__(self, workdir: Path, *, own_workdir: bool) -> None:
        self.workdir, self._own_workdir = workdir, own_workdir
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def log_path(self) -> Path:
        raise NotImplementedError

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process is not None else None

    def start(self) -> Self:
        raise NotImplementedError

    def _log_tail(self) -> str:
        return log_tail(self.log_path)

    def stop(self) -> None:
        stop_process(self._process, sig=self.stop_signal, timeout_s=self.stop_timeout_s)
        self._process = None

    def close(self) -> None:
        self.stop()
        if self._own_workdir:
            shutil.rmtree(self.workdir, ignore_errors=True)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()
