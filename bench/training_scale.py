"""The whole retrain against the size of its window (issue 14, item 3): measured capacity.

    .venv/bin/python -m bench.training_scale --sizes 1000000 --epochs 2       # one size, merged into the results
    .venv/bin/python -m bench.training_scale --sizes 10000000 --epochs 1
    .venv/bin/python -m bench.training_scale --threads-probe 200000            # TF on 1 vs 2 threads
    .venv/bin/python -m bench.training_scale --read-memory 300000             # the read path's memory per row
    .venv/bin/python -m bench.training_scale --render-only                     # the docs from the saved results
    .venv/bin/python -m bench.training_scale --quick --results /tmp/r.json --out - # tiny, for the tests

Each size is a synthetic shop (`shop_columns`): item popularity Zipf(1.1) over the catalog, each shopper
has 10 staples (drawn from that law) that make up 70 % of their baskets, baskets of ~8 items every 2-12
days, ~60 events per shopper; written as Firehose writes the log (`bench.event_log_query.write_partitions`:
Parquet, Snappy, day partitions, 1 % redelivered, 0.1 % of shoppers erased). Then, in a child process
per size, the retrain's phases as the retrain runs them, each with its wall time, CPU time and peak RSS
(VmHWM, reset between phases through /proc/self/clear_refs):

* **read**: `window_query.read_window(DuckDbWindow(folder))`, the window query on DuckDB and its rows
  validated into the retrain's fold steps (the deployed DuckDB path first downloads the objects; Athena
  runs the query remotely);
* **dataset**: `data.build_dataset` with a catalog of every item (category and price attributes);
* **train**: `model.train` with the default hyperparameters for `--epochs` epochs (a retrain runs 12, no
  early stopping: it has no validation split); the setup (flattening, examples, sampler) is timed up to
  the first batch, the epochs from the training log;
* **export**, **evaluate** (the candidate through LiteRT on the gate's sample, `gate_max_users`, with the
  gate's protocol), **publish tables** (trending, bought together, the explore index; no S3 writes).

The results go to `docs/benchmarks/training-scale.json` (merged by size); the report
(`bench.training_scale_report`, written by `bench.training_scale_doc`) projects 12 epochs from the measured per-epoch time, the engines' cost
and the Lambda threshold. Nothing here is a timed assert.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path
from typing import Any

import numpy as np

from bench.event_log_query import END, _scanned_bytes, write_partitions

REPO_ROOT = Path(__file__).resolve().parent.parent
RESULTS = REPO_ROOT / "docs" / "benchmarks" / "training-scale.json"
ITEMS = 100_000
# The generated log spans up to ~150 days (a start within 30 days, then up to 12 baskets 2-12 days
# apart); the bench's window takes all of it so every generated event is in the window.
LOG_DAYS = 160
EVENTS_PER_SHOPPER = 60
BASKETS_PER_SHOPPER = 12
STAPLES = 10
STAPLE_SHARE = 0.7
CATEGORIES = 500


def shop_columns(events: int, items: int, seed: int = 0) -> dict[str, np.ndarray]:
    """The synthetic shop's purchases as columns (`user`, `item` in 1..items-1, `seconds` from the log's
    start), ordered by shopper and basket; vectorised, so 10M events take seconds."""
    rng = np.random.default_rng(seed)
    cdf = np.cumsum(1.0 / np.arange(1, items) ** 1.1)
    cdf /= cdf[-1]

    def popular(shape: Any) -> np.ndarray:
        return np.minimum(np.searchsorted(cdf, rng.random(shape)), items - 2) + 1

    users = max(1, events // EVENTS_PER_SHOPPER)
    baskets = users * BASKETS_PER_SHOPPER
    staples = popular((users, STAPLES))
    sizes = np.maximum(1, rng.poisson(8, baskets))
    basket = np.repeat(np.arange(baskets), sizes)
    shopper = basket // BASKETS_PER_SHOPPER
    own = rng.random(len(basket)) < STAPLE_SHARE
    item = np.where(own, staples[shopper, rng.integers(0, STAPLES, len(basket))], popular(len(basket)))
    # Each item once per basket; a shopper's baskets are added while they hold fewer than 60 events.
    key = np.unique(basket.astype(np.int64) * items + item)
    basket, item = key // items, key % items
    counts = np.bincount(basket, minlength=baskets).reshape(users, BASKETS_PER_SHOPPER)
    before = np.cumsum(counts, axis=1) - counts
    keep = (before < EVENTS_PER_SHOPPER).ravel()[basket]
    basket, item = basket[keep], item[keep]
    gaps = rng.integers(2, 13, (users, BASKETS_PER_SHOPPER)) * 86_400
    starts = rng.integers(0, 30, users)[:, None] * 86_400
    seconds = (starts + np.cumsum(gaps, axis=1)).ravel()[basket]
    return {
        "user": (basket // BASKETS_PER_SHOPPER)[:events],
        "item": item[:events],
        "seconds": seconds[:events],
    }


def write_shop_log(folder: Path, events: int, items: int) -> None:
    """The shop's purchases as the event log's Parquet partitions under `folder`."""
    from nextpick_training.window_query import connect_duckdb

    start = END - timedelta(days=LOG_DAYS)
    shop = shop_columns(events, items)
    with connect_duckdb() as db:
        db.register("shop", {name: np.ascontiguousarray(column) for name, column in shop.items()})
        db.execute(
            f"""
