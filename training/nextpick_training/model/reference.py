"""The nextpick model (contract v2) as plain numpy: hyperparameters, weights, and reference `update`/`rank`.

* **Item vectors** ``V[i] = id_embedding[i] + mean_t token_embedding[t]`` over the item's attribute
  tokens (`nextpick.domain.item_attributes`), and likewise the item bias ``B`` and the repeat propensity
  ``P``. An item with no events has a vector from its attributes alone.
* **state** (``update``): for each decay ``d_k`` the decayed sum ``S_k = sum_j d_k^(t-j) w_j V[item_j]``
  and its normaliser ``C_k = sum_j d_k^(t-j) |w_j|`` (``w_j`` = event-type weight), the vectors of the
  last two items, a one-hot of the last event type and its strength. Unknown items (index 0) leave the
  state untouched.
* **rank**: a query ``q`` from the state (a linear map plus a one-hidden-layer MLP of the normalised
  averages, last items, last event and log-counts) scores every item ``q . V[i] + B[i]`` ("explore");
  every item of the shopper's own history (`nextpick.domain.history`: up to H items with F features
  each) gets a "repeat" term ``P[i] + mlp_r([features, mean features over the history, log #items])``,
  learned per item (P) and per shopper (the history summary). Excluded items score -1e10.

The exported TFLite (`nextpick_training.export`) computes exactly this; tests check it within 1e-4.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from nextpick.adapters.model_registry import EVENT_TYPES
from nextpick.domain.history import HISTORY_FEATURES, HISTORY_SLOTS, NUM_HISTORY_FEATURES
from nextpick.domain.item_attributes import ATTRIBUTE_BUCKETS, MAX_ITEM_TOKENS, token_bucket
from nextpick.domain.state import Interaction, fold_interactions

NUM_EVENT_TYPES = len(EVENT_TYPES)
EXCLUDED_SCORE = -1e10  # contract: excluded items score <= -1e9
# Repeat head input: the slot's features, the mean features over the shopper's filled slots, log(1 + slots).
REPEAT_INPUT_DIM = 2 * NUM_HISTORY_FEATURES + 1
# Gate input: the mean features over the shopper's filled slots and log(1 + filled slots).
GATE_INPUT_DIM = NUM_HISTORY_FEATURES + 1
# Stands for log(0) in the mixture (an empty repeat side); finite, so TFLite and numpy agree.
LOG_ZERO = -1e4
assert HISTORY_FEATURES[-1] == "present", "the repeat head reads the padding flag from the last feature"


@dataclass
class Hyperparameters:
    """Model and training settings; the defaults are the ones chosen on validation (docs/quality.md)."""

    embedding_dim: int = 64
    hidden_dim: int = 256
    repeat_hidden_dim: int = 32
    decays: tuple[float, ...] = (0.5, 0.9, 0.98, 1.0)
    # Weight of each event type in the state's moving averages (view, click, add_to_cart,
    # remove_from_cart, purchase, rate): stronger intent weighs more; removing pulls the taste away.
    event_weights: tuple[float, ...] = (0.5, 0.75, 1.5, -0.5, 2.0, 1.0)
    epochs: int = 12
    # Training examples (cut points) per optimiser step.
    batch_size: int = 256
    learning_rate: float = 3e-3
    warmup_fraction: float = 0.05
    weight_decay: float = 0.05
    dropout: float = 0.3
    # Shared sampled negatives per step, drawn from item frequency ** sampling_power, with the log-q
    # correction. Cost per step is O(batch x negatives), whatever the catalog size.
    negatives: int = 1024
    sampling_power: float = 0.75
    # The most recent cut points used per shopper (bounds the work a very long history costs).
    max_cuts_per_user: int = 128
    # Targets per cut point (a basket's items beyond this are subsampled).
    max_targets: int = 32
    # Keep the repeat head's linear "buy again" prior fixed: training learns only departures from it.
    freeze_repeat_prior: bool = False
    # Share of item rows that lose their id part in a training step (items with attribute tokens only):
    # trains the attribute embeddings to place an item alone, as they must for a new item.
    id_dropout: float = 0.25
    # Exponential moving average of the weights, exported instead of the last weights (0 = off).
    weight_averaging: float = 0.995
    # Stop when validation NDCG@10 has not improved for this many epochs (only with validation data).
    patience: int = 3
    # Mask items already in the history out of scoring (MovieLens: one rating per movie).
    exclude_seen: bool = False
    seed: int = 0

    def state_dim(self) -> int:
        return StateLayout(len(self.decays), self.embedding_dim).size

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class StateLayout:
    """Where each part lives inside the flat state vector."""

    num_decays: int
    dim: int

    @property
    def sums(self) -> slice:
        return slice(0, self.num_decays * self.dim)

    @property
    def norms(self) -> slice:
        start = self.num_decays * self.dim
        return slice(start, start + self.num_decays)

    @property
    def last1(self) -> slice:
        start = self.num_decays * (self.dim + 1)
        return slice(start, start + self.dim)

    @property
    def last2(self) -> slice:
        start = self.num_decays * (self.dim + 1) + self.dim
        return slice(start, start + self.dim)

    @property
    def last_event(self) -> slice:
        start = self.num_decays * (self.dim + 1) + 2 * self.dim
        return slice(start, start + NUM_EVENT_TYPES)

    @property
    def last_strength(self) -> int:
        return self.num_decays * (self.dim + 1) + 2 * self.dim + NUM_EVENT_TYPES

    @property
    def size(self) -> int:
        return self.last_strength + 1

    @property
    def feature_dim(self) -> int:
        """Width of the rank head's input (`rank_features`)."""
        return (self.num_decays + 2) * self.dim + NUM_EVENT_TYPES + 1 + self.num_decays


