"""The v2 model trains, its training-time inputs are exactly the served inputs, and it learns what a
shop needs: buying again, and attribute vectors for items without events."""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np
import pytest

from nextpick.domain.events import EventType, TrackedEvent
from nextpick.domain.history import ItemHistory
from nextpick.domain.state import StateLimits, TimedInteraction, UserState, apply_events, fold_interactions
from nextpick_training.model import Hyperparameters, ItemTokens, TrainedModel, batches, init_weights, train

NUM_ITEMS = 40
DAY = 86_400.0
T0 = 1_790_000_000.0


def random_sequences(seed: int, users: int = 40, max_len: int = 30) -> list[list[TimedInteraction]]:
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(users):
        t = T0
        seq = []
        for _ in range(int(rng.integers(3, max_len))):
            t += float(rng.integers(0, 3)) * DAY + float(rng.integers(0, 900))
            seq.append(
                (int(rng.integers(1, NUM_ITEMS)), int(rng.integers(0, 6)), float(rng.uniform(0.2, 1)), t)
            )
        out.append(seq)
    return out


TINY = Hyperparameters(
    embedding_dim=8, hidden_dim=16, repeat_hidden_dim=8, epochs=1, batch_size=32, negatives=16, seed=0
)


def untrained(hp: Hyperparameters = TINY, tokens: ItemTokens | None = None) -> TrainedModel:
    rng = np.random.default_rng(3)
    weights = init_weights(NUM_ITEMS, hp, rng)
    for name in ("id_bias", "id_repeat", "token_bias", "token_repeat"):
        weights[name] = rng.normal(size=weights[name].shape).astype(np.float32)
    return TrainedModel(hp, NUM_ITEMS, weights, tokens or ItemTokens.none(NUM_ITEMS))


def test_tiny_training_run_is_well_formed() -> None:
    model = train(random_sequences(0), NUM_ITEMS, TINY)
    assert model.num_items == NUM_ITEMS and model.epochs_trained == 1
    state = fold_interactions(model, [(i, t, s) for i, t, s, _ in random_sequences(1)[0]])
    assert state.shape == (model.state_dim,) and state.dtype == np.float32
    scores = model.rank(state, np.zeros(NUM_ITEMS, dtype=np.float32))
    assert scores.shape == (NUM_ITEMS,) and np.isfinite(scores).all()
    # The id bias a catalog refresh gives a never-seen item is part of the trained weights.
    assert model.weights["cold_id_bias"].shape == (1,)


def test_training_is_deterministic_given_the_seed() -> None:
    a = train(random_sequences(0, users=15), NUM_ITEMS, TINY)
    b = train(random_sequences(0, users=15), NUM_ITEMS, TINY)
    for name, value in a.weights.items():
        np.testing.assert_allclose(value, b.weights[name], rtol=1e-5, atol=1e-6, err_msg=name)


def test_baskets_are_orders_and_every_other_event_stands_alone() -> None:
    purchase, view = 4, 0
    types = np.array([view, purchase, purchase, purchase, view, purchase, purchase])
    times = np.array([0, 100, 100, 160, 200, 5000, 5000 + 601], dtype=np.float64)
    # Purchases 1-3 within 10 minutes are one order; the view breaks the run; 601 s apart is a new order.
    assert list(batches.basket_starts(types, times)) == [0, 1, 4, 5, 6]


def test_training_states_equal_the_folded_update_state() -> None:
    """The sparse prefix description training builds is exactly `update` folded from zeros."""
    import tensorflow as tf

    from nextpick_training.model.graph import states_from_entries

    model = untrained()
    sequences = random_sequences(5, users=6)
    flat = batches.FlatSequences.build(sequences, model.hparams)
    users = np.repeat(np.arange(len(sequences)), 2)
    ends = np.array([e for s in sequences for e in (0, len(s) - 1)])
    batch = batches.prefix_state_entries(flat, users, ends, model.hparams)
    vectors = tf.constant(model.tables()["vectors"])
    states = states_from_entries(lambda i: tf.gather(vectors, i), batch, model.layout).numpy()
    for row, (user, end) in enumerate(zip(users, ends, strict=True)):
        prefix = [(i, t, s) for i, t, s, _ in sequences[user][: end + 1]]
        np.testing.assert_allclose(states[row], fold_interactions(model, prefix), rtol=1e-5, atol=1e-5)


def test_training_history_input_equals_what_serving_builds() -> None:
    """No train/serve skew in the history input: training replays events through serving's ItemHistory;
    serving builds it from the state its own event path stored (by item id) at the same moment."""
    hp = Hyperparameters(max_cuts_per_user=50)
    rng = np.random.default_rng(7)
    t, sequence = T0, []
    for _ in range(60):
        t += float(rng.integers(0, 2)) * DAY + float(rng.integers(1, 900))
        kind = int(rng.choice([0, 1, 2, 3, 4, 5]))
        sequence.append(
            (int(rng.integers(1, 15)), kind, float(rng.integers(1, 6)) / 5 if kind == 5 else 1.0, t)
        )
    flat = batches.FlatSequences.build([sequence], hp)
    examples = batches.build_examples(flat, hp, np.random.default_rng(0))
    assert len(examples) > 10
    kinds = list(EventType)
    events = [
        TrackedEvent(
            event_id=f"e{j}",
            user_id="shopper",
            item_id=f"sku-{item}",
            event_type=kinds[kind],
            timestamp=datetime.fromtimestamp(ts, UTC),
            rating=round(strength * 5) if kind == 5 else None,
        )
        for j, (item, kind, strength, ts) in enumerate(sequence)
    ]
    for row in range(len(examples)):
        end = int(examples.end[row])
        state, _ = apply_events(
            UserState.new("shopper"), events[: end + 1], None, StateLimits(), datetime.now(UTC)
        )
        now = sequence[end + 1][3]
        served = state.history.model_input(lambda item_id: int(item_id.removeprefix("sku-")), now)
        np.testing.assert_array_equal(examples.history_items[row], served[0])
        np.testing.assert_allclose(examples.history_features[row], served[1], rtol=2e-3, atol=2e-3)  # float16


