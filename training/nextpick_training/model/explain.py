"""The `explain` signature's graph (docs/model-contract.md, docs/explanations.md): how much each history
slot adds to each pick's score, computed by the model itself as an exact leave-one-slot-out.

The state's decayed sums and their normalisers are sums of per-event terms (`update` adds
``w_e V[item_e]`` and decays the rest), so the model can take one item's events out of the state: it
refolds the shopper's recent steps (the ones serving keeps to replay a state, at most 50) without them,
in one vectorised pass, and keeps whatever the state holds from before those steps as it is. The slot
leaves the history input too (item 0, features 0: padding). The pick is then scored by the very graph
`rank` runs (query, repeat head, mixture), for the full state and for the H variants at once, so a
slot's contribution is exactly ``rank(full)[pick] - rank(without slot)[pick]``: nothing is estimated."""

from __future__ import annotations

from typing import Any

import tensorflow as tf

from nextpick.domain.history import NUM_HISTORY_FEATURES as NUM_FEATURES

from .graph import mixture_scores, query, repeat_scores
from .reference import NUM_EVENT_TYPES, StateLayout


def states_without_each_item(
    state: Any,
    removed: Any,
    recent: dict[str, Any],
    vectors: Any,
    decays: Any,
    event_weights: Any,
    num_items: int,
    lay: StateLayout,
) -> Any:
    """[B, state_dim]: `state` with the recent steps of item `removed[b]` refolded away (-1: none).

    `recent` holds the steps oldest first: `items` [R] (0 = padding or unknown: `update` skips those
    too), `event_types` [R], `strengths` [R]."""
    items = recent["items"]
    known = (items > 0) & (items < num_items)
    safe_items = tf.where(known, items, 0)
    keep = tf.cast(
        tf.expand_dims(known, 0) & (tf.expand_dims(items, 0) != tf.expand_dims(removed, 1)), tf.float32
    )  # [B, R]
    # Steps kept after each step: how many times `update` decayed its term.
    after = tf.cumsum(keep, axis=1, exclusive=True, reverse=True)  # [B, R]
    types = tf.clip_by_value(recent["event_types"], 0, NUM_EVENT_TYPES - 1)
    w = tf.gather(event_weights, types)  # [R]
    decay_powers = tf.pow(tf.reshape(decays, [1, -1, 1]), tf.expand_dims(after, 1))  # [B, K, R]
    coefficients = tf.expand_dims(keep, 1) * decay_powers  # [B, K, R]
    step_vectors = tf.gather(vectors, safe_items)  # [R, D]
    recent_sums = tf.einsum("bkr,r,rd->bkd", coefficients, w, step_vectors)
    recent_norms = tf.einsum("bkr,r->bk", coefficients, tf.abs(w))
    # What the state holds from before the recent steps stays as it is (already decayed by d^R).
    sums = tf.reshape(state[lay.sums], [lay.num_decays, lay.dim])
    all_kept = tf.cast(known, tf.float32)
    all_after = tf.cumsum(all_kept, exclusive=True, reverse=True)
    all_coefficients = tf.expand_dims(all_kept, 0) * tf.pow(
        tf.expand_dims(decays, 1), tf.expand_dims(all_after, 0)
    )  # [K, R]
    older_sums = sums - tf.einsum("kr,r,rd->kd", all_coefficients, w, step_vectors)
    older_norms = state[lay.norms] - tf.einsum("kr,r->k", all_coefficients, tf.abs(w))
    # The last two kept steps give last1/last2, the last one the event type and strength.
    position = tf.expand_dims(tf.range(1, tf.shape(items)[0] + 1, dtype=tf.float32), 0) * keep  # [B, R]
    last = tf.argmax(position, axis=1, output_type=tf.int32)
    has_last = tf.reduce_max(position, axis=1) > 0
    before_last = position * (1.0 - tf.one_hot(last, tf.shape(items)[0]))
    second = tf.argmax(before_last, axis=1, output_type=tf.int32)
    has_second = tf.reduce_max(before_last, axis=1) > 0
    has1 = tf.expand_dims(tf.cast(has_last, tf.float32), 1)
    has2 = tf.expand_dims(tf.cast(has_second, tf.float32), 1)
    b = tf.shape(removed)[0]
    return tf.concat(
        [
            tf.reshape(tf.expand_dims(older_sums, 0) + recent_sums, [b, lay.num_decays * lay.dim]),
            tf.expand_dims(older_norms, 0) + recent_norms,
            tf.gather(step_vectors, last) * has1,
            tf.gather(step_vectors, second) * has2,
            tf.one_hot(tf.gather(types, last), NUM_EVENT_TYPES, dtype=tf.float32) * has1,
            tf.expand_dims(tf.gather(recent["strengths"], last), 1) * has1,
        ],
        axis=1,
    )


def slot_contributions(
    weights: dict[str, Any],
    tables: dict[str, Any],
    state: Any,
    history_items: Any,
    history_features: Any,
    recent: dict[str, Any],
    picks: Any,
    constants: dict[str, Any],
    lay: StateLayout,
) -> Any:
    """[P, H]: each pick's score minus its score with history slot h taken out (0 for padding slots).

    `constants` holds `decays` and `event_weights` (the hyperparameters `update` folds with)."""
    num_items = int(tables["vectors"].shape[0])
    slots = int(history_items.shape[0])
    items = tf.clip_by_value(history_items, 0, num_items - 1)
    present = tf.gather(history_features, NUM_FEATURES - 1, axis=1) > 0.5
    # Variant 0 is the shopper as they are; variant h + 1 lacks slot h (a padding slot removes nothing).
    removed = tf.concat([tf.constant([-1], tf.int32), tf.where(present, items, -1)], axis=0)
    variants = states_without_each_item(
        state,
        removed,
        recent,
        tables["vectors"],
        constants["decays"],
        constants["event_weights"],
        num_items,
        lay,
    )
    # A variant whose item has no recent step is the state exactly as given (so is variant 0: what `rank`
    # scored), whatever the state holds from before the recent steps.
    touched = tf.reduce_any(
        tf.expand_dims(recent["items"], 0) == tf.expand_dims(removed, 1), axis=1
    )  # [H + 1]
    states = tf.where(tf.expand_dims(touched, 1), variants, tf.expand_dims(state, 0))
    keep_slot = tf.concat([tf.ones([1, slots]), 1.0 - tf.eye(slots)], axis=0)  # [H + 1, H]
    variant_items = tf.expand_dims(items, 0) * tf.cast(keep_slot, tf.int32)
    variant_features = tf.expand_dims(history_features, 0) * tf.expand_dims(keep_slot, 2)
    q = query(weights, states, lay)
    explore = tf.matmul(q, tables["vectors"], transpose_b=True) + tf.expand_dims(tables["bias"], 0)
    repeat = repeat_scores(weights, tf.gather(tables["repeat"], variant_items), variant_features)
    scores = mixture_scores(weights, explore, repeat, variant_items, variant_features)  # [H + 1, N]
    picked = tf.gather(scores, tf.clip_by_value(picks, 0, num_items - 1), axis=1)  # [H + 1, P]
    drops = picked[:1] - picked[1:]  # [H, P]
    return tf.transpose(drops * tf.expand_dims(tf.cast(present, tf.float32), 1))
