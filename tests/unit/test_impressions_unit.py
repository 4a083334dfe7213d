"""The impression record across its readers (docs/attribution.md): what an answer becomes, that the
retrain skips it, that erasure compaction honours a tombstone on it as on an event, and the in-memory
double's accounting of losses."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

from nextpick.adapters.firehose_impressions import impression_line
from nextpick.adapters.memory import InMemoryImpressionLog
from nextpick.domain.attribution import read_attribution_log
from nextpick.domain.erasure import Erasure, Tombstones, erase_lines
from nextpick.domain.events import Recommendation
from nextpick.domain.impressions import CONTROL_VARIANT, Surface, is_recommendation_id
from nextpick.domain.service import UserRecommendations
from nextpick_training.event_log import parse_line

NOW = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)


def answer(user_id: str) -> UserRecommendations:
    picks = [Recommendation(item_id="a", score=0.9), Recommendation(item_id="b", score=0.5)]
    return UserRecommendations(user_id, "v1", picks)


def test_an_answer_becomes_one_impression_with_its_own_id() -> None:
    first, second = answer("u1"), answer("u1")
    assert is_recommendation_id(first.recommendation_id)
    assert first.recommendation_id != second.recommendation_id
    body = first.as_json()
    assert body["recommendation_id"] == first.recommendation_id and body["variant"] == CONTROL_VARIANT
    impression = first.impression(Surface.USER, NOW)
    assert (impression.user_id, impression.items, impression.model_version) == ("u1", ["a", "b"], "v1")
    # An anonymous cart is answered for user "": the impression has no shopper.
    assert answer("").impression(Surface.CART, NOW).user_id is None


def test_the_log_line_reads_back_and_the_retrain_skips_it() -> None:
    line = impression_line(answer("u1").impression(Surface.USER, NOW))
    record = json.loads(line)
    assert record["received_at"] == record["served_at"] == "2026-11-30T12:00:00Z"
    assert parse_line(line) is None  # not an event of the training data, not malformed either
    (served,) = read_attribution_log([line]).impressions
    assert (served.user_id, served.items, served.served_at) == ("u1", ("a", "b"), NOW)


def test_compaction_erases_an_erased_shoppers_impressions_up_to_the_erasure_only() -> None:
    before = impression_line(answer("u1").impression(Surface.USER, NOW))
    after = impression_line(answer("u1").impression(Surface.USER, NOW + timedelta(hours=2)))
    other = impression_line(answer("u2").impression(Surface.USER, NOW))
    tombstones = Tombstones()
    tombstones.add(Erasure("u1", NOW + timedelta(hours=1)))
    result = erase_lines(f"{before}\n{after}\n{other}\n".encode(), tombstones)
    assert result.erased == 1
    assert result.body == f"{after}\n{other}\n".encode()


def test_the_double_counts_what_it_could_not_record_and_never_raises() -> None:
    log = InMemoryImpressionLog()
    log.record([answer("u1").impression(Surface.USER, NOW)])
    log.failing = True
    log.record([answer("u1").impression(Surface.USER, NOW), answer("u2").impression(Surface.USER, NOW)])
    assert len(log.impressions) == 1 and log.lost == 2
