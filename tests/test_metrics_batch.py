"""A batch's latencies recorded at once (`observe_many`) read exactly as the same values observed one by one."""

import pytest
from prometheus_client import CollectorRegistry, Histogram

from ingest.metrics import observe_many

VALUES = [0.0, 0.1, 0.1000001, 0.25, 0.3, 1.0, 4.99, 5.0, 5.01, 1e9, -3.0, 0.1, 0.1]


def _samples(registry: CollectorRegistry, name: str) -> dict[str, float]:
    return {sample.name.removeprefix(name) + sample.labels.get("le", ""): sample.value
            for metric in registry.collect() if metric.name == name
            for sample in metric.samples if not sample.name.endswith("_created")}


def test_observe_many_fills_the_same_buckets_count_and_sum_as_observe() -> None:
    registry = CollectorRegistry()
    one_by_one = Histogram("one", "", ["source"], buckets=(0.1, 0.25, 1, 5), registry=registry)
    batched = Histogram("batch", "", ["source"], buckets=(0.1, 0.25, 1, 5), registry=registry)
    for value in VALUES:
        one_by_one.labels("mqtt").observe(value)
    observe_many(batched.labels("mqtt"), VALUES)
    expected, got = _samples(registry, "one"), _samples(registry, "batch")
    assert got.pop("_sum") == pytest.approx(expected.pop("_sum"))
    assert got == expected
    assert got["_bucket0.1"] == 5 and got["_bucket+Inf"] == len(VALUES)