@dataclass(frozen=True)
class ItemTokens:
    """Each item's hashed attribute tokens, padded: `buckets[i, t]` (0 = none), `weights[i, t]` = 1/count."""

    buckets: np.ndarray  # int32 [num_items, MAX_ITEM_TOKENS]
    weights: np.ndarray  # float32 [num_items, MAX_ITEM_TOKENS]

    @classmethod
    def build(cls, tokens: Sequence[Sequence[str]], num_items: int) -> ItemTokens:
        buckets = np.zeros((num_items, MAX_ITEM_TOKENS), dtype=np.int32)
        weights = np.zeros((num_items, MAX_ITEM_TOKENS), dtype=np.float32)
        for index, item_tokens in enumerate(tokens[:num_items]):
            chosen = list(item_tokens)[:MAX_ITEM_TOKENS]
            for t, token in enumerate(chosen):
                buckets[index, t] = token_bucket(token, ATTRIBUTE_BUCKETS)
                weights[index, t] = 1.0 / len(chosen)
        buckets[0], weights[0] = 0, 0.0  # the unknown item has no attributes
        return cls(buckets, weights)

    @classmethod
    def none(cls, num_items: int) -> ItemTokens:
        return cls.build([], num_items)


def compose_item_tables(weights: dict[str, np.ndarray], tokens: ItemTokens) -> dict[str, np.ndarray]:
    """The served item tables: vector V [N, D], bias B [N] and repeat propensity P [N]."""

    def composed(id_part: np.ndarray, token_table: np.ndarray) -> np.ndarray:
        gathered = token_table[tokens.buckets]  # [N, T] or [N, T, D]
        w = tokens.weights if gathered.ndim == 2 else tokens.weights[:, :, None]
        return (id_part + (gathered * w).sum(axis=1)).astype(np.float32)

    return {
        "vectors": composed(weights["id_embedding"], weights["token_embedding"]),
        "bias": composed(weights["id_bias"], weights["token_bias"]),
        "repeat": composed(weights["id_repeat"], weights["token_repeat"]),
    }


