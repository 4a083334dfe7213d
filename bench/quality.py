"""Recommendation quality on MovieLens-100K: the served TFLite model against three baselines.

    .venv/bin/python -m bench.quality            # full run, writes docs/quality.md
    .venv/bin/python -m bench.quality --quick    # smoke run on a slice of the data, writes nothing
                                                 # unless --out is given

Protocol (docs/quality.md repeats it next to the numbers):

* every user's ratings ordered by timestamp, ties kept in file order (stable sort);
* every rating is one ``rate`` event with strength rating/5 (the contract's encoding of a rating);
* leave-last-out: the last event of each user is the test item, the last-but-one the validation
  item; full ranking over the whole catalog, items the user has already rated excluded;
* hyperparameters of the model *and* of every baseline are chosen on validation (trained on
  everything before the validation item); the chosen configuration is then retrained from scratch
  on everything before the test item and scored once on test;
* the model is always scored through its exported ``.tflite`` behind LiteRT, folding each user's
  history through ``update`` one event at a time from zeros and calling ``rank`` — as serving does.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from nextpick_training.baselines import ItemKNN, Popularity, Transitions
from nextpick_training.evaluate import Metrics, Scorer, ServedModelScorer, evaluate, validation_test_split
from nextpick_training.export import ExportedModel, export_tflite
from nextpick_training.model import Hyperparameters, Interaction, train
from nextpick_training.movielens import DEFAULT_CACHE_DIR, load_ml100k

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_OUT = REPO_ROOT / "docs" / "quality.md"
RATE_EVENT = 5
K = 10
BAR_NDCG = 0.12

# Candidate model configurations tried on validation. The default run tries the production defaults
# only (they are the result of a wider search, see docs/quality.md); --search tries them all.
MODEL_CANDIDATES: list[dict[str, Any]] = [
    {},
    {"strength_power": 1.0},
    {"user_balance": 0.5},
    {"recency_boost": 3.0},
    {"weight_averaging": 0.0},
    {"dropout": 0.4, "embedding_dim": 96},
    {"exclude_seen_in_loss": False},
    {"epochs": 14},
]
# Baseline grids: cheap to fit, always searched in full.
KNN_GRID = [{"window": w, "decay": d} for w in (3, 5, 10, 20, 50) for d in (0.5, 0.6, 0.7, 0.8, 0.9, 1.0)]
TRANSITION_GRID = [
    {"window": w, "decay": d, "alpha": a, "skip_weight": s}
    for w in (5, 10, 20, 50)
    for d in (0.6, 0.7, 0.8, 0.9)
    for a in (1.0, 5.0, 20.0)
    for s in (0.0, 0.5, 1.0)
]


def build_sequences(
    rows: Sequence[tuple[int, int, float, int]],
) -> tuple[list[list[Interaction]], list[int]]:
    """Per-user time-ordered ``rate`` events and the vocabulary (``items[index]`` = movie id)."""
    by_user: dict[int, list[tuple[int, int, float]]] = {}
    for user, item, rating, timestamp in rows:
        by_user.setdefault(user, []).append((timestamp, item, rating))
    movie_ids = sorted({item for _u, item, _r, _t in rows})
    index = {movie: i + 1 for i, movie in enumerate(movie_ids)}
    sequences = []
    for user in sorted(by_user):
        events = sorted(by_user[user], key=lambda e: e[0])  # stable: ties keep file order
        sequences.append([(index[item], RATE_EVENT, rating / 5.0) for _t, item, rating in events])
    return sequences, [0, *movie_ids]


@dataclass
class Result:
    name: str
    params: dict[str, Any]
    valid: Metrics
    test: Metrics | None = None
    seconds: float = 0.0


def tune_baseline(
    name: str,
    factory: Callable[..., Scorer],
    grid: Sequence[dict[str, Any]],
    splits: tuple[Any, Any, Any, Any],
    num_items: int,
) -> Result:
    train_v, valid, train_t, test = splits
    best: Result | None = None
    for params in grid:
        metrics = evaluate(factory(train_v, num_items, **params), train_v, valid, num_items, k=K)
        if best is None or metrics.ndcg > best.valid.ndcg:
            best = Result(name, params, metrics)
    assert best is not None
    started = time.perf_counter()
    scorer = factory(train_t, num_items, **best.params)
    best.seconds = time.perf_counter() - started
    best.test = evaluate(scorer, train_t, test, num_items, k=K)
    return best


def served_metrics(
    hparams: Hyperparameters,
    train_sequences: list[list[Interaction]],
    held: Sequence[Interaction | None],
    num_items: int,
    log: Callable[[str], None],
) -> tuple[Metrics, float, float, int]:
    """Train, export, score through LiteRT.

    Returns (metrics, training wall seconds, training CPU seconds, model bytes). CPU seconds (all
    threads of this process) do not depend on what else the machine runs: on an idle 2-core machine
    the wall time is at least CPU / 2.
    """
    cpu_before = time.process_time()
    model = train(train_sequences, num_items, hparams, log=log)
    cpu_seconds = time.process_time() - cpu_before
    blob = export_tflite(model)
    lite = ExportedModel(blob)
    metrics = evaluate(ServedModelScorer(lite, lite.state_dim), train_sequences, held, num_items, k=K)
    return metrics, model.training_seconds, cpu_seconds, len(blob)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="tiny smoke run (200 users, 2 epochs)")
    parser.add_argument("--search", action="store_true", help="try every model candidate on validation")
    parser.add_argument(
        "--seeds",
        type=int,
        default=0,
        help="also retrain the final configuration with this many other seeds and report the spread on test",
    )
    parser.add_argument("--out", type=Path, default=None, help=f"report path (default {DEFAULT_OUT})")
    parser.add_argument("--cache-dir", type=Path, default=DEFAULT_CACHE_DIR)
    args = parser.parse_args(argv)

    def log(message: str) -> None:
        print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)

    started = time.perf_counter()
    sequences, vocabulary = build_sequences(load_ml100k(args.cache_dir))
    num_items = len(vocabulary)
    # MovieLens has one rating per user and movie: nobody returns to a movie, so the softmax masks what
    # the user has already rated (the shop default keeps it, since shoppers do return to items).
    base = Hyperparameters(exclude_seen_in_loss=True)
    if args.quick:
        sequences = sequences[:200]
        base = dataclasses.replace(base, epochs=2, embedding_dim=32, hidden_dim=64)
    splits = validation_test_split(sequences)
    train_v, valid, train_t, test = splits
    log(f"{len(sequences)} users, {num_items - 1} items, {sum(map(len, sequences))} events")

    baselines = [
        tune_baseline("popularity", Popularity, [{}], splits, num_items),
        tune_baseline("item-kNN", ItemKNN, KNN_GRID[:2] if args.quick else KNN_GRID, splits, num_items),
        tune_baseline(
            "transitions",
            Transitions,
            TRANSITION_GRID[:2] if args.quick else TRANSITION_GRID,
            splits,
            num_items,
        ),
    ]
    for b in baselines:
        log(
            f"{b.name} {b.params}: valid NDCG@{K} {b.valid.ndcg:.4f}, test {b.test.ndcg if b.test else 0:.4f}"
        )

    candidates = MODEL_CANDIDATES if args.search else MODEL_CANDIDATES[:1]
    tried: list[tuple[dict[str, Any], Metrics, float]] = []
    for overrides in candidates:
        hp = dataclasses.replace(base, **overrides)
        log(f"validation run {overrides or 'defaults'}")
        metrics, seconds, _cpu, _size = served_metrics(hp, train_v, valid, num_items, log)
        log(f"  served valid NDCG@{K} {metrics.ndcg:.4f} HR@{K} {metrics.hit_rate:.4f} ({seconds:.1f} s)")
        tried.append((overrides, metrics, seconds))
    chosen, chosen_valid, _ = max(tried, key=lambda t: t[1].ndcg)
    final_hp = dataclasses.replace(base, **chosen)

    log(f"final retrain on everything before the test item with {chosen or 'defaults'}")
    test_metrics, train_seconds, cpu_seconds, model_bytes = served_metrics(
        final_hp, train_t, test, num_items, log
    )
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    seed_runs = [(final_hp.seed, test_metrics)]
    for extra in range(1, args.seeds + 1):
        seed = final_hp.seed + extra
        log(f"seed-spread retrain with seed {seed}")
        metrics, *_rest = served_metrics(
            dataclasses.replace(final_hp, seed=seed), train_t, test, num_items, log
        )
        log(f"  seed {seed}: test NDCG@{K} {metrics.ndcg:.4f} HR@{K} {metrics.hit_rate:.4f}")
        seed_runs.append((seed, metrics))
    total_seconds = time.perf_counter() - started

    model_result = Result("nextpick model (served TFLite)", chosen, chosen_valid, test_metrics, train_seconds)
    rows = [model_result, *baselines]
    best_baseline_ndcg = max(b.test.ndcg for b in baselines if b.test)
    best_baseline_hr = max(b.test.hit_rate for b in baselines if b.test)
    checks = {
        f"beats every baseline on NDCG@{K}": test_metrics.ndcg > best_baseline_ndcg,
        f"beats every baseline on HR@{K}": test_metrics.hit_rate > best_baseline_hr,
        f"NDCG@{K} >= {BAR_NDCG}": test_metrics.ndcg >= BAR_NDCG,
        "full retrain < 120 s": train_seconds < 120.0,
    }
    report = render(
        rows,
        tried,
        final_hp,
        checks,
        (train_seconds, cpu_seconds, load),
        seed_runs,
        total_seconds,
        model_bytes,
        args,
        len(sequences),
        num_items,
    )
    print(tables(rows))
    for check, ok in checks.items():
        print(f"{'PASS' if ok else 'FAIL'}: {check}")
    out = args.out or (None if args.quick else DEFAULT_OUT)
    if out is not None:
        out.write_text(report)
        log(f"wrote {out}")
    return 0


def tables(rows: Sequence[Result]) -> str:
    lines = [
        f"| scorer | split | HR@{K} | NDCG@{K} | MRR@{K} | coverage@{K} |",
        "|---|---|---:|---:|---:|---:|",
    ]
    for split in ("test", "valid"):
        for r in rows:
            m = r.test if split == "test" else r.valid
            if m is not None:
                lines.append(
                    f"| {r.name} | {split} | {m.hit_rate:.4f} | {m.ndcg:.4f} | {m.mrr:.4f} | {m.coverage:.3f} |"
                )
    return "\n".join(lines)


def render(
    rows: Sequence[Result],
    tried: Sequence[tuple[dict[str, Any], Metrics, float]],
    final_hp: Hyperparameters,
    checks: dict[str, bool],
    timing: tuple[float, float, float],
    seed_runs: Sequence[tuple[int, Metrics]],
    total_seconds: float,
    model_bytes: int,
    args: argparse.Namespace,
    users: int,
    num_items: int,
) -> str:
    command = (
        ".venv/bin/python -m bench.quality"
        + (" --quick" if args.quick else "")
        + (" --search" if args.search else "")
        + (f" --seeds {args.seeds}" if args.seeds else "")
    )
    seed_section = ""
    if len(seed_runs) > 1:
        ndcgs = np.array([m.ndcg for _s, m in seed_runs])
        hrs = np.array([m.hit_rate for _s, m in seed_runs])
        seed_lines = "\n".join(
            f"| {s} | {m.hit_rate:.4f} | {m.ndcg:.4f} | {m.mrr:.4f} | {m.coverage:.3f} |"
            for s, m in seed_runs
        )
        seed_section = f"""
