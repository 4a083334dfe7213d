"""The nextpick next-item model: a linear state fold plus a small scoring head.

The serving contract (docs/model-contract.md) fixes two functions, ``update(state, event) -> state``
and ``rank(state, exclude) -> scores``. This model chooses them so that training is cheap and
exactly matches serving:

* **state** (``state_dim`` float32 numbers) holds
  - for each decay ``d_k``: ``S_k = sum_j d_k^(t-j) * w_j * E[item_j]`` (decayed sums of the tied item
    embeddings ``E``, ``w_j`` = event-type weight x strength^p) and ``C_k = sum_j d_k^(t-j) * |w_j|``
    (their normalisers), i.e. several exponential moving averages of the user's taste, from
    "what they just did" (small d) to "everything they ever did" (d = 1);
  - the embeddings of the last two items and a one-hot of the last event type plus its strength,
    so item-to-item transitions ("what comes right after X") are learnable.
* **update** is that recurrence for one event: ``S = d*S + w*E[item]``, shift the last items.
  Events on the unknown item (index 0) leave the state untouched: the model knows nothing about it.
* **rank** turns the state into a query vector ``q`` (a linear map plus a one-hidden-layer MLP of the
  normalised averages and the last items) and scores every item as ``q . E[i] + b_i``. Because the
  output embeddings are the input embeddings, ``q`` can point back at items already in the state,
  which is how the same model learns repurchase in a consumables shop.

Training: next-item prediction with a full softmax over the catalog on every prefix of every
sequence (label smoothing, dropout on the rank features, AdamW with warm-up + cosine decay, an
exponential moving average of the weights is what gets exported). Because the state is *linear* in
the embeddings, the state of every prefix has a closed form: sequences are cut into chunks of
``chunk_length`` consecutive prefixes; the state just before a chunk (the "carry") is a sparse,
fixed-weight combination of *all* earlier embedding rows (``segment_sum(gather(E))``, weights built in
numpy), and the in-chunk part is a small dense decay-matrix product. Nothing is truncated, so the
exported ``update`` folded from zeros over the full history reproduces the training state up to
float32 rounding (tests/unit/test_model.py checks it).
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from nextpick.adapters.model_registry import EVENT_TYPES
from nextpick.domain.state import Interaction, fold_interactions

NUM_EVENT_TYPES = len(EVENT_TYPES)
EXCLUDED_SCORE = -1e10  # contract: excluded items score <= -1e9


@dataclass
class Hyperparameters:
    """Model and training settings; the defaults are the ones chosen on ML-100K validation."""

    embedding_dim: int = 64
    hidden_dim: int = 256
    decays: tuple[float, ...] = (0.5, 0.9, 0.98, 1.0)
    # Weight of each event type in the moving averages (view, click, add_to_cart, remove_from_cart,
    # purchase, rate): stronger intent weighs more; removing from the cart pulls the taste away.
    event_weights: tuple[float, ...] = (0.5, 0.75, 1.5, -0.5, 2.0, 1.0)
    # w_j = event_weight * strength ** strength_power (0 ignores the strength, e.g. the rating).
    strength_power: float = 0.0
    epochs: int = 10
    batch_size: int = 512
    learning_rate: float = 3e-3
    weight_decay: float = 1e-4
    dropout: float = 0.3
    label_smoothing: float = 0.1
    # Mask items already in the prefix (except the target itself) out of the training softmax.
    # Off by default: in a shop, the next event is often on an item already in the history (viewed,
    # then added to the cart, then bought; consumables bought again), and a model trained with the
    # mask never learns that. Turn it on for catalogs where users never return to an item: on
    # MovieLens-100K (one rating per movie) it is worth +0.013 validation NDCG@10 (bench/quality.py).
    exclude_seen_in_loss: bool = False
    # Stop when validation NDCG@10 has not improved for this many epochs (only with validation data).
    patience: int = 3
    # Loss weight of each prefix ~ (sequence length)^-user_balance: 0 weighs every prefix the same
    # (long histories dominate), 1 gives every user the same total weight (as leave-last-out does).
    user_balance: float = 0.0
    # Extra loss weight for a sequence's most recent prefixes: 1 + recency_boost * 2^(-age/halflife),
    # age = prefixes until the sequence's end. Recent behaviour (and the catalog's recent popularity)
    # is what the next event looks like; 0 weighs all prefixes alike.
    recency_boost: float = 0.0
    recency_halflife: float = 20.0
    # Per-step decay of an exponential moving average of the weights that is exported instead of
    # the last weights (0 = off).
    weight_averaging: float = 0.995
    # Separate embedding table for the last-two-items part of the state (else tied to the items).
    context_embedding: bool = False
    # Training processes each sequence in chunks of this many consecutive prefixes (speed only).
    chunk_length: int = 16
    seed: int = 0

    def state_dim(self) -> int:
        return state_dim_for(self)

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def state_dim_for(hp: Hyperparameters) -> int:
    k, d = len(hp.decays), hp.embedding_dim
    return k * d + k + 2 * d + NUM_EVENT_TYPES + 1


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
        start = self.num_decays * self.dim + self.num_decays
        return slice(start, start + self.dim)

    @property
    def last2(self) -> slice:
        start = self.num_decays * self.dim + self.num_decays + self.dim
        return slice(start, start + self.dim)

    @property
    def last_event(self) -> slice:
        start = self.num_decays * self.dim + self.num_decays + 2 * self.dim
        return slice(start, start + NUM_EVENT_TYPES)

    @property
    def last_strength(self) -> int:
        return self.num_decays * self.dim + self.num_decays + 2 * self.dim + NUM_EVENT_TYPES

    @property
    def size(self) -> int:
        return self.last_strength + 1


@dataclass
class TrainedModel:
    """Trained weights (numpy) plus a numpy reference implementation of the contract."""

    hparams: Hyperparameters
    num_items: int
    weights: dict[str, np.ndarray]
    training_seconds: float = 0.0
    epochs_trained: int = 0
    best_epoch: int = 0
    validation_history: list[dict[str, float]] = field(default_factory=list)

    @property
    def state_dim(self) -> int:
        return state_dim_for(self.hparams)

    @property
    def layout(self) -> StateLayout:
        return StateLayout(len(self.hparams.decays), self.hparams.embedding_dim)

    def initial_state(self) -> np.ndarray:
        return np.zeros(self.state_dim, dtype=np.float32)

    def event_weight(self, event_type: int, strength: float) -> float:
        hp = self.hparams
        weight = hp.event_weights[min(max(int(event_type), 0), NUM_EVENT_TYPES - 1)]
        if hp.strength_power != 0.0:
            weight *= max(float(strength), 0.0) ** hp.strength_power
        return float(weight)

    def update(self, state: np.ndarray, item: int, event_type: int, strength: float) -> np.ndarray:
        """Reference ``update`` in float32 numpy; the exported TFLite must agree with it."""
        state = np.asarray(state, dtype=np.float32)
        if item <= 0 or item >= self.num_items:
            return state.copy()
        lay, hp = self.layout, self.hparams
        emb = self.weights["item_embedding"][item]
        context = context_table(self.weights)[item]
        decays = np.asarray(hp.decays, dtype=np.float32)
        w = np.float32(self.event_weight(event_type, strength))
        new = np.empty_like(state)
        sums = state[lay.sums].reshape(lay.num_decays, lay.dim)
        new[lay.sums] = (decays[:, None] * sums + w * emb[None, :]).reshape(-1)
        new[lay.norms] = decays * state[lay.norms] + np.abs(w)
        new[lay.last2] = state[lay.last1]
        new[lay.last1] = context
        onehot = np.zeros(NUM_EVENT_TYPES, dtype=np.float32)
        onehot[min(max(int(event_type), 0), NUM_EVENT_TYPES - 1)] = 1.0
        new[lay.last_event] = onehot
        new[lay.last_strength] = np.float32(strength)
        return new

    def fold(self, history: Sequence[Interaction]) -> np.ndarray:
        return fold_interactions(self, history)

    def rank(self, state: np.ndarray, exclude: np.ndarray) -> np.ndarray:
        """Reference ``rank`` in numpy."""
        w = self.weights
        features = rank_features_np(np.asarray(state, dtype=np.float32)[None, :], self.layout)
        hidden = np.maximum(features @ w["w1"] + w["b1"], 0.0)
        query = hidden @ w["w2"] + features[:, : w["w_lin"].shape[0]] @ w["w_lin"] + w["b2"]
        scores = (query @ w["item_embedding"].T + w["item_bias"])[0].astype(np.float32)
        return np.where(np.asarray(exclude) > 0.5, np.float32(EXCLUDED_SCORE), scores).astype(np.float32)


def rank_features_np(states: np.ndarray, lay: StateLayout) -> np.ndarray:
    """Numpy twin of :func:`rank_features_tf`."""
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


def rank_features_tf(states: Any, lay: StateLayout) -> Any:
    """The rank head's input: normalised moving averages, last two items, last event, log-counts.

    The embedding-valued features come first (``(num_decays + 2) * dim`` columns) so the linear
    skip path can read exactly those.
    """
    import tensorflow as tf

    n = tf.shape(states)[0]
    sums = tf.reshape(states[:, lay.sums], [n, lay.num_decays, lay.dim])
    norms = states[:, lay.norms]
    means = sums / tf.maximum(norms, 1e-6)[:, :, None]
    return tf.concat(
        [
            tf.reshape(means, [n, lay.num_decays * lay.dim]),
            states[:, lay.last1],
            states[:, lay.last2],
            states[:, lay.last_event],
            states[:, lay.last_strength : lay.last_strength + 1],
            tf.math.log1p(tf.maximum(norms, 0.0)),
        ],
        axis=1,
    )


def feature_dim(lay: StateLayout) -> int:
    return (lay.num_decays + 2) * lay.dim + NUM_EVENT_TYPES + 1 + lay.num_decays


def rank_scores_tf(weights: dict[str, Any], states: Any, lay: StateLayout, dropout_mask: Any = None) -> Any:
    """Scores of every item for a batch of states (no exclusion)."""
    import tensorflow as tf

    features = rank_features_tf(states, lay)
    if dropout_mask is not None:
        features = features * dropout_mask
    emb_cols = (lay.num_decays + 2) * lay.dim
    hidden = tf.nn.relu(tf.matmul(features, weights["w1"]) + weights["b1"])
    query = tf.matmul(hidden, weights["w2"]) + tf.matmul(features[:, :emb_cols], weights["w_lin"])
    query = query + weights["b2"]
    return tf.matmul(query, weights["item_embedding"], transpose_b=True) + weights["item_bias"]


# --------------------------------------------------------------------------------------------------
# Training data: every prefix of every sequence as a sparse combination of embedding rows.


@dataclass
class _Flat:
    """All sequences concatenated, with per-sequence offsets."""

    items: np.ndarray  # int32 [E]
    weights: np.ndarray  # float32 [E] event weight w_j
    event_types: np.ndarray  # int32 [E]
    strengths: np.ndarray  # float32 [E]
    offsets: np.ndarray  # int64 [U+1]


def _flatten(sequences: Sequence[Sequence[Interaction]], hp: Hyperparameters, num_items: int) -> _Flat:
    # Unknown / out-of-vocabulary items never enter the state (update ignores them), so drop them.
    sequences = [[e for e in seq if 0 < e[0] < num_items] for seq in sequences]
    lengths = np.array([len(s) for s in sequences], dtype=np.int64)
    offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
    total = int(offsets[-1])
    items = np.zeros(total, dtype=np.int32)
    event_types = np.zeros(total, dtype=np.int32)
    strengths = np.zeros(total, dtype=np.float32)
    pos = 0
    for seq in sequences:
        for item, event_type, strength in seq:
            items[pos], event_types[pos], strengths[pos] = item, event_type, strength
            pos += 1
    event_types = np.clip(event_types, 0, NUM_EVENT_TYPES - 1)
    weights: np.ndarray = np.asarray(hp.event_weights, dtype=np.float32)[event_types]
    if hp.strength_power != 0.0:
        weights = weights * np.maximum(strengths, 0.0) ** np.float32(hp.strength_power)
    weights = weights.astype(np.float32)
    return _Flat(items, weights, event_types, strengths, offsets)


def _prefix_batch(
    flat: _Flat, rows_user: np.ndarray, rows_end: np.ndarray, hp: Hyperparameters
) -> dict[str, np.ndarray]:
    """Sparse state description for prefixes ``seq[user][: end + 1]`` (end inclusive).

    Returns entry arrays (row, item, per-decay weight) for the decayed sums, the per-decay
    normalisers, and the "last event" fields, exactly as ``update`` folded from zeros would leave them.
    """
    starts = flat.offsets[rows_user]
    lengths = (rows_end + 1).astype(np.int64)
    total = int(lengths.sum())
    row_of_entry = np.repeat(np.arange(len(rows_user), dtype=np.int32), lengths)
    first = np.concatenate([[0], np.cumsum(lengths)[:-1]])
    pos_in_prefix = np.arange(total, dtype=np.int64) - np.repeat(first, lengths)
    flat_index = np.repeat(starts, lengths) + pos_in_prefix
    age = (np.repeat(rows_end, lengths) - pos_in_prefix).astype(np.float64)
    decays = np.asarray(hp.decays, dtype=np.float64)
    decay_pow = np.power(decays[None, :], age[:, None])  # [entries, K]
    w = flat.weights[flat_index].astype(np.float64)
    entry_weights = (decay_pow * w[:, None]).astype(np.float32)
    n = len(rows_user)
    norms = np.zeros((n, len(decays)), dtype=np.float64)
    np.add.at(norms, row_of_entry, decay_pow * np.abs(w)[:, None])
    last_index = starts + rows_end
    last1 = flat.items[last_index]
    prev_index = np.maximum(last_index - 1, 0)
    last2 = np.where(rows_end >= 1, flat.items[prev_index], 0).astype(np.int32)
    return {
        "entry_row": row_of_entry,
        "entry_item": flat.items[flat_index],
        "entry_weight": entry_weights,
        "norms": norms.astype(np.float32),
        "last1": last1.astype(np.int32),
        "last2": last2,
        "last_event": flat.event_types[last_index],
        "last_strength": flat.strengths[last_index],
    }


def _states_tf(weights: dict[str, Any], batch: dict[str, Any], lay: StateLayout) -> Any:
    """Assemble the flat state vectors of a prefix batch from the sparse description."""
    import tensorflow as tf

    emb = weights["item_embedding"]
    n = tf.shape(batch["last1"])[0]
    gathered = tf.gather(emb, batch["entry_item"])  # [entries, D]
    weighted = gathered[:, None, :] * batch["entry_weight"][:, :, None]  # [entries, K, D]
    sums = tf.math.unsorted_segment_sum(weighted, batch["entry_row"], n)  # [n, K, D]
    known1 = tf.cast(batch["last1"] > 0, tf.float32)[:, None]
    known2 = tf.cast(batch["last2"] > 0, tf.float32)[:, None]
    return tf.concat(
        [
            tf.reshape(sums, [n, lay.num_decays * lay.dim]),
            batch["norms"],
            tf.gather(context_table(weights), batch["last1"]) * known1,
            tf.gather(context_table(weights), batch["last2"]) * known2,
            tf.one_hot(batch["last_event"], NUM_EVENT_TYPES, dtype=tf.float32),
            batch["last_strength"][:, None],
        ],
        axis=1,
    )


def context_table(weights: dict[str, Any]) -> Any:
    """Embeddings the state stores for the last two items: their own table with
    ``Hyperparameters.context_embedding`` (transitions need not look like taste), else the tied one."""
    return weights["context_embedding"] if "context_embedding" in weights else weights["item_embedding"]


def _init_weights(num_items: int, hp: Hyperparameters, rng: np.random.Generator) -> dict[str, np.ndarray]:
    lay = StateLayout(len(hp.decays), hp.embedding_dim)
    d, h, f = hp.embedding_dim, hp.hidden_dim, feature_dim(lay)
    emb_cols = (lay.num_decays + 2) * d

    def glorot(fan_in: int, fan_out: int) -> np.ndarray:
        limit = math.sqrt(6.0 / (fan_in + fan_out))
        return rng.uniform(-limit, limit, size=(fan_in, fan_out)).astype(np.float32)

    weights = {
        "item_embedding": (rng.normal(0.0, 1.0 / math.sqrt(d), size=(num_items, d))).astype(np.float32),
        "item_bias": np.zeros(num_items, dtype=np.float32),
        "w1": glorot(f, h),
        "b1": np.zeros(h, dtype=np.float32),
        "w2": glorot(h, d) * 0.5,
        "b2": np.zeros(d, dtype=np.float32),
        "w_lin": glorot(emb_cols, d) * 0.5,
    }
    if hp.context_embedding:
        weights["context_embedding"] = rng.normal(0.0, 1.0 / math.sqrt(d), size=(num_items, d)).astype(
            np.float32
        )
    return weights


def _sequences_ok(sequences: Sequence[Sequence[Interaction]], num_items: int) -> None:
    for seq in sequences:
        for item, _event_type, _strength in seq:
            if not 1 <= item < num_items:
                raise ValueError(f"item index {item} outside 1..{num_items - 1}")


def _decay_matrices(hp: Hyperparameters, chunk: int) -> tuple[np.ndarray, np.ndarray]:
    """``inner[k, t, j] = d_k^(t-j)`` for j <= t (else 0) and ``carry[k, t] = d_k^(t+1)``."""
    decays = np.asarray(hp.decays, dtype=np.float64)[:, None, None]
    t = np.arange(chunk)[:, None]
    j = np.arange(chunk)[None, :]
    inner = np.where(j <= t, decays ** np.maximum(t - j, 0), 0.0)
    carry = decays[:, :, 0] ** (np.arange(chunk)[None, :] + 1)
    return inner.astype(np.float32), carry.astype(np.float32)


def _chunk_table(flat: _Flat, chunk: int) -> tuple[np.ndarray, np.ndarray]:
    """(sequence, start) of every training chunk: up to ``chunk`` consecutive prefixes ending at
    positions start .. start+chunk-1 of one sequence, each predicting the following item."""
    users, starts = [], []
    for u in range(len(flat.offsets) - 1):
        length = int(flat.offsets[u + 1] - flat.offsets[u])
        begin = np.arange(0, max(length - 1, 0), chunk, dtype=np.int64)
        users.append(np.full(len(begin), u, dtype=np.int64))
        starts.append(begin)
    return np.concatenate(users), np.concatenate(starts)


def _chunk_batch(
    flat: _Flat, chunk_user: np.ndarray, chunk_start: np.ndarray, chunk: int, hp: Hyperparameters
) -> dict[str, np.ndarray]:
    """Inputs for the prefixes of a batch of chunks.

    The state at position ``start + t`` is ``d^(t+1) * carry + sum_{j<=t} d^(t-j) w_j E[item_j]``,
    where ``carry`` is the state just before the chunk. ``carry`` comes from a sparse list of
    (chunk, item, per-decay weight) entries over the whole earlier history (no truncation), the
    in-chunk part from a small dense [chunk x chunk] decay matrix, so each prefix costs O(chunk)
    instead of O(history).
    """
    offsets = flat.offsets[chunk_user]
    lengths = flat.offsets[chunk_user + 1] - offsets
    t = np.arange(chunk, dtype=np.int64)[None, :]
    position = chunk_start[:, None] + t
    in_seq = position < lengths[:, None]
    has_target = position + 1 < lengths[:, None]
    index = np.where(in_seq, offsets[:, None] + position, 0)
    items = np.where(in_seq, flat.items[index], 0).astype(np.int32)
    weights = np.where(in_seq, flat.weights[index], 0.0).astype(np.float32)
    balance = np.power(np.maximum(lengths - 1, 1).astype(np.float64), -hp.user_balance)
    age = (lengths[:, None] - 2 - position).clip(0).astype(np.float64)
    recency = 1.0 + hp.recency_boost * np.power(0.5, age / hp.recency_halflife)
    loss_weight = np.where(has_target, balance[:, None] * recency, 0.0).astype(np.float32)
    target_index = np.where(has_target, offsets[:, None] + position + 1, 0)
    targets = np.where(has_target, flat.items[target_index], 0).astype(np.int32)

    # Carry entries: every earlier event of the sequence, weighted d^(start-1-j) * w_j.
    counts = chunk_start.astype(np.int64)
    total = int(counts.sum())
    entry_row = np.repeat(np.arange(len(chunk_user), dtype=np.int32), counts)
    first = np.concatenate([[0], np.cumsum(counts)[:-1]]).astype(np.int64)
    j = np.arange(total, dtype=np.int64) - np.repeat(first, counts)
    entry_index = np.repeat(offsets, counts) + j
    age = np.repeat(chunk_start - 1, counts) - j
    decay_pow = np.power(np.asarray(hp.decays, dtype=np.float64)[None, :], age[:, None].astype(np.float64))
    w = flat.weights[entry_index].astype(np.float64)
    carry_norms = np.stack(
        [
            np.bincount(entry_row, weights=decay_pow[:, k] * np.abs(w), minlength=len(chunk_user))
            for k in range(len(hp.decays))
        ],
        axis=1,
    )
    before = np.where(chunk_start >= 1, offsets + chunk_start - 1, 0)
    return {
        "items": items,
        "weights": weights,
        "event_types": np.where(in_seq, flat.event_types[index], 0).astype(np.int32),
        "strengths": np.where(in_seq, flat.strengths[index], 0.0).astype(np.float32),
        "targets": targets,
        "has_target": has_target,
        "loss_weight": loss_weight,
        "entry_row": entry_row,
        "entry_item": flat.items[entry_index].astype(np.int32),
        "entry_weight": (decay_pow * w[:, None]).astype(np.float32),
        "carry_norms": carry_norms.astype(np.float32),
        "item_before": np.where(chunk_start >= 1, flat.items[before], 0).astype(np.int32),
    }


def _chunk_states_tf(
    weights: dict[str, Any], batch: dict[str, Any], lay: StateLayout, inner: Any, carry_pow: Any
) -> Any:
    """State vectors [chunks, chunk, state_dim] for every prefix of a chunk batch."""
    import tensorflow as tf

    emb = weights["item_embedding"]
    n = tf.shape(batch["items"])[0]
    chunk = inner.shape[1]
    item_emb = tf.gather(emb, batch["items"])  # [B, C, D]
    weighted = item_emb * batch["weights"][:, :, None]
    gathered = tf.gather(emb, batch["entry_item"])  # [entries, D]
    carry = tf.math.unsorted_segment_sum(
        gathered[:, None, :] * batch["entry_weight"][:, :, None], batch["entry_row"], n
    )  # [B, K, D]
    sums = (
        tf.einsum("ktj,bjd->btkd", inner, weighted)
        + tf.transpose(carry_pow)[None, :, :, None] * carry[:, None, :, :]
    )
    abs_w = tf.abs(batch["weights"])
    norms = (
        tf.einsum("ktj,bj->btk", inner, abs_w) + tf.transpose(carry_pow)[None] * batch["carry_norms"][:, None]
    )
    known_before = tf.cast(batch["item_before"] > 0, tf.float32)[:, None, None]
    context = context_table(weights)
    before = tf.gather(context, batch["item_before"])[:, None, :] * known_before
    item_context = tf.gather(context, batch["items"])  # [B, C, D]
    last2 = tf.concat([before, item_context[:, :-1, :]], axis=1)
    return tf.concat(
        [
            tf.reshape(sums, [n, chunk, lay.num_decays * lay.dim]),
            norms,
            item_context,
            last2,
            tf.one_hot(batch["event_types"], NUM_EVENT_TYPES, dtype=tf.float32),
            batch["strengths"][:, :, None],
        ],
        axis=2,
    )


def train(
    sequences: Sequence[Sequence[Interaction]],
    num_items: int,
    hparams: Hyperparameters | None = None,
    validation: tuple[Sequence[Sequence[Interaction]], Sequence[int]] | None = None,
    log: Callable[[str], None] | None = None,
) -> TrainedModel:
    """Train on next-item prediction over every prefix of every sequence.

    ``num_items`` counts index 0 (unknown item). ``validation`` = (histories, next items): when
    given, NDCG@10 on it (full ranking, TF reference; seen items excluded when
    ``exclude_seen_in_loss``) is measured after every epoch, training stops after ``patience``
    epochs without improvement and the best epoch's weights are kept.
    """
    import tensorflow as tf

    hp = hparams or Hyperparameters()
    _sequences_ok(sequences, num_items)
    started = time.perf_counter()
    rng = np.random.default_rng(hp.seed)
    lay = StateLayout(len(hp.decays), hp.embedding_dim)
    flat = _flatten(sequences, hp, num_items)
    chunk = hp.chunk_length
    chunk_user, chunk_start = _chunk_table(flat, chunk)
    if len(chunk_user) == 0:
        raise ValueError("need at least one sequence with two or more interactions")
    chunks_per_batch = max(1, hp.batch_size // chunk)
    all_weights = _chunk_batch(flat, chunk_user, chunk_start, chunk, hp)["loss_weight"]
    mean_loss_weight = float(all_weights.sum() / max(np.count_nonzero(all_weights), 1))
    inner_np, carry_np = _decay_matrices(hp, chunk)
    inner, carry_pow = tf.constant(inner_np), tf.constant(carry_np)

    init = _init_weights(num_items, hp, rng)
    names = sorted(init)
    variables = {name: tf.Variable(init[name], name=name) for name in names}
    slots_m = {name: tf.Variable(tf.zeros_like(init[name])) for name in names}
    slots_v = {name: tf.Variable(tf.zeros_like(init[name])) for name in names}
    step = tf.Variable(0, dtype=tf.int64)
    # Exponential moving average of the weights (Polyak averaging); what gets exported when enabled.
    averaged = {name: tf.Variable(init[name]) for name in names} if hp.weight_averaging > 0 else variables
    averaging_decay = float(hp.weight_averaging)
    steps_per_epoch = max(1, math.ceil(len(chunk_user) / chunks_per_batch))
    total_steps = steps_per_epoch * hp.epochs
    feature_width = feature_dim(lay)
    decay_names = {"item_embedding", "context_embedding", "w1", "w2", "w_lin"}  # no weight decay on biases
    k_decays = lay.num_decays

    chunk_spec = {
        "items": tf.TensorSpec([None, chunk], tf.int32),
        "weights": tf.TensorSpec([None, chunk], tf.float32),
        "event_types": tf.TensorSpec([None, chunk], tf.int32),
        "strengths": tf.TensorSpec([None, chunk], tf.float32),
        "targets": tf.TensorSpec([None, chunk], tf.int32),
        "has_target": tf.TensorSpec([None, chunk], tf.bool),
        "loss_weight": tf.TensorSpec([None, chunk], tf.float32),
        "entry_row": tf.TensorSpec([None], tf.int32),
        "entry_item": tf.TensorSpec([None], tf.int32),
        "entry_weight": tf.TensorSpec([None, k_decays], tf.float32),
        "carry_norms": tf.TensorSpec([None, k_decays], tf.float32),
        "item_before": tf.TensorSpec([None], tf.int32),
    }

    @tf.function(input_signature=[chunk_spec], reduce_retracing=True)
    def train_step(batch: dict[str, Any]) -> Any:
        step.assign_add(1)
        t = tf.cast(step, tf.float32)
        # Linear warm-up then cosine decay: stable, and no schedule to tune per data set.
        warm = tf.minimum(1.0, t / tf.maximum(1.0, 0.05 * total_steps))
        lr = hp.learning_rate * warm * 0.5 * (1.0 + tf.cos(math.pi * tf.minimum(1.0, t / total_steps)))
        valid = batch["has_target"]
        targets = tf.boolean_mask(batch["targets"], valid)
        n = tf.shape(targets)[0]
        keep = 1.0 - hp.dropout
        noise = tf.random.stateless_uniform(
            [n, feature_width], seed=tf.stack([tf.constant(hp.seed, tf.int64), step])
        )
        mask = tf.cast(noise < keep, tf.float32) / keep if hp.dropout > 0 else None
        with tf.GradientTape() as tape:
            states = tf.boolean_mask(_chunk_states_tf(variables, batch, lay, inner, carry_pow), valid)
            logits = rank_scores_tf(variables, states, lay, dropout_mask=mask)
            allowed = tf.ones_like(logits)
            if hp.exclude_seen_in_loss:
                b = tf.shape(batch["items"])[0]
                idx = tf.stack([batch["entry_row"], batch["entry_item"]], axis=1)
                seen_before = tf.scatter_nd(idx, tf.ones_like(batch["entry_row"], tf.float32), [b, num_items])
                seen_in_chunk = tf.cumsum(tf.one_hot(batch["items"], num_items, dtype=tf.float32), axis=1)
                seen = tf.boolean_mask(seen_before[:, None, :] + seen_in_chunk, valid)
                is_target = tf.one_hot(targets, num_items, dtype=tf.float32)
                allowed = tf.where((seen > 0) & (is_target < 0.5), 0.0, 1.0)
                logits = tf.where(allowed > 0, logits, -1e9)
            logp = tf.nn.log_softmax(logits, axis=1)
            nll = -tf.gather(logp, targets, batch_dims=1)
            smooth = -tf.reduce_sum(logp * allowed, axis=1) / tf.reduce_sum(allowed, axis=1)
            # Normalised so the average prefix weighs 1 whatever user_balance is: same learning rate.
            loss_weight = tf.boolean_mask(batch["loss_weight"], valid) / mean_loss_weight
            per_prefix = (1.0 - hp.label_smoothing) * nll + hp.label_smoothing * smooth
            loss = tf.reduce_sum(per_prefix * loss_weight) / tf.cast(n, tf.float32)
        grads = tape.gradient(loss, [variables[k] for k in names])
        b1, b2, eps = 0.9, 0.999, 1e-8
        for name, grad in zip(names, grads, strict=True):
            grad = tf.convert_to_tensor(grad)
            var, m, v = variables[name], slots_m[name], slots_v[name]
            m.assign(b1 * m + (1 - b1) * grad)
            v.assign(b2 * v + (1 - b2) * tf.square(grad))
            m_hat = m / (1 - tf.pow(b1, t))
            v_hat = v / (1 - tf.pow(b2, t))
            update = m_hat / (tf.sqrt(v_hat) + eps)
            if name in decay_names:
                update = update + hp.weight_decay * var
            var.assign_sub(lr * update)
            if hp.weight_averaging > 0:
                # Averages over the steps so far at first, then over the last ~1/(1 - decay) steps,
                # never more than the last ~10% of training (short runs would keep early weights).
                decay = tf.minimum(
                    tf.minimum(averaging_decay, (t - 1.0) / t), max(0.0, 1.0 - 10.0 / total_steps)
                )
                averaged[name].assign(decay * averaged[name] + (1.0 - decay) * var)
        return loss

    prefix_spec = {
        "entry_row": tf.TensorSpec([None], tf.int32),
        "entry_item": tf.TensorSpec([None], tf.int32),
        "entry_weight": tf.TensorSpec([None, k_decays], tf.float32),
        "norms": tf.TensorSpec([None, k_decays], tf.float32),
        "last1": tf.TensorSpec([None], tf.int32),
        "last2": tf.TensorSpec([None], tf.int32),
        "last_event": tf.TensorSpec([None], tf.int32),
        "last_strength": tf.TensorSpec([None], tf.float32),
    }

    @tf.function(input_signature=[prefix_spec], reduce_retracing=True)
    def score_batch(batch: dict[str, Any]) -> Any:
        return rank_scores_tf(averaged, _states_tf(averaged, batch, lay), lay)

    def snapshot() -> dict[str, np.ndarray]:
        return {k: v.numpy().copy() for k, v in averaged.items()}

    best = -1.0
    best_weights = snapshot()
    best_epoch, epochs_done, stale = 0, 0, 0
    history: list[dict[str, float]] = []
    for epoch in range(1, hp.epochs + 1):
        order = rng.permutation(len(chunk_user))
        losses = []
        for begin in range(0, len(order), chunks_per_batch):
            rows = order[begin : begin + chunks_per_batch]
            batch = _chunk_batch(flat, chunk_user[rows], chunk_start[rows], chunk, hp)
            losses.append(float(train_step(batch)))
        epochs_done = epoch
        record = {"epoch": float(epoch), "loss": float(np.mean(losses))}
        if validation is not None:
            ndcg = _ndcg_at_10_tf(validation[0], validation[1], hp, num_items, score_batch)
            record["valid_ndcg@10"] = ndcg
            if ndcg > best:
                best, best_epoch, stale = ndcg, epoch, 0
                best_weights = snapshot()
            else:
                stale += 1
        else:
            best_epoch = epoch
        history.append(record)
        if log:
            log(f"epoch {epoch}: " + ", ".join(f"{k}={v:.4f}" for k, v in record.items() if k != "epoch"))
        if validation is not None and stale >= hp.patience:
            break
    if validation is None:
        best_weights = snapshot()

    return TrainedModel(
        hparams=hp,
        num_items=num_items,
        weights=best_weights,
        training_seconds=time.perf_counter() - started,
        epochs_trained=epochs_done,
        best_epoch=best_epoch,
        validation_history=history,
    )


def _ndcg_at_10_tf(
    histories: Sequence[Sequence[Interaction]],
    targets: Sequence[int],
    hp: Hyperparameters,
    num_items: int,
    score_batch: Callable[[dict[str, Any]], Any],
) -> float:
    """Early-stopping metric: NDCG@10, full ranking, index 0 (and seen items, see train) excluded."""
    flat = _flatten(histories, hp, num_items)
    users = np.array([u for u, h in enumerate(histories) if len(h) > 0], dtype=np.int64)
    total = 0.0
    for start in range(0, len(users), 256):
        chunk = users[start : start + 256]
        ends = (flat.offsets[chunk + 1] - flat.offsets[chunk] - 1).astype(np.int64)
        batch = _prefix_batch(flat, chunk, ends, hp)
        scores = np.array(score_batch(batch))
        target = np.asarray([targets[u] for u in chunk])
        target_scores = scores[np.arange(len(chunk)), target].copy()
        scores[:, 0] = -np.inf
        if hp.exclude_seen_in_loss:  # same protocol as the benchmark for no-repeat catalogs
            scores[batch["entry_row"], batch["entry_item"]] = -np.inf
        rank = (scores > target_scores[:, None]).sum(axis=1)
        total += float(np.where(rank < 10, 1.0 / np.log2(rank + 2.0), 0.0).sum())
    return total / max(1, len(histories))
