"""Export a :class:`TrainedModel` to the serving contract v2 (TFLite, signatures ``update`` and ``rank``,
plus the optional ``similar``: item-to-item cosine over the same item vectors ``rank`` scores with, and
the optional ``rank_query`` and ``score_items``: ``rank``'s per-shopper parts and the exact explore logits
of given items, for the large-catalog paths of docs/ranking-1m.md).

The composed item tables (vector, bias, repeat propensity per item: id part + attribute-token part) are
baked in as constants, so serving never sees attributes or tokens. Evaluation always scores through the
exported bytes (:data:`ExportedModel`), so what we measure is what serving runs.
"""

from __future__ import annotations

import io
import tempfile
from typing import Any

import numpy as np

from nextpick.adapters.litert_model import ContractRunner
from nextpick.adapters.model_registry import (
    EXPLAIN_SIGNATURE,
    RANK_QUERY_SIGNATURE,
    REQUIRED_SIGNATURES,
    SCORE_ITEMS_SIGNATURE,
    SIMILAR_SIGNATURE,
)
from nextpick.domain.history import HISTORY_SLOTS, NUM_HISTORY_FEATURES
from nextpick.domain.state import StateLimits

from .model import EXCLUDED_SCORE, NUM_EVENT_TYPES, TrainedModel

# Training scores exported bytes with serving's own runner (no manifest needed).
ExportedModel = ContractRunner

# A zero vector (an item placed by no token and no event) has no direction: its row stays 0, so every
# cosine with it is 0 instead of NaN.
_MIN_NORM = 1e-12


def inverse_norms(tables: dict[str, np.ndarray]) -> np.ndarray:
    """1 / |v| of every item vector (0 for a zero vector): `similar` scales the dot products of the item
    vectors by these, which is their cosine. Baked as one [num_items] constant rather than a unit-length
    copy of the [num_items, D] table: `similar` reads the very vectors `rank` scores with, and the model
    grows by 4 bytes an item instead of 4 x D (10k items: 40 KB, not 2.6 MB).

    The vectors alone, without the item bias appended: on MovieLens-100K the two are tied (co-rating lift
    2.92 vs 2.92, genre overlap 0.42 vs 0.42, docs/similar.md), and the vectors alone need no second
    table and keep the popularity term out of "similar"."""
    norms = np.linalg.norm(np.asarray(tables["vectors"], dtype=np.float64), axis=1)
    return np.where(norms > _MIN_NORM, 1.0 / np.maximum(norms, _MIN_NORM), 0.0).astype(np.float32)


