"""What every benchmark section shares: timing statistics, targets, markdown, and a machine description."""

from __future__ import annotations

import contextlib
import ctypes
import functools
import os
import platform
import statistics
import sys
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from time import perf_counter_ns
from typing import Any, cast

REPO_ROOT = Path(__file__).resolve().parent.parent
# Environment variables that change which BLAS kernel numpy runs, and how fast.
BLAS_ENV_VARS = ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE", "OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS")


@dataclass(frozen=True)
class Config:
    """How big a run is: `--quick` is CI-sized, the default is the full run."""

    quick: bool
    # Catalog sizes for the per-event breakdown, the ranking comparison and cold start.
    event_sizes: tuple[int, ...]
    ranking_sizes: tuple[int, ...]
    coldstart_sizes: tuple[int, ...]
    events_per_run: int
    warmup_events: int
    repeats: int
    ranking_calls: int
    moto_events: int
    coldstart_repeats: int
    throughput_events: int

    @classmethod
    def full(cls) -> Config:
        return cls(
            quick=False,
            event_sizes=(1_000, 10_000, 100_000),
            ranking_sizes=(1_000, 10_000, 100_000, 1_000_000),
            coldstart_sizes=(10_000, 100_000),
            events_per_run=3_000,
            warmup_events=300,
            repeats=3,
            ranking_calls=200,
            moto_events=1_000,
            coldstart_repeats=5,
            throughput_events=3_000,
        )

    @classmethod
    def ci(cls) -> Config:
        return cls(
            quick=True,
            event_sizes=(1_000, 10_000),
            ranking_sizes=(1_000, 10_000),
            coldstart_sizes=(10_000,),
            events_per_run=400,
            warmup_events=50,
            repeats=1,
            ranking_calls=100,
            moto_events=150,
            coldstart_repeats=1,
            throughput_events=500,
        )

    @property
    def model_sizes(self) -> tuple[int, ...]:
        return tuple(sorted({*self.event_sizes, *self.ranking_sizes, *self.coldstart_sizes}))


# ------------------------------------------------------------------------------------------ statistics


def ms(nanoseconds: float) -> float:
    return nanoseconds / 1e6


def percentile(samples: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100): always a value that was actually observed."""
    ordered = sorted(samples)
    if not ordered:
        return float("nan")
    rank = max(0, min(len(ordered) - 1, round(q / 100 * len(ordered) + 0.5) - 1))
    return float(ordered[rank])


@dataclass(frozen=True)
class Latency:
    """p50/p95/p99 in milliseconds; over repeats, each percentile is the median of the repeats' values."""

    p50: float
    p95: float
    p99: float
    samples: int

    @classmethod
    def of_ns(cls, samples_ns: Sequence[float]) -> Latency:
        return cls(
            ms(percentile(samples_ns, 50)),
            ms(percentile(samples_ns, 95)),
            ms(percentile(samples_ns, 99)),
            len(samples_ns),
        )

    @classmethod
    def median_of(cls, runs: Sequence[Latency]) -> Latency:
        return cls(
            statistics.median(r.p50 for r in runs),
            statistics.median(r.p95 for r in runs),
            statistics.median(r.p99 for r in runs),
            sum(r.samples for r in runs),
        )


# ------------------------------------------------------------------------------------------ targets


@dataclass(frozen=True)
class Check:
    """One target from the issue next to the figure measured for it (lower is better)."""

    target: str
    limit: float
    unit: str
    measured: float | None
    # Why it was missed, or what the figure includes; shown beside the verdict.
    note: str = ""

    @property
    def met(self) -> bool | None:
        return None if self.measured is None else self.measured <= self.limit

    def verdict(self) -> str:
        if self.measured is None:
            return "not measured"
        if self.met:
            return f"**met** ({self.measured / self.limit:.0%} of the limit)"
        return (
            f"**missed** by {fmt(self.measured - self.limit)} {self.unit} ({self.measured / self.limit:.1f}x)"
        )

    def row(self) -> list[str]:
        measured = "—" if self.measured is None else f"{fmt(self.measured)} {self.unit}"
        return [self.target, f"≤ {fmt(self.limit)} {self.unit}", measured, self.verdict(), self.note]


@dataclass
class Section:
    title: str
    body: str
    checks: list[Check] = field(default_factory=list)
    # Files to write next to the report (path relative to its folder -> content), e.g. SVG charts.
    files: dict[str, str] = field(default_factory=dict)
    # What the team should act on, with the figures behind it; listed at the top of the report.
    findings: list[str] = field(default_factory=list)


# ------------------------------------------------------------------------------------------ markdown


def fmt(value: float, digits: int = 3) -> str:
    """Three significant digits, without scientific notation for the magnitudes in this report."""
    if value != value:  # NaN
        return "—"
    if value == 0:
        return "0"
    magnitude = abs(value)
    if magnitude >= 1000:
        return f"{value:,.0f}"
    decimals = max(0, digits - 1 - int(f"{magnitude:e}".split("e")[1]))
    return f"{value:.{decimals}f}"


