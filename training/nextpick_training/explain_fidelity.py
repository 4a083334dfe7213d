"""Explanation fidelity (docs/explanations.md): do the items a pick cites matter more to it than as many
of the shopper's other items picked at random?

For each pick of a shopper's top K (scored through the exported model, as served), the cited items are
removed from the shopper's events for real: the state is refolded from zeros without their events and the
history input rebuilt without them (every other slot's features recomputed), and the pick is scored again.
The same is done for `draws` random sets of as many of the shopper's history items. The pick's drop
against the cited items is compared with the mean drop against the random sets."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from nextpick.domain.explanations import cited_slots
from nextpick.domain.history import ItemHistory
from nextpick.domain.state import StateLimits, TimedInteraction, fold_interactions
from nextpick_training.export import ExportedModel


@dataclass
class Fidelity:
    """Per explained pick: the score drop when its cited items go, and the mean drop for random items."""

    cited_drops: list[float] = field(default_factory=list)
    random_drops: list[float] = field(default_factory=list)
    unexplained: int = 0  # picks with no positive contribution, or a history of one item

    @property
    def picks(self) -> int:
        return len(self.cited_drops)

    @property
    def holds(self) -> float:
        """Share of explained picks whose cited items drop the score more than random ones do."""
        return (
            float(np.mean(np.asarray(self.cited_drops) > np.asarray(self.random_drops)))
            if self.picks
            else 0.0
        )

    def as_row(self) -> dict[str, float]:
        cited, random = np.asarray(self.cited_drops), np.asarray(self.random_drops)
        return {
            "explained_picks": self.picks,
            "unexplained_picks": self.unexplained,
            "holds": round(self.holds, 4),
            "mean_drop_cited": round(float(cited.mean()), 4) if self.picks else 0.0,
            "mean_drop_random": round(float(random.mean()), 4) if self.picks else 0.0,
        }


def _inputs(
    model: ExportedModel, events: Sequence[TimedInteraction], now: float
) -> tuple[np.ndarray, tuple[np.ndarray, np.ndarray]]:
    state = fold_interactions(model, [(item, kind, strength) for item, kind, strength, _ in events])
    history = ItemHistory[int]().observe_all(events).model_input(lambda item: item, now, model.history_slots)
    return state, history


def _score_without(
    model: ExportedModel, events: Sequence[TimedInteraction], now: float, removed: set[int], pick: int
) -> float:
    state, history = _inputs(model, [e for e in events if e[0] not in removed], now)
    return float(model.rank(state, np.zeros(model.num_items, np.float32), *history)[pick])


def measure_shopper(
    model: ExportedModel,
    events: Sequence[TimedInteraction],
    now: float,
    k: int,
    rng: np.random.Generator,
    into: Fidelity,
    excluded: Sequence[int] = (),
    draws: int = 3,
) -> None:
    """Explain the shopper's top `k` (never index 0 or an `excluded` item) and add each pick's drops
    to `into`."""
    state, history = _inputs(model, events, now)
    exclude = np.zeros(model.num_items, np.float32)
    exclude[[0, *excluded]] = 1.0
    scores = model.rank(state, exclude, *history)
    picks = [int(i) for i in np.argsort(-scores, kind="stable")[:k]]
    recent = [(item, kind, strength) for item, kind, strength, _ in events][-StateLimits().recent_events :]
    contributions = model.explain(state, history, recent, picks)
    assert contributions is not None, "the model has no explain signature"
    present = [int(item) for item in history[0] if item > 0]
    unscored = model.rank(state, np.zeros(model.num_items, np.float32), *history)
    for pick, row in zip(picks, contributions, strict=True):
        cited = {int(history[0][slot]) for slot, _ in cited_slots(row)}
        # Random sets are drawn from the whole history, cited items included: the harder baseline.
        if not cited or len(present) <= len(cited):
            into.unexplained += 1
            continue
        base = float(unscored[pick])
        into.cited_drops.append(base - _score_without(model, events, now, cited, pick))
        random_drops = [
            base
            - _score_without(
                model, events, now, {int(x) for x in rng.choice(present, len(cited), replace=False)}, pick
            )
            for _ in range(draws)
        ]
        into.random_drops.append(float(np.mean(random_drops)))