CREATE TABLE events AS
SELECT 'e' || row_number() OVER () AS event_id, 'u' || "user" AS user_id,
    TIMESTAMPTZ '{start.isoformat()}' + to_seconds("seconds") AS stamped, 'purchase' AS event_type,
    'i' || item AS item_id
FROM shop
"""
        )
        db.unregister("shop")
        del shop
        write_partitions(db, folder, start, LOG_DAYS)


def shop_catalog(items: int) -> list[Any]:
    from nextpick.domain.events import CatalogItem

    return [
        CatalogItem(item_id=f"i{i}", category=f"c{i % CATEGORIES}", price=float(1 + i % 97), stock=10)
        for i in range(1, items)
    ]


class Phases:
    """Wall time, CPU time (all threads) and peak RSS of each phase of one process."""

    def __init__(self) -> None:
        self.figures: dict[str, dict[str, float]] = {}
        self.loads: list[float] = []

    @contextmanager
    def phase(self, name: str) -> Iterator[None]:
        _reset_peak_rss()
        wall, cpu = time.perf_counter(), time.process_time()
        yield
        self.figures[name] = {
            "wall_s": round(time.perf_counter() - wall, 2),
            "cpu_s": round(time.process_time() - cpu, 2),
            "peak_rss_mb": round(_peak_rss_mb()),
            "rss_after_mb": round(_rss_mb()),
        }
        self.loads.append(os.getloadavg()[0])
        print(f"[{time.strftime('%H:%M:%S')}] {name}: {self.figures[name]}", file=sys.stderr, flush=True)


def _status(field: str) -> float:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(field):
                return int(line.split()[1]) / 1024
    return float("nan")


def _peak_rss_mb() -> float:
    return _status("VmHWM:")


def _rss_mb() -> float:
    return _status("VmRSS:")


def _reset_peak_rss() -> None:
    # "5" resets the peak resident set size to the current one (Linux >= 4.0, proc(5)).
    try:
        with open("/proc/self/clear_refs", "w") as refs:
            refs.write("5")
    except OSError:
        pass


def _first_batch_clock() -> tuple[list[float], Callable[[], None]]:
    """When `model.train` starts its first batch (the end of its setup): a wrapper on the one function
    every batch goes through; returns (the times seen, the undo)."""
    from nextpick_training.model import batches

    seen: list[float] = []
    original = batches.example_batch

    def timed(*args: Any, **kwargs: Any) -> Any:
        if not seen:
            seen.append(time.perf_counter())
        return original(*args, **kwargs)

    batches.example_batch = timed

    def undo() -> None:
        batches.example_batch = original

    return seen, undo


def run_one(events: int, items: int, epochs: int, threads: int | None) -> dict[str, Any]:
    """The retrain's phases on one generated log, in this process."""
    if threads:
        import tensorflow as tf

        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(threads)
    from nextpick_training import data, export, together
    from nextpick_training import explore_index as explore_index_lib
    from nextpick_training.event_log import LogStats
    from nextpick_training.model import Hyperparameters, train
    from nextpick_training.pipeline import RetrainResult, RetrainStatus, evaluate_candidate
    from nextpick_training.settings import TrainingSettings
    from nextpick_training.window_query import DuckDbWindow, connect_duckdb, create_log_view, read_window
    from nextpick_training.window_query import window_sql as sql_of

    phases = Phases()
    start, end = END - timedelta(days=LOG_DAYS), END
    settings = TrainingSettings(training_window_days=LOG_DAYS)
    out: dict[str, Any] = {"events_generated": events, "items": items, "epochs": epochs, "threads": threads}
    with tempfile.TemporaryDirectory(prefix="nextpick-train-scale-") as tmp:
        folder = Path(tmp) / "events"
        with phases.phase("generate"):
            write_shop_log(folder, events, items)
        sql = sql_of("event_log", start, end)
        total, scanned = _scanned_bytes(folder, sql, (start - timedelta(days=1)).strftime("%Y-%m-%d"))
        out |= {"parquet_bytes": total, "athena_scanned_bytes": scanned}
        with phases.phase("query"), connect_duckdb() as db:
            create_log_view(db, folder)
            (out["rows"],) = db.execute(f"SELECT count(*) FROM ({sql})").fetchone() or (0,)
        stats = LogStats()
        with phases.phase("read"):
            records = read_window(DuckDbWindow(folder), start, end, stats)
    out["log"] = stats.as_dict()
    with phases.phase("dataset"):
        dataset = data.build_dataset(records, shop_catalog(items))
    out |= {
        "events": dataset.events,
        "train_events": dataset.train_events,
        "users": len(dataset.users),
        "vocabulary": dataset.num_items,
        "holdout_users": len(dataset.holdout_users),
    }
    epoch_ends: list[float] = []
    first_batch, undo = _first_batch_clock()
    with phases.phase("train"):
        began = time.perf_counter()
        trained = train(
            dataset.train_sequences,
            dataset.num_items,
            Hyperparameters(epochs=epochs),
            item_tokens=dataset.item_tokens,
            log=lambda _: epoch_ends.append(time.perf_counter()),
        )
    undo()
    out["setup_s"] = round(first_batch[0] - began, 2)
    # Epoch 1 also traces the training step's graph (once, seconds): kept in, so a slight overestimate.
    out["epoch_s"] = [
        round(b - a, 2) for a, b in zip([first_batch[0], *epoch_ends], epoch_ends, strict=False)
    ]
    with phases.phase("export"):
        tflite = export.export_tflite(trained)
    out["model_mb"] = round(len(tflite) / 2**20, 1)
    sample = dataset.with_holdout_sample(settings.gate_max_users)
    result = RetrainResult(status=RetrainStatus.FAILED, reason="bench", started_at=END)
    with phases.phase("evaluate"):
        evaluate_candidate(tflite, sample, settings, result)
    out["evaluated_users"] = len(sample.holdout_users)
    out["candidate_metrics"] = result.candidate_metrics
    with phases.phase("publish_tables"):
        data.trending_items(records, end)
        scoring = together.PartnerScoring()
        orders = together.purchase_orders(records, data.vocabulary_index(dataset.items))
        together.partner_table(orders, len(dataset.items), scoring)
        explore_index_lib.for_model(trained.tables(), export.ExportedModel(tflite))
    out["phases"] = phases.figures
    out["load_average"] = round(float(np.mean(phases.loads)), 2)
    out["load_average_max"] = round(float(np.max(phases.loads)), 2)
    return out


