"""The exported `similar` signature (docs/model-contract.md) on a model small enough to check by hand:
its scores are the cosine similarity of the composed item vectors, and the item itself, index 0 and
excluded items score <= -1e9. A catalog refresh's model carries the signature too."""

from __future__ import annotations

import numpy as np
import pytest

from nextpick.adapters.model_registry import SIMILAR_SIGNATURE
from nextpick.domain.events import CatalogItem
from nextpick_training.export import ExportedModel, export_tflite, inverse_norms
from nextpick_training.model import Hyperparameters, ItemTokens, TrainedModel, init_weights
from nextpick_training.refresh import extend_weights

# Five items (index 0 = unknown) in 2-d, no attribute tokens: the cosines can be read off the page.
# item 1 and item 2 point the same way (cosine 1), item 3 is at 45 degrees, item 4 opposite item 1.
VECTORS = np.array([[0, 0, 0, 0], [2, 0, 0, 0], [5, 0, 0, 0], [1, 1, 0, 0], [-1, 0, 0, 0]], np.float32)
NUM_ITEMS = len(VECTORS)
HAND_COSINE_FROM_1 = [1.0, 1 / np.sqrt(2), -1.0]  # items 2, 3, 4


def hand_model() -> TrainedModel:
    hp = Hyperparameters(embedding_dim=4, hidden_dim=8, repeat_hidden_dim=4)
    weights = init_weights(NUM_ITEMS, hp, np.random.default_rng(0))
    weights["id_embedding"] = VECTORS.copy()
    weights["token_embedding"] = np.zeros_like(weights["token_embedding"])
    return TrainedModel(hp, NUM_ITEMS, weights, ItemTokens.build([[]] * NUM_ITEMS, NUM_ITEMS))


@pytest.fixture(scope="module")
def exported() -> ExportedModel:
    return ExportedModel(export_tflite(hand_model()))


def numpy_cosine(vectors: np.ndarray, item: int) -> np.ndarray:
    norms = np.maximum(np.linalg.norm(vectors, axis=1), 1e-12)
    return (vectors @ vectors[item]) / (norms * norms[item])


def test_scores_are_the_cosines_of_the_item_vectors(exported: ExportedModel) -> None:
    scores = exported.similar(1, np.zeros(NUM_ITEMS, np.float32))
    assert scores is not None and scores.shape == (NUM_ITEMS,)
    np.testing.assert_allclose(scores[2:], HAND_COSINE_FROM_1, atol=1e-6)
    vectors = hand_model().tables()["vectors"]
    assert inverse_norms(hand_model().tables())[0] == 0.0  # a zero vector: cosine 0, not NaN
    for item in range(1, NUM_ITEMS):
        scores = exported.similar(item, np.zeros(NUM_ITEMS, np.float32))
        assert scores is not None
        others = [i for i in range(1, NUM_ITEMS) if i != item]
        np.testing.assert_allclose(scores[others], numpy_cosine(vectors, item)[others], atol=1e-6)


def test_the_item_itself_index_0_and_excluded_items_score_below_minus_1e9(exported: ExportedModel) -> None:
    exclude = np.zeros(NUM_ITEMS, np.float32)
    exclude[2] = 1.0
    scores = exported.similar(1, exclude)
    assert scores is not None
    assert scores[0] <= -1e9 and scores[1] <= -1e9 and scores[2] <= -1e9
    assert (scores[3:] > -1e9).all()
    for unknown in (0, NUM_ITEMS, -3):  # serving never asks, but a wrong index names nothing
        scores = exported.similar(unknown, np.zeros(NUM_ITEMS, np.float32))
        assert scores is not None and (scores <= -1e9).all()


def test_the_trained_model_ranks_with_the_same_vectors(exported: ExportedModel) -> None:
    """`similar` reads the vectors `rank` scores with, not a copy: an item's best neighbour by `similar` is
    the item `rank` puts first for a shopper whose state is that one item (same direction)."""
    state = exported.update(np.zeros(exported.state_dim, np.float32), 1, 4, 1.0)
    assert exported.rank(state, np.zeros(NUM_ITEMS, np.float32)).shape == (NUM_ITEMS,)
    scores = exported.similar(1, np.zeros(NUM_ITEMS, np.float32))
    assert scores is not None and int(np.argmax(scores)) == 2


def test_a_catalog_refresh_keeps_the_signature_and_places_new_items_by_their_tokens() -> None:
    """What `refresh.run_catalog_refresh` exports: the stored weights extended with new items' rows."""
    from ai_edge_litert.interpreter import Interpreter

    base = hand_model()
    # Three, not two: 7 items exactly makes TF lower rank's clip_by_value(history, 0, 6) to an int Relu6,
    # which LiteRT has no kernel for (a converter quirk of that one size, not of `similar`).
    new = [CatalogItem(item_id=f"new-{n}", category="garden", price=10.0, stock=1) for n in range(3)]
    rng = np.random.default_rng(1)
    weights = {**base.weights, "token_embedding": rng.normal(size=base.weights["token_embedding"].shape)}
    weights["token_embedding"] = weights["token_embedding"].astype(np.float32)
    extended, tokens = extend_weights(weights, base.tokens, new)
    refreshed = TrainedModel(base.hparams, NUM_ITEMS + 3, extended, tokens)
    blob = export_tflite(refreshed)
    assert SIMILAR_SIGNATURE in Interpreter(model_content=blob).get_signature_list()
    scores = ExportedModel(blob).similar(NUM_ITEMS, np.zeros(NUM_ITEMS + 3, np.float32))
    assert scores is not None
    # The new items have the same tokens and no id part yet: the same vector, cosine 1.
    np.testing.assert_allclose(scores[NUM_ITEMS + 1 :], [1.0, 1.0], atol=1e-6)
    np.testing.assert_allclose(
        scores[1:NUM_ITEMS], numpy_cosine(refreshed.tables()["vectors"], NUM_ITEMS)[1:NUM_ITEMS], atol=1e-5
    )


def test_the_model_holds_the_item_vector_table_once() -> None:
    """`similar` reads the table `update` and `rank` read: no second [num_items, D] buffer (a scaled copy
    folded in by the converter doubled a 10k-item model, 3.2 MB -> 5.9 MB, before this was checked)."""
    from tensorflow.lite.tools import flatbuffer_utils

    flat = flatbuffer_utils.convert_bytearray_to_object(bytearray(export_tflite(hand_model())))
    tables = {
        tensor.buffer
        for subgraph in flat.subgraphs
        for tensor in subgraph.tensors
        if list(tensor.shape) == list(VECTORS.shape) and flat.buffers[tensor.buffer].data is not None
    }
    assert len(tables) == 1
