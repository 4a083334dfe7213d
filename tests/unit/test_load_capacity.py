"""The pure parts of the load test (bench/load_hot.py's verdict) and of the capacity model
(bench/capacity.py): which events count as applied, when exactly-once holds, the sampling and tier
arithmetic, the template figures read from template.yaml, and that docs/capacity.md renders whole."""

from __future__ import annotations

import pytest

from bench import capacity
from bench.capacity import (
    SECONDS_PER_MONTH,
    Measurements,
    Template,
    api_rest_cost,
    custom_metric_names,
    kinesis_shards,
    monthly_cost,
    xray_traces,
)
from bench.capacity_report import render
from bench.cost import PRICES
from bench.kinesis_cost import Measured
from bench.load_hot import Verdict, applied_ids

EVENTS = [{"event_id": f"e{n}"} for n in range(4)]


def test_an_event_is_applied_when_accepted_or_duplicate_after_a_failed_attempt() -> None:
    answers = [
        ["accepted"],
        ["503", "duplicate"],  # the first attempt was stored before its answer was lost
        ["409"] * 8,  # refused every time: never applied
        ["duplicate"],  # a first answer duplicate applied nothing (the verdict flags it for a fresh event)
    ]
    assert applied_ids(EVENTS, answers) == ["e0", "e1"]


def _verdict(**changes: int) -> Verdict:
    fields = dict(
        applied=10,
        accepted_twice=0,
        failed=0,
        spurious_duplicates=0,
        resent=1,
        resent_duplicate=1,
        state_version=10,
        processed_ids=10,
        log_lines=10,
        log_missing=0,
        log_doubled=0,
        log_foreign=0,
    )
    return Verdict(**{**fields, **changes})


@pytest.mark.parametrize(
    "broken",
    [
        {"accepted_twice": 1},
        {"spurious_duplicates": 1},  # a fresh event answered duplicate: never applied, so lost
        {"resent_duplicate": 0},
        {"state_version": 11},  # a write applied nothing new, or an event twice
        {"processed_ids": 9},
        {"log_missing": 1},
        {"log_doubled": 1},
        {"log_foreign": 1},
    ],
)
def test_exactly_once_fails_on_any_sign_of_a_lost_or_doubled_event(broken: dict[str, int]) -> None:
    assert _verdict().exactly_once
    assert not _verdict(**broken).exactly_once


def test_xray_records_the_first_request_each_second_and_five_percent_of_the_rest() -> None:
    assert xray_traces(SECONDS_PER_MONTH * 0.5) == pytest.approx(SECONDS_PER_MONTH * 0.5)
    assert xray_traces(SECONDS_PER_MONTH * 21) == pytest.approx(SECONDS_PER_MONTH * 2)


def test_rest_requests_are_tiered_after_333_million() -> None:
    assert api_rest_cost(100e6) == pytest.approx(100 * PRICES["api_rest"].amount)
    assert api_rest_cost(1e9) == pytest.approx(
        333 * PRICES["api_rest"].amount + 667 * PRICES["api_rest_next"].amount
    )


def test_kinesis_shards_are_bound_by_records_for_small_events() -> None:
    assert kinesis_shards(100) == 1
    assert kinesis_shards(10_000) == 10


def test_the_template_figures_are_read_from_template_yaml() -> None:
    template = Template.read()
    assert template.api_rate_limit > 0 and template.api_burst_limit >= template.api_rate_limit
    assert template.parallelization_factor >= 1 and template.firehose_buffer_seconds > 0
    assert template.alarms > 0 and template.kms_keys >= 1
    assert "EventsAccepted" in custom_metric_names() and "Requests" in custom_metric_names()


def _measured(
    path: str, events: int, invocations: int, writes: int, wru: int, rru: int, cpu_ms: float
) -> Measured:
    return Measured(path, events, invocations, writes, writes, wru, rru, cpu_ms)


def _measurements() -> Measurements:
    paths = [
        _measured("API (POST /events, one event)", 10, 10, 10, 130, 40, 50.0),
        _measured("bus (ShopperEvent, one event)", 10, 10, 10, 130, 40, 30.0),
        _measured("Kinesis, batch 100, spread shoppers", 300, 3, 300, 3900, 1200, 2000.0),
        _measured("Kinesis, batch 100, hot shopper", 300, 3, 3, 96, 12, 60.0),
    ]
    return Measurements({m.path: m for m in paths}, 12_800, 210, custom_metric_names(), Template.read())


def test_a_month_costs_more_than_its_per_event_lines_and_storage_grows() -> None:
    measured = _measurements()
    month = monthly_cost(measured, 100_000_000, measured.api, api_rest_cost(100_000_000))
    assert month.lines["DynamoDB writes"] == pytest.approx(100 * 13 * PRICES["wru"].amount)
    for line in ("X-Ray (recorded + retrieved)", "KMS (key + requests)", "CloudWatch metrics + alarms"):
        assert month.lines[line] > 0
    assert (
        capacity.storage_after(measured, 100_000_000, 12)[0]
        > capacity.storage_after(measured, 100_000_000, 1)[0]
    )


def test_the_report_has_every_section_and_ends_with_training() -> None:
    report = render(_measurements(), 60.0)
    for heading in (
        "## What 100, 1,000 and 10,000 events per second need",
        "## A hot shopper",
        "## Cost per month",
        "### Ingress options",
        "## Storage growth",
    ):
        assert heading in report
    # The last section: bench.training_scale's summary from its saved results, the threshold included.
    training = report.split("\n## Training\n", 1)[1]
    assert "\n## " not in training
    assert "[training-scale.md](training-scale.md)" in training
    assert "`lambda_training_max_event_epochs` = " in training


def test_measurements_survive_their_json_so_the_report_can_be_rendered_again() -> None:
    measured = _measurements()
    again = Measurements.from_json(measured.to_json())
    assert again == measured
