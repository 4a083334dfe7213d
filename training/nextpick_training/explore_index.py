"""Build the large-catalog explore index (`explore_index.npz`, docs/ranking-1m.md) beside a model.

k-means over the items' (vector, bias) rows groups them into lists; the number of lists a request probes
is chosen here, by measurement: the smallest that reaches recall@10 >= `TARGET_RECALL` against the exact
scores on calibration queries (the model's own queries for shoppers folded through its `update`). A
catalog whose vectors need more than `MAX_PROBE_SHARE` of the lists gets no index: it has no cluster
structure to exploit (random vectors need most lists for 0.99), and serving keeps the exact path.
"""

from __future__ import annotations

import io
import math
from typing import Any

import numpy as np

from nextpick.domain.candidates import ExploreIndex

# Below this, the exact `rank` + top-10 is already fast (1.6 ms at 100k items, docs/benchmarks.md §2)
# and the index would only add an artifact: see docs/ranking-1m.md for the measurement.
EXPLORE_INDEX_MIN_ITEMS = 200_000
TARGET_RECALL = 0.99
# Recall is checked on this many calibration shoppers, each folded from this many random events.
CALIBRATION_SHOPPERS = 64
CALIBRATION_EVENTS = 20
# An index that needs more than 1/8 of its lists is not worth its artifact.
MAX_PROBE_SHARE = 1 / 8
KMEANS_SAMPLE = 65_536
KMEANS_ITERATIONS = 8
# Rows scored at once when assigning items to lists: 65k x 1024 float32 scores = 256 MB.
ASSIGN_CHUNK = 65_536
K = 10


def default_lists(num_items: int) -> int:
    """About sqrt(N) lists (1,024 at 1M items), a power of two: ~1,000 items a list, so one probed list is
    a 256 KB contiguous slice and the centroid scan (1,024 x 65) costs little."""
    return int(2 ** max(1, round(math.log2(math.sqrt(max(num_items, 4))))))


def augmented(vectors: np.ndarray, bias: np.ndarray) -> np.ndarray:
    """(V[i], B[i]) rows: an item's explore logit is query . row with query = (q, 1)."""
    return np.concatenate([vectors, bias[:, None]], axis=1).astype(np.float32)


def _nearest(rows: np.ndarray, centroids: np.ndarray) -> np.ndarray:
    half_norms = 0.5 * np.einsum("ij,ij->i", centroids, centroids)
    out = np.empty(len(rows), dtype=np.int64)
    for start in range(0, len(rows), ASSIGN_CHUNK):
        block = rows[start : start + ASSIGN_CHUNK]
        out[start : start + len(block)] = np.argmax(block @ centroids.T - half_norms, axis=1)
    return out


def kmeans(rows: np.ndarray, lists: int, rng: np.random.Generator) -> np.ndarray:
    """[lists, D + 1] centroids from Lloyd's iterations on a sample of the rows."""
    sample = rows[rng.choice(len(rows), min(len(rows), max(KMEANS_SAMPLE, lists)), replace=False)]
    centroids = sample[rng.choice(len(sample), lists, replace=False)].copy()
    for _ in range(KMEANS_ITERATIONS):
        assigned = _nearest(sample, centroids)
        sums = np.zeros_like(centroids, dtype=np.float64)
        np.add.at(sums, assigned, sample)
        counts = np.bincount(assigned, minlength=lists)
        filled = counts > 0
        centroids[filled] = (sums[filled] / counts[filled, None]).astype(np.float32)
    return centroids


def index_from_lists(
    rows: np.ndarray, centroids: np.ndarray, list_of_item: np.ndarray, probe: int, rng: np.random.Generator
) -> ExploreIndex:
    """The index of items 1 .. N-1 (`rows[i]` and `list_of_item[i]` for item i; row 0 is ignored),
    each list's rows in random order (its first rows are then a random sample of it)."""
    items = np.arange(1, len(rows))
    shuffled = items[rng.permutation(len(items))]
    order = shuffled[np.argsort(list_of_item[shuffled], kind="stable")]
    offsets = np.zeros(len(centroids) + 1, dtype=np.int64)
    offsets[1:] = np.cumsum(np.bincount(list_of_item[order], minlength=len(centroids)))
    arrays = {
        "centroids": centroids,
        "offsets": offsets,
        "order": order.astype(np.int32),
        "table": rows[order],
        "probe": np.asarray(probe),
    }
    return ExploreIndex.from_arrays(arrays, len(rows))


