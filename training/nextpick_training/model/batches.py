"""Training examples as numpy arrays: cut points, their exact states, history inputs and targets.

An *example* is a cut in one shopper's timeline: everything before it is history, the next basket is
the target (every distinct item of it). A basket is a run of purchases stamped within
`ORDER_GAP_SECONDS` of each other (one order, as `nextpick.domain.history` counts them); every other event is a basket of one, so a stream of
views and ratings trains next-item prediction and an order log trains next-basket prediction.

* The **state** at a cut is a sparse description of ``update`` folded from zeros over the whole
  history (`prefix_state_entries`): (row, item, per-decay weight) entries for the decayed sums, plus
  the normalisers and the last-event fields. Nothing is truncated, so training sees exactly the state
  serving folds (tests/unit/test_model.py).
* The **history input** at a cut comes from replaying the history through serving's own
  `nextpick.domain.history.ItemHistory` and asking for `model_input` at the target's time.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from nextpick.domain.events import EventType
from nextpick.domain.history import HISTORY_SLOTS, NUM_HISTORY_FEATURES, ORDER_GAP_SECONDS, ItemHistory
from nextpick.domain.state import TimedInteraction

from .reference import NUM_EVENT_TYPES, Hyperparameters

_PURCHASE = EventType.PURCHASE.code


@dataclass
class FlatSequences:
    """All shoppers' events concatenated, with per-shopper offsets."""

    items: np.ndarray  # int32 [E]
    event_types: np.ndarray  # int32 [E]
    strengths: np.ndarray  # float32 [E]
    timestamps: np.ndarray  # float64 [E]
    weights: np.ndarray  # float32 [E]: the event-type weight w_j of the state fold
    offsets: np.ndarray  # int64 [U + 1]

    @classmethod
    def build(cls, sequences: Sequence[Sequence[TimedInteraction]], hp: Hyperparameters) -> FlatSequences:
        lengths = np.array([len(s) for s in sequences], dtype=np.int64)
        offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
        rows = [event for seq in sequences for event in seq]
        array = np.array(rows, dtype=np.float64).reshape(len(rows), 4)
        event_types = np.clip(array[:, 1].astype(np.int32), 0, NUM_EVENT_TYPES - 1)
        weights = np.asarray(hp.event_weights, dtype=np.float32)[event_types]
        return cls(
            items=array[:, 0].astype(np.int32),
            event_types=event_types,
            strengths=array[:, 2].astype(np.float32),
            timestamps=array[:, 3],
            weights=weights.astype(np.float32),
            offsets=offsets,
        )

    @property
    def num_users(self) -> int:
        return len(self.offsets) - 1


def basket_starts(event_types: np.ndarray, timestamps: np.ndarray) -> np.ndarray:
    """Positions (within one shopper's timeline) where a new basket starts; position 0 always does."""
    n = len(event_types)
    if n == 0:
        return np.zeros(0, dtype=np.int64)
    purchase = event_types == _PURCHASE
    same_order = purchase[1:] & purchase[:-1] & (np.diff(timestamps) <= ORDER_GAP_SECONDS)
    return np.flatnonzero(np.concatenate([[True], ~same_order])).astype(np.int64)


@dataclass
class Examples:
    """Cut points with everything a training step needs except the state entries (built per batch)."""

    user: np.ndarray  # int64 [X]
    end: np.ndarray  # int64 [X]: the history is the shopper's events [0, end] (inclusive)
    history_items: np.ndarray  # int32 [X, H]
    history_features: np.ndarray  # float16 [X, H, F]
    targets: np.ndarray  # int32 [X, T] (0 = padding)

    def __len__(self) -> int:
        return len(self.user)


