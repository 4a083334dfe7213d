"""The one hook through which `bench.quality` trains and scores the served model.

`fit_served_model` is called twice per table: first on the validation-time training data with the
validation cases (the model may choose its hyperparameters on them; the bench scores the returned
scorer on validation), then on the test-time training data with `validation=None` and
`hyperparameters` = what the first call chose (`FittedScorer.hyperparameters`), scored once on
test. `--seeds` repeats the second call with other seeds.

The returned scorer must score as serving does: through the exported `.tflite` behind LiteRT.

This body is model v2 (`nextpick_training.model`): timed histories, the shopper's item history as
a rank input, and item attributes as tokens, scored through `nextpick_training.scoring.ServedScorer`.
"""

from __future__ import annotations

import dataclasses
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from nextpick.domain.item_attributes import item_tokens
from nextpick.domain.state import TimedInteraction
from nextpick_training.evaluate import BasketMetrics, TimedScorer, evaluate_baskets
from nextpick_training.export import ExportedModel, export_tflite
from nextpick_training.model import Hyperparameters, train
from nextpick_training.model import Validation as ModelValidation
from nextpick_training.scoring import ServedScorer


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
QUICK: dict[str, Any] = {"epochs": 2, "embedding_dim": 32, "hidden_dim": 64, "negatives": 256}


@dataclass
class FittedScorer:
    """A timed scorer `(history, now, exclude) -> scores[num_items]` plus what the bench reports."""

    model: ExportedModel
    hyperparameters: dict[str, Any] = field(default_factory=dict)
    training_seconds: float = 0.0
    model_bytes: int = 0

    def __call__(self, history: Sequence[TimedInteraction], now: float, exclude: np.ndarray) -> np.ndarray:
        return ServedScorer(self.model)(history, now, exclude)


def _has_repeats(train_sequences: Sequence[Sequence[TimedInteraction]]) -> bool:
    return any(len({e[0] for e in seq}) < len(seq) for seq in train_sequences)


def item_token_lists(item_attributes: Mapping[int, Mapping[str, str]], num_items: int) -> list[list[str]]:
    """Each item's attribute tokens, as the retrain builds them from a catalog (`item_tokens`)."""
    return [item_tokens(None, None, item_attributes.get(index, {})) for index in range(num_items)]


def fit_served_model(
    train_sequences: Sequence[Sequence[TimedInteraction]],
    num_items: int,
    item_attributes: Mapping[int, Mapping[str, str]],
    validation: Validation | None,
    seed: int,
    quick: bool,
    hyperparameters: Mapping[str, Any] | None = None,
) -> FittedScorer:
    """Train model v2 on `train_sequences` (per-user timed events, index 0 = unknown, `num_items`
    counts it) with the items' attributes, export to `.tflite`, return a scorer running the exported
    bytes through LiteRT exactly as serving does (`ServedScorer`: state fold, history input, rank).

    With `validation`, training stops at the best validation epoch and that epoch count is what the
    test-time call (`hyperparameters` = the chosen ones) trains for. Where no user ever repeats an
    item (MovieLens), seen items are masked in training, as the benchmark masks them in scoring."""
    chosen = dict(hyperparameters or {"exclude_seen": not _has_repeats(train_sequences)})
    hp = dataclasses.replace(Hyperparameters(), **chosen, seed=seed, **(QUICK if quick else {}))
    early_stop = None
    if validation is not None and validation.exclude is None:
        targets = [[int(i) for i in t] for t in validation.targets]
        early_stop = ModelValidation(validation.histories, validation.nows, targets)
    started = time.perf_counter()
    model = train(
        train_sequences,
        num_items,
        hp,
        item_tokens=item_token_lists(item_attributes, num_items),
        validation=early_stop,
        log=lambda message: print(message, file=sys.stderr, flush=True),
    )
    seconds = time.perf_counter() - started
    if early_stop is not None:
        chosen["epochs"] = max(1, model.best_epoch)
    blob = export_tflite(model)
    return FittedScorer(ExportedModel(blob), chosen, seconds, len(blob))
