"""The model's TensorFlow graph pieces, shared by training (batches) and export (one shopper).

Each function mirrors its numpy twin in `reference.py`; the tests hold the two within 1e-4."""

from __future__ import annotations

from typing import Any

import tensorflow as tf

from .reference import LOG_ZERO, NUM_EVENT_TYPES, StateLayout


def item_rows(
    weights: dict[str, Any],
    token_buckets: Any,
    token_weights: Any,
    items: Any,
    id_dropout: float = 0.0,
    generator: Any = None,
) -> dict[str, Any]:
    """Vectors, biases and repeat propensities of `items` (any shape): id part + mean of token parts.

    With `id_dropout` (training only), that share of the rows of items that have attribute tokens
    lose their id part, so the token embeddings alone must place an item: what a new item, or one
    with few events, has to rely on (DropoutNet's idea)."""
    buckets = tf.gather(token_buckets, items)  # [..., T]
    w = tf.gather(token_weights, items)  # [..., T]
    id_vectors = tf.gather(weights["id_embedding"], items)
    id_bias = tf.gather(weights["id_bias"], items)
    id_repeat = tf.gather(weights["id_repeat"], items)
    if id_dropout > 0:
        # Training passes its checkpointed `tf.random.Generator`, so a resumed run draws the same noise.
        noise = (
            generator.uniform(tf.shape(items))
            if generator is not None
            else tf.random.uniform(tf.shape(items))
        )
        dropped = (noise < id_dropout) & (tf.reduce_sum(w, axis=-1) > 0)
        keep = 1.0 - tf.cast(dropped, tf.float32)
        id_vectors, id_bias, id_repeat = id_vectors * keep[..., None], id_bias * keep, id_repeat * keep
    vectors = id_vectors + tf.reduce_sum(
        tf.gather(weights["token_embedding"], buckets) * w[..., None], axis=-2
    )
    bias = id_bias + tf.reduce_sum(tf.gather(weights["token_bias"], buckets) * w, -1)
    repeat = id_repeat + tf.reduce_sum(tf.gather(weights["token_repeat"], buckets) * w, -1)
    return {"vectors": vectors, "bias": bias, "repeat": repeat}


def states_from_entries(item_vectors: Any, batch: dict[str, Any], lay: StateLayout) -> Any:
    """Flat state vectors of a prefix batch from its sparse description (`batches.prefix_state_entries`).

    `item_vectors(indices)` returns the vectors of the given item indices."""
    n = tf.shape(batch["last1"])[0]
    gathered = item_vectors(batch["entry_item"])  # [entries, D]
    weighted = gathered[:, None, :] * batch["entry_weight"][:, :, None]  # [entries, K, D]
    sums = tf.math.unsorted_segment_sum(weighted, batch["entry_row"], n)  # [n, K, D]
    known1 = tf.cast(batch["last1"] > 0, tf.float32)[:, None]
    known2 = tf.cast(batch["last2"] > 0, tf.float32)[:, None]
    return tf.concat(
        [
            tf.reshape(sums, [n, lay.num_decays * lay.dim]),
            batch["norms"],
            item_vectors(batch["last1"]) * known1,
            item_vectors(batch["last2"]) * known2,
            tf.one_hot(batch["last_event"], NUM_EVENT_TYPES, dtype=tf.float32),
            batch["last_strength"][:, None],
        ],
        axis=1,
    )


def rank_features(states: Any, lay: StateLayout) -> Any:
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


def query(weights: dict[str, Any], states: Any, lay: StateLayout, dropout_mask: Any = None) -> Any:
    """[B, D] query vectors: a linear map plus a one-hidden-layer MLP of the rank features."""
    features = rank_features(states, lay)
    if dropout_mask is not None:
        features = features * dropout_mask
    emb_cols = (lay.num_decays + 2) * lay.dim
    hidden = tf.nn.relu(tf.matmul(features, weights["w1"]) + weights["b1"])
    linear = tf.matmul(features[:, :emb_cols], weights["w_lin"])
    return tf.matmul(hidden, weights["w2"]) + linear + weights["b2"]


def repeat_scores(weights: dict[str, Any], item_repeat: Any, features: Any) -> Any:
    """[B, H] "again" terms: per-item propensity plus an MLP of the slot and its shopper's summary."""
    present = features[:, :, -1:]
    count = tf.reduce_sum(present, axis=1, keepdims=True)
    mean = tf.reduce_sum(features * present, axis=1, keepdims=True) / tf.maximum(count, 1.0)
    h = tf.shape(features)[1]
    x = tf.concat([features, tf.repeat(mean, h, axis=1), tf.repeat(tf.math.log1p(count), h, axis=1)], axis=2)
    hidden = tf.nn.relu(tf.einsum("bhf,fr->bhr", x, weights["r1"]) + weights["rb1"])
    linear = tf.einsum("bhf,fo->bho", x, weights["r_lin"])
    score = (
        (tf.einsum("bhr,ro->bho", hidden, weights["r2"]) + linear)[:, :, 0] + weights["rb2"][0] + item_repeat
    )
    return score * features[:, :, -1]


def gate_logits(weights: dict[str, Any], features: Any) -> Any:
    """[B] logit of P(the next item is one of the shopper's history items)."""
    present = features[:, :, -1:]
    count = tf.reduce_sum(present, axis=1)  # [B, 1]
    mean = tf.reduce_sum(features * present, axis=1) / tf.maximum(count, 1.0)
    x = tf.concat([mean, tf.math.log1p(count)], axis=1)
    return tf.matmul(x, weights["g_w"])[:, 0] + weights["g_b"][0]


def log_sigmoid(x: Any) -> Any:
    return -tf.nn.softplus(-x)


def mixture_scores(weights: dict[str, Any], explore: Any, repeat: Any, items: Any, features: Any) -> Any:
    """[B, N] log P(item) of the repeat-explore mixture (numpy twin: `mixture_scores_np`)."""
    b, n = tf.shape(explore)[0], tf.shape(explore)[1]
    present = features[:, :, -1] > 0.5  # [B, H]
    rows = tf.repeat(tf.range(b)[:, None], tf.shape(items)[1], axis=1)
    index = tf.stack([tf.reshape(rows, [-1]), tf.reshape(items, [-1])], axis=1)
    in_history = tf.scatter_nd(index, tf.reshape(tf.cast(present, tf.float32), [-1]), tf.shape(explore)) > 0.5
    in_history = in_history | (tf.range(n)[None, :] == 0)
    log_explore = explore - tf.reduce_logsumexp(
        tf.where(in_history, LOG_ZERO * 100.0, explore), axis=1, keepdims=True
    )
    has_history = tf.reduce_any(present, axis=1)  # [B]
    gate = gate_logits(weights, features)
    log_repeat = repeat - tf.reduce_logsumexp(
        tf.where(present, repeat, LOG_ZERO * 100.0), axis=1, keepdims=True
    )
    repeat_side = tf.where(present, log_sigmoid(gate)[:, None] + log_repeat, 0.0)
    explore_side = tf.where(has_history[:, None], log_sigmoid(-gate)[:, None], 0.0) + log_explore
    # History items take their repeat-side score (padding slots point at index 0 and add nothing).
    history_scores = tf.scatter_nd(index, tf.reshape(repeat_side, [-1]), tf.shape(explore))
    return tf.where(in_history & (tf.range(n)[None, :] > 0), history_scores, explore_side)