def build_examples(
    flat: FlatSequences,
    hp: Hyperparameters,
    rng: np.random.Generator,
    slots: int = HISTORY_SLOTS,
) -> Examples:
    """Every cut point (the last `max_cuts_per_user` per shopper) with its history input and targets."""
    users: list[int] = []
    ends: list[int] = []
    targets: list[np.ndarray] = []
    inputs: list[tuple[np.ndarray, np.ndarray]] = []
    for u in range(flat.num_users):
        lo, hi = int(flat.offsets[u]), int(flat.offsets[u + 1])
        starts = basket_starts(flat.event_types[lo:hi], flat.timestamps[lo:hi])
        cuts = starts[1:][-hp.max_cuts_per_user :]
        if len(cuts) == 0:
            continue
        bounds = np.append(starts, hi - lo)
        next_start = {int(s): int(bounds[i + 1]) for i, s in enumerate(starts)}
        history: ItemHistory[int] = ItemHistory()
        observed = 0
        for cut in cuts:
            for j in range(lo + observed, lo + int(cut)):
                history.observe(
                    int(flat.items[j]), int(flat.event_types[j]), float(flat.strengths[j]), flat.timestamps[j]
                )
            observed = int(cut)
            items, features = history.model_input(_identity, float(flat.timestamps[lo + cut]), slots)
            inputs.append((items, features))
            basket = np.unique(flat.items[lo + cut : lo + next_start[int(cut)]])
            if len(basket) > hp.max_targets:
                basket = rng.choice(basket, hp.max_targets, replace=False)
            targets.append(basket.astype(np.int32))
            users.append(u)
            ends.append(int(cut) - 1)
    width = max((len(t) for t in targets), default=1)
    target_array = np.zeros((len(targets), width), dtype=np.int32)
    for row, basket in enumerate(targets):
        target_array[row, : len(basket)] = basket
    return Examples(
        user=np.asarray(users, dtype=np.int64),
        end=np.asarray(ends, dtype=np.int64),
        history_items=np.stack([i for i, _ in inputs]) if inputs else np.zeros((0, slots), np.int32),
        history_features=(
            np.stack([f for _, f in inputs]).astype(np.float16)
            if inputs
            else np.zeros((0, slots, NUM_HISTORY_FEATURES), np.float16)
        ),
        targets=target_array,
    )


def _identity(index: int) -> int:
    return index


def prefix_state_entries(
    flat: FlatSequences, rows_user: np.ndarray, rows_end: np.ndarray, hp: Hyperparameters
) -> dict[str, np.ndarray]:
    """Sparse state description for prefixes ``seq[user][: end + 1]`` (end inclusive).

    Entry arrays (row, item, per-decay weight) for the decayed sums, the per-decay normalisers and the
    last-event fields, exactly as ``update`` folded from zeros would leave them."""
    starts = flat.offsets[rows_user]
    lengths = (rows_end + 1).astype(np.int64)
    total = int(lengths.sum())
    n = len(rows_user)
    row_of_entry = np.repeat(np.arange(n, dtype=np.int32), lengths)
    first = np.concatenate([[0], np.cumsum(lengths)[:-1]]).astype(np.int64)
    position = np.arange(total, dtype=np.int64) - np.repeat(first, lengths)
    flat_index = np.repeat(starts, lengths) + position
    age = (np.repeat(rows_end, lengths) - position).astype(np.float64)
    decay_pow = np.power(np.asarray(hp.decays, dtype=np.float64)[None, :], age[:, None])  # [entries, K]
    w = flat.weights[flat_index].astype(np.float64)
    norms = np.stack(
        [
            np.bincount(row_of_entry, weights=decay_pow[:, k] * np.abs(w), minlength=n)
            for k in range(len(hp.decays))
        ],
        axis=1,
    )
    last = starts + rows_end
    before = starts + rows_end - 1
    return {
        "entry_row": row_of_entry,
        "entry_item": flat.items[flat_index].astype(np.int32),
        "entry_weight": (decay_pow * w[:, None]).astype(np.float32),
        "norms": norms.astype(np.float32),
        "last1": flat.items[last].astype(np.int32),
        "last2": np.where(rows_end >= 1, flat.items[np.maximum(before, 0)], 0).astype(np.int32),
        "last_event": flat.event_types[last].astype(np.int32),
        "last_strength": flat.strengths[last].astype(np.float32),
    }


def example_batch(
    flat: FlatSequences, examples: Examples, rows: np.ndarray, hp: Hyperparameters
) -> dict[str, np.ndarray]:
    """One optimiser step's inputs for the examples at `rows`."""
    batch = prefix_state_entries(flat, examples.user[rows], examples.end[rows], hp)
    batch["history_items"] = examples.history_items[rows]
    batch["history_features"] = examples.history_features[rows].astype(np.float32)
    targets = examples.targets[rows]
    width = max(1, int((targets > 0).sum(axis=1).max(initial=1)))
    batch["targets"] = np.ascontiguousarray(targets[:, :width])
    return batch


class NegativeSampler:
    """Shared negatives per step from item frequency ** power (every item at least once), with log q."""

    def __init__(self, flat: FlatSequences, num_items: int, hp: Hyperparameters, rng: np.random.Generator):
        counts = np.bincount(flat.items, minlength=num_items).astype(np.float64) + 1.0
        counts[0] = 0.0
        probability = counts**hp.sampling_power
        self.probability = probability / probability.sum()
        self.count = min(hp.negatives, num_items - 1)
        self.rng = rng

    def sample(self) -> tuple[np.ndarray, np.ndarray]:
        """(items int32 [S], log(S * q) float32 [S]) — the correction subtracted from their logits."""
        items = self.rng.choice(len(self.probability), size=self.count, p=self.probability)
        log_q = np.log(self.count * self.probability[items])
        return items.astype(np.int32), log_q.astype(np.float32)