def _build_module(model: TrainedModel) -> Any:
    import tensorflow as tf

    from .model.graph import gate_logits, log_sigmoid, mixture_scores, query, repeat_scores
    from .model.reference import LOG_ZERO

    hp, lay = model.hparams, model.layout
    num_items, state_dim = model.num_items, model.state_dim
    tables = {name: tf.constant(value) for name, value in model.tables().items()}
    weights = {name: tf.constant(value, dtype=tf.float32) for name, value in model.weights.items()}
    inverse_norm = tf.constant(inverse_norms(model.tables()))
    decays = tf.constant(np.asarray(hp.decays, dtype=np.float32))
    event_weights = tf.constant(np.asarray(hp.event_weights, dtype=np.float32))

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
            vector = tf.gather(tables["vectors"], tf.where(known, item, 0))
            safe_event = tf.clip_by_value(event_type, 0, NUM_EVENT_TYPES - 1)
            w = tf.gather(event_weights, safe_event)
            sums = tf.reshape(state[lay.sums], [lay.num_decays, lay.dim])
            new_state = tf.concat(
                [
                    tf.reshape(decays[:, None] * sums + w * vector[None, :], [-1]),
                    decays * state[lay.norms] + tf.abs(w),
                    vector,
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
                tf.TensorSpec([HISTORY_SLOTS], tf.int32, name="history_items"),
                tf.TensorSpec([HISTORY_SLOTS, NUM_HISTORY_FEATURES], tf.float32, name="history_features"),
            ]
        )
        def rank(self, state: Any, exclude: Any, history_items: Any, history_features: Any) -> dict[str, Any]:
            q = query(weights, state[None, :], lay)[0]
            explore = tf.linalg.matvec(tables["vectors"], q) + tables["bias"]
            items = tf.clip_by_value(history_items, 0, num_items - 1)
            features = history_features[None]
            repeat = repeat_scores(weights, tf.gather(tables["repeat"], items)[None], features)
            scores = mixture_scores(weights, explore[None], repeat, items[None], features)[0]
            return {"scores": tf.where(exclude > 0.5, tf.constant(EXCLUDED_SCORE, tf.float32), scores)}

        @tf.function(
            input_signature=[
                tf.TensorSpec([state_dim], tf.float32, name="state"),
                tf.TensorSpec([HISTORY_SLOTS], tf.int32, name="history_items"),
                tf.TensorSpec([HISTORY_SLOTS, NUM_HISTORY_FEATURES], tf.float32, name="history_features"),
            ]
        )
        def rank_query(self, state: Any, history_items: Any, history_features: Any) -> dict[str, Any]:
            """`rank`'s per-shopper parts, without the item table: `rank`'s score of an item outside
            the history is explore_offset + query . (V[i], B[i]) - log Z (docs/model-contract.md)."""
            q = query(weights, state[None, :], lay)[0]
            items = tf.clip_by_value(history_items, 0, num_items - 1)
            features = history_features[None]
            repeat = repeat_scores(weights, tf.gather(tables["repeat"], items)[None], features)
            present = features[:, :, -1] > 0.5
            gate = gate_logits(weights, features)
            log_repeat = repeat - tf.reduce_logsumexp(
                tf.where(present, repeat, LOG_ZERO * 100.0), axis=1, keepdims=True
            )
            history_scores = tf.where(present, log_sigmoid(gate)[:, None] + log_repeat, 0.0)[0]
            offset = tf.where(tf.reduce_any(present, axis=1), log_sigmoid(-gate), 0.0)[0]
            return {
                "query": tf.concat([q, tf.ones([1], tf.float32)], axis=0),
                "history_scores": history_scores,
                "explore_offset": offset,
            }

        @tf.function(
            input_signature=[
                tf.TensorSpec([int(tables["vectors"].shape[1]) + 1], tf.float32, name="query"),
                tf.TensorSpec([None], tf.int32, name="items"),
            ]
        )
        def score_items(self, query: Any, items: Any) -> dict[str, Any]:
            """The exact explore logits query . (V[i], B[i]) of `items`, from the fp32 tables `rank` scores
            with: they re-score the int8 explore scan's candidates (docs/ranking-1m.md)."""
            rows = tf.clip_by_value(items, 0, num_items - 1)
            vectors = tf.gather(tables["vectors"], rows)
            return {"logits": tf.linalg.matvec(vectors, query[:-1]) + tf.gather(tables["bias"], rows)}

        @tf.function(
            input_signature=[
                tf.TensorSpec([], tf.int32, name="item"),
                tf.TensorSpec([num_items], tf.float32, name="exclude"),
            ]
        )
        def similar(self, item: Any, exclude: Any) -> dict[str, Any]:
            known = tf.logical_and(item > 0, item < num_items)
            query_row = tf.where(known, item, 0)
            dots = tf.linalg.matvec(tables["vectors"], tf.gather(tables["vectors"], query_row))
            # One factor that depends on the input: a constant factor would be folded by the converter into
            # a scaled copy of the whole vector table (2.56 MB more at 10k items, measured).
            scores = dots * (inverse_norm * tf.gather(inverse_norm, query_row))
            index = tf.range(num_items)
            # Never the item itself, the unknown item, or an excluded item; nothing for an unknown query.
            dropped = (exclude > 0.5) | (index == query_row) | (index == 0) | tf.logical_not(known)
            return {"scores": tf.where(dropped, tf.constant(EXCLUDED_SCORE, tf.float32), scores)}

        @tf.function(input_signature=_explain_inputs(state_dim))
        def explain(
            self,
            state: Any,
            history_items: Any,
            history_features: Any,
            recent_items: Any,
            recent_event_types: Any,
            recent_strengths: Any,
            picks: Any,
        ) -> dict[str, Any]:
            from .model.explain import slot_contributions

            recent = {"items": recent_items, "event_types": recent_event_types, "strengths": recent_strengths}
            constants = {"decays": decays, "event_weights": event_weights}
            history = (history_items, history_features)
            contributions = slot_contributions(
                weights, tables, state, *history, recent, picks, constants, lay
            )
            return {"contributions": contributions}

    return NextPickModel()


