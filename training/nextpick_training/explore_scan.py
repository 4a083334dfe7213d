"""Build the large-catalog explore scan (`explore_scan.tflite`, docs/ranking-1m.md) beside a model.

The scan is the way for catalogs whose item vectors do not cluster, where the explore index
(`explore_index`) is refused: a second, small LiteRT model holding the item table in int8 (dynamic-range
quantisation: one scale per row) that scores every item and returns the best `candidates` of them and an
estimate of the rest of the explore normaliser Z. Serving re-scores those candidates exactly, in fp32,
through the model's own `score_items` signature, so the scores it returns are the model's; int8 only
chooses which items are re-scored. Measured at 1M items, one thread (docs/ranking-1m.md): the int8 table
alone finds 0.977 of the exact top-10; its best 128, re-scored, find all of them (100 shoppers).

Two things keep it inside 5 ms at 1M items:
- **top-K in two stages inside the graph.** `tf.math.top_k` over 1M scores costs 2.3 ms in LiteRT; the
  table is padded to blocks of `block` rows, and the best `candidates` items lie in the `candidates`
  blocks with the highest maxima, so one top-K runs over the block maxima and one over those blocks'
  rows (0.1 ms, the same items).
- **Z from a sample plus the candidates' exact terms.** The exact log-sum-exp over 1M scores costs
  1.6 ms; the table starts with a stratified sample of the items (every s-th in vocabulary order,
  `SAMPLE_ROWS` of them), so the sum over everything outside the candidates is estimated from one
  contiguous slice, scaled, and serving adds the candidates' exact terms (|Δscore| against `rank`: 4.1e-3
  max at 1M). Below `SAMPLE_ROWS` items the sample is the whole catalog.
"""

from __future__ import annotations

import math
import tempfile
from typing import Any

import numpy as np

from nextpick.adapters.litert_scan import LiteRTExploreScan
from nextpick.adapters.model_registry import EXPLORE_SCAN_SIGNATURES

from . import explore_index as index_lib

# Items re-scored exactly per request: 10 asked + up to 64 history items + items a mask drops. 256 cost
# 0.5 ms more at 1M items than 128 (3.8 against 3.3 ms for the scan, measured); a request for more items
# than the candidates hold after its mask takes the exact `rank`.
CANDIDATES = 128
BLOCK = 256
SAMPLE_ROWS = 65_536
# Rows of a padding block score this: never among the candidates, never in the sample.
PADDING_BIAS = -1e30