def read_memory(events: int, items: int) -> dict[str, float]:
    """MB the window's answer takes in this process, per row: all rows at once as dicts
    (`DuckDbWindow.rows`) against the records `read_window` keeps, reading 50,000 rows at a time."""
    import gc

    from nextpick_training.event_log import LogStats
    from nextpick_training.window_query import DuckDbWindow, read_window

    start, end = END - timedelta(days=LOG_DAYS), END
    with tempfile.TemporaryDirectory(prefix="nextpick-train-scale-") as tmp:
        folder = Path(tmp) / "events"
        write_shop_log(folder, events, items)
        engine = DuckDbWindow(folder)
        gc.collect()
        base = _rss_mb()
        _reset_peak_rss()
        records = read_window(engine, start, end, LogStats())
        kept, batched_peak = _rss_mb() - base, _peak_rss_mb() - base
        count = len(records)
        del records
        gc.collect()
        base = _rss_mb()
        rows = engine.rows(start, end, LogStats())
        as_dicts = _rss_mb() - base
    return {
        "rows": count,
        "records_bytes_per_row": kept * 2**20 / count,
        "batched_peak_mb": batched_peak,
        "dict_rows_bytes_per_row": as_dicts * 2**20 / len(rows),
    }


def run_child(events: int, items: int, epochs: int, threads: int | None = None) -> dict[str, Any]:
    command = [sys.executable, "-m", "bench.training_scale", "--one", str(events), str(items), str(epochs)]
    if threads:
        command += ["--threads", str(threads)]
    print(
        f"[{time.strftime('%H:%M:%S')}] {events:,} events x {items:,} items ...", file=sys.stderr, flush=True
    )
    done = subprocess.run(command, stdout=subprocess.PIPE, text=True, cwd=REPO_ROOT, check=True)
    return dict(json.loads(done.stdout.strip().splitlines()[-1]))