def _explain_inputs(state_dim: int) -> list[Any]:
    """The `explain` signature's inputs (docs/model-contract.md): the state, the history input `rank` took,
    the shopper's recent fold steps (oldest first, item 0 = padding) and the picks to explain."""
    import tensorflow as tf

    recent = StateLimits().recent_events
    return [
        tf.TensorSpec([state_dim], tf.float32, name="state"),
        tf.TensorSpec([HISTORY_SLOTS], tf.int32, name="history_items"),
        tf.TensorSpec([HISTORY_SLOTS, NUM_HISTORY_FEATURES], tf.float32, name="history_features"),
        tf.TensorSpec([recent], tf.int32, name="recent_items"),
        tf.TensorSpec([recent], tf.int32, name="recent_event_types"),
        tf.TensorSpec([recent], tf.float32, name="recent_strengths"),
        tf.TensorSpec([None], tf.int32, name="picks"),
    ]


OPTIONAL_SIGNATURES = (SIMILAR_SIGNATURE, EXPLAIN_SIGNATURE, RANK_QUERY_SIGNATURE, SCORE_ITEMS_SIGNATURE)


def export_tflite(model: TrainedModel, optional: tuple[str, ...] = OPTIONAL_SIGNATURES) -> bytes:
    """Serialize to a float32 ``.tflite`` with the contract's signatures: update, rank and the `optional`
    ones (similar, explain, rank_query and score_items; fewer only to build a model as published before
    one existed)."""
    import tensorflow as tf

    module = _build_module(model)
    functions = {
        "update": module.update,
        "rank": module.rank,
        SIMILAR_SIGNATURE: module.similar,
        EXPLAIN_SIGNATURE: module.explain,
        RANK_QUERY_SIGNATURE: module.rank_query,
        SCORE_ITEMS_SIGNATURE: module.score_items,
    }
    keys = [*REQUIRED_SIGNATURES, *optional]
    with tempfile.TemporaryDirectory(prefix="nextpick-export-") as tmp:
        tf.saved_model.save(module, tmp, signatures={key: functions[key] for key in keys})
        converter = tf.lite.TFLiteConverter.from_saved_model(tmp, signature_keys=keys)
        converter.optimizations = []  # keep float32: the contract and the 1e-4 parity check need it
        return bytes(converter.convert())


def weights_bytes(model: TrainedModel) -> bytes:
    """The trained weights as `.npz`, published beside the model so a catalog refresh can give new items
    their attribute vectors without retraining."""
    buffer = io.BytesIO()
    arrays: dict[str, Any] = {
        **model.weights,
        "token_buckets": model.tokens.buckets,
        "token_weights": model.tokens.weights,
    }
    np.savez_compressed(buffer, allow_pickle=False, **arrays)
    return buffer.getvalue()


def weights_from_bytes(data: bytes) -> dict[str, np.ndarray]:
    with np.load(io.BytesIO(data), allow_pickle=False) as archive:
        return {name: archive[name] for name in archive.files}
