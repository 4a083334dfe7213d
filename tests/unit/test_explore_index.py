"""The large-catalog path (docs/ranking-1m.md) against brute force: the explore index with every list
probed scores exactly what the mixture does, masks are honoured on every path, a heavily masked request
is answered exactly, and a request the probed lists cannot answer falls back to the exact `rank`."""

from __future__ import annotations

import numpy as np
import pytest

from nextpick.domain.candidates import ExploreIndex, ExploreQuery, search
from nextpick_training import explore_index as builder

D, H, K = 8, 6, 10


def clustered_catalog(num_items: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Item vectors around 40 category centres (what attribute tokens give a trained model), biases
    spread like popularity; row 0 is the unknown item."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(0.0, 1.0, (40, D))
    vectors = centres[rng.integers(0, 40, num_items)] + rng.normal(0.0, 0.1, (num_items, D))
    bias = rng.normal(0.0, 1.0, num_items)
    vectors[0], bias[0] = 0.0, 0.0
    return vectors.astype(np.float32), bias.astype(np.float32)


def shopper(num_items: int, rng: np.random.Generator, filled: int) -> ExploreQuery:
    items = np.zeros(H, dtype=np.int64)
    items[:filled] = rng.choice(np.arange(1, num_items), filled, replace=False)
    present = np.arange(H) < filled
    return ExploreQuery(
        query=np.append(rng.normal(0.0, 1.0, D), 1.0).astype(np.float32),
        history_items=items,
        history_scores=np.where(present, rng.normal(-3.0, 1.0, H), 0.0).astype(np.float32),
        explore_offset=float(np.log(0.4)) if filled else 0.0,
        present=present,
    )


def brute_force(rows: np.ndarray, explore: ExploreQuery, exclude: np.ndarray, k: int) -> list[int]:
    """docs/design.md "Model v2" written out: history items log g + log P_repeat, every other item
    log(1 - g) + logit - log Z over the items outside the history (index 0 never counts)."""
    logits = rows.astype(np.float64) @ explore.query
    history = explore.history_items[explore.present]
    outside = np.ones(len(rows), dtype=bool)
    outside[0] = False
    outside[history] = False
    top = logits[outside].max()
    scores = explore.explore_offset + logits - (top + np.log(np.exp(logits[outside] - top).sum()))
    scores[history] = explore.history_scores[explore.present]
    scores[exclude > 0.5] = -np.inf
    allowed = np.flatnonzero(exclude == 0.0)
    return [int(i) for i in allowed[np.argsort(-scores[allowed], kind="stable")][:k]]


@pytest.fixture(scope="module")
def catalog() -> tuple[np.ndarray, ExploreIndex]:
    vectors, bias = clustered_catalog(3000)
    rng = np.random.default_rng(1)
    rows = builder.augmented(vectors, bias)
    centroids = builder.kmeans(rows[1:], 32, rng)
    index = builder.index_from_lists(rows, centroids, builder._nearest(rows, centroids), 4, rng)
    return rows, index


def test_every_list_probed_is_exact_with_and_without_history(
    catalog: tuple[np.ndarray, ExploreIndex],
) -> None:
    rows, index = catalog
    rng = np.random.default_rng(2)
    for filled in (0, 1, H):
        explore = shopper(len(rows), rng, filled)
        exclude = (rng.random(len(rows)) < 0.05).astype(np.float32)
        exclude[0] = 1.0
        found = search(index, explore, exclude, K, probe=index.lists, subset_max=0)
        assert found is not None and found.path == "probe"
        assert found.indices.tolist() == brute_force(rows, explore, exclude, K)
        logits = rows[found.indices] @ explore.query
        history = set(explore.history_items[explore.present].tolist())
        explore_items = [i for i, item in enumerate(found.indices.tolist()) if item not in history]
        # Exact normaliser: every explore score is offset + logit - log Z, the same shift for all.
        shift = found.scores[explore_items] - logits[explore_items]
        np.testing.assert_allclose(shift, shift[0], atol=1e-5)


def test_masks_are_honoured_on_the_probe_path(catalog: tuple[np.ndarray, ExploreIndex]) -> None:
    rows, index = catalog
    rng = np.random.default_rng(3)
    explore = shopper(len(rows), rng, H)
    exclude = (rng.random(len(rows)) < 0.5).astype(np.float32)
    exclude[0] = 1.0
    # Every history item excluded too: a purchased item must not come back through the repeat side.
    exclude[explore.history_items[explore.present]] = 1.0
    found = search(index, explore, exclude, K, subset_max=0)
    assert found is not None and len(found.indices) == K
    assert not exclude[found.indices].any()


def test_calibrated_probe_reaches_the_recall_target(catalog: tuple[np.ndarray, ExploreIndex]) -> None:
    rows, _ = catalog
    rng = np.random.default_rng(4)
    queries = np.stack([shopper(len(rows), rng, 0).query for _ in range(40)])
    built = builder.build(rows[:, :D], rows[:, D], queries, lists=64)
    assert built is not None
    calibrated, recall = built
    assert recall >= builder.TARGET_RECALL and calibrated.probe < calibrated.lists
    found_total = 0
    held_out = [shopper(len(rows), rng, 0) for _ in range(40)]
    exclude = np.zeros(len(rows), np.float32)
    exclude[0] = 1.0
    for explore in held_out:
        found = search(calibrated, explore, exclude, K, subset_max=0)
        assert found is not None
        found_total += len(set(found.indices.tolist()) & set(brute_force(rows, explore, exclude, K)))
    assert found_total / (K * len(held_out)) >= 0.97


def test_vectors_without_structure_get_no_index() -> None:
    rng = np.random.default_rng(5)
    vectors = rng.normal(0.0, 1.0, (3000, 32)).astype(np.float32)
    queries = np.append(rng.normal(0.0, 1.0, (40, 32)), np.ones((40, 1)), axis=1).astype(np.float32)
    assert builder.build(vectors, np.zeros(3000, np.float32), queries, lists=64) is None


def test_a_narrow_filter_is_scored_exactly_over_its_items(catalog: tuple[np.ndarray, ExploreIndex]) -> None:
    rows, index = catalog
    rng = np.random.default_rng(6)
    explore = shopper(len(rows), rng, 3)
    exclude = np.ones(len(rows), np.float32)
    category = rng.choice(np.arange(1, len(rows)), 25, replace=False)
    exclude[category] = 0.0
    found = search(index, explore, exclude, K, probe=1)
    assert found is not None and found.path == "subset"
    assert found.indices.tolist() == brute_force(rows, explore, exclude, K)
    # Fewer allowed items than k: all of them, and nothing else.
    exclude[category[3:]] = 1.0
    found = search(index, explore, exclude, K, probe=1)
    assert found is not None and sorted(found.indices.tolist()) == sorted(category[:3].tolist())


def test_probed_lists_without_k_allowed_items_defer_to_the_exact_rank(
    catalog: tuple[np.ndarray, ExploreIndex],
) -> None:
    rows, index = catalog
    rng = np.random.default_rng(7)
    explore = shopper(len(rows), rng, 0)
    # A mask that takes out exactly the lists the query probes (its best ones) and leaves the rest.
    best = np.argsort(-(index.centroids @ explore.query))[:4]
    exclude = np.zeros(len(rows), np.float32)
    exclude[0] = 1.0
    for j in best:
        exclude[index.order[index.offsets[j] : index.offsets[j + 1]]] = 1.0
    assert search(index, explore, exclude, K, probe=1, subset_max=0) is None
    # Probing every list answers it, and exactly.
    found = search(index, explore, exclude, K, probe=index.lists, subset_max=0)
    assert found is not None and found.indices.tolist() == brute_force(rows, explore, exclude, K)


def test_the_index_refuses_arrays_that_do_not_match_the_model(
    catalog: tuple[np.ndarray, ExploreIndex],
) -> None:
    rows, index = catalog
    arrays = index.arrays()
    with pytest.raises(ValueError, match="every item"):
        ExploreIndex.from_arrays(arrays, len(rows) + 1)
    repeated = dict(arrays, order=np.where(arrays["order"] == 5, 6, arrays["order"]))
    with pytest.raises(ValueError, match="repeats"):
        ExploreIndex.from_arrays(repeated, len(rows))
    with pytest.raises(ValueError, match="probe"):
        ExploreIndex.from_arrays(dict(arrays, probe=np.asarray(0)), len(rows))


def test_a_refresh_keeps_the_lists_and_places_new_items(catalog: tuple[np.ndarray, ExploreIndex]) -> None:
    rows, index = catalog
    vectors, bias = clustered_catalog(3050, seed=0)
    grown = np.concatenate([rows, builder.augmented(vectors[-50:], bias[-50:])])
    extended = builder.extend(index, grown[:, :D], grown[:, D])
    assert len(extended.row_of) == len(grown) and extended.probe == index.probe
    np.testing.assert_array_equal(extended.centroids, index.centroids)
    lists = extended.list_of_rows()
    old_lists = index.list_of_rows()
    for item in (1, 17, 2999):
        assert lists[extended.row_of[item]] == old_lists[index.row_of[item]]
    rng = np.random.default_rng(8)
    explore = shopper(len(grown), rng, 2)
    exclude = np.zeros(len(grown), np.float32)
    exclude[0] = 1.0
    found = search(extended, explore, exclude, K, probe=extended.lists, subset_max=0)
    assert found is not None and found.indices.tolist() == brute_force(grown, explore, exclude, K)
