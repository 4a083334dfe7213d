"""Training cost against event count and catalog size (issue 8, point 5).

    .venv/bin/python -m bench.training_scale                 # the three sizes, writes docs/training-scale.md
    .venv/bin/python -m bench.training_scale --sizes 100000:1700 --epochs 1 --out -   # one size, stdout

Each size is a synthetic shop with a realistic power law: item popularity is Zipf(1.1) over the
catalog, each shopper has ~10 staples (drawn from that law) that make up 70 % of their baskets,
baskets of ~8 items every 2-12 days. Each size trains the production model (default hyperparameters,
`--epochs` epochs, no early stopping) in its own child process, which reports its wall time, CPU time
and peak RSS (VmHWM). Nothing here is a timed assert: the figures go in the report.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from nextpick.domain.state import TimedInteraction

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_SIZES = ((100_000, 1_700), (150_000, 15_000), (1_000_000, 100_000))
DEFAULT_OUT = REPO_ROOT / "docs" / "training-scale.md"
LAMBDA_SECONDS, LAMBDA_MB = 900, 10_240
PURCHASE = 4


def synthetic_shop(events: int, items: int, seed: int = 0) -> list[list[TimedInteraction]]:
    rng = np.random.default_rng(seed)
    weights = 1.0 / np.arange(1, items) ** 1.1
    weights /= weights.sum()
    users = max(1, events // 60)
    sequences: list[list[TimedInteraction]] = []
    total = 0
    for _ in range(users):
        staples = rng.choice(np.arange(1, items), size=10, replace=False, p=weights)
        t = 1.7e9 + float(rng.integers(0, 30)) * 86_400
        seq: list[TimedInteraction] = []
        while len(seq) < 60 and total + len(seq) < events:
            t += float(rng.integers(2, 13)) * 86_400
            size = max(1, int(rng.poisson(8)))
            own = rng.random(size) < 0.7
            basket = np.where(
                own, rng.choice(staples, size), rng.choice(np.arange(1, items), size, p=weights)
            )
            seq.extend((int(item), PURCHASE, 1.0, t) for item in np.unique(basket))
        total += len(seq)
        sequences.append(seq)
        if total >= events:
            break
    return sequences


def run_one(events: int, items: int, epochs: int) -> dict[str, float]:
    """Train once in this process; report wall and CPU seconds and the peak RSS."""
    from nextpick_training.export import export_tflite
    from nextpick_training.model import Hyperparameters, train

    sequences = synthetic_shop(events, items)
    started, cpu = time.perf_counter(), time.process_time()
    model = train(sequences, items, Hyperparameters(epochs=epochs))
    train_seconds = time.perf_counter() - started
    blob = export_tflite(model)
    return {
        "events": float(sum(map(len, sequences))),
        "items": float(items),
        "users": float(len(sequences)),
        "train_seconds": round(train_seconds, 1),
        "train_cpu_seconds": round(time.process_time() - cpu, 1),
        "total_seconds": round(time.perf_counter() - started, 1),
        "model_mb": round(len(blob) / 2**20, 1),
        "peak_rss_mb": round(_peak_rss_mb(), 0),
    }


def _peak_rss_mb() -> float:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sizes", default=",".join(f"{e}:{i}" for e, i in DEFAULT_SIZES))
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--out", default=str(DEFAULT_OUT), help="report path, or - for stdout")
    parser.add_argument(
        "--one", nargs=3, type=int, metavar=("EVENTS", "ITEMS", "EPOCHS"), help=argparse.SUPPRESS
    )
    args = parser.parse_args(argv)
    if args.one:
        print(json.dumps(run_one(*args.one)))
        return 0
    rows = []
    for spec in args.sizes.split(","):
        events, items = (int(x) for x in spec.split(":"))
        command = [
            sys.executable,
            "-m",
            "bench.training_scale",
            "--one",
            str(events),
            str(items),
            str(args.epochs),
        ]
        print(
            f"[{time.strftime('%H:%M:%S')}] {events} events x {items} items ...", file=sys.stderr, flush=True
        )
        done = subprocess.run(command, capture_output=True, text=True, cwd=REPO_ROOT, check=True)
        rows.append(json.loads(done.stdout.strip().splitlines()[-1]))
        print(json.dumps(rows[-1]), file=sys.stderr, flush=True)
    report = render(rows, args.epochs, " ".join(["python -m bench.training_scale", *(argv or sys.argv[1:])]))
    if args.out == "-":
        print(report)
    else:
        Path(args.out).write_text(report)
    return 0


def render(rows: list[dict[str, float]], epochs: int, command: str) -> str:
    lines = [
        "# Training cost against events and catalog size",
        "",
        f"Command: `.venv/bin/{command.strip()}` on {os.cpu_count()} cores ({platform.machine()}), "
        f"load average at the end {os.getloadavg()[0]:.1f}. Synthetic shops (see `bench/training_scale.py`): "
        f"Zipf(1.1) item popularity, staples, baskets. {epochs} epochs each, default hyperparameters.",
        "",
        "| events | items | users | train s | train CPU s | train + export s | model MB | peak RSS MB | s per 1k events per epoch |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        per = r["train_seconds"] / max(1.0, r["events"] / 1000) / epochs
        lines.append(
            f"| {int(r['events']):,} | {int(r['items']):,} | {int(r['users']):,} | {r['train_seconds']} | "
            f"{r['train_cpu_seconds']} | {r['total_seconds']} | {r['model_mb']} | {int(r['peak_rss_mb'])} | {per:.3f} |"
        )
    biggest = max(rows, key=lambda r: r["events"])
    per_event = biggest["total_seconds"] / biggest["events"]
    fits = int(LAMBDA_SECONDS * 0.8 / per_event)
    lines += [
        "",
        f"Largest log that fits one retrain Lambda ({LAMBDA_SECONDS} s, {LAMBDA_MB} MB), from the largest row's "
        f"cost per event with 20 % left for reading the log and the gate: about **{fits:,} events** at "
        f"{epochs} epochs; memory is not the limit below that (peak {int(biggest['peak_rss_mb'])} MB at "
        f"{int(biggest['events']):,} events).",
        "",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    raise SystemExit(main())
