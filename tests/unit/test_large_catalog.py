"""The large-catalog path through a real exported TFLite model (docs/ranking-1m.md): `rank_query` plus
the explore index gives `rank`'s own answer when every list is probed, a calibrated index finds the exact
top-10 on a few-thousand-item catalog, filters and exclusions are honoured, and models without the new
parts (v1, v2 before `rank_query`, any model without an index) are still served by the exact `rank`."""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np
import pytest

from nextpick.adapters import model_artifacts
from nextpick.adapters import model_registry as registry
from nextpick.adapters.litert_model import ContractRunner, LiteRTModel
from nextpick.domain import ranking
from nextpick.domain.catalog import CatalogSnapshot
from nextpick.domain.events import Recommendation
from nextpick.domain.history import HISTORY_SLOTS, NUM_HISTORY_FEATURES
from nextpick.domain.item_attributes import item_tokens
from nextpick.domain.rules import RuleSet
from nextpick_training import explore_index as builder
from nextpick_training.export import SIMILAR_SIGNATURE, export_tflite
from nextpick_training.model import Hyperparameters, ItemTokens, TrainedModel, init_weights
from tests.unit.v1_model import export_v1_model

NUM_ITEMS = 3000
CATEGORIES = 20
K = 10


def category(index: int) -> str:
    return f"c{index % CATEGORIES}"


def structured_model(optional: tuple[str, ...] | None = None) -> tuple[TrainedModel, bytes]:
    """Random weights, items placed by their tokens as a trained model places them."""
    hp = Hyperparameters(embedding_dim=16, hidden_dim=32, repeat_hidden_dim=8, seed=3)
    rng = np.random.default_rng(3)
    weights = init_weights(NUM_ITEMS, hp, rng)
    weights["id_embedding"] *= 0.25
    # Categories far apart (a trained model's are; random tokens are not): a clustered catalog.
    weights["token_embedding"] *= 4.0
    # Popularity spread like the spread of q . V[i] (0.2 here): the top-10 is not popularity alone.
    weights["id_bias"] = rng.normal(0.0, 0.2, NUM_ITEMS).astype(np.float32)
    # Placed by their category alone (plus a small id part): a clustered catalog, what an index exploits.
    tokens = [[], *(item_tokens(category(i), None, {}) for i in range(1, NUM_ITEMS))]
    model = TrainedModel(hp, NUM_ITEMS, weights, ItemTokens.build(tokens, NUM_ITEMS))
    return model, export_tflite(model) if optional is None else export_tflite(model, optional)


def served(tflite: bytes, num_items: int = NUM_ITEMS) -> LiteRTModel:
    items: list[str | None] = [None, *(f"item-{i}" for i in range(1, num_items))]
    manifest = registry.build_manifest(
        version="v-large",
        created_at=datetime.now(UTC),
        tflite_bytes=tflite,
        state_dim=ContractRunner(tflite).state_dim,
        items=items,
        training_window={},
        hyperparameters={},
        metrics={},
        history_slots=ContractRunner(tflite).history_slots,
    )
    return LiteRTModel(tflite, manifest)


@pytest.fixture(scope="module")
def exported() -> tuple[TrainedModel, bytes]:
    return structured_model()


@pytest.fixture(scope="module")
def snapshot() -> CatalogSnapshot:
    return CatalogSnapshot(
        1,
        frozenset(f"item-{i}" for i in range(1, NUM_ITEMS, 19)),
        category_of={f"item-{i}": category(i) for i in range(1, NUM_ITEMS)},
    )


