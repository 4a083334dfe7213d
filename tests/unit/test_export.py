"""The exported TFLite honours the contract and scores exactly like the TF/numpy reference."""

from __future__ import annotations

import numpy as np
import pytest

from nextpick.domain.state import fold_interactions
from nextpick_training.evaluate import ServedModelScorer, evaluate
from nextpick_training.export import ExportedModel, export_tflite
from nextpick_training.model import (
    Hyperparameters,
    Interaction,
    TrainedModel,
    _flatten,
    _prefix_batch,
    _states_tf,
    rank_scores_tf,
    train,
)

NUM_ITEMS = 40


def sequences(seed: int, users: int) -> list[list[Interaction]]:
    rng = np.random.default_rng(seed)
    return [
        [
            (int(rng.integers(1, NUM_ITEMS)), int(rng.integers(0, 6)), float(rng.uniform(0.2, 1.0)))
            for _ in range(int(rng.integers(2, 40)))
        ]
        for _ in range(users)
    ]


@pytest.fixture(scope="module")
def trained() -> tuple[TrainedModel, ExportedModel, bytes]:
    hp = Hyperparameters(
        embedding_dim=16, hidden_dim=32, epochs=1, batch_size=64, strength_power=1.0, context_embedding=True
    )
    model = train(sequences(0, 50), NUM_ITEMS, hp)
    blob = export_tflite(model)
    return model, ExportedModel(blob), blob


def test_signatures_are_exactly_the_contract(trained: tuple[TrainedModel, ExportedModel, bytes]) -> None:
    from ai_edge_litert.interpreter import Interpreter

    model, _lite, blob = trained
    signatures = Interpreter(model_content=blob).get_signature_list()
    assert set(signatures) == {"update", "rank"}
    assert sorted(signatures["update"]["inputs"]) == ["event_type", "item", "state", "strength"]
    assert signatures["update"]["outputs"] == ["state"]
    assert sorted(signatures["rank"]["inputs"]) == ["exclude", "state"]
    assert signatures["rank"]["outputs"] == ["scores"]
    runner = Interpreter(model_content=blob).get_signature_runner("update")
    details = runner.get_input_details()
    assert list(details["state"]["shape"]) == [model.state_dim] and details["state"]["dtype"] == np.float32
    assert list(details["item"]["shape"]) == [] and details["item"]["dtype"] == np.int32
    assert list(details["event_type"]["shape"]) == [] and details["event_type"]["dtype"] == np.int32
    assert list(details["strength"]["shape"]) == [] and details["strength"]["dtype"] == np.float32
    rank = Interpreter(model_content=blob).get_signature_runner("rank").get_input_details()
    assert list(rank["exclude"]["shape"]) == [NUM_ITEMS] and rank["exclude"]["dtype"] == np.float32


def test_litert_matches_the_reference(trained: tuple[TrainedModel, ExportedModel, bytes]) -> None:
    model, lite, _blob = trained
    exclude = np.zeros(NUM_ITEMS, dtype=np.float32)
    exclude[0] = 1.0
    for history in sequences(7, 10):
        reference_state, lite_state = model.initial_state(), np.zeros(lite.state_dim, dtype=np.float32)
        for item, event_type, strength in history:
            reference_state = model.update(reference_state, item, event_type, strength)
            lite_state = lite.update(lite_state, item, event_type, strength)
            np.testing.assert_allclose(lite_state, reference_state, rtol=1e-5, atol=1e-4)
        np.testing.assert_allclose(
            lite.rank(lite_state, exclude), model.rank(reference_state, exclude), atol=1e-4
        )


def test_cold_start_and_unknown_items(trained: tuple[TrainedModel, ExportedModel, bytes]) -> None:
    model, lite, _blob = trained
    zeros = np.zeros(lite.state_dim, dtype=np.float32)
    exclude = np.zeros(NUM_ITEMS, dtype=np.float32)
    cold = lite.rank(zeros, exclude)
    assert np.isfinite(cold).all()
    np.testing.assert_allclose(cold, model.rank(zeros, exclude), atol=1e-4)
    state = fold_interactions(lite, [(3, 4, 1.0), (9, 1, 1.0)])
    for unknown in (0, NUM_ITEMS, 10_000, -5):
        np.testing.assert_array_equal(lite.update(state, unknown, 2, 1.0), state)
    # Out-of-range event types are clamped rather than crashing serving.
    assert np.isfinite(lite.update(state, 3, 99, 1.0)).all()


def test_excluded_items_score_at_most_minus_1e9(trained: tuple[TrainedModel, ExportedModel, bytes]) -> None:
    _model, lite, _blob = trained
    exclude = np.zeros(NUM_ITEMS, dtype=np.float32)
    exclude[[0, 5, 17]] = 1.0
    scores = lite.rank(fold_interactions(lite, [(5, 4, 1.0), (17, 0, 1.0)]), exclude)
    assert (scores[[0, 5, 17]] <= -1e9).all()
    assert (np.delete(scores, [0, 5, 17]) > -1e9).all()


def test_evaluation_ranking_equals_the_batched_training_side_ranking(
    trained: tuple[TrainedModel, ExportedModel, bytes],
) -> None:
    """Folding one event at a time through the exported update (what evaluation and serving do)
    ranks the catalog exactly like the batched TF path that training and early stopping use."""
    import tensorflow as tf

    model, lite, _blob = trained
    histories = sequences(11, 12)
    flat = _flatten(histories, model.hparams, NUM_ITEMS)
    ends = np.array([len(h) - 1 for h in histories])
    batch = _prefix_batch(flat, np.arange(len(histories)), ends, model.hparams)
    weights = {k: tf.constant(v) for k, v in model.weights.items()}
    batched = rank_scores_tf(weights, _states_tf(weights, batch, model.layout), model.layout).numpy()
    scorer = ServedModelScorer(lite, lite.state_dim)
    for u, history in enumerate(histories):
        exclude = np.zeros(NUM_ITEMS, dtype=np.float32)
        exclude[0] = 1.0
        served = scorer(history, exclude)
        np.testing.assert_allclose(served[1:], batched[u, 1:], atol=1e-4)
        assert list(np.argsort(-served[1:])[:10]) == list(np.argsort(-batched[u, 1:])[:10])
    metrics = evaluate(scorer, histories, [h[-1] for h in sequences(12, 12)], NUM_ITEMS)
    assert 0.0 <= metrics.ndcg <= metrics.hit_rate <= 1.0