def init_weights(num_items: int, hp: Hyperparameters, rng: np.random.Generator) -> dict[str, np.ndarray]:
    lay = StateLayout(len(hp.decays), hp.embedding_dim)
    d, h, f, r = hp.embedding_dim, hp.hidden_dim, lay.feature_dim, hp.repeat_hidden_dim
    emb_cols = (lay.num_decays + 2) * d

    def glorot(fan_in: int, fan_out: int) -> np.ndarray:
        limit = math.sqrt(6.0 / (fan_in + fan_out))
        return rng.uniform(-limit, limit, size=(fan_in, fan_out)).astype(np.float32)

    scale = 1.0 / math.sqrt(d)
    return {
        "id_embedding": rng.normal(0.0, scale, size=(num_items, d)).astype(np.float32),
        "id_bias": np.zeros(num_items, dtype=np.float32),
        "id_repeat": np.zeros(num_items, dtype=np.float32),
        "token_embedding": rng.normal(0.0, scale, size=(ATTRIBUTE_BUCKETS, d)).astype(np.float32),
        "token_bias": np.zeros(ATTRIBUTE_BUCKETS, dtype=np.float32),
        "token_repeat": np.zeros(ATTRIBUTE_BUCKETS, dtype=np.float32),
        "w1": glorot(f, h),
        "b1": np.zeros(h, dtype=np.float32),
        "w2": glorot(h, d) * 0.5,
        "b2": np.zeros(d, dtype=np.float32),
        "w_lin": glorot(emb_cols, d) * 0.5,
        "r1": glorot(REPEAT_INPUT_DIM, r),
        "rb1": np.zeros(r, dtype=np.float32),
        "r2": glorot(r, 1),
        "rb2": np.zeros(1, dtype=np.float32),
        # A linear skip over the slot features, initialised to the strongest simple baseline: "buy
        # again", the shopper's purchases of the item decayed with a 30-day half-life. Training starts
        # from that rule and learns, per item (P) and per shopper (the summary), where to depart from it.
        "r_lin": _buy_again_start(),
        # The gate: P(the next item is one the shopper had before) from their history's summary.
        "g_w": np.zeros((GATE_INPUT_DIM, 1), dtype=np.float32),
        "g_b": np.zeros(1, dtype=np.float32),
    }


def _buy_again_start() -> np.ndarray:
    start = np.zeros((REPEAT_INPUT_DIM, 1), dtype=np.float32)
    start[HISTORY_FEATURES.index("log_bought_30d"), 0] = 4.0
    start[HISTORY_FEATURES.index("present"), 0] = 1.0
    return start


@dataclass
class TrainedModel:
    """Trained weights (numpy), the item tokens they were trained with, and the numpy reference."""

    hparams: Hyperparameters
    num_items: int
    weights: dict[str, np.ndarray]
    tokens: ItemTokens
    training_seconds: float = 0.0
    epochs_trained: int = 0
    best_epoch: int = 0
    validation_history: list[dict[str, float]] = field(default_factory=list)
    # The epoch training resumed after (a checkpoint's), 0 when it started from scratch.
    resumed_from_epoch: int = 0

    @property
    def state_dim(self) -> int:
        return self.hparams.state_dim()

    @property
    def layout(self) -> StateLayout:
        return StateLayout(len(self.hparams.decays), self.hparams.embedding_dim)

    def tables(self) -> dict[str, np.ndarray]:
        return compose_item_tables(self.weights, self.tokens)

    def update(self, state: np.ndarray, item: int, event_type: int, strength: float) -> np.ndarray:
        """Reference ``update`` in float32 numpy; the exported TFLite must agree with it."""
        state = np.asarray(state, dtype=np.float32)
        if item <= 0 or item >= self.num_items:
            return state.copy()
        lay, hp = self.layout, self.hparams
        vector = self.tables()["vectors"][item]
        event = min(max(int(event_type), 0), NUM_EVENT_TYPES - 1)
        decays = np.asarray(hp.decays, dtype=np.float32)
        w = np.float32(hp.event_weights[event])
        new = np.empty_like(state)
        sums = state[lay.sums].reshape(lay.num_decays, lay.dim)
        new[lay.sums] = (decays[:, None] * sums + w * vector[None, :]).reshape(-1)
        new[lay.norms] = decays * state[lay.norms] + np.abs(w)
        new[lay.last2] = state[lay.last1]
        new[lay.last1] = vector
        new[lay.last_event] = np.eye(NUM_EVENT_TYPES, dtype=np.float32)[event]
        new[lay.last_strength] = np.float32(strength)
        return new

    def fold(self, history: Sequence[Interaction]) -> np.ndarray:
        return fold_interactions(self, history)

    def rank(
        self,
        state: np.ndarray,
        exclude: np.ndarray,
        history_items: np.ndarray | None = None,
        history_features: np.ndarray | None = None,
    ) -> np.ndarray:
        """Reference ``rank`` in numpy (no history: an empty one): log P(item) of the repeat-explore
        mixture, `mixture_scores_np`."""
        w, tables = self.weights, self.tables()
        features = rank_features_np(np.asarray(state, dtype=np.float32)[None, :], self.layout)
        query = query_np(w, features, self.layout)[0]
        explore = query @ tables["vectors"].T + tables["bias"]
        if history_items is None or history_features is None:
            history_items = np.zeros(HISTORY_SLOTS, dtype=np.int32)
            history_features = np.zeros((HISTORY_SLOTS, NUM_HISTORY_FEATURES), dtype=np.float32)
        repeat = repeat_scores_np(w, tables["repeat"], history_items[None], history_features[None])[0]
        scores = mixture_scores_np(w, explore, repeat, history_items, history_features)
        return np.where(np.asarray(exclude) > 0.5, np.float32(EXCLUDED_SCORE), scores).astype(np.float32)


