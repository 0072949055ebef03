"""The value of a form-based indicator for a period, from the current submissions — or what is missing.

Where several agencies or reporting units submit the same input (each commune its own count), the
province's figure is their sum; a province-wide figure (no reporting unit) must then stand alone, so two
of them, or one beside unit figures, is a conflict that blocks the value rather than a silent double count.
"""

from dataclasses import dataclass, field
from datetime import UTC, datetime, time
from decimal import ROUND_HALF_UP, Decimal

from base.periods import Period
from catalog import Catalog, Indicator, percent

TWO_PLACES = Decimal("0.01")


@dataclass
class FormValue:
    code: str
    name_vi: str
    unit: str
    period: str
    numerator: int | None
    denominator: int | None
    value: Decimal | str | None
    status: str
    sources: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    details: dict[str, object] = field(default_factory=dict)

    def as_dict(self) -> dict[str, object]:
        value = float(self.value) if isinstance(self.value, Decimal) else self.value
        return {"code": self.code, "name_vi": self.name_vi, "unit": self.unit, "period": self.period,
                "numerator": self.numerator, "denominator": self.denominator, "value": value,
                "status": self.status, "sources": self.sources, "missing": self.missing, **self.details}


def form_value(indicator: Indicator, period: Period, submissions: list[dict], catalog: Catalog,
               *, now: datetime | None = None) -> FormValue:
    """`submissions`: the current rows of `form_submissions` for this indicator and period."""
    now = now or datetime.now(UTC)
    result = FormValue(indicator.code, indicator.name_vi, indicator.unit, period.label, None, None, None,
                       "insufficient_data")
    totals: dict[str, int | bool] = {}
    sources: set[str] = set()
    for item in indicator.inputs:
        givers = [s for s in submissions if item.id in s["inputs"]]
        if not givers:
            agencies = ", ".join(a.name_vi for a in (catalog.agency(i) for i in indicator.agencies) if a)
            result.missing.append(f"{item.id} ({item.label_vi}) — nguồn: {agencies}")
            continue
        province_wide = [s for s in givers if not s["reporting_unit"]]
        if province_wide and len(givers) > 1:
            who = ", ".join(f"{s['agency_id']}/{s['reporting_unit'] or 'toàn tỉnh'}" for s in givers)
            result.missing.append(f"{item.id}: conflicting submissions ({who}); one must be withdrawn")
            continue
        values = [s["inputs"][item.id] for s in givers]
        totals[item.id] = values[0] if item.role == "flag" else sum(int(v) for v in values)
        sources |= {s["agency_id"] + (f"/{s['reporting_unit']}" if s["reporting_unit"] else "") for s in givers}
    result.sources = sorted(sources)
    if result.missing:
        return result
    _compute(indicator, totals, result)
    if result.status != "insufficient_data":
        period_end = datetime.combine(period.end, time(0), tzinfo=UTC)
        result.status = "final" if now >= period_end else "provisional"
    return result


def _compute(indicator: Indicator, totals: dict[str, int | bool], result: FormValue) -> None:
    roles = {i.id: i.role for i in indicator.inputs}
    flags = [k for k, r in roles.items() if r == "flag"]
    if flags:
        result.value = "Có" if totals[flags[0]] else "Chưa"
        result.status = "provisional"
        return
    levels = {int(r.split("_", 1)[1]): k for k, r in roles.items() if r.startswith("level_")}
    denominator = int(next(totals[k] for k, r in roles.items() if r == "denominator"))
    if levels:
        _survey(levels, totals, denominator, result)
        return
    numerator = sum(int(totals[k]) for k, r in roles.items() if r == "numerator")
    result.numerator, result.denominator = numerator, denominator
    if denominator == 0:
        result.missing.append("denominator is 0")
        return
    if numerator > denominator and not indicator.numerator_may_exceed_denominator:
        result.missing.append(f"numerator {numerator} exceeds denominator {denominator} across submissions")
        return
    result.value = percent(numerator, denominator)
    result.status = "provisional"


def _survey(levels: dict[int, str], totals: dict[str, int | bool], population: int, result: FormValue) -> None:
    """#5: the share answering 1 or 2 and the mean score; the decision's own formula (÷ population) beside."""
    counts = {level: int(totals[key]) for level, key in levels.items()}
    respondents = sum(counts.values())
    if respondents == 0:
        result.missing.append("no respondents")
        return
    satisfied = counts.get(1, 0) + counts.get(2, 0)
    result.numerator, result.denominator = satisfied, respondents
    result.value = percent(satisfied, respondents)
    mean = Decimal(sum(level * n for level, n in counts.items())) / Decimal(respondents)
    result.details = {
        "mean_score": float(mean.quantize(TWO_PLACES, ROUND_HALF_UP)),
        "value_as_written": float(percent(satisfied, population)) if population else None,
    }
    result.status = "provisional"

