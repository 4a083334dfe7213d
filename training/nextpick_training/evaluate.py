"""Offline evaluation: leave-last-out splits and full-catalog ranking metrics.

Every scorer is called exactly like serving calls the model: ``scorer(history, exclude) -> scores``
for the whole catalog, where ``exclude`` is the contract's float mask (1.0 = must not be
recommended). For the served model the scorer folds the history through the exported ``update`` one
event at a time from zeros and calls the exported ``rank`` (:class:`ServedModelScorer`), so there is
no train/serve skew in what we measure.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Protocol

import numpy as np

from nextpick.domain.state import Interaction, fold_interactions

EXCLUDED_THRESHOLD = -1e9


class Scorer(Protocol):
    def __call__(self, history: Sequence[Interaction], exclude: np.ndarray) -> np.ndarray: ...


class ContractModel(Protocol):
    @property
    def state_dim(self) -> int: ...

    def update(self, state: np.ndarray, item: int, event_type: int, strength: float) -> np.ndarray: ...

    def rank(self, state: np.ndarray, exclude: np.ndarray) -> np.ndarray: ...


@dataclass(frozen=True)
class Metrics:
    k: int
    users: int
    hit_rate: float  # HR@k: share of users whose held-out item is in their top k
    ndcg: float  # NDCG@k with one relevant item: 1/log2(rank+1) if rank <= k
    mrr: float  # MRR@k: 1/rank if rank <= k
    coverage: float  # share of recommendable catalog items appearing in any top-k list
    # Each evaluated user's NDCG@k, in input order: what a paired comparison of two models needs.
    ndcg_per_user: tuple[float, ...] = field(default=(), repr=False, compare=False)

    def as_dict(self) -> dict[str, float]:
        return {k: float(v) for k, v in asdict(self).items() if k != "ndcg_per_user"}


def leave_last_out(
    sequences: Sequence[Sequence[Interaction]],
) -> tuple[list[list[Interaction]], list[Interaction | None]]:
    """Split each time-ordered sequence into (everything but the last event, the last event).

    Sequences with fewer than two events keep everything for training and hold nothing out (None).
    """
    train: list[list[Interaction]] = []
    held_out: list[Interaction | None] = []
    for seq in sequences:
        if len(seq) >= 2:
            train.append(list(seq[:-1]))
            held_out.append(seq[-1])
        else:
            train.append(list(seq))
            held_out.append(None)
    return train, held_out


def validation_test_split(
    sequences: Sequence[Sequence[Interaction]],
) -> tuple[
    list[list[Interaction]], list[Interaction | None], list[list[Interaction]], list[Interaction | None]
]:
    """(train for validation, validation item, train for test, test item).

    Test = last event, validation = last-but-one; the test model may train on everything before the
    test event (that is, train-for-validation plus the validation event).
    """
    train_test, test = leave_last_out(sequences)
    train_valid, valid = leave_last_out(train_test)
    return train_valid, valid, train_test, test


class ServedModelScorer:
    """Scores exactly as serving does: fold from zeros through ``update``, then ``rank``."""

    def __init__(self, model: ContractModel, state_dim: int) -> None:
        self.model = model
        self.state_dim = state_dim

    def __call__(self, history: Sequence[Interaction], exclude: np.ndarray) -> np.ndarray:
        state = np.zeros(self.state_dim, dtype=np.float32)
        return self.model.rank(fold_interactions(self.model, history, state), exclude)


def _expected_hit_ndcg_mrr(greater: int, ties: int, k: int) -> tuple[float, float, float]:
    """Metrics of one user, averaged over random tie-breaking.

    With ``greater`` items scoring strictly higher and ``ties`` other items scoring the same, the
    target's position is uniform on greater+1 .. greater+ties+1. Averaging makes a constant scorer
    score like random guessing instead of "first index wins".
    """
    first, last = greater + 1, greater + ties + 1
    count = last - first + 1
    hit = ndcg = mrr = 0.0
    for position in range(first, min(last, k) + 1):
        hit += 1.0
        ndcg += 1.0 / math.log2(position + 1)
        mrr += 1.0 / position
    return hit / count, ndcg / count, mrr / count


def evaluate(
    scorer: Scorer,
    histories: Sequence[Sequence[Interaction]],
    targets: Sequence[Interaction | int | None],
    num_items: int,
    k: int = 10,
    exclude_seen: bool = True,
) -> Metrics:
    """Full-catalog ranking metrics of ``scorer`` on (history -> next item) cases.

    ``targets[u]`` is the held-out item (an index or an Interaction; None = skip the user). Index 0
    is always excluded; with ``exclude_seen`` so is every item in the user's history. Items scoring
    ``<= -1e9`` count as excluded, as in serving.
    """
    hits = ndcgs = mrrs = 0.0
    users = 0
    per_user: list[float] = []
    recommended = np.zeros(num_items, dtype=bool)
    for history, target in zip(histories, targets, strict=True):
        if target is None:
            continue
        target_item = int(target[0]) if isinstance(target, tuple) else int(target)
        exclude = np.zeros(num_items, dtype=np.float32)
        exclude[0] = 1.0
        if exclude_seen:
            seen = [item for item, _e, _s in history if 0 < item < num_items]
            exclude[seen] = 1.0
        scores = np.asarray(scorer(history, exclude), dtype=np.float64)
        allowed = (exclude < 0.5) & (scores > EXCLUDED_THRESHOLD)
        users += 1
        ndcg = 0.0
        if allowed[target_item]:
            target_score = scores[target_item]
            greater = int(np.count_nonzero(allowed & (scores > target_score)))
            ties = int(np.count_nonzero(allowed & (scores == target_score))) - 1
            hit, ndcg, mrr = _expected_hit_ndcg_mrr(greater, ties, k)
            hits, ndcgs, mrrs = hits + hit, ndcgs + ndcg, mrrs + mrr
        per_user.append(ndcg)
        # Coverage uses the list serving would show: top k, ties broken by lower index (stable sort).
        candidates = np.flatnonzero(allowed)
        order = np.argsort(-scores[candidates], kind="stable")[:k]
        recommended[candidates[order]] = True
    n = max(users, 1)
    return Metrics(
        k=k,
        users=users,
        hit_rate=hits / n,
        ndcg=ndcgs / n,
        mrr=mrrs / n,
        coverage=float(recommended[1:].sum()) / max(num_items - 1, 1),
        ndcg_per_user=tuple(per_user),
    )
