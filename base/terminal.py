"""What commands show and write: a progress line on stderr for long commands (silent when stderr is not a
terminal, except at the end), and a file they made, to --out or standard output."""

import sys
import time
from pathlib import Path


class Progress:
    def __init__(self, label: str, total: int, *, width: int = 30) -> None:
        self.label, self.total, self.width = label, max(total, 1), width
        self.done = 0
        self._shown_at = 0.0
        self._interactive = sys.stderr.isatty()

    def advance(self, n: int = 1) -> None:
        self.done += n
        now = time.monotonic()
        if self._interactive and now - self._shown_at > 0.1:
            self._shown_at = now
            self._draw()

    def set(self, done: int) -> None:
        self.advance(done - self.done)

    def _draw(self, end: str = "") -> None:
        share = min(self.done / self.total, 1.0)
        bar = "█" * int(share * self.width) + "·" * (self.width - int(share * self.width))
        sys.stderr.write(f"\r{self.label:<32} {bar} {self.done:>7}/{self.total:<7} {share:6.1%}{end}")
        sys.stderr.flush()

    def finish(self) -> None:
        self._draw(end="\n")


class StagedProgress:
    """A progress line per stage, for work that reports `(stage, done, total)`: each new stage closes the line
    of the one before. `labels` names each stage as the reader should see it."""

    def __init__(self, labels: dict[str, str]) -> None:
        self._labels = labels
        self._current: Progress | None = None

    def __call__(self, stage: str, done: int, total: int) -> None:
        label = self._labels.get(stage, stage)
        if self._current is None or self._current.label != label:
            self.finish()
            self._current = Progress(label, total)
        self._current.set(done)

    def finish(self) -> None:
        if self._current is not None:
            self._current.finish()
            self._current = None


def emit(command: str, made: str | bytes, out: str | None) -> int:
    """Text to a file or standard output; a workbook only to a file (it is not for a terminal)."""
    if isinstance(made, bytes):
        if not out:
            print(f"{command}: --format xlsx needs --out FILE.xlsx", file=sys.stderr)
            return 2
        Path(out).write_bytes(made)
    elif out:
        Path(out).write_text(made, encoding="utf-8")
    else:
        sys.stdout.write(made)
    return 0


def visible(text: str) -> str:
    """`text` with its control characters escaped (`\\n`, `\\x1b`): printed as data, not as commands to the
    terminal or forged lines."""
    return "".join(c if c.isprintable() or c == " " else repr(c)[1:-1] for c in text)
