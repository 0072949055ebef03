"""The indicator catalog: a KPI set (layers, indicators, source agencies) as data, and what a value is.

A deployment serves one set (Bình Định's Decision 2268/QĐ-UBND by default); another province's set is
another JSON file passed to `load_catalog`, with no code changes.
"""

from __future__ import annotations

import datetime
from collections.abc import Iterable, Mapping
from decimal import ROUND_HALF_UP, Decimal
from typing import Any, Literal, Self

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from base.vocabulary import CATEGORIES, DEVICE_KINDS

SensorCategory = Literal[CATEGORIES]
DeviceKindName = Literal[DEVICE_KINDS]


def percent(numerator: int, denominator: int) -> Decimal:
    """An indicator's value: 100 × numerator / denominator, two decimals, halves rounded up."""
    return (Decimal(100 * numerator) / Decimal(denominator)).quantize(Decimal("0.01"), ROUND_HALF_UP)


class CatalogError(ValueError):
    """A catalog file that cannot be used; the message lists every problem, one per line."""

    def __init__(self, source: str, problems: Iterable[tuple[str, str]]) -> None:
        self.source = source
        self.problems = tuple(
            f"{source}:{where}: {what}" if where else f"{source}: {what}" for where, what in problems
        )
        super().__init__("\n".join(self.problems))


class UnknownIndicator(KeyError):
    """The catalog has no indicator with this code."""

    def __init__(self, code: str, catalog_id: str) -> None:
        self.code = code
        super().__init__(code)
        self._message = f"indicator {code!r} is not in catalog {catalog_id!r}"

    def __str__(self) -> str:
        return self._message


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Layer(_Model):
    code: str = Field(min_length=1, description="Layer code (Lớp), e.g. 'A'.")
    name_vi: str = Field(min_length=1, description="Official Vietnamese name of the layer.")
    name_en: str | None = Field(default=None, description="English name (ours, not official).")


class Agency(_Model):
    id: str = Field(pattern=r"^[a-z0-9][a-z0-9-]*$", description="Stable identifier, e.g. 'so-tttt'.")
    name_vi: str = Field(min_length=1, description="Official Vietnamese name.")
    valid_from: datetime.date | None = Field(
        default=None, description="First day in force (inclusive); null = since before the decision."
    )
    valid_to: datetime.date | None = Field(
        default=None, description="First day no longer in force (exclusive); null = still in force."
    )
    successors: tuple[str, ...] = Field(
        default=(), description="Agencies that take over its submissions from valid_to on."
    )
    note: str | None = Field(default=None, description="Why the dates and successors are what they are.")

    @model_validator(mode="after")
    def _period_is_not_empty(self) -> Self:
        if self.valid_from and self.valid_to and self.valid_to <= self.valid_from:
            raise ValueError("valid_to must be after valid_from")
        return self

    def in_force(self, on: datetime.date) -> bool:
        """Whether the agency exists on `on`, its period being half-open [valid_from, valid_to)."""
        return (self.valid_from is None or self.valid_from <= on) and (
            self.valid_to is None or on < self.valid_to
        )


class Input(_Model):
    id: str = Field(
        pattern=r"^[a-z][a-z0-9_]*$", description="Name of the submitted count, e.g. 'households'."
    )
    label_vi: str = Field(min_length=1, description="What the agency counts, as officials read it.")
    role: str = Field(
        pattern=r"^(numerator|denominator|flag|level_-?[0-9]+)$",
        description="Place in the formula: numerator, denominator, flag (yes/no) or level_N (survey answers "
        "scored N).",
    )
    maximum: int | None = Field(
        default=None, ge=1, le=10**12,
        description="The most a province can count (a count: required; a flag: none). Far above any real "
        "figure: it catches extra digits typed by mistake, and keeps every figure and report computable.",
    )


class SensorSpec(_Model):
    category: SensorCategory = Field(description="Registry category of the key points in the denominator.")
    device_kind: DeviceKindName = Field(description="Device kind whose health makes a key point count.")
    theta: Decimal = Field(
        default=Decimal("0.90"), description="Availability a key point needs over a period to be covered."
    )

    @field_validator("theta")
    @classmethod
    def _theta_is_a_share(cls, theta: Decimal) -> Decimal:
        if not 0 < theta <= 1:
            raise ValueError("must be in (0, 1]")
        return theta


