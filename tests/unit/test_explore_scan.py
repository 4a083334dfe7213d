"""The int8 explore scan through real exported TFLite models (docs/ranking-1m.md): its candidates,
re-scored by the model's `score_items`, give `rank`'s own answer on a few-thousand-item catalog with
every kind of mask; a mask that leaves too few candidates falls back to the exact `rank`; a corrupt or
mismatched scan is refused; models without `score_items` ignore a scan."""

from __future__ import annotations

import numpy as np
import pytest

from nextpick.adapters import model_artifacts
from nextpick.adapters.litert_model import LiteRTModel
from nextpick.adapters.litert_scan import LiteRTExploreScan
from nextpick.domain import ranking
from nextpick.domain.catalog import CatalogSnapshot
from nextpick.domain.explore_scan import scan_search
from nextpick.errors import ModelIntegrityError
from nextpick_training import explore_index as index_lib
from nextpick_training import explore_scan as builder
from nextpick_training.export import EXPLAIN_SIGNATURE, RANK_QUERY_SIGNATURE, SIMILAR_SIGNATURE
from nextpick_training.model import TrainedModel
from tests.unit.test_large_catalog import NUM_ITEMS, K, Shopper, answer, served, shoppers, structured_model


@pytest.fixture(scope="module")
def exported() -> tuple[TrainedModel, bytes]:
    return structured_model()


@pytest.fixture(scope="module")
def scan_bytes(exported: tuple[TrainedModel, bytes]) -> bytes:
    tables = exported[0].tables()
    return builder.export_scan(tables["vectors"], tables["bias"])


@pytest.fixture(scope="module")
def snapshot() -> CatalogSnapshot:
    return CatalogSnapshot(
        1,
        frozenset(f"item-{i}" for i in range(1, NUM_ITEMS, 19)),
        category_of={f"item-{i}": f"c{i % 20}" for i in range(1, NUM_ITEMS)},
    )


def with_scan(model: LiteRTModel, body: bytes) -> LiteRTModel:
    model.explore_scan = LiteRTExploreScan(body, NUM_ITEMS, model.query_dim)
    return model


Served = tuple[LiteRTModel, LiteRTModel, ranking.CandidateMasks]


@pytest.fixture(scope="module")
def pair(exported: tuple[TrainedModel, bytes], scan_bytes: bytes, snapshot: CatalogSnapshot) -> Served:
    """The same model served exactly and with the scan, and the catalog's masks."""
    exact = served(exported[1])
    return exact, with_scan(served(exported[1]), scan_bytes), ranking.CandidateMasks.build(exact, snapshot)


def test_score_items_gives_ranks_explore_logits(exported: tuple[TrainedModel, bytes]) -> None:
    trained, tflite = exported
    model = served(tflite)
    tables = trained.tables()
    rows = index_lib.augmented(tables["vectors"], tables["bias"])
    items = np.array([1, 7, NUM_ITEMS - 1, 7, 1234], np.int32)
    for state, history in shoppers(model, 3, seed=5):
        explore = model.explore_query(state, *history)
        assert explore is not None
        np.testing.assert_allclose(
            model.score_items(explore.query, items), rows[items] @ explore.query, atol=1e-5
        )


def test_the_scan_gives_ranks_own_answer(
    pair: Served,
) -> None:
    exact, scanned, masks = pair
    for shopper in shoppers(exact, 12, seed=1):
        for options in ({}, {"purchased": ("item-5", "item-77")}, {"category_filter": "c3"}):
            want = answer(exact, masks, shopper, **options)
            got = answer(scanned, masks, shopper, **options)
            assert [r.item_id for r in got] == [r.item_id for r in want]
            # log Z: the candidates' terms exact, the rest from int8 scores (the sample is the whole
            # catalog here): up to 5e-3 nats on this small, wide-spread model, 4e-3 at 1M items.
            np.testing.assert_allclose([r.score for r in got], [r.score for r in want], atol=1e-2)


def scan_path(model: LiteRTModel, shopper: Shopper, exclude: np.ndarray, subset_max: int) -> list[int] | None:
    state, history = shopper
    explore = model.explore_query(state, *history)
    assert explore is not None and model.explore_scan is not None
    found = scan_search(model.explore_scan, model.score_items, explore, exclude, K, subset_max)
    return None if found is None else found.indices.tolist()


def test_masks_are_honoured_on_the_scan_and_the_subset_paths(
    pair: Served,
) -> None:
    exact, scanned, masks = pair
    rng = np.random.default_rng(7)
    for shopper in shoppers(exact, 6, seed=3):
        state, history = shopper
        # A wide random mask (70 % allowed), through the scan's candidates (no subset path).
        exclude = ranking.exclusion(exact, masks, (), None)
        exclude[rng.random(NUM_ITEMS) < 0.3] = 1.0
        want = np.argsort(-exact.rank(state, exclude, *history), kind="stable")[:K]
        assert scan_path(scanned, shopper, exclude.copy(), subset_max=0) == want.tolist()
        # The same through the subset path (every allowed item scored exactly).
        assert scan_path(scanned, shopper, exclude.copy(), subset_max=NUM_ITEMS) == want.tolist()


