"""Attribution and the online report (docs/attribution.md): a scripted session of impressions, clicks
and purchases gives exactly the metrics computed by hand below; the always-valid comparison holds its
false-positive rate when read after every batch of traffic (peeking)."""

from __future__ import annotations

import json
import random
from datetime import UTC, datetime, timedelta

import pytest

from nextpick.domain.erasure import Erasure
from nextpick.domain.events import TrackedEvent
from nextpick.domain.impressions import CONTROL_VARIANT, Impression, Surface, new_recommendation_id
from nextpick.domain.online_metrics import msprt, wilson
from nextpick.domain.report import online_report, render_markdown

T = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)
R = {name: new_recommendation_id() for name in ("R1", "R2", "R3", "R4", "R5", "R6", "unknown")}


def impression(
    name: str, user: str | None, variant: str, version: str | None, items: list[str], **kw: object
) -> str:
    record = Impression(
        recommendation_id=R[name],
        surface=Surface.USER if user else Surface.TRENDING,
        user_id=user,
        model_version=version,
        variant=variant,
        items=items,
        served_at=T,
        **kw,  # type: ignore[arg-type]
    ).log_record()
    return json.dumps(record, separators=(",", ":"))


def event(
    event_id: str, user: str, kind: str, item: str, after: timedelta, cites: str | None = None, **kw: object
) -> str:
    fields = {
        "event_id": event_id,
        "user_id": user,
        "event_type": kind,
        "item_id": item,
        "timestamp": T + after,
    }
    if cites is not None:
        fields["recommendation_id"] = R[cites]
    record = TrackedEvent.model_validate({**fields, **kw}).log_record(T + after + timedelta(seconds=1))
    return json.dumps(record, separators=(",", ":"))


MIN, HOUR = timedelta(minutes=1), timedelta(hours=1)
SESSION = [
    impression("R1", "u1", CONTROL_VARIANT, "v1", ["a", "b", "c"]),
    impression("R1", "u1", CONTROL_VARIANT, "v1", ["a", "b", "c"]),  # delivered twice
    impression("R2", "u2", CONTROL_VARIANT, "v1", ["d", "e"]),
    impression("R3", "u3", "challenger", "v2", ["a", "d"]),
    impression("R3", "u3", "shadow", "v3", ["d", "a"], shadow=True),  # scored, never shown
    impression("R4", "u4", "challenger", "v2", ["b"]),
    impression("R5", None, CONTROL_VARIANT, None, ["a"]),  # GET /trending: no shopper
    impression("R6", "u5", CONTROL_VARIANT, "v1", ["a"]),
    # u1 clicks a, carts it on a page that does not know the list, buys b (another pick) citing the
    # list, then buys a without citing it: all of it R1's (carry-over from the cited click on a).
    event("e1", "u1", "click", "a", 1 * MIN, "R1"),
    event("e1", "u1", "click", "a", 1 * MIN, "R1"),  # re-delivered
    event("e2", "u1", "add_to_cart", "a", 2 * MIN),
    event("e3", "u1", "purchase", "b", 3 * HOUR, "R1", price=10.0, quantity=2),
    event("e4", "u1", "purchase", "a", 4 * HOUR, price=5.0),
    event("e5", "u1", "view", "c", 2 * MIN, "R1"),  # views are not attributed
    # u2 clicks too late (45 min > 30), buys within 24 h: converted, not clicked.
    event("e6", "u2", "click", "d", 45 * MIN, "R2"),
    event("e7", "u2", "purchase", "e", 2 * HOUR, "R2", price=7.0),
    # u3 clicks, buys after 25 h (> 24 h): clicked only.
    event("e8", "u3", "click", "a", 5 * MIN, "R3"),
    event("e9", "u3", "purchase", "a", 25 * HOUR, "R3", price=100.0),
    event("e10", "u4", "click", "b", 1 * MIN, "R1"),  # another shopper's list
    event("e11", "u9", "click", "a", 10 * MIN, "R5"),  # an anonymous list: anyone's click counts
    event("e12", "u5", "click", "a", 1 * MIN, "R6"),  # u5 is erased below: gone with the list
    event("e13", "u6", "purchase", "a", 1 * MIN, "unknown", price=3.0),
    Erasure("u5", T + HOUR).log_record(),
    "not json",
]


@pytest.fixture(scope="module")
def report() -> dict:
    return online_report(SESSION, T - HOUR, T + HOUR, generated_at=T + 2 * HOUR)


def _values(row: dict) -> dict[str, float]:
    return {m: row[m]["value"] for m in ("ctr", "add_to_cart_rate", "conversion", "revenue_per_mille")}


def test_a_scripted_session_gives_exactly_the_hand_computed_metrics(report: dict) -> None:
    # control: R1 (clicked, carted, converted, 2 x 10 + 5 = 25), R2 (converted, 7), R5 (clicked).
    # challenger: R3 (clicked), R4 (nothing). R6 is erased, the shadow list is never attributed.
    variants = {row["variant"]: row for row in report["variants"]}
    assert set(variants) == {CONTROL_VARIANT, "challenger"}
    assert variants[CONTROL_VARIANT]["impressions"] == 3
    assert variants[CONTROL_VARIANT]["revenue"] == 32.0
    assert _values(variants[CONTROL_VARIANT]) == {
        "ctr": round(2 / 3, 6),
        "add_to_cart_rate": round(1 / 3, 6),
        "conversion": round(2 / 3, 6),
        "revenue_per_mille": round(1000 * 32 / 3, 6),
    }
    assert variants["challenger"]["impressions"] == 2
    assert _values(variants["challenger"]) == {
        "ctr": 0.5,
        "add_to_cart_rate": 0.0,
        "conversion": 0.0,
        "revenue_per_mille": 0.0,
    }
    versions = {(row["variant"], row["model_version"]): row for row in report["model_versions"]}
    assert set(versions) == {(CONTROL_VARIANT, "v1"), (CONTROL_VARIANT, "none"), ("challenger", "v2")}
    assert _values(versions[(CONTROL_VARIANT, "v1")]) == {
        "ctr": 0.5,
        "add_to_cart_rate": 0.5,
        "conversion": 1.0,
        "revenue_per_mille": 16000.0,
    }
    assert versions[(CONTROL_VARIANT, "none")]["ctr"]["value"] == 1.0


