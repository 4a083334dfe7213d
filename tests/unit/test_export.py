"""The exported TFLite honours contract v2 and scores exactly like the numpy reference and the batched
training-side graph (within 1e-4), history input included."""

from __future__ import annotations

import numpy as np
import pytest

from nextpick.domain.history import HISTORY_SLOTS, NUM_HISTORY_FEATURES, ItemHistory
from nextpick.domain.item_attributes import item_tokens
from nextpick.domain.state import TimedInteraction, fold_interactions
from nextpick_training.export import ExportedModel, export_tflite, weights_bytes, weights_from_bytes
from nextpick_training.model import Hyperparameters, TrainedModel, batches, train
from nextpick_training.scoring import ServedScorer

NUM_ITEMS = 40
DAY = 86_400.0


def sequences(seed: int, users: int) -> list[list[TimedInteraction]]:
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(users):
        t, seq = 1_790_000_000.0, []
        for _ in range(int(rng.integers(3, 40))):
            t += float(rng.integers(0, 4)) * DAY + float(rng.integers(0, 3600))
            seq.append((int(rng.integers(1, 15)), int(rng.integers(0, 6)), float(rng.uniform(0.2, 1)), t))
        out.append(seq)
    return out


TOKENS = [[], *(item_tokens(f"c{i % 3}", float(i), {"brand": f"b{i % 5}"}) for i in range(1, NUM_ITEMS))]


@pytest.fixture(scope="module")
def trained() -> tuple[TrainedModel, ExportedModel, bytes]:
    hp = Hyperparameters(
        embedding_dim=16, hidden_dim=32, repeat_hidden_dim=8, epochs=2, batch_size=64, negatives=16
    )
    model = train(sequences(0, 50), NUM_ITEMS, hp, item_tokens=TOKENS)
    blob = export_tflite(model)
    return model, ExportedModel(blob), blob


def test_signatures_are_exactly_contract_v2(trained: tuple[TrainedModel, ExportedModel, bytes]) -> None:
    from ai_edge_litert.interpreter import Interpreter

    model, lite, blob = trained
    signatures = Interpreter(model_content=blob).get_signature_list()
    assert set(signatures) == {"update", "rank", "similar", "explain", "rank_query", "score_items"}
    assert sorted(signatures["score_items"]["inputs"]) == ["items", "query"]
    assert signatures["score_items"]["outputs"] == ["logits"]
    assert sorted(signatures["explain"]["inputs"]) == [
        "history_features",
        "history_items",
        "picks",
        "recent_event_types",
        "recent_items",
        "recent_strengths",
        "state",
    ]
    assert signatures["explain"]["outputs"] == ["contributions"]
    assert sorted(signatures["rank_query"]["inputs"]) == ["history_features", "history_items", "state"]
    assert sorted(signatures["rank_query"]["outputs"]) == ["explore_offset", "history_scores", "query"]
    assert sorted(signatures["similar"]["inputs"]) == ["exclude", "item"]
    assert signatures["similar"]["outputs"] == ["scores"]
    assert sorted(signatures["update"]["inputs"]) == ["event_type", "item", "state", "strength"]
    assert sorted(signatures["rank"]["inputs"]) == ["exclude", "history_features", "history_items", "state"]
    assert signatures["rank"]["outputs"] == ["scores"]
    details = Interpreter(model_content=blob).get_signature_runner("rank").get_input_details()
    assert list(details["history_items"]["shape"]) == [HISTORY_SLOTS]
    assert details["history_items"]["dtype"] == np.int32
    assert list(details["history_features"]["shape"]) == [HISTORY_SLOTS, NUM_HISTORY_FEATURES]
    assert list(details["exclude"]["shape"]) == [NUM_ITEMS]
    assert (lite.state_dim, lite.history_slots, lite.num_items) == (model.state_dim, HISTORY_SLOTS, NUM_ITEMS)