Seed spread (the same final configuration retrained with other seeds, scored on test; not used for any
choice): NDCG@10 mean **{ndcgs.mean():.4f}** (min {ndcgs.min():.4f}, max {ndcgs.max():.4f}), HR@10 mean
**{hrs.mean():.4f}** (min {hrs.min():.4f}, max {hrs.max():.4f}).

| seed | HR@10 | NDCG@10 | MRR@10 | coverage@10 |
|---|---:|---:|---:|---:|
{seed_lines}
"""
    baseline_params = "\n".join(f"- **{r.name}**: `{json.dumps(r.params)}`" for r in rows[1:])
    tried_lines = "\n".join(
        f"| `{json.dumps(o) if o else 'defaults'}` | {m.hit_rate:.4f} | {m.ndcg:.4f} | {s:.1f} |"
        for o, m, s in tried
    )
    train_seconds, cpu_seconds, load = timing
    check_lines = "\n".join(f"- {'✅' if ok else '❌'} {name}" for name, ok in checks.items())
    return f"""# Recommendation quality (MovieLens-100K)

Generated by `{command}` on {datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")}
({platform.machine()}, {_cores()} CPU cores, Python {platform.python_version()}). Total run time
{total_seconds:.0f} s. {"**Quick smoke run on a slice of the data: the numbers mean nothing.**" if args.quick else ""}

## Result on test

{tables(rows)}

{check_lines}
{seed_section}
Full retrain of the final model on MovieLens-100K ({users} users, {num_items - 1} items, everything before
each user's test item): **{train_seconds:.1f} s** wall time of training on this machine
({cpu_seconds:.1f} CPU seconds over all threads; 1-minute load average {load:.1f} at the end, i.e. other
work shared the cores), then TFLite export ({model_bytes / 1e6:.2f} MB float32).

## The model

`update` folds each event into a {final_hp.state_dim()}-float state: for each decay d in
`{list(final_hp.decays)}` a decayed sum of the (tied) item embeddings, `S = d*S + w*E[item]`, and its
normaliser `C = d*C + |w|` (w = per-event-type weight x strength^p), i.e. moving averages of taste from
"just now" (d=0.5) to "all history" (d=1); plus the embeddings of the last two items, a one-hot of the
last event type and its strength, so item-to-item transitions are learnable. `rank` maps the normalised
averages and last items through a linear path plus a one-hidden-layer ReLU MLP to a query vector and
scores every item as `query . E[i] + bias[i]`; excluded items get -1e10. Training is next-item
prediction with a full softmax over the catalog on every prefix of every sequence (label smoothing,
state dropout, AdamW, warm-up + cosine schedule); because the state is linear in the embeddings, the
state of every prefix is computed in closed form (a sparse carry over the full earlier history plus a
dense in-chunk decay matrix), identical to folding `update` from zeros (unit-tested).

## Protocol

- Every user's ratings ordered by timestamp; ties keep file order (stable sort).
- Every rating is one `rate` event (event type 5) with strength rating/5, the contract's encoding.
- Leave-last-out: last event per user = **test**, last-but-one = **validation**. Full ranking over the
  whole catalog (1682 movies); the user's already-rated movies and index 0 are excluded. Ties in a
  scorer's scores count as the expected value under random tie-breaking.
- HR@10 = target in the top 10; NDCG@10 = 1/log2(rank+1) if in the top 10; MRR@10 = 1/rank if in the
  top 10; coverage@10 = share of the catalog that appears in at least one user's top 10.
- **Model selection on validation**: every baseline's grid and the model's candidate configurations
  are trained on everything before the validation item and compared on validation NDCG@10.
- **Test**: the chosen configuration of each scorer is refitted **from scratch on everything before
  the test item** (train + validation item) and scored once on test.
- The model is scored **only through the exported `.tflite`** behind LiteRT: each user's history is
  folded through the `update` signature one event at a time from zeros, then `rank` is called with the
  exclusion mask — exactly what serving does, so there is no train/serve skew in these numbers.

## Chosen configurations

Model (`nextpick_training.model.Hyperparameters`; the shop default of `exclude_seen_in_loss` is
`false`, set to `true` here because nobody rates a movie twice; every override below is relative to
this base):

```json
{json.dumps(final_hp.as_dict(), indent=2)}
```

Baselines (grid-searched on validation):

{baseline_params}

Model candidates tried on validation in this run (served TFLite, validation split; `--search` tries
all of `MODEL_CANDIDATES`):

| overrides | HR@10 | NDCG@10 | training s |
|---|---:|---:|---:|
{tried_lines}

How the defaults were chosen (earlier validation runs on this protocol, served TFLite, validation
NDCG@10; runs marked * kept the best epoch by validation, the others the last epoch):

| configuration | valid NDCG@10 |
|---|---:|
| batch 256, lr 2e-3, 12 epochs * | 0.1329 |
| same + strength^1 (rating/5 weighs the averages) * | 0.1321 |
| same + dropout 0.5, embedding 96 * | 0.1333 |
| batch 512, lr 3e-3, 10 epochs | 0.1298 |
| same + user_balance 0.5 (users weigh alike, not prefixes) | 0.1304 |
| same + recency_boost 3 (recent prefixes weigh up to 4x) | 0.1307 |
| same + embedding 96, dropout 0.4 | 0.1318 |
| same, seen items *not* masked in the training softmax | 0.1170 |
| same + separate context embeddings for the last two items | 0.1247 |
| **same + weight averaging 0.995 (defaults)** | **0.1325** |
| same + weight averaging 0.998 (uncapped: averages in too-early weights) | 0.1289 |

Everything within ±0.003 of each other is noise at 943 validation users (the standard error of NDCG@10
is about 0.01), so the defaults take the cheapest configuration that holds up: half the optimizer
steps of the batch-256 runs, no dependence on the rating, no early stopping needed, plus an exponential
moving average of the weights over the last ~10% of the steps (free at training time, smooths the
epoch-to-epoch noise: 0.1317-0.1325 over the last four epochs instead of 0.1276-0.1300).
"""


def _cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


if __name__ == "__main__":
    raise SystemExit(main())