def shoppers(
    model: LiteRTModel, count: int, seed: int
) -> list[tuple[np.ndarray, tuple[np.ndarray, np.ndarray]]]:
    rng = np.random.default_rng(seed)
    out = []
    for s in range(count):
        state = np.zeros(model.state_dim, np.float32)
        events = rng.choice(np.arange(1, NUM_ITEMS), 12, replace=False)
        for item in events:
            state = model.update(state, int(item), int(rng.integers(0, 5)), 1.0)
        items = np.zeros(HISTORY_SLOTS, np.int32)
        features = np.zeros((HISTORY_SLOTS, NUM_HISTORY_FEATURES), np.float32)
        filled = 0 if s % 2 == 0 else 6
        items[:filled] = events[:filled]
        features[:filled, 0] = np.log1p(rng.integers(0, 3, filled))
        features[:filled, 1] = np.log1p(rng.uniform(0.0, 5.0, filled))
        features[:filled, 2] = np.log1p(rng.uniform(0.0, 60.0, filled))
        features[:filled, 4] = features[:filled, 0] * 0.8
        features[:filled, -1] = 1.0
        out.append((state, (items, features)))
    return out


def full_index(model: TrainedModel, lists: int, probe: int) -> builder.ExploreIndex:
    tables = model.tables()
    rows = builder.augmented(tables["vectors"], tables["bias"])
    rng = np.random.default_rng(0)
    centroids = builder.kmeans(rows[1:], lists, rng)
    return builder.index_from_lists(rows, centroids, builder._nearest(rows, centroids), probe, rng)


Shopper = tuple[np.ndarray, tuple[np.ndarray, np.ndarray]]


def answer(
    model: LiteRTModel,
    masks: ranking.CandidateMasks,
    shopper: Shopper,
    purchased: tuple[str, ...] = (),
    category_filter: str | None = None,
    rules: RuleSet | None = None,
) -> list[Recommendation]:
    state, history = shopper
    return ranking.top_k(model, state, masks, purchased, K, True, category_filter, history, rules)


def with_index(model: LiteRTModel, index: builder.ExploreIndex | None) -> LiteRTModel:
    model.explore_index = index
    return model


def test_every_list_probed_gives_ranks_own_answer(
    exported: tuple[TrainedModel, bytes], snapshot: CatalogSnapshot
) -> None:
    trained, tflite = exported
    exact, indexed = served(tflite), with_index(served(tflite), full_index(trained, 16, 16))
    masks = ranking.CandidateMasks.build(exact, snapshot)
    for shopper in shoppers(exact, 12, seed=1):
        for options in ({}, {"purchased": ("item-5", "item-77")}, {"category_filter": "c3"}):
            want = answer(exact, masks, shopper, **options)
            got = answer(indexed, masks, shopper, **options)
            assert [r.item_id for r in got] == [r.item_id for r in want]
            np.testing.assert_allclose([r.score for r in got], [r.score for r in want], atol=1e-4)


def test_a_calibrated_index_finds_the_exact_top_10(
    exported: tuple[TrainedModel, bytes], snapshot: CatalogSnapshot
) -> None:
    trained, tflite = exported
    exact = served(tflite)
    queries = builder.calibration_queries(exact)
    assert queries is not None
    tables = trained.tables()
    # A few thousand items make short lists (~90 items): the probe may take up to half of them here.
    built = builder.build(tables["vectors"], tables["bias"], queries, lists=32, max_probe_share=0.5)
    assert built is not None
    index, recall = built
    assert recall >= builder.TARGET_RECALL and index.probe < index.lists
    indexed = with_index(served(tflite), index)
    masks = ranking.CandidateMasks.build(exact, snapshot)
    found = 0
    held_out = shoppers(exact, 30, seed=2)
    for shopper in held_out:
        want = {r.item_id for r in answer(exact, masks, shopper)}
        got = answer(indexed, masks, shopper)
        assert len(got) == K and not any(r.item_id in snapshot.out_of_stock for r in got)
        found += len(want & {r.item_id for r in got})
    assert found / (K * len(held_out)) >= 0.97


