"""Fixtures shared by every test layer: a real, tiny model trained in the test session.

Serving tests use a genuine TFLite artifact produced by the real training and export code, never a
mocked model: 36 shoppers over 24 items in 3 categories, each shopper loyal to one category."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pytest

from nextpick.domain.history import HISTORY_SLOTS

CATEGORIES = ("shoes", "books", "garden")
ITEMS_PER_CATEGORY = 8


@dataclass(frozen=True)
class TinyModel:
    tflite: bytes
    items: list[str | None]  # the vocabulary: items[0] is the unknown item
    state_dim: int
    category_of: dict[str, str]

    def manifest_fields(self) -> dict[str, Any]:
        return {
            "state_dim": self.state_dim,
            "history_slots": HISTORY_SLOTS,
            "items": self.items,
            "training_window": {"events": 0},
            "hyperparameters": {},
            "metrics": {},
        }


def tiny_catalog() -> dict[str, str]:
    return {
        f"item-{c * ITEMS_PER_CATEGORY + i + 1}": category
        for c, category in enumerate(CATEGORIES)
        for i in range(ITEMS_PER_CATEGORY)
    }


def train_tiny_model(seed: int, return_trained: bool = False, epochs: int = 3) -> Any:
    """The tiny model, exported (TinyModel); or, with `return_trained`, (TrainedModel, items)."""
    from nextpick.domain.item_attributes import item_tokens
    from nextpick_training.export import export_tflite
    from nextpick_training.model import Hyperparameters, train

    category_of = tiny_catalog()
    items: list[str | None] = [None, *category_of]
    rng = np.random.default_rng(seed)
    sequences = []
    start = 1_790_000_000.0  # 2026-09
    for user in range(36):
        home = user % len(CATEGORIES)
        own = [1 + home * ITEMS_PER_CATEGORY + i for i in range(ITEMS_PER_CATEGORY)]
        sequences.append(
            [
                (int(rng.choice(own)), int(rng.choice([0, 2, 4])), 1.0, start + 3600.0 * step)
                for step in range(12)
            ]
        )
    tokens = [[], *(item_tokens(category_of[item_id]) for item_id in category_of)]
    hparams = Hyperparameters(
        embedding_dim=8,
        hidden_dim=16,
        repeat_hidden_dim=8,
        epochs=epochs,
        batch_size=64,
        negatives=16,
        learning_rate=0.01,
        seed=seed,
    )
    model = train(sequences, num_items=len(items), hparams=hparams, item_tokens=tokens)
    if return_trained:
        return model, items
    return TinyModel(export_tflite(model), items, model.state_dim, category_of)


@pytest.fixture(scope="session")
def tiny_model() -> TinyModel:
    return train_tiny_model(seed=1)


@pytest.fixture(scope="session")
def tiny_model_v2() -> TinyModel:
    """A second, differently trained model: what a retrain would publish."""
    return train_tiny_model(seed=2)
