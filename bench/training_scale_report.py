"""docs/training-scale.md and capacity.md's "## Training" from `bench.training_scale`'s saved results.

Everything projected here is labelled so, and derived from the measured figures by the rules stated in
the report: 12 epochs from the measured per-epoch time; other machines' epochs from the measured
1-thread vs 2-thread speed-up through Amdahl's law; costs from the list prices below.
"""

from __future__ import annotations

import os
import platform
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.common import fmt, table
from bench.cost import PRICES
from bench.event_log_query import ATHENA_MINIMUM_BYTES, TB
from bench.training_scale_cost import (
    ENGINES,
    LAMBDA_SECONDS,
    Engine,
    billed_dollars,
    is_lambda,
)

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_OUT = REPO_ROOT / "docs" / "training-scale.md"
CAPACITY_DOC = REPO_ROOT / "docs" / "capacity.md"
COMMAND = ".venv/bin/python -m bench.training_scale"
RETRAIN_EPOCHS = 12  # Hyperparameters().epochs; the retrain has no validation split, so no early stop
# Of Lambda's 900 s, what the threshold lets the measured phases take: the rest covers the container's
# start and image load, the S3 transfers the bench does not make, and a slower shared host.
LAMBDA_BUDGET_SHARE = 0.8
# The phases besides training, at the retrain's default sizes. The gate scores the live model on the
# same sample as the candidate: the candidate's measured evaluation counts twice.
EVALUATIONS = 2
# Phases of one retrain in the order it runs them; "query" (the engine's own work) is inside "read".
PROJECTED_EVENTS = 100_000_000
DAILY_SECONDS = 86_400  # the retrain runs daily: a run must end before the next
RETRAIN_PHASES = ("read", "dataset", "train", "export", "evaluate", "publish_tables")


def hardware() -> dict[str, Any]:
    lscpu = subprocess.run(["lscpu"], capture_output=True, text=True, check=False).stdout
    fields = dict(
        (k.strip(), v.strip()) for k, v in (line.split(":", 1) for line in lscpu.splitlines() if ":" in line)
    )
    with open("/proc/meminfo") as meminfo:
        memory_kb = int(meminfo.readline().split()[1])
    return {
        "cpu": fields.get("Model name", "?"),
        "cpus": os.cpu_count(),
        "machine": platform.machine(),
        "memory_gb": round(memory_kb / 2**20, 1),
        "hypervisor": fields.get("Hypervisor vendor", ""),
    }


@dataclass(frozen=True)
class Size:
    """One measured size, with its 12-epoch projection on this machine."""

    raw: dict[str, Any]
    # CPU time in place of wall time: what the phases cost without the other jobs on this shared
    # machine if they ran on one core (the epochs and the setup by the train phase's CPU/wall ratio).
    by_cpu: bool = False

    @property
    def events(self) -> int:
        return int(self.raw["events"])

    def wall(self, phase: str) -> float:
        return float(self.raw["phases"][phase]["cpu_s" if self.by_cpu else "wall_s"])

    @property
    def _train_share(self) -> float:
        train = self.raw["phases"]["train"]
        return float(train["cpu_s"] / train["wall_s"]) if self.by_cpu else 1.0

    def cpu(self, phase: str) -> float:
        return float(self.raw["phases"][phase]["cpu_s"])

    @property
    def epoch_s(self) -> float:
        """Per epoch: the mean of the epochs after the first (the first also traces the graph) when
        there are several, else the first."""
        epochs = list(self.raw["epoch_s"])
        mean = sum(epochs[1:]) / len(epochs[1:]) if len(epochs) > 1 else float(epochs[0])
        return mean * self._train_share

    @property
    def fixed_s(self) -> float:
        """Everything but the epochs, the gate's second evaluation included."""
        evaluate = self.wall("evaluate") * EVALUATIONS
        return (
            sum(self.wall(p) for p in ("read", "dataset", "export", "publish_tables"))
            + evaluate
            + self.raw["setup_s"] * self._train_share
        )

    def projected_s(self, epoch_factor: float = 1.0) -> float:
        return self.fixed_s + RETRAIN_EPOCHS * self.epoch_s * epoch_factor

    @property
    def peak_mb(self) -> float:
        return max(float(self.raw["phases"][p]["peak_rss_mb"]) for p in RETRAIN_PHASES)


def sizes_of(results: dict[str, Any], by_cpu: bool = False) -> list[Size]:
    return sorted((Size(r, by_cpu) for r in results["sizes"].values()), key=lambda s: s.events)


def _line(points: list[tuple[float, float]]) -> tuple[float, float]:
    """(intercept, slope) through the two largest points; through the origin with one point."""
    if len(points) == 1:
        return 0.0, points[0][1] / points[0][0]
    (x0, y0), (x1, y1) = points[-2:]
    slope = (y1 - y0) / (x1 - x0)
    return max(0.0, y1 - slope * x1), slope


