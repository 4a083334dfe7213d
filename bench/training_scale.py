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
from nextpick_training.model.reference import Hyperparameters

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
    from nextpick_training.model import train

    sequences = synthetic_shop(events, items)
    started, cpu = time.perf_counter(), time.process_time()
    epoch_ends: list[float] = []
    model = train(
        sequences, items, Hyperparameters(epochs=epochs), log=lambda _: epoch_ends.append(time.perf_counter())
    )
    train_seconds = time.perf_counter() - started
    # The first epoch also pays for building the examples and tracing the graph; later ones do not.
    gaps = np.diff([started, *epoch_ends])
    epoch_seconds = float(np.mean(gaps[1:])) if len(gaps) > 1 else float(gaps[0])
    blob = export_tflite(model)
    return {
        "events": float(sum(map(len, sequences))),
        "items": float(items),
        "users": float(len(sequences)),
        "train_seconds": round(train_seconds, 1),
        "epoch_seconds": round(epoch_seconds, 1),
        "setup_seconds": round(float(gaps[0]) - epoch_seconds, 1),
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
    parser.add_argument("--epochs", type=int, default=2)
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
    default_epochs = Hyperparameters().epochs
    lines = [
        "# Training cost against events and catalog size",
        "",
        f"Command: `.venv/bin/{command.strip()}` on {os.cpu_count()} cores ({platform.machine()}), "
        f"load average at the end {os.getloadavg()[0]:.1f}. Synthetic shops (see `bench/training_scale.py`): "
        f"Zipf(1.1) item popularity, staples, baskets. {epochs} epoch(s) each, default hyperparameters; "
        f"a retrain runs up to {default_epochs} epochs (early stopping on its validation), projected below "
        "from the measured setup (examples with the item-history replay, graph tracing: the first epoch's "
        "extra time) and the mean cost of the later epochs.",
        "",
        "| events | items | users | train s | train CPU s | setup s | s per epoch | export s | model MB "
        f"| peak RSS MB | {default_epochs}-epoch retrain, projected s |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        export = r["total_seconds"] - r["train_seconds"]
        projected = r["setup_seconds"] + r["epoch_seconds"] * default_epochs + export
        lines.append(
            f"| {int(r['events']):,} | {int(r['items']):,} | {int(r['users']):,} | {r['train_seconds']} | "
            f"{r['train_cpu_seconds']} | {r['setup_seconds']} | {r['epoch_seconds']} | {export:.1f} | "
            f"{r['model_mb']} | {int(r['peak_rss_mb'])} | {projected:.0f} |"
        )
    biggest = max(rows, key=lambda r: r["events"])
    per_event = (biggest["setup_seconds"] + biggest["epoch_seconds"] * default_epochs) / biggest["events"]
    fits = int(LAMBDA_SECONDS * 0.8 / per_event)
    lines += [
        "",
        f"Largest log one retrain Lambda ({LAMBDA_SECONDS} s, {LAMBDA_MB:,} MB) takes at {default_epochs} epochs, "
        f"from the largest row's cost per event and epoch, with 20 % left for reading the log, the gate and "
        f"publishing: about **{fits:,} events** (more with fewer epochs: the cost is linear in events x "
        f"epochs and flat in catalog size). Memory is not the limit there: peak {int(biggest['peak_rss_mb'])} MB "
        f"at {int(biggest['events']):,} events.",
        "",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    raise SystemExit(main())