def layout(num_items: int, candidates: int = CANDIDATES) -> tuple[np.ndarray, int, int]:
    """(order, block, sample): the vocabulary index of each table row (the sample first, then the other
    items, then padding rows of index 0), the rows per block, and the sample's length."""
    items = np.arange(1, num_items)
    stride = max(1, math.ceil(len(items) / SAMPLE_ROWS))
    sampled = np.zeros(len(items), dtype=bool)
    sampled[::stride] = True
    block = max(1, min(BLOCK, len(items) // candidates))
    rows = math.ceil(len(items) / block) * block
    order = np.zeros(rows, dtype=np.int32)
    order[: len(items)] = np.concatenate([items[sampled], items[~sampled]])
    return order, block, int(np.count_nonzero(sampled))


def export_scan(vectors: np.ndarray, bias: np.ndarray, candidates: int = CANDIDATES) -> bytes:
    """`explore_scan.tflite` for the item table (`vectors` [N, D], `bias` [N]): signatures `scan` and
    `normaliser`, each query [D + 1] -> items [candidates], weight [], log_rest [] and the vocabulary size
    it was built for, num_items [] (docs/model-contract.md)."""
    import tensorflow as tf

    num_items, dim = vectors.shape
    if num_items - 1 < candidates:
        raise ValueError(f"a scan needs more than {candidates} items, not {num_items - 1}")
    order, block, sample = layout(num_items, candidates)
    real = order > 0
    table = np.where(real[:, None], vectors[order], 0.0).astype(np.float32)
    row_bias = np.where(real, bias[order], PADDING_BIAS).astype(np.float32)
    blocks = len(order) // block
    # Each sampled item stands for (N - 1) / S items, and outside the scan's candidates for
    # (N - 1 - candidates) / (S - sampled candidates).
    constants = {
        "table": tf.constant(table),
        "bias": tf.constant(row_bias),
        "order": tf.constant(order),
        "sample_table": tf.constant(table[:sample]),
        "sample_bias": tf.constant(row_bias[:sample]),
    }
    query_spec = [tf.TensorSpec([dim + 1], tf.float32, name="query")]

    def rest(sample_logits: Any, top_logits: Any, top_sampled: Any, weight: Any) -> Any:
        """log(weight x the sum of exp(logit) over the sample rows outside the top ones)."""
        peak = tf.reduce_max(sample_logits)
        total = tf.reduce_sum(tf.exp(sample_logits - peak))
        top_total = tf.reduce_sum(tf.where(top_sampled, tf.exp(top_logits - peak), 0.0))
        return peak + tf.math.log(tf.maximum(total - top_total, 1e-30) * weight)

    class ExploreScan(tf.Module):
        @tf.function(input_signature=query_spec)
        def scan(self, query: Any) -> dict[str, Any]:
            logits = tf.linalg.matvec(constants["table"], query[:dim]) + constants["bias"]
            by_block = tf.reshape(logits, [blocks, block])
            _, best_blocks = tf.math.top_k(tf.reduce_max(by_block, axis=1), candidates)
            top_logits, position = tf.math.top_k(
                tf.reshape(tf.gather(by_block, best_blocks), [-1]), candidates
            )
            rows = tf.gather(best_blocks, position // block) * block + position % block
            sampled = rows < sample
            left = sample - tf.reduce_sum(tf.cast(sampled, tf.int32))
            weight = (num_items - 1 - candidates) / tf.cast(tf.maximum(left, 1), tf.float32)
            return {
                "items": tf.gather(constants["order"], rows),
                "weight": tf.constant(1.0),
                "log_rest": rest(logits[:sample], top_logits, sampled, weight),
                "num_items": tf.constant(num_items, tf.int32),
            }

        @tf.function(input_signature=query_spec)
        def normaliser(self, query: Any) -> dict[str, Any]:
            logits = tf.linalg.matvec(constants["sample_table"], query[:dim]) + constants["sample_bias"]
            top_logits, rows = tf.math.top_k(logits, candidates)
            weight = tf.constant((num_items - 1) / sample, tf.float32)
            return {
                "items": tf.gather(constants["order"], rows),
                "weight": weight,
                "log_rest": rest(logits, top_logits, tf.ones_like(rows, tf.bool), weight),
                "num_items": tf.constant(num_items, tf.int32),
            }

    module = ExploreScan()
    functions = {"scan": module.scan, "normaliser": module.normaliser}
    keys = list(EXPLORE_SCAN_SIGNATURES)
    with tempfile.TemporaryDirectory(prefix="nextpick-scan-") as tmp:
        tf.saved_model.save(module, tmp, signatures={key: functions[key] for key in keys})
        converter = tf.lite.TFLiteConverter.from_saved_model(tmp, signature_keys=keys)
        # Dynamic-range quantisation: the float tables become int8 with one scale per row; inputs,
        # outputs and the bias stay float32.
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        return bytes(converter.convert())


def calibration_recall(scan: LiteRTExploreScan, runner: Any, vectors: np.ndarray, bias: np.ndarray) -> float:
    """Mean recall@10 of the scan path against the exact explore top-10 on the model's calibration
    shoppers (folded through its own `update`): the candidates as serving re-scores them."""
    queries = index_lib.calibration_queries(runner)
    if queries is None:
        return 0.0
    rows = index_lib.augmented(vectors, bias)
    k = index_lib.K
    found = 0
    for q in queries:
        exact = rows[1:] @ q
        truth = set((np.argpartition(-exact, k - 1)[:k] + 1).tolist())
        items = scan.candidates(q).items
        chosen = items[np.argsort(-runner.score_items(q, items), kind="stable")[:k]]
        found += len(truth & set(chosen.tolist()))
    return found / (k * len(queries))


def for_model(
    tables: dict[str, np.ndarray],
    runner: Any,
    min_items: int = index_lib.EXPLORE_INDEX_MIN_ITEMS,
    candidates: int = CANDIDATES,
) -> tuple[bytes, float] | None:
    """`explore_scan.tflite` for a model (its composed tables and its exported runner, which must have
    `rank_query` and `score_items`) and its calibration recall, or None: a catalog below `min_items`, a
    model without those signatures, or a scan short of `TARGET_RECALL` (then serving keeps `rank`)."""
    vectors, bias = tables["vectors"], tables["bias"]
    if len(vectors) < max(min_items, candidates + 1) or not runner.has_score_items:
        return None
    body = export_scan(vectors, bias, candidates)
    recall = calibration_recall(LiteRTExploreScan(body, len(vectors)), runner, vectors, bias)
    if recall < index_lib.TARGET_RECALL:
        return None
    return body, recall