def test_a_mask_that_fools_the_allowed_estimate_costs_time_not_answers(pair: Served) -> None:
    """Serving estimates how many items a mask allows from every 64th entry; a mask allowing exactly those
    entries (46 items here) looks like a wide one. The scan path then finds too few allowed candidates
    and answers None (the exact `rank` follows); with a subset size whose 4x covers the estimate (2,944)
    the items are counted and scored exactly. Either way no answer differs from `rank`'s."""
    exact, scanned, _ = pair
    shopper = shoppers(exact, 1, seed=8)[0]
    exclude = np.ones(NUM_ITEMS, np.float32)
    exclude[64::64] = 0.0
    want = np.argsort(-exact.rank(shopper[0], exclude, *shopper[1]), kind="stable")[:K].tolist()
    assert scan_path(scanned, shopper, exclude.copy(), subset_max=10) is None
    assert scan_path(scanned, shopper, exclude.copy(), subset_max=1000) == want


def test_a_mask_that_drops_the_candidates_falls_back_to_rank(
    pair: Served,
) -> None:
    exact, scanned, masks = pair
    shopper = shoppers(exact, 1, seed=4)[0]
    explore = scanned.explore_query(shopper[0], *shopper[1])
    assert explore is not None and scanned.explore_scan is not None
    candidates = scanned.explore_scan.candidates(explore.query).items
    exclude = ranking.exclusion(exact, masks, (), None)
    exclude[candidates] = 1.0
    exclude[shopper[1][0]] = 1.0
    assert scan_path(scanned, shopper, exclude.copy(), subset_max=0) is None
    # Served (with the default subset size), the same request is scored exactly over its allowed items.
    purchased = tuple(f"item-{i}" for i in candidates)
    got = answer(scanned, masks, shopper, purchased=purchased)
    want = answer(exact, masks, shopper, purchased=purchased)
    assert [r.item_id for r in got] == [r.item_id for r in want]
    np.testing.assert_allclose([r.score for r in got], [r.score for r in want], atol=1e-2)


def test_the_build_calibrates_and_refuses(exported: tuple[TrainedModel, bytes]) -> None:
    trained, tflite = exported
    runner = served(tflite)
    built = builder.for_model(trained.tables(), runner, min_items=0)
    assert built is not None
    body, recall = built
    assert recall >= index_lib.TARGET_RECALL
    entry = model_artifacts.explore_scan_entry(body, NUM_ITEMS, recall)
    assert entry["candidates"] == builder.CANDIDATES and entry["size_bytes"] == len(body)
    # Below the threshold, or for a model that cannot re-score candidates: no scan.
    assert builder.for_model(trained.tables(), runner) is None
    _, older = structured_model(optional=(SIMILAR_SIGNATURE, EXPLAIN_SIGNATURE, RANK_QUERY_SIGNATURE))
    assert builder.for_model(trained.tables(), served(older), min_items=0) is None


def test_a_model_without_score_items_ignores_a_scan(
    exported: tuple[TrainedModel, bytes], scan_bytes: bytes, snapshot: CatalogSnapshot
) -> None:
    _, older = structured_model(optional=(SIMILAR_SIGNATURE, EXPLAIN_SIGNATURE, RANK_QUERY_SIGNATURE))
    old_exact = served(older)
    assert not old_exact.has_score_items
    old_scanned = served(older)
    old_scanned.explore_scan = LiteRTExploreScan(scan_bytes, NUM_ITEMS)
    masks = ranking.CandidateMasks.build(old_exact, snapshot)
    for shopper in shoppers(old_exact, 3, seed=6):
        assert answer(old_scanned, masks, shopper) == answer(old_exact, masks, shopper)


def test_a_corrupt_or_mismatched_scan_is_refused(scan_bytes: bytes) -> None:
    with pytest.raises(ModelIntegrityError, match="does not load"):
        LiteRTExploreScan(b"not a model", NUM_ITEMS)
    with pytest.raises(ModelIntegrityError, match="does not load"):
        LiteRTExploreScan(scan_bytes[: len(scan_bytes) // 2], NUM_ITEMS)
    # Built for another vocabulary: a smaller one (its items fall outside), or a larger one (an older
    # version's scan, which would never find the newer items).
    for num_items in (100, NUM_ITEMS + 1):
        with pytest.raises(ModelIntegrityError, match=f"built for \\[{NUM_ITEMS}\\] items, not {num_items}"):
            LiteRTExploreScan(scan_bytes, num_items)
    with pytest.raises(ModelIntegrityError, match="query of"):
        LiteRTExploreScan(scan_bytes, NUM_ITEMS, query_dim=33)