def table(header: Sequence[str], rows: Iterable[Sequence[object]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines)


def items_label(num_items: int) -> str:
    return f"{num_items // 1_000_000}M" if num_items >= 1_000_000 else f"{num_items // 1_000}k"


def mib(size_bytes: float) -> str:
    return f"{size_bytes / 2**20:.1f} MiB"


# ------------------------------------------------------------------------------------------ machine


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _memory_gib() -> str:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return f"{int(line.split()[1]) / 2**20:.1f} GiB"
    except OSError:
        pass
    return "unknown"


def _version(distribution: str) -> str:
    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return "not installed"


@functools.cache
def _openblas_library() -> ctypes.CDLL | None:
    """The OpenBLAS numpy has loaded (found in this process's memory map; numpy must be imported)."""
    try:
        maps = Path("/proc/self/maps").read_text()
    except OSError:
        return None
    paths = {line.split()[-1] for line in maps.splitlines() if "openblas" in line.lower() and "/" in line}
    for path in sorted(paths):
        try:
            return ctypes.CDLL(path)
        except OSError:
            continue
    return None


def _openblas_function(name: str, restype: Any) -> Callable[..., Any] | None:
    """An OpenBLAS C function by its plain name (`get_corename`). Wheels built with 64-bit ints
    prefix and suffix the symbols (`scipy_openblas_get_corename64_`). threadpoolctl would do this; it
    is not a dependency."""
    library = _openblas_library()
    if library is None:
        return None
    for symbol in (f"scipy_openblas_{name}64_", f"scipy_openblas_{name}", f"openblas_{name}"):
        function = getattr(library, symbol, None)
        if function is not None:
            function.restype = restype
            return cast(Callable[..., Any], function)
    return None


def blas_description() -> str:
    """Which BLAS numpy uses, the kernel OpenBLAS picked for this CPU, and its thread count."""
    import numpy as np

    config = np.show_config(mode="dicts")
    blas = config.get("Build Dependencies", {}).get("blas", {})
    name = f"{blas.get('name', 'unknown')} {blas.get('version', '')}".strip()
    corename = _openblas_function("get_corename", ctypes.c_char_p)
    threads = _openblas_function("get_num_threads", ctypes.c_int)
    if corename is None or threads is None:
        return name
    return f"{name} (kernel {corename().decode()}, {threads()} threads)"


@contextlib.contextmanager
def blas_threads(count: int) -> Iterator[bool]:
    """Run the block with OpenBLAS limited to `count` threads (yields False if that is not possible)."""
    get = _openblas_function("get_num_threads", ctypes.c_int)
    set_ = _openblas_function("set_num_threads", None)
    if get is None or set_ is None:
        yield False
        return
    previous = get()
    set_(count)
    try:
        yield True
    finally:
        set_(previous)


def machine_description() -> list[tuple[str, str]]:
    affinity = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    blas_vars = ", ".join(f"`{name}={os.environ[name]}`" for name in BLAS_ENV_VARS if name in os.environ)
    return [
        ("CPU", f"{_cpu_model()} — {os.cpu_count()} logical cores, {affinity} usable by this process"),
        ("Memory", _memory_gib()),
        ("OS", f"{platform.system()} {platform.release()} ({platform.machine()})"),
        ("Python", sys.version.split()[0]),
        (
            "Packages",
            ", ".join(
                f"{name} {_version(name)}"
                for name in ("numpy", "ai-edge-litert", "tensorflow-cpu", "pydantic", "boto3", "moto")
            ),
        ),
        ("numpy BLAS", blas_description()),
        ("BLAS environment", blas_vars or "none of " + ", ".join(f"`{n}`" for n in BLAS_ENV_VARS) + " set"),
    ]


def interleaved(runs: dict[str, Callable[[], None]], calls: int) -> dict[str, list[int]]:
    """Time each callable `calls` times, alternating between them call by call, so that the noise of a
    shared machine (another job starting, frequency changes) hits every contender alike."""
    samples: dict[str, list[int]] = {name: [] for name in runs}
    for _ in range(calls):
        for name, run in runs.items():
            started = perf_counter_ns()
            run()
            samples[name].append(perf_counter_ns() - started)
    return samples


class BenchLambdaContext:
    """The Lambda context the benchmarks hand to a handler (Powertools reads these fields)."""

    function_name = "nextpick-bench-ApiFunction"
    function_version = "$LATEST"
    invoked_function_arn = "arn:aws:lambda:us-east-1:123456789012:function:nextpick-bench-ApiFunction"
    memory_limit_in_mb = 1024
    aws_request_id = "00000000-0000-0000-0000-000000000000"
    log_group_name = "/aws/lambda/nextpick-bench-ApiFunction"
    log_stream_name = "bench"

    def get_remaining_time_in_millis(self) -> int:
        return 10_000


def median_p90(samples: Sequence[float]) -> dict[str, float]:
    """The median and the 90th percentile of `samples` (ms), rounded to 0.01: what the route benchmarks
    report per case."""
    ordered = sorted(samples)
    return {"median": round(statistics.median(ordered), 2), "p90": round(ordered[int(len(ordered) * 0.9)], 2)}