class Indicator(_Model):
    code: str = Field(min_length=1, description="Number in the decision's detailed table, e.g. '17'.")
    layer: str = Field(description="Code of the layer it belongs to.")
    group_vi: str = Field(min_length=1, description="Nhóm chỉ số.")
    subgroup_vi: str | None = Field(default=None, description="Phân nhóm, if the decision gives one.")
    name_vi: str = Field(min_length=1, description="Official name, verbatim from the decision.")
    name_en: str = Field(min_length=1, description="English name (ours, not official).")
    unit: str = Field(min_length=1, description="'%' or, for yes/no indicators, 'Có/Chưa'.")
    purpose_vi: str | None = Field(default=None, description="Ý nghĩa chỉ số, verbatim.")
    formula_vi: str | None = Field(default=None, description="Phương pháp tính toán, verbatim.")
    data_requirement_vi: str | None = Field(default=None, description="Yêu cầu dữ liệu, verbatim.")
    source_vi: str | None = Field(default=None, description="Nguồn dữ liệu đánh giá, verbatim.")
    numerator_vi: str | None = Field(default=None, description="What the numerator counts.")
    denominator_vi: str | None = Field(default=None, description="What the denominator counts.")
    inputs: tuple[Input, ...] = Field(default=(), description="Counts an agency submits (form indicators).")
    agencies: tuple[str, ...] = Field(
        min_length=1, description="Ids of the source agencies the decision names."
    )
    kind: Literal["sensor", "form"] = Field(
        description="Computed from device heartbeats, or from submissions."
    )
    sensor: SensorSpec | None = Field(default=None, description="How a sensor indicator is computed.")
    numerator_may_exceed_denominator: bool = Field(
        default=False, description="True when the formula as written can exceed 100 %."
    )
    notes: tuple[str, ...] = Field(default=(), description="Quirks of the source text, in English.")


class Catalog(_Model):
    id: str = Field(min_length=1, description="Identifier of the set, e.g. 'binh-dinh-2268-2023'.")
    title_vi: str = Field(min_length=1, description="Official title of the indicator set.")
    source: str = Field(min_length=1, description="The legal document that issues the set.")
    notes: tuple[str, ...] = Field(default=(), description="Remarks on the set as a whole.")
    layers: tuple[Layer, ...] = Field(min_length=1, description="Layers (Lớp) in the decision's order.")
    agencies: tuple[Agency, ...] = Field(description="Source agencies, with their validity and successors.")
    indicators: tuple[Indicator, ...] = Field(min_length=1, description="The indicators.")

    @model_validator(mode="after")
    def _references_resolve(self) -> Self:
        problems = reference_problems(self.model_dump())
        if problems:
            raise ValueError("; ".join(f"{where}: {what}" for where, what in problems))
        return self

    def indicator(self, code: str) -> Indicator:
        for indicator in self.indicators:
            if indicator.code == code:
                return indicator
        raise UnknownIndicator(code, self.id)

    def agency(self, agency_id: str) -> Agency | None:
        return next((agency for agency in self.agencies if agency.id == agency_id), None)

    def sensor_indicators(self) -> list[Indicator]:
        return sorted((i for i in self.indicators if i.kind == "sensor"), key=lambda i: _code_order(i.code))

    def agency_accepts(self, indicator_code: str, agency_id: str, on: datetime.date) -> bool:
        """Whether `agency_id` may submit `indicator_code` for `on`.

        A successor takes over only once its predecessor's period has ended: Sở Khoa học và Công nghệ
        existed long before 2025-03-01 but submits the Sở Thông tin và Truyền thông indicators only from then.
        Raises UnknownIndicator for a code the catalog lacks; an unknown agency is simply not accepted.
        """
        responsible: set[str] = set()
        pending = list(self.indicator(indicator_code).agencies)
        seen: set[str] = set()
        while pending:
            agency = self.agency(pending.pop())
            if agency is None or agency.id in seen:
                continue
            seen.add(agency.id)
            if agency.in_force(on):
                responsible.add(agency.id)
            if agency.valid_to is not None and agency.valid_to <= on:
                pending.extend(agency.successors)
        return agency_id in responsible


