from dataclasses import dataclass


@dataclass
class ChangeCount:
    """What an import did; `total == 0` is the promise that re-importing the same file changes nothing."""

    added: int = 0
    changed: int = 0
    closed: int = 0

    @property
    def total(self) -> int:
        return self.added + self.changed + self.closed

    def __str__(self) -> str:
        return f"{self.total} changed ({self.added} added, {self.changed} changed, {self.closed} closed)"