def load_results(path: Path) -> dict[str, Any]:
    return dict(json.loads(path.read_text())) if path.exists() else {"sizes": {}, "thread_scaling": None}


def main(argv: list[str] | None = None) -> int:
    from bench import training_scale_doc as doc
    from bench import training_scale_report as report

    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sizes", default="", help="events per size, comma separated")
    parser.add_argument("--items", type=int, default=ITEMS)
    parser.add_argument("--epochs", type=int, default=2, help="epochs measured (a retrain runs 12)")
    parser.add_argument("--threads-probe", type=int, metavar="EVENTS", help="train on 1 then 2 TF threads")
    parser.add_argument("--read-memory", type=int, metavar="EVENTS", help="rows as dicts vs records, MB")
    parser.add_argument("--results", type=Path, default=RESULTS)
    parser.add_argument("--out", default=str(report.DEFAULT_OUT), help="report path, or - for stdout")
    parser.add_argument("--capacity", type=Path, default=report.CAPACITY_DOC, help="capacity.md to update")
    parser.add_argument("--render-only", action="store_true")
    parser.add_argument("--quick", action="store_true", help="a tiny log (3,000 events, 500 items), 1 epoch")
    parser.add_argument(
        "--one", nargs=3, type=int, metavar=("EVENTS", "ITEMS", "EPOCHS"), help=argparse.SUPPRESS
    )
    parser.add_argument("--threads", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.one:
        events, items, epochs = args.one
        print(json.dumps(run_one(events, items, epochs, args.threads)))
        return 0
    results = load_results(args.results)
    if args.quick:
        results["sizes"]["3000"] = run_child(3_000, 500, 1)
    for size in filter(None, args.sizes.split(",")):
        results["sizes"][str(int(size))] = run_child(int(size), args.items, args.epochs)
    if args.read_memory:
        results["read_memory"] = read_memory(args.read_memory, args.items)
    if args.threads_probe:
        results["thread_scaling"] = {
            str(n): run_child(args.threads_probe, args.items, 2, threads=n) for n in (1, 2)
        }
    if not args.render_only:
        results["hardware"] = report.hardware()
        args.results.parent.mkdir(parents=True, exist_ok=True)
        args.results.write_text(json.dumps(results, indent=1, sort_keys=True) + "\n")
    text = doc.render(results)
    if args.out == "-":
        print(text)
    else:
        Path(args.out).write_text(text)
        doc.update_capacity(args.capacity, results)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
