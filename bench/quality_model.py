"""The one hook through which `bench.quality` trains and scores the served model.

`fit_served_model` is called twice per table: first on the validation-time training data with the
validation cases (the model may choose its hyperparameters on them; the bench scores the returned
scorer on validation), then on the test-time training data with `validation=None` and
`hyperparameters` = what the first call chose (`FittedScorer.hyperparameters`), scored once on
test. `--seeds` repeats the second call with other seeds.

The returned scorer must score as serving does: through the exported `.tflite` behind LiteRT.

This body is the v1 model (`nextpick_training.model`): it ignores timestamps, `now` and item
attributes, folds the untimed history through the exported `update` from zeros and calls `rank`.
Model v2 replaces the body, not the signature.
"""

from __future__ import annotations

import dataclasses
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from nextpick.domain.state import TimedInteraction, fold_interactions
from nextpick_training.evaluate import BasketMetrics, TimedScorer, evaluate_baskets
from nextpick_training.export import ExportedModel, export_tflite
from nextpick_training.model import Hyperparameters, train


@dataclass(frozen=True)
class Validation:
    """The validation users of one table, and `evaluate(scorer)`: the table's exact validation
    protocol (exclusions included, e.g. cold start's "held-out movies only"), for choosing
    hyperparameters or epochs on it."""

    histories: Sequence[Sequence[TimedInteraction]]
    nows: Sequence[float]
    targets: Sequence[np.ndarray]  # the target baskets' distinct items
    num_items: int
    exclude_seen: bool = False
    exclude: Sequence[np.ndarray] | None = None  # extra excluded items per user
    k: int = 10

    def evaluate(self, scorer: TimedScorer) -> BasketMetrics:
        return evaluate_baskets(
            scorer,
            self.histories,
            self.nows,
            self.targets,
            self.num_items,
            self.k,
            self.exclude_seen,
            self.exclude,
        )


# A smoke run's model: small and short, to prove the plumbing, not to score.
QUICK = {"epochs": 2, "embedding_dim": 32, "hidden_dim": 64}


@dataclass
class FittedScorer:
    """A timed scorer `(history, now, exclude) -> scores[num_items]` plus what the bench reports."""

    model: ExportedModel
    hyperparameters: dict[str, Any] = field(default_factory=dict)
    training_seconds: float = 0.0
    model_bytes: int = 0

    def __call__(self, history: Sequence[TimedInteraction], now: float, exclude: np.ndarray) -> np.ndarray:
        state = fold_interactions(self.model, ((e[0], e[1], e[2]) for e in history))
        return self.model.rank(state, exclude)


def _has_repeats(train_sequences: Sequence[Sequence[TimedInteraction]]) -> bool:
    return any(len({e[0] for e in seq}) < len(seq) for seq in train_sequences)


def fit_served_model(
    train_sequences: Sequence[Sequence[TimedInteraction]],
    num_items: int,
    item_attributes: Mapping[int, Mapping[str, str]],
    validation: Validation | None,
    seed: int,
    quick: bool,
    hyperparameters: Mapping[str, Any] | None = None,
) -> FittedScorer:
    """Train on `train_sequences` (per-user timed events, index 0 = unknown, `num_items` counts it),
    export to `.tflite`, return a scorer running the exported bytes through LiteRT.

    v1: `validation` is not used (the production defaults were chosen on MovieLens validation, see
    docs/quality.md); where no user ever repeats an item in the training data (MovieLens) the
    training softmax masks the user's seen items, otherwise (a shop) it keeps them."""
    del item_attributes, validation  # v1 has no use for them
    chosen = dict(hyperparameters or {"exclude_seen_in_loss": not _has_repeats(train_sequences)})
    hp = dataclasses.replace(Hyperparameters(), **chosen, seed=seed, **(QUICK if quick else {}))
    untimed = [[(e[0], e[1], e[2]) for e in seq] for seq in train_sequences]
    started = time.perf_counter()
    model = train(untimed, num_items, hp, log=lambda message: print(message, file=sys.stderr, flush=True))
    seconds = time.perf_counter() - started
    blob = export_tflite(model)
    return FittedScorer(ExportedModel(blob), chosen, seconds, len(blob))
