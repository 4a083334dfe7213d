"""Why a pick was picked (`?explain=true`, docs/explanations.md): the shopper's own items that add most
to its score, by the model's own leave-one-slot-out (the optional `explain` signature).

A contribution is the pick's score (log P) minus its score with that history slot taken out of both the
state and the history input; a slot's share is its contribution over the sum of the positive ones. At
most `MAX_REASONS` are cited, the largest first; a slot whose share rounds to 0 is not cited. A model
without the signature, a shopper without history (a cold-start answer) or a v1 model: no `because`."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from nextpick.domain.events import Because, Recommendation
from nextpick.domain.ports import RankingModel
from nextpick.domain.state import RecentEvent

MAX_REASONS = 2
# Shares are answered to 3 decimals; one that rounds to 0 says nothing.
SHARE_DECIMALS = 3


def cited_slots(contributions: np.ndarray) -> list[tuple[int, float]]:
    """(history slot, share) of the at most `MAX_REASONS` slots that add most to one pick's score."""
    positive = np.clip(np.asarray(contributions, dtype=np.float64), 0.0, None)
    total = float(positive.sum())
    if not total > 0:
        return []
    order = np.argsort(-positive, kind="stable")[:MAX_REASONS]
    cited = [(int(slot), round(float(positive[slot]) / total, SHARE_DECIMALS)) for slot in order]
    return [(slot, share) for slot, share in cited if share > 0]


def recent_steps(model: RankingModel, recent: Sequence[RecentEvent]) -> list[tuple[int, int, float]]:
    """The state's recent fold steps in `model`'s vocabulary, oldest first (0: an item it does not know)."""
    return [(model.item_index(e.item_id), e.event_type.code, e.strength) for e in recent]


def explain_picks(
    model: RankingModel,
    vector: np.ndarray,
    history: tuple[np.ndarray, np.ndarray],
    recent: Sequence[RecentEvent],
    picks: list[Recommendation],
) -> list[Recommendation]:
    """`picks` with their `because`; unchanged when the model cannot explain (no `explain` signature)."""
    if not picks:
        return picks
    indices = [model.item_index(pick.item_id) for pick in picks]
    contributions = model.explain(vector, history, recent_steps(model, recent), indices)
    if contributions is None:
        return picks
    items = model.items
    slot_items = history[0]
    return [
        pick.model_copy(
            update={
                "because": [
                    Because(item_id=str(items[int(slot_items[slot])]), share=share)
                    for slot, share in cited_slots(row)
                ]
            }
        )
        for pick, row in zip(picks, contributions, strict=True)
    ]