def reference_problems(data: Any) -> list[tuple[str, str]]:
    # Works on raw, possibly malformed JSON, so that one load reports broken references together with
    # schema errors instead of one round of fixes per kind of mistake.
    if not isinstance(data, Mapping):
        return []
    problems: list[tuple[str, str]] = []

    layer_at = _first_index(_entries(data, "layers"), "code", "layers", "layer code", problems)
    agency_at = _first_index(_entries(data, "agencies"), "id", "agencies", "agency id", problems)
    for i, agency in _entries(data, "agencies"):
        successors = _sequence(agency.get("successors"))
        if successors and agency.get("valid_to") is None:
            problems.append((f"agencies[{i}].valid_to", "required when successors are given"))
        for k, successor in enumerate(successors):
            if isinstance(successor, str) and successor not in agency_at:
                problems.append((f"agencies[{i}].successors[{k}]", f"unknown agency {successor!r}"))

    indicators = _entries(data, "indicators")
    _first_index(indicators, "code", "indicators", "code", problems)
    category_at: dict[str, int] = {}
    for i, indicator in indicators:
        at = f"indicators[{i}]"
        layer = indicator.get("layer")
        if isinstance(layer, str) and layer not in layer_at:
            problems.append((f"{at}.layer", f"unknown layer {layer!r}"))
        for k, agency_id in enumerate(_sequence(indicator.get("agencies"))):
            if isinstance(agency_id, str) and agency_id not in agency_at:
                problems.append((f"{at}.agencies[{k}]", f"unknown agency {agency_id!r}"))
        kind, sensor = indicator.get("kind"), indicator.get("sensor")
        inputs = [item for item in _sequence(indicator.get("inputs")) if isinstance(item, Mapping)]
        if kind == "sensor":
            if sensor is None:
                problems.append((f"{at}.sensor", "required for a sensor indicator"))
            if inputs:
                problems.append((f"{at}.inputs", "must be empty for a sensor indicator: the registry counts"))
        elif kind == "form":
            if sensor is not None:
                problems.append((f"{at}.sensor", "must be null for a form indicator"))
            problems += _input_problems(at, inputs)
        if isinstance(sensor, Mapping) and isinstance(category := sensor.get("category"), str):
            # The registry maps a key-point category to one indicator.
            if category in category_at:
                where = f"indicators[{category_at[category]}]"
                problems.append((f"{at}.sensor.category", f"{category!r} is already used by {where}"))
            else:
                category_at[category] = i
    return problems


def _input_problems(at: str, inputs: list[Mapping[str, Any]]) -> list[tuple[str, str]]:
    if not inputs:
        return [(f"{at}.inputs", "a form indicator needs at least one input")]
    problems: list[tuple[str, str]] = []
    _first_index(list(enumerate(inputs)), "id", f"{at}.inputs", "input id", problems)
    roles = [item.get("role") for item in inputs]
    if "flag" in roles:
        if len(inputs) > 1:
            problems.append((f"{at}.inputs", "a flag input must be the only input"))
        return problems
    for k, item in enumerate(inputs):
        if item.get("maximum") is None:
            problems.append((f"{at}.inputs[{k}].maximum", "required for a count"))
    if roles.count("denominator") != 1:
        problems.append((f"{at}.inputs", "needs exactly one input with role 'denominator'"))
    if not any(isinstance(role, str) and role != "denominator" for role in roles):
        problems.append((f"{at}.inputs", "needs a numerator or level_N input"))
    return problems


def _entries(data: Mapping[str, Any], key: str) -> list[tuple[int, Mapping[str, Any]]]:
    return [(i, item) for i, item in enumerate(_sequence(data.get(key))) if isinstance(item, Mapping)]


def _sequence(value: Any) -> list[Any] | tuple[Any, ...]:
    return value if isinstance(value, list | tuple) else []


def _first_index(
    entries: list[tuple[int, Mapping[str, Any]]],
    key: str,
    where: str,
    what: str,
    problems: list[tuple[str, str]],
) -> dict[str, int]:
    first: dict[str, int] = {}
    for i, entry in entries:
        value = entry.get(key)
        if not isinstance(value, str):
            continue
        if value in first:
            problems.append(
                (f"{where}[{i}].{key}", f"duplicate {what} {value!r} (first at {where}[{first[value]}])")
            )
        else:
            first[value] = i
    return first


def _code_order(code: str) -> tuple[int, int, str]:
    return (0, int(code), "") if code.isdigit() else (1, 0, code)
