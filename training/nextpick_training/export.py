"""Export a :class:`TrainedModel` to the serving contract (TFLite, signatures ``update`` and ``rank``).

Evaluation always scores through the exported bytes (:data:`ExportedModel`), so what we measure is
what serving runs.
"""

from __future__ import annotations

import tempfile
from typing import Any

import numpy as np

from nextpick.adapters.litert_model import ContractRunner

from .model import EXCLUDED_SCORE, NUM_EVENT_TYPES, TrainedModel, context_table, rank_scores_tf

# Training scores exported bytes with serving's own runner (no manifest needed); re-exported so the
# training side has one name for "the exported model": ExportedModel(tflite_bytes).
ExportedModel = ContractRunner


def _build_module(model: TrainedModel) -> Any:
    import tensorflow as tf

    hp, lay = model.hparams, model.layout
    num_items, state_dim = model.num_items, model.state_dim
    weights = {name: tf.constant(value, dtype=tf.float32) for name, value in model.weights.items()}
    decays = tf.constant(np.asarray(hp.decays, dtype=np.float32))
    event_weights = tf.constant(np.asarray(hp.event_weights, dtype=np.float32))
    strength_power = float(hp.strength_power)

    class NextPickModel(tf.Module):
        @tf.function(
            input_signature=[
                tf.TensorSpec([state_dim], tf.float32, name="state"),
                tf.TensorSpec([], tf.int32, name="item"),
                tf.TensorSpec([], tf.int32, name="event_type"),
                tf.TensorSpec([], tf.float32, name="strength"),
            ]
        )
        def update(self, state: Any, item: Any, event_type: Any, strength: Any) -> dict[str, Any]:
            known = tf.logical_and(item > 0, item < num_items)
            safe_item = tf.where(known, item, 0)
            safe_event = tf.clip_by_value(event_type, 0, NUM_EVENT_TYPES - 1)
            emb = tf.gather(weights["item_embedding"], safe_item)
            context = tf.gather(context_table(weights), safe_item)
            w = tf.gather(event_weights, safe_event)
            if strength_power != 0.0:
                w = w * tf.pow(tf.maximum(strength, 0.0), strength_power)
            sums = tf.reshape(state[lay.sums], [lay.num_decays, lay.dim])
            new_sums = decays[:, None] * sums + w * emb[None, :]
            new_norms = decays * state[lay.norms] + tf.abs(w)
            new_state = tf.concat(
                [
                    tf.reshape(new_sums, [-1]),
                    new_norms,
                    context,
                    state[lay.last1],
                    tf.one_hot(safe_event, NUM_EVENT_TYPES, dtype=tf.float32),
                    tf.reshape(strength, [1]),
                ],
                axis=0,
            )
            # Unknown item: the model knows nothing about it, so the state stays as it was.
            return {"state": tf.where(known, new_state, state)}

        @tf.function(
            input_signature=[
                tf.TensorSpec([state_dim], tf.float32, name="state"),
                tf.TensorSpec([num_items], tf.float32, name="exclude"),
            ]
        )
        def rank(self, state: Any, exclude: Any) -> dict[str, Any]:
            scores = rank_scores_tf(weights, state[None, :], lay)[0]
            return {"scores": tf.where(exclude > 0.5, tf.constant(EXCLUDED_SCORE, tf.float32), scores)}

    return NextPickModel()


def export_tflite(model: TrainedModel) -> bytes:
    """Serialize to a float32 ``.tflite`` with exactly the contract's two signatures."""
    import tensorflow as tf

    module = _build_module(model)
    with tempfile.TemporaryDirectory(prefix="nextpick-export-") as tmp:
        tf.saved_model.save(module, tmp, signatures={"update": module.update, "rank": module.rank})
        converter = tf.lite.TFLiteConverter.from_saved_model(tmp, signature_keys=["update", "rank"])
        converter.optimizations = []  # keep float32: the contract and the 1e-4 parity check need it
        return bytes(converter.convert())