def test_rank_is_the_log_probability_of_a_repeat_explore_mixture() -> None:
    """Scores are log P(item): they sum to 1 over the catalog; the shopper's own items take the repeat
    side, every other item keeps its explore order, shifted by the gate's log(1 - g)."""
    model = untrained()
    model.weights["g_b"] = np.array([0.7], dtype=np.float32)
    state = fold_interactions(model, [(3, 4, 1.0)])
    exclude = np.zeros(NUM_ITEMS, dtype=np.float32)
    history = ItemHistory[int]().observe_all([(3, 4, 1.0, T0), (9, 0, 1.0, T0)])
    items, features = history.model_input(lambda x: x, T0 + 2 * DAY)
    with_history = model.rank(state, exclude, items, features).astype(np.float64)
    without = model.rank(state, exclude).astype(np.float64)
    for scores in (with_history, without):
        np.testing.assert_allclose(np.exp(scores[1:]).sum(), 1.0, rtol=1e-4)
    others = np.setdiff1d(np.arange(1, NUM_ITEMS), [3, 9])
    shift = with_history[others] - without[others]
    np.testing.assert_allclose(shift, shift[0], atol=1e-4)
    # The repeat side's total is the gate's P(repeat) = g, the rest is the explore side's.
    p_repeat = np.exp(with_history[[3, 9]]).sum()
    np.testing.assert_allclose(p_repeat, 1 - np.exp(with_history[others]).sum(), rtol=1e-4)


def test_learns_to_buy_again_and_beats_popularity() -> None:
    """A consumables shop: each shopper re-buys their own 3 items every few days (10% noise)."""
    from nextpick_training.export import ExportedModel, export_tflite
    from nextpick_training.scoring import ServedScorer

    num_items = 51
    rng = np.random.default_rng(0)
    shoppers: list[list[TimedInteraction]] = []
    for _ in range(80):
        own = rng.choice(np.arange(1, num_items), size=3, replace=False)
        t, seq = T0, []
        for _ in range(12):
            t += float(rng.integers(2, 6)) * DAY
            item = int(rng.choice(own)) if rng.random() > 0.1 else int(rng.integers(1, num_items))
            seq.append((item, 4, 1.0, t))
        shoppers.append(seq)
    history = [s[:-1] for s in shoppers]
    hp = Hyperparameters(
        embedding_dim=16, hidden_dim=32, repeat_hidden_dim=8, epochs=8, batch_size=32, negatives=32
    )
    scorer = ServedScorer(ExportedModel(export_tflite(train(history, num_items, hp))))
    popularity = np.bincount([e[0] for s in history for e in s], minlength=num_items)

    def hit(scores: np.ndarray, target: int) -> bool:
        scores = scores.copy()
        scores[0] = -np.inf
        return target in np.argsort(-scores, kind="stable")[:3]

    exclude = np.zeros(num_items, dtype=np.float32)
    exclude[0] = 1.0
    model_hr = np.mean(
        [hit(scorer(h, s[-1][3], exclude), s[-1][0]) for h, s in zip(history, shoppers, strict=True)]
    )
    pop_hr = np.mean([hit(popularity.astype(float), s[-1][0]) for s in shoppers])
    assert pop_hr < 0.3
    assert model_hr > pop_hr + 0.4


def test_an_item_without_events_gets_its_vector_from_its_attributes() -> None:
    """Two categories of items; shoppers stay in theirs. An item that never had an event, tagged with a
    category, ranks above the other category's items for that category's shoppers."""
    from nextpick.domain.item_attributes import item_tokens

    num_items = 41  # 1..20 "red", 21..39 "blue", 40 = red, never seen
    tokens = [[], *([item_tokens("red")] * 20), *([item_tokens("blue")] * 19), item_tokens("red")]
    rng = np.random.default_rng(1)
    sequences = []
    for user in range(60):
        own = np.arange(1, 21) if user % 2 == 0 else np.arange(21, 40)
        t, seq = T0, []
        for _ in range(10):
            t += DAY
            seq.append((int(rng.choice(own)), 0, 1.0, t))
        sequences.append(seq)
    hp = Hyperparameters(
        embedding_dim=8, hidden_dim=16, repeat_hidden_dim=8, epochs=6, batch_size=32, negatives=16
    )
    model = train(sequences, num_items, hp, item_tokens=tokens)
    red_fan = [(3, 0, 1.0), (5, 0, 1.0), (7, 0, 1.0)]
    scores = model.rank(fold_interactions(model, red_fan), np.zeros(num_items, dtype=np.float32))
    assert scores[40] > np.median(scores[21:40])


@pytest.mark.parametrize("bad", [0, NUM_ITEMS, -1])
def test_unknown_items_leave_the_state_untouched(bad: int) -> None:
    model = untrained()
    state = fold_interactions(model, [(3, 4, 1.0)])
    np.testing.assert_array_equal(model.update(state, bad, 4, 1.0), state)