def test_the_log_counts_say_what_was_not_attributed_and_why(report: dict) -> None:
    log = report["log"]
    expected = {
        "lines": 24,
        "malformed": 1,
        "erased": 2,  # R6 and u5's click
        "duplicate_events": 1,
        "duplicate_impressions": 1,
        "impressions": 5,
        "shadow_impressions": 1,
        "events": 11,  # clicks, adds to cart and purchases, distinct and not erased
        "cited": 9,
        "cited_unknown": 1,
        "cited_other_shopper": 1,
        "cited_outside_window": 2,
        "carried_over": 2,
        "purchases_without_price": 0,
        "impressions_with_open_window": 5,
    }
    assert log == expected


def test_rates_carry_wilson_intervals_and_revenue_a_normal_one(report: dict) -> None:
    challenger = next(row for row in report["variants"] if row["variant"] == "challenger")
    # Wilson 95 % for 1 of 2: [0.0945, 0.9055] (the textbook value).
    assert challenger["ctr"]["low"] == pytest.approx(0.0945, abs=1e-4)
    assert challenger["ctr"]["high"] == pytest.approx(0.9055, abs=1e-4)
    assert challenger["add_to_cart_rate"]["low"] == 0.0
    control = next(row for row in report["variants"] if row["variant"] == CONTROL_VARIANT)
    # Revenues 25, 7, 0: mean 32/3, sample sd 12.858, so 1000 x (mean +- 1.96 x 12.858 / sqrt 3).
    sd = (((25 - 32 / 3) ** 2 + (7 - 32 / 3) ** 2 + (32 / 3) ** 2) / 2) ** 0.5
    assert control["revenue_per_mille"]["high"] == pytest.approx(
        1000 * (32 / 3 + 1.959964 * sd / 3**0.5), rel=1e-5
    )
    assert control["revenue_per_mille"]["low"] == 0.0  # floored


def test_the_comparison_names_the_control_and_is_not_significant_on_five_impressions(report: dict) -> None:
    (comparison,) = report["comparisons"]
    assert comparison["variant"] == "challenger" and comparison["against"] == CONTROL_VARIANT
    ctr = comparison["metrics"]["ctr"]
    assert ctr["difference"] == round(0.5 - 2 / 3, 6)
    assert ctr["significant"] is False and ctr["low"] < ctr["difference"] < ctr["high"]
    assert ctr["detectable"] > abs(ctr["difference"])
    markdown = render_markdown(report)
    assert "| challenger | CTR | -16.67% |" in markdown and "66.67%" in markdown


def test_a_purchase_without_a_price_converts_and_is_counted() -> None:
    lines = [
        impression("R1", "u1", CONTROL_VARIANT, "v1", ["a"]),
        event("p1", "u1", "purchase", "a", 1 * HOUR, "R1"),
    ]
    report = online_report(lines, T, T, generated_at=T + 48 * HOUR)
    assert report["variants"][0]["conversion"]["value"] == 1.0
    assert report["variants"][0]["revenue"] == 0.0
    assert report["log"]["purchases_without_price"] == 1
    assert report["log"]["impressions_with_open_window"] == 0


def test_a_real_difference_is_significant_and_none_when_the_variance_is_zero() -> None:
    # 10,000 impressions a side, CTR 10 % against 12 %.
    variance = 0.1 * 0.9 / 10_000 + 0.12 * 0.88 / 10_000
    test = msprt(0.02, variance, tau=0.01)
    assert test["significant"] is True and test["low"] > 0
    assert msprt(0.0, 0.0, tau=0.01)["significant"] is False
    assert wilson(0, 0) == (0.0, 1.0)


def test_reading_the_test_after_every_batch_keeps_false_positives_under_alpha() -> None:
    """A/A: both arms 10 % CTR; the report read after every 200 impressions a side, up to 4,000. A
    fixed-horizon z-test read like this is "significant" far more often than 5 % of the time."""
    rng = random.Random(13)
    runs, always_valid, naive = 200, 0, 0
    for _ in range(runs):
        a = b = n = 0
        hit_valid = hit_naive = False
        for _ in range(20):
            a += sum(rng.random() < 0.1 for _ in range(200))
            b += sum(rng.random() < 0.1 for _ in range(200))
            n += 200
            pa, pb = a / n, b / n
            variance = pa * (1 - pa) / n + pb * (1 - pb) / n
            hit_valid |= msprt(pb - pa, variance, tau=0.01)["significant"]
            hit_naive |= variance > 0 and abs(pb - pa) / variance**0.5 > 1.959964
        always_valid += hit_valid
        naive += hit_naive
    assert always_valid / runs <= 0.05
    assert naive / runs > 0.1  # what the guard guards against