def rank_features_np(states: np.ndarray, lay: StateLayout) -> np.ndarray:
    """The rank head's input: normalised moving averages, last two items, last event, log-counts."""
    n = states.shape[0]
    sums = states[:, lay.sums].reshape(n, lay.num_decays, lay.dim)
    norms = states[:, lay.norms]
    means = sums / np.maximum(norms, 1e-6)[:, :, None]
    return np.concatenate(
        [
            means.reshape(n, -1),
            states[:, lay.last1],
            states[:, lay.last2],
            states[:, lay.last_event],
            states[:, lay.last_strength : lay.last_strength + 1],
            np.log1p(np.maximum(norms, 0.0)),
        ],
        axis=1,
    ).astype(np.float32)


def query_np(w: dict[str, np.ndarray], features: np.ndarray, lay: StateLayout) -> np.ndarray:
    emb_cols = (lay.num_decays + 2) * lay.dim
    hidden = np.maximum(features @ w["w1"] + w["b1"], 0.0)
    return (hidden @ w["w2"] + features[:, :emb_cols] @ w["w_lin"] + w["b2"]).astype(np.float32)


def repeat_inputs_np(features: np.ndarray) -> np.ndarray:
    """[B, H, F] slot features -> [B, H, REPEAT_INPUT_DIM]: each slot with its shopper's summary."""
    present = features[:, :, -1:]  # the "present" feature is last
    count = present.sum(axis=1, keepdims=True)  # [B, 1, 1]
    mean = (features * present).sum(axis=1, keepdims=True) / np.maximum(count, 1.0)
    h = features.shape[1]
    return np.concatenate(
        [features, np.repeat(mean, h, axis=1), np.repeat(np.log1p(count), h, axis=1)], axis=2
    ).astype(np.float32)


def _logsumexp(x: np.ndarray) -> float:
    top = float(np.max(x))
    return top + float(np.log(np.sum(np.exp(x - top))))


def _log_sigmoid(x: float) -> float:
    return -float(np.logaddexp(0.0, -x))


def gate_logit_np(w: dict[str, np.ndarray], features: np.ndarray) -> float:
    present = features[:, -1:]
    count = float(present.sum())
    mean = (features * present).sum(axis=0) / max(count, 1.0)
    x = np.concatenate([mean, [np.log1p(count)]]).astype(np.float32)
    return float(x @ w["g_w"][:, 0] + w["g_b"][0])


def mixture_scores_np(
    w: dict[str, np.ndarray], explore: np.ndarray, repeat: np.ndarray, items: np.ndarray, features: np.ndarray
) -> np.ndarray:
    """log P(item): with gate g = P(the next item is a history item), a history item scores
    log g + log softmax(repeat over the filled slots), any other item log(1 - g) + log softmax(explore
    over the items outside the history). Without a history, g = 0: the explore side alone."""
    present = features[:, -1] > 0.5
    in_history = np.zeros(len(explore), dtype=bool)
    in_history[items[present]] = True
    in_history[0] = True
    log_explore = explore - _logsumexp(explore[~in_history])
    if not present.any():
        return log_explore.astype(np.float32)
    gate = gate_logit_np(w, features)
    log_repeat = repeat - _logsumexp(repeat[present])
    scores = _log_sigmoid(-gate) + log_explore
    scores[items[present]] = _log_sigmoid(gate) + log_repeat[present]
    return scores.astype(np.float32)


def repeat_scores_np(
    w: dict[str, np.ndarray], repeat_table: np.ndarray, items: np.ndarray, features: np.ndarray
) -> np.ndarray:
    """[B, H] "again" terms of the history slots (0 on padding)."""
    x = repeat_inputs_np(features)
    hidden = np.maximum(x @ w["r1"] + w["rb1"], 0.0)
    score = (hidden @ w["r2"] + x @ w["r_lin"])[:, :, 0] + w["rb2"][0] + repeat_table[items]
    return (score * features[:, :, -1]).astype(np.float32)
