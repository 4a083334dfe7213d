"""The model trains fast and deterministically, and its training state is the served state."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from nextpick.domain.state import fold_interactions
from nextpick_training.model import (
    EXCLUDED_SCORE,
    Hyperparameters,
    Interaction,
    TrainedModel,
    _chunk_batch,
    _chunk_states_tf,
    _chunk_table,
    _decay_matrices,
    _flatten,
    _init_weights,
    _prefix_batch,
    _states_tf,
    train,
)

NUM_ITEMS = 40


def random_sequences(seed: int, users: int = 50, max_len: int = 30) -> list[list[Interaction]]:
    rng = np.random.default_rng(seed)
    return [
        [
            (int(rng.integers(1, NUM_ITEMS)), int(rng.integers(0, 6)), float(rng.uniform(0.2, 1.0)))
            for _ in range(int(rng.integers(2, max_len)))
        ]
        for _ in range(users)
    ]


TINY = Hyperparameters(embedding_dim=16, hidden_dim=32, epochs=1, batch_size=64, strength_power=1.0)


def test_tiny_training_run_is_fast_and_well_formed() -> None:
    model = train(random_sequences(0), NUM_ITEMS, TINY)
    assert model.num_items == NUM_ITEMS
    assert model.state_dim == TINY.state_dim()
    assert model.epochs_trained == 1
    assert 0 < model.training_seconds < 30
    state = fold_interactions(model, random_sequences(1)[0])
    assert state.shape == (model.state_dim,) and state.dtype == np.float32
    scores = model.rank(state, np.zeros(NUM_ITEMS, dtype=np.float32))
    assert scores.shape == (NUM_ITEMS,) and np.isfinite(scores).all()


def test_training_is_deterministic_given_the_seed() -> None:
    a = train(random_sequences(0, users=20), NUM_ITEMS, TINY)
    b = train(random_sequences(0, users=20), NUM_ITEMS, TINY)
    for name, value in a.weights.items():
        np.testing.assert_array_equal(value, b.weights[name], err_msg=name)


def test_training_rejects_the_unknown_item_index() -> None:
    with pytest.raises(ValueError, match="outside"):
        train([[(0, 4, 1.0), (1, 4, 1.0)]], NUM_ITEMS, TINY)


def untrained(hparams: Hyperparameters = TINY) -> TrainedModel:
    weights = _init_weights(NUM_ITEMS, hparams, np.random.default_rng(3))
    weights["item_bias"] = np.random.default_rng(4).normal(size=NUM_ITEMS).astype(np.float32)
    return TrainedModel(hparams, NUM_ITEMS, weights)


@pytest.mark.parametrize("context_embedding", [False, True])
def test_training_states_equal_the_folded_update_state(context_embedding: bool) -> None:
    """The chunked training path (carry + in-chunk decay matrix) and the per-prefix path see
    exactly the state that folding ``update`` from zeros over the full history produces."""
    import tensorflow as tf

    model = untrained(dataclasses.replace(TINY, context_embedding=context_embedding))
    hp = model.hparams
    sequences = random_sequences(5, users=12, max_len=60)
    flat = _flatten(sequences, hp, NUM_ITEMS)
    chunk_user, chunk_start = _chunk_table(flat, hp.chunk_length)
    batch = _chunk_batch(flat, chunk_user, chunk_start, hp.chunk_length, hp)
    inner, carry = _decay_matrices(hp, hp.chunk_length)
    weights = {k: tf.constant(v) for k, v in model.weights.items()}
    chunk_states = _chunk_states_tf(
        weights, batch, model.layout, tf.constant(inner), tf.constant(carry)
    ).numpy()
    checked = 0
    for c, (user, start) in enumerate(zip(chunk_user, chunk_start, strict=True)):
        for t in range(hp.chunk_length):
            if batch["has_target"][c, t]:
                folded = fold_interactions(model, sequences[user][: start + t + 1])
                np.testing.assert_allclose(chunk_states[c, t], folded, rtol=1e-5, atol=1e-5)
                checked += 1
    assert checked == sum(len(s) - 1 for s in sequences)

    ends = np.array([len(s) - 1 for s in sequences])
    prefix = _prefix_batch(flat, np.arange(len(sequences)), ends, hp)
    prefix_states = _states_tf(weights, prefix, model.layout).numpy()
    for u, seq in enumerate(sequences):
        np.testing.assert_allclose(prefix_states[u], fold_interactions(model, seq), rtol=1e-5, atol=1e-5)


def test_unknown_item_leaves_the_state_unchanged() -> None:
    model = untrained()
    state = fold_interactions(model, [(3, 4, 1.0), (5, 0, 1.0)])
    for unknown in (0, NUM_ITEMS, -1):
        np.testing.assert_array_equal(model.update(state, unknown, 4, 1.0), state)


def test_rank_excludes_items() -> None:
    model = untrained()
    exclude = np.zeros(NUM_ITEMS, dtype=np.float32)
    exclude[[0, 7]] = 1.0
    scores = model.rank(fold_interactions(model, [(3, 4, 1.0)]), exclude)
    assert scores[0] <= -1e9 and scores[7] <= -1e9 and EXCLUDED_SCORE <= -1e9
    assert (np.delete(scores, [0, 7]) > -1e9).all()


def test_event_weights_and_strength_shape_the_state() -> None:
    model = untrained()
    lay = model.layout
    viewed = model.update(model.initial_state(), 3, 0, 1.0)
    bought = model.update(model.initial_state(), 3, 4, 1.0)
    emb = model.weights["item_embedding"][3]
    np.testing.assert_allclose(viewed[lay.sums][: lay.dim], TINY.event_weights[0] * emb, rtol=1e-6)
    np.testing.assert_allclose(bought[lay.sums][: lay.dim], TINY.event_weights[4] * emb, rtol=1e-6)
    rated = model.update(model.initial_state(), 3, 5, 0.4)
    np.testing.assert_allclose(rated[lay.sums][: lay.dim], TINY.event_weights[5] * 0.4 * emb, rtol=1e-6)
    np.testing.assert_allclose(rated[lay.last1], emb)


def test_learns_repurchase_of_the_users_own_items() -> None:
    """A consumables shop: each shopper keeps re-buying their own 3 items (10% noise). Serving does
    not exclude bought items there, so the state must point back at the user's own items."""
    from nextpick_training.baselines import Popularity, UserFrequency
    from nextpick_training.evaluate import Scorer, ServedModelScorer, evaluate, leave_last_out
    from nextpick_training.export import ExportedModel, export_tflite

    num_items = 51
    rng = np.random.default_rng(0)
    shoppers = []
    for _ in range(80):
        own = rng.choice(np.arange(1, num_items), size=3, replace=False)
        shoppers.append(
            [
                (int(rng.choice(own)) if rng.random() > 0.1 else int(rng.integers(1, num_items)), 4, 1.0)
                for _ in range(25)
            ]
        )
    history, last = leave_last_out(shoppers)
    hp = Hyperparameters(
        embedding_dim=16,
        hidden_dim=32,
        epochs=6,
        batch_size=32,
        learning_rate=0.02,
        dropout=0.1,
        exclude_seen_in_loss=False,  # repurchase catalog: past items are legitimate next items
    )
    lite = ExportedModel(export_tflite(train(history, num_items, hp)))

    def hr(scorer: Scorer) -> float:
        return evaluate(scorer, history, last, num_items, k=10, exclude_seen=False).hit_rate

    model_hr = hr(ServedModelScorer(lite, lite.state_dim))
    popularity_hr = hr(Popularity(history, num_items))
    frequency_hr = hr(UserFrequency(history, num_items))
    assert popularity_hr < 0.5 < frequency_hr
    assert model_hr > popularity_hr + 0.3
    assert model_hr >= frequency_hr - 0.1
