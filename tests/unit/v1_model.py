"""A contract-v1 model (state-only `rank`), as releases before contract v2 published: serving must keep
reading such models until none is live. Random weights; only the signatures matter."""

from __future__ import annotations

import tempfile
from typing import Any

import numpy as np

V1_STATE_DIM = 8


def export_v1_model(items: list[str | None], seed: int = 0) -> tuple[bytes, int]:
    """(tflite bytes, state_dim) of a v1 model: update(state, item, event_type, strength), rank(state, exclude)."""
    import tensorflow as tf

    num_items = len(items)
    table = tf.constant(np.random.default_rng(seed).normal(size=(num_items, V1_STATE_DIM)).astype(np.float32))

    class V1(tf.Module):
        @tf.function(
            input_signature=[
                tf.TensorSpec([V1_STATE_DIM], tf.float32, name="state"),
                tf.TensorSpec([], tf.int32, name="item"),
                tf.TensorSpec([], tf.int32, name="event_type"),
                tf.TensorSpec([], tf.float32, name="strength"),
            ]
        )
        def update(self, state: Any, item: Any, event_type: Any, strength: Any) -> dict[str, Any]:
            known = tf.logical_and(item > 0, item < num_items)
            new = 0.5 * state + strength * tf.gather(table, tf.where(known, item, 0))
            return {"state": tf.where(known, new, state)}

        @tf.function(
            input_signature=[
                tf.TensorSpec([V1_STATE_DIM], tf.float32, name="state"),
                tf.TensorSpec([num_items], tf.float32, name="exclude"),
            ]
        )
        def rank(self, state: Any, exclude: Any) -> dict[str, Any]:
            scores = tf.linalg.matvec(table, state)
            return {"scores": tf.where(exclude > 0.5, tf.constant(-1e10, tf.float32), scores)}

    module = V1()
    with tempfile.TemporaryDirectory() as tmp:
        tf.saved_model.save(module, tmp, signatures={"update": module.update, "rank": module.rank})
        converter = tf.lite.TFLiteConverter.from_saved_model(tmp, signature_keys=["update", "rank"])
        return bytes(converter.convert()), V1_STATE_DIM