@dataclass(frozen=True)
class Projection:
    """The measured sizes as lines in events (fixed phases, one epoch, peak RSS), through the two largest
    sizes, and the thread probe's Amdahl fraction."""

    sizes: list[Size]
    speedup_2: float  # measured: an epoch on 2 TF threads vs 1
    parallel: float  # Amdahl's p implied by it

    @classmethod
    def of(cls, results: dict[str, Any], by_cpu: bool = False) -> Projection:
        probe = results.get("thread_scaling") or {}
        ratio = Size(probe["1"]).epoch_s / Size(probe["2"]).epoch_s if "1" in probe and "2" in probe else 1.0
        return cls(sizes_of(results, by_cpu), ratio, min(1.0, max(0.0, 2 * (1 - 1 / ratio))))

    def _fit(self, value: Any, events: float) -> float:
        intercept, slope = _line([(s.events, value(s)) for s in self.sizes])
        return intercept + slope * events

    def fixed_s(self, events: float) -> float:
        return self._fit(lambda s: s.fixed_s, events)

    def epoch_s(self, events: float, vcpus: int = 2) -> float:
        return self._fit(lambda s: s.epoch_s, events) * self.scaled(vcpus)

    def peak_gb(self, events: float) -> float:
        return self._fit(lambda s: s.peak_mb, events) / 1024

    def scaled(self, vcpus: int) -> float:
        """An epoch's time on `vcpus` over its time on this machine's 2 (Amdahl, same per-core speed)."""

        def time_on(n: int) -> float:
            return (1 - self.parallel) + self.parallel / n

        return time_on(vcpus) / time_on(2)

    def run_s(self, events: float, vcpus: int = 2) -> float:
        """A 12-epoch retrain's work (no start-up) on `vcpus`."""
        return self.fixed_s(events) + RETRAIN_EPOCHS * self.epoch_s(events, vcpus)

    def misfit(self, engine: Engine, events: float) -> str:
        """Why `engine` cannot run a retrain of `events` ("" if it can): the window's projected peak
        memory over 80 % of the machine's; on Lambda, the work over the threshold's budget; elsewhere,
        a run longer than a day (the retrain is daily)."""
        if self.peak_gb(events) > engine.memory_gb * 0.8:
            return "memory"
        if is_lambda(engine):
            return "" if self.run_s(events) <= LAMBDA_SECONDS * LAMBDA_BUDGET_SHARE else "over 900 s"
        return (
            ""
            if billed_dollars(engine, self.run_s(events, engine.vcpus))[0] <= DAILY_SECONDS
            else "over a day"
        )

    def cheapest(self, events: float) -> tuple[Engine, str]:
        """The cheapest large engine (not Lambda) that holds the window and ends within a day; if none
        does, the cheapest that holds it, with why it still does not fit."""
        large = [e for e in ENGINES if not is_lambda(e)]

        def cost(engine: Engine) -> float:
            return billed_dollars(engine, self.run_s(events, engine.vcpus))[1]

        for allowed in ("", "over a day"):
            able = [e for e in large if self.misfit(e, events) in ("", allowed)]
            if able:
                best = min(able, key=cost)
                return best, self.misfit(best, events)
        return max(large, key=lambda e: e.memory_gb), "memory"

    def threshold(self) -> dict[str, float]:
        """The most event-epochs a whole retrain takes on Lambda within `LAMBDA_BUDGET_SHARE` of 900 s,
        at THIS machine's 2 cores (Lambda's 6 vCPUs are margin, not relied on): the events where the
        fitted run time meets the budget, times 12."""
        budget = LAMBDA_SECONDS * LAMBDA_BUDGET_SHARE
        a_f, b_f = _line([(s.events, s.fixed_s) for s in self.sizes])
        a_e, b_e = _line([(s.events, s.epoch_s) for s in self.sizes])
        events = max(0.0, (budget - a_f - RETRAIN_EPOCHS * a_e) / (b_f + RETRAIN_EPOCHS * b_e))
        event_epochs = events * RETRAIN_EPOCHS
        return {
            "per_event_epoch_us": b_e * 1e6,
            "per_event_fixed_us": b_f * 1e6,
            "fixed_intercept_s": a_f,
            "budget_s": budget,
            "events": events,
            "event_epochs": event_epochs,
            "setting": int(event_epochs // 500_000 * 500_000),
            "memory_gb_at_threshold": self.peak_gb(events),
        }


def athena_rows(results: dict[str, Any]) -> list[list[str]]:
    sizes = sizes_of(results)
    per_event = sizes[-1].raw["athena_scanned_bytes"] / sizes[-1].events
    rows = [
        _athena_row(s.events, float(s.raw["parquet_bytes"]), float(s.raw["athena_scanned_bytes"]), "measured")
        for s in sizes
    ]
    if sizes[-1].events < PROJECTED_EVENTS:
        parquet = sizes[-1].raw["parquet_bytes"] / sizes[-1].events * PROJECTED_EVENTS
        rows.append(
            _athena_row(PROJECTED_EVENTS, parquet, per_event * PROJECTED_EVENTS, "projected (linear)")
        )
    return rows


def _athena_row(events: int, parquet: float, scanned: float, kind: str) -> list[str]:
    billed = max(scanned, ATHENA_MINIMUM_BYTES)
    dollars = billed / TB * PRICES["athena_tb_scanned"].amount
    return [f"{events:,}", kind, fmt(parquet / 1e6), fmt(scanned / 1e6), f"${dollars:.4f}"]


def retrain_table(results: dict[str, Any]) -> str:
    header = ["events in window", "users", "phase", "wall s", "CPU s", "peak RSS MB"]
    labels = {
        "query": "window query alone (DuckDB, counted in the engine; inside read)",
        "read": "read: window query + rows to fold steps",
        "dataset": "build_dataset (+ 100k-item catalog)",
        "publish_tables": "publish tables (trending, bought together, explore index)",
    }
    rows: list[list[str]] = []
    for size in sizes_of(results):
        r = size.raw
        for phase in ("query", *RETRAIN_PHASES):
            label = labels.get(phase, phase)
            if phase == "train":
                epochs = ", ".join(fmt(e) for e in r["epoch_s"])
                label = f"train: setup {fmt(r['setup_s'])} s + {len(r['epoch_s'])} epoch(s) of {epochs} s"
            if phase == "evaluate":
                label = f"evaluate the candidate ({r['evaluated_users']:,} users, the gate's sample)"
            figures = r["phases"][phase]
            rows.append(
                [
                    f"{size.events:,}",
                    f"{r['users']:,}",
                    label,
                    fmt(figures["wall_s"]),
                    fmt(figures["cpu_s"]),
                    f"{figures['peak_rss_mb']:,}",
                ]
            )
    return table(header, rows)


def engine_label(model: Projection, events: float) -> str:
    cut = model.threshold()
    return "Lambda" if events * RETRAIN_EPOCHS <= cut["setting"] else model.cheapest(events)[0].name


def summary_table(model: Projection) -> str:
    header = [
        "events",
        "read + dataset s (measured)",
        "s per epoch (measured)",
        "export + evaluate + tables s (measured)",
        "peak RSS MB (measured)",
        f"{RETRAIN_EPOCHS}-epoch retrain here, 2 cores, s (projected)",
        "engine",
    ]
    rows = [
        [
            f"{s.events:,}",
            fmt(s.wall("read") + s.wall("dataset")),
            fmt(s.epoch_s),
            fmt(s.wall("export") + s.wall("evaluate") + s.wall("publish_tables")),
            f"{int(s.peak_mb):,}",
            fmt(s.projected_s()),
            engine_label(model, s.events),
        ]
        for s in model.sizes
    ]
    return table(header, rows)


def cost_table(model: Projection, events_list: tuple[int, ...]) -> str:
    header = ["engine", "vCPU", "GB", "$/h as billed", *(f"{e / 1e6:g}M events: h, $" for e in events_list)]
    rows = []
    for engine in ENGINES:
        cells = [engine.name, str(engine.vcpus), fmt(engine.memory_gb), f"{engine.hour_price():.4f}"]
        for events in events_list:
            wall, dollars = billed_dollars(engine, model.run_s(events, engine.vcpus))
            misfit = model.misfit(engine, events)
            note = f" (does not fit: {misfit})" if misfit else ""
            cells.append(f"{wall / 3600:.2f} h, ${dollars:.2f}{note}")
        rows.append(cells)
    return table(header, rows)


def limits(model: Projection) -> list[str]:
    """Where the single-instance path stops: memory (the fitted line, 80 % of the machine) and time (12
    epochs within a day, the retrain's schedule)."""
    biggest = model.sizes[-1]
    phase = max(RETRAIN_PHASES, key=lambda p: biggest.raw["phases"][p]["peak_rss_mb"])
    out = [
        f"where the memory peaks, at {biggest.events:,} events: {phase} ({biggest.peak_mb:,.0f} MB; "
        f"{biggest.raw['phases'][phase]['rss_after_mb']:,} MB after it)"
    ]
    a, b = _line([(s.events, s.peak_mb) for s in model.sizes])
    for label, gb in (
        ("Lambda (10 GB)", 10),
        ("ml.c5.4xlarge / ml.m5.2xlarge (32 GiB)", 32),
        ("Fargate's largest task (120 GB)", 120),
        ("ml.m5.24xlarge (384 GiB)", 384),
    ):
        out.append(f"memory, {label}: up to ~{(gb * 1024 * 0.8 - a) / b / 1e6:,.0f}M events (80 % of it)")
    for vcpus in (16, 96):
        per_event = model.run_s(1e6, vcpus) / 1e6
        out.append(
            f"time, {vcpus} vCPUs: {RETRAIN_EPOCHS} epochs within a day up to ~"
            f"{DAILY_SECONDS / per_event / 1e6:,.0f}M events"
        )
    return out
