from dataclasses import dataclass, field


@dataclass
class ChangeCount:
    """What an import did (or, in a dry run, would do); `total == 0` is the promise that re-importing the
    same file changes nothing. The id lists name what changed, for `--dry-run`."""

    added: int = 0
    changed: int = 0
    closed: int = 0
    added_ids: list[str] = field(default_factory=list)
    changed_ids: list[str] = field(default_factory=list)
    closed_ids: list[str] = field(default_factory=list)

    def add(self, what: str, ids: list[str]) -> None:
        setattr(self, what, getattr(self, what) + len(ids))
        getattr(self, f"{what}_ids").extend(ids)

    @property
    def total(self) -> int:
        return self.added + self.changed + self.closed

    def diff_lines(self) -> list[str]:
        """One line per kind of change, each with its ids: what `--dry-run` prints."""
        return [f"{what} {len(ids)}: {' '.join(sorted(ids))}".rstrip()
                for what, ids in (("added", self.added_ids), ("closed", self.closed_ids),
                                  ("changed", self.changed_ids))]

    def __str__(self) -> str:
        return f"{self.total} changed ({self.added} added, {self.changed} changed, {self.closed} closed)"