def test_filters_exclusions_and_rules_are_honoured(
    exported: tuple[TrainedModel, bytes], snapshot: CatalogSnapshot
) -> None:
    trained, tflite = exported
    exact, indexed = served(tflite), with_index(served(tflite), full_index(trained, 32, 2))
    masks = ranking.CandidateMasks.build(exact, snapshot)
    rules = RuleSet(max_per_category=2)
    for shopper in shoppers(exact, 8, seed=3):
        history_ids = [f"item-{i}" for i in shopper[1][0] if i > 0]
        got = answer(indexed, masks, shopper, purchased=tuple(history_ids))
        assert len(got) == K and not {r.item_id for r in got} & (set(history_ids) | snapshot.out_of_stock)
        # A narrow filter (one category of 20, ~150 items) is scored exactly over its items.
        # Its scores differ from `rank`'s only by the estimated normaliser: the same shift for every item
        # (2 lists of 32 probed, 8 sampled rows for each other list: up to 0.34 nats on these short lists).
        in_category = answer(indexed, masks, shopper, category_filter="c7")
        want = answer(exact, masks, shopper, category_filter="c7")
        assert [r.item_id for r in in_category] == [r.item_id for r in want]
        shift = np.subtract([r.score for r in in_category], [r.score for r in want])
        assert np.ptp(shift) < 1e-4 and abs(shift[0]) < 1.0
        # Rules need every item's score: the exact `rank`, whatever the index.
        assert answer(indexed, masks, shopper, rules=rules) == answer(exact, masks, shopper, rules=rules)


def test_models_without_the_large_catalog_parts_are_served_exactly(
    exported: tuple[TrainedModel, bytes], snapshot: CatalogSnapshot
) -> None:
    trained, _ = exported
    index = full_index(trained, 16, 1)
    # A v2 model published before `rank_query` existed, given an index anyway: the exact `rank`.
    _, older = structured_model(optional=(SIMILAR_SIGNATURE,))
    old_exact, old_indexed = served(older), with_index(served(older), index)
    assert old_indexed.explore_query(np.zeros(old_indexed.state_dim, np.float32), None, None) is None
    masks = ranking.CandidateMasks.build(old_exact, snapshot)
    for shopper in shoppers(old_exact, 4, seed=4):
        assert answer(old_indexed, masks, shopper) == answer(old_exact, masks, shopper)
    # A v1 model (state only, no history input): no `rank_query`, the exact `rank`.
    v1_bytes, _ = export_v1_model([None, *(f"item-{i}" for i in range(1, NUM_ITEMS))])
    v1 = with_index(served(v1_bytes), index)
    assert v1.history_slots == 0 and v1.explore_query(np.zeros(v1.state_dim, np.float32), None, None) is None
    v1_masks = ranking.CandidateMasks.build(v1, snapshot)
    state = v1.update(np.zeros(v1.state_dim, np.float32), 3, 1, 1.0)
    scores = v1.rank(state, ranking.exclusion(v1, v1_masks, (), None))
    got = ranking.top_k(v1, state, v1_masks, (), K, False, None)
    assert [r.item_id for r in got] == [f"item-{i}" for i in np.argsort(-scores, kind="stable")[:K]]


def test_the_index_survives_the_registry_round_trip(exported: tuple[TrainedModel, bytes]) -> None:
    trained, _ = exported
    index = full_index(trained, 16, 4)
    body = builder.encode(index)
    entry = model_artifacts.explore_index_entry(body, NUM_ITEMS, 0.995)
    assert entry["lists"] == 16 and entry["probe"] == 4 and entry["size_bytes"] == len(body)
    again = model_artifacts.decode_explore_index(body, NUM_ITEMS)
    np.testing.assert_array_equal(again.table, index.table)
    with pytest.raises(registry.ModelIntegrityError):
        model_artifacts.decode_explore_index(body, NUM_ITEMS + 1)
    with pytest.raises(registry.ModelIntegrityError):
        model_artifacts.decode_explore_index(b"not an npz", NUM_ITEMS)
