"""Explanations (docs/explanations.md): the `explain` signature is an exact leave-one-slot-out of `rank`,
and on a small trained model the items it cites matter more to a pick than random ones."""

from __future__ import annotations

import numpy as np
import pytest

from nextpick.adapters.litert_model import ContractRunner
from nextpick.domain.explanations import MAX_REASONS, cited_slots
from nextpick.domain.history import ItemHistory
from nextpick.domain.state import fold_interactions
from nextpick_training.explain_fidelity import Fidelity, measure_shopper
from tests.conftest import CATEGORIES, ITEMS_PER_CATEGORY, TinyModel

T0 = 1_790_000_000.0
HOUR = 3600.0


def shopper(seed: int, steps: int = 14) -> list[tuple[int, int, float, float]]:
    """A shopper loyal to one category (as the tiny model's training shoppers are), a few strays."""
    rng = np.random.default_rng(seed)
    home = seed % len(CATEGORIES)
    own = [1 + home * ITEMS_PER_CATEGORY + i for i in range(ITEMS_PER_CATEGORY)]
    every = list(range(1, len(CATEGORIES) * ITEMS_PER_CATEGORY + 1))
    return [
        (
            int(rng.choice(own if rng.random() < 0.8 else every)),
            int(rng.choice([0, 1, 2, 4])),
            1.0,
            T0 + HOUR * s,
        )
        for s in range(steps)
    ]


@pytest.fixture(scope="module")
def runner(tiny_model: TinyModel) -> ContractRunner:
    return ContractRunner(tiny_model.tflite)


def test_a_contribution_is_the_score_lost_without_that_slot(runner: ContractRunner) -> None:
    """Exactly: rank(shopper)[pick] - rank(state refolded without the item's steps, slot as padding)[pick]."""
    events = shopper(4)
    now = T0 + HOUR * 20
    steps = [(item, kind, strength) for item, kind, strength, _ in events]
    state = fold_interactions(runner, steps)
    items, features = ItemHistory[int]().observe_all(events).model_input(lambda i: i, now)
    exclude = np.zeros(runner.num_items, np.float32)
    scores = runner.rank(state, exclude, items, features)
    picks = [int(i) for i in np.argsort(-scores)[1:6]]
    contributions = runner.explain(state, (items, features), steps, picks)
    assert contributions is not None and contributions.shape == (len(picks), runner.history_slots)
    filled = int((items > 0).sum())
    assert filled >= 3
    for slot in range(filled):
        without = fold_interactions(runner, [s for s in steps if s[0] != items[slot]])
        keep = np.arange(runner.history_slots) != slot
        lost = runner.rank(without, exclude, items * keep, features * keep[:, None])
        np.testing.assert_allclose(contributions[:, slot], scores[picks] - lost[picks], atol=2e-3)
    # Padding slots contribute nothing.
    assert not contributions[:, filled:].any()


def test_cited_items_are_the_largest_positive_contributions() -> None:
    assert cited_slots(np.array([0.1, -2.0, 0.5, 0.4])) == [(2, 0.5), (3, 0.4)]
    assert cited_slots(np.array([-0.1, 0.0])) == []
    assert cited_slots(np.array([1.0, 1e-6])) == [(0, 1.0)]  # a share that rounds to 0 is not cited
    assert len(cited_slots(np.ones(10))) == MAX_REASONS


def test_cited_items_matter_more_than_random_ones(runner: ContractRunner) -> None:
    """Fidelity on a small trained model: removing the cited items from the events lowers a pick's score
    more than removing as many random history items, for most picks and on average."""
    fidelity = Fidelity()
    rng = np.random.default_rng(0)
    for seed in range(12):
        events = shopper(seed)
        measure_shopper(runner, events, events[-1][3] + HOUR, 5, rng, fidelity, draws=2)
    assert fidelity.picks >= 30
    assert fidelity.holds > 0.6
    assert np.mean(fidelity.cited_drops) > np.mean(fidelity.random_drops)