def recall_at_k(index: ExploreIndex, rows: np.ndarray, queries: np.ndarray, probe: int) -> float:
    """Mean recall@10 of the `probe` best lists' items against the exact explore top-10."""
    exact = rows[1:] @ queries.T  # [N - 1, M]
    found = 0
    for m, q in enumerate(queries):
        truth = set((np.argpartition(-exact[:, m], K - 1)[:K] + 1).tolist())
        chosen = np.argpartition(-(index.centroids @ q), probe - 1)[:probe]
        rows_probed = np.concatenate([np.arange(index.offsets[j], index.offsets[j + 1]) for j in chosen])
        logits = index.table[rows_probed] @ q
        best = index.order[rows_probed[np.argpartition(-logits, min(K, len(logits)) - 1)[:K]]]
        found += len(truth & set(best.tolist()))
    return found / (K * len(queries))


def choose_probe(
    index: ExploreIndex, rows: np.ndarray, queries: np.ndarray, max_probe_share: float = MAX_PROBE_SHARE
) -> tuple[int, float] | None:
    """The smallest probe (powers of two) reaching TARGET_RECALL, and its recall; None past the cap."""
    probe = 1
    while probe <= max(1, int(index.lists * max_probe_share)):
        recall = recall_at_k(index, rows, queries, probe)
        if recall >= TARGET_RECALL:
            return probe, recall
        probe *= 2
    return None


def build(
    vectors: np.ndarray,
    bias: np.ndarray,
    queries: np.ndarray,
    seed: int = 0,
    lists: int | None = None,
    max_probe_share: float = MAX_PROBE_SHARE,
) -> tuple[ExploreIndex, float] | None:
    """The index and its calibration recall@10, or None when no probe within the cap reaches the target."""
    rng = np.random.default_rng(seed)
    rows = augmented(vectors, bias)
    centroids = kmeans(rows[1:], lists or default_lists(len(rows)), rng)
    list_of_item = _nearest(rows, centroids)
    index = index_from_lists(rows, centroids, list_of_item, 1, rng)
    chosen = choose_probe(index, rows, queries, max_probe_share)
    if chosen is None:
        return None
    probe, recall = chosen
    return index_from_lists(rows, centroids, list_of_item, probe, rng), recall


def extend(base: ExploreIndex, vectors: np.ndarray, bias: np.ndarray, seed: int = 0) -> ExploreIndex:
    """A catalog refresh's index: the base's lists and probe for the items it had, each new item (the
    rows past the base's vocabulary) in the list of its nearest centroid."""
    rows = augmented(vectors, bias)
    list_of_item = np.zeros(len(rows), dtype=np.int64)
    list_of_item[base.order] = base.list_of_rows()
    known = len(base.row_of)
    list_of_item[known:] = _nearest(rows[known:], base.centroids)
    return index_from_lists(rows, base.centroids, list_of_item, base.probe, np.random.default_rng(seed))


def calibration_queries(runner: Any, seed: int = 0) -> np.ndarray | None:
    """[M, D + 1] queries of shoppers folded from random events through the model's own `update`, then
    its `rank_query`; None when the model has no `rank_query`."""
    rng = np.random.default_rng(seed)
    queries = []
    for _ in range(CALIBRATION_SHOPPERS):
        state = np.zeros(runner.state_dim, dtype=np.float32)
        for item in rng.integers(1, runner.num_items, CALIBRATION_EVENTS):
            state = runner.update(state, int(item), int(rng.integers(0, 5)), 1.0)
        explore = runner.explore_query(state, None, None)
        if explore is None:
            return None
        queries.append(explore.query)
    return np.stack(queries)


def encode(index: ExploreIndex) -> bytes:
    """`explore_index.npz`, uncompressed: float tables do not compress, and loading stays a plain read."""
    buffer = io.BytesIO()
    np.savez(buffer, allow_pickle=False, **index.arrays())
    return buffer.getvalue()


def for_model(
    tables: dict[str, np.ndarray], runner: Any, min_items: int = EXPLORE_INDEX_MIN_ITEMS
) -> tuple[bytes, float] | None:
    """`explore_index.npz` for a model (its composed tables and its exported runner) with its calibration
    recall, or None: a catalog below `min_items`, or vectors without structure to exploit."""
    if len(tables["vectors"]) < min_items:
        return None
    queries = calibration_queries(runner)
    if queries is None:
        return None
    built = build(tables["vectors"], tables["bias"], queries)
    if built is None:
        return None
    return encode(built[0]), built[1]