def test_litert_matches_the_reference(trained: tuple[TrainedModel, ExportedModel, bytes]) -> None:
    model, lite, _ = trained
    exclude = np.zeros(NUM_ITEMS, dtype=np.float32)
    exclude[[0, 4]] = 1.0
    for history in sequences(7, 10):
        plain = [(i, t, s) for i, t, s, _ in history]
        reference_state, lite_state = fold_interactions(model, plain), fold_interactions(lite, plain)
        np.testing.assert_allclose(lite_state, reference_state, atol=1e-4)
        inputs = ItemHistory[int]().observe_all(history).model_input(lambda x: x, history[-1][3] + 3 * DAY)
        scores = lite.rank(lite_state, exclude, *inputs)
        np.testing.assert_allclose(scores, model.rank(reference_state, exclude, *inputs), atol=1e-4)
        # rank_query's parts give rank's scores back (docs/model-contract.md, "Signature rank_query").
        explore = lite.explore_query(lite_state, *inputs)
        assert explore is not None
        tables = model.tables()
        logits = np.concatenate([tables["vectors"], tables["bias"][:, None]], axis=1) @ explore.query
        history = explore.history_items[explore.present]
        outside = np.ones(NUM_ITEMS, dtype=bool)
        outside[[0, *history]] = False
        rebuilt = explore.explore_offset + logits - np.log(np.sum(np.exp(logits[outside])))
        rebuilt[history] = explore.history_scores[explore.present]
        allowed = exclude == 0.0
        np.testing.assert_allclose(rebuilt[allowed], scores[allowed], atol=1e-4)
        # score_items gives the same logits for any items, repeated or out of order (the scan's re-score).
        picked = np.array([7, 1, NUM_ITEMS - 1, 7], np.int32)
        np.testing.assert_allclose(lite.score_items(explore.query, picked), logits[picked], atol=1e-5)


def test_unknown_items_and_exclusion(trained: tuple[TrainedModel, ExportedModel, bytes]) -> None:
    _, lite, _ = trained
    state = fold_interactions(lite, [(3, 4, 1.0), (9, 1, 1.0)])
    for unknown in (0, NUM_ITEMS, 10_000, -5):
        np.testing.assert_array_equal(lite.update(state, unknown, 2, 1.0), state)
    assert np.isfinite(lite.update(state, 3, 99, 1.0)).all()  # an out-of-range event type is clamped
    exclude = np.zeros(NUM_ITEMS, dtype=np.float32)
    exclude[[0, 5, 17]] = 1.0
    history = ItemHistory[int]().observe_all([(5, 4, 1.0, 1e9), (17, 4, 1.0, 1e9)])
    scores = lite.rank(state, exclude, *history.model_input(lambda x: x, 1e9 + DAY))
    assert (scores[[0, 5, 17]] <= -1e9).all() and (np.delete(scores, [0, 5, 17]) > -1e9).all()


def test_served_scoring_equals_the_batched_training_side_scoring(
    trained: tuple[TrainedModel, ExportedModel, bytes],
) -> None:
    """Folding one event at a time through the exported signatures (what evaluation and serving do)
    scores exactly like the batched TF path that early stopping uses."""
    import tensorflow as tf

    from nextpick_training.model.training import _make_scorer

    model, lite, _ = trained
    histories = sequences(11, 12)
    nows = [h[-1][3] + 2 * DAY for h in histories]
    flat = batches.FlatSequences.build(histories, model.hparams)
    ends = np.array([len(h) - 1 for h in histories])
    batch = batches.prefix_state_entries(flat, np.arange(len(histories)), ends, model.hparams)
    inputs = [
        ItemHistory[int]().observe_all(h).model_input(lambda x: x, n)
        for h, n in zip(histories, nows, strict=True)
    ]
    batch["history_items"] = np.stack([i for i, _ in inputs])
    batch["history_features"] = np.stack([f for _, f in inputs])
    weights = {k: tf.constant(v) for k, v in model.weights.items() if k != "cold_id_bias"}
    buckets, token_weights = tf.constant(model.tokens.buckets), tf.constant(model.tokens.weights)

    def rows(source: dict, items: object) -> dict:
        from nextpick_training.model.graph import item_rows

        return item_rows(source, buckets, token_weights, items)

    batched = _make_scorer(weights, rows, model.layout)(batch, NUM_ITEMS)
    scorer = ServedScorer(lite)
    for u, history in enumerate(histories):
        exclude = np.zeros(NUM_ITEMS, dtype=np.float32)
        exclude[0] = 1.0
        np.testing.assert_allclose(scorer(history, nows[u], exclude)[1:], batched[u, 1:], atol=1e-4)


def test_weights_round_trip_for_the_catalog_refresh(
    trained: tuple[TrainedModel, ExportedModel, bytes],
) -> None:
    model, _, _ = trained
    restored = weights_from_bytes(weights_bytes(model))
    np.testing.assert_array_equal(restored.pop("token_buckets"), model.tokens.buckets)
    np.testing.assert_array_equal(restored.pop("token_weights"), model.tokens.weights)
    assert set(restored) == set(model.weights)
    for name, value in model.weights.items():
        np.testing.assert_array_equal(restored[name], value)
