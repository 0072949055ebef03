"""Which key points fall under an administrative unit, in a tree from registry/tree.py.

DESIGN: "Per administrative unit: the points whose unit is that unit or one of its descendants, in the unit
tree in force in the last bucket of P."
"""

from collections.abc import Iterable
from typing import Protocol, TypeVar

from registry.tree import UnitTree


class _HasUnit(Protocol):
    @property
    def admin_unit(self) -> str | None: ...


P = TypeVar("P", bound=_HasUnit)


def points_in_unit(points: Iterable[P], tree: UnitTree, code: str) -> list[P]:
    """The points whose unit is `code` or one of its descendants; raises UnknownAdminUnit."""
    tree.require(code)
    return [p for p in points if code in tree.under(p.admin_unit)]


def points_by_unit(points: Iterable[P], tree: UnitTree) -> dict[str, list[P]]:
    """For every in-force unit, its points and its descendants' (each point's ancestry resolved once)."""
    grouped: dict[str, list[P]] = {code: [] for code in tree.units}
    memo: dict[str | None, set[str]] = {}
    for point in points:
        if point.admin_unit not in memo:
            memo[point.admin_unit] = tree.under(point.admin_unit)
        for code in memo[point.admin_unit]:
            grouped[code].append(point)
    return grouped
