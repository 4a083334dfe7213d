"""Training: the ML engineer's quality benchmark (`python -m bench.quality`, a full retrain on MovieLens-100K
scored through LiteRT), run in a child process so that its wall time and peak memory are its own."""

from __future__ import annotations

import re
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from typing import Any

from bench.common import REPO_ROOT, Config, Section, fmt, mib

QUALITY_MODULE = "bench.quality"
QUALITY_DOC = REPO_ROOT / "docs" / "quality.md"
# Runs bench.quality as `python -m` would, and reports its peak RSS (VmHWM) on stderr at exit. Not
# `ru_maxrss` from wait4: Linux carries that over from the parent through fork and exec, so the child
# of a benchmark process holding a 1M-item model would report the parent's memory.
PEAK_RSS_WRAPPER = f"""
import atexit, runpy, sys

def report_peak_rss():
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM:"):
            print("nextpick-bench peak-rss-kb", line.split()[1], file=sys.stderr)

atexit.register(report_peak_rss)
sys.argv[0] = "{QUALITY_MODULE}"
runpy.run_module("{QUALITY_MODULE}", run_name="__main__", alter_sys=True)
"""
PEAK_RSS_LINE = re.compile(r"^nextpick-bench peak-rss-kb (\d+)$", re.MULTILINE)
# bench.quality logs each training as "served valid NDCG@10 0.1234 HR@10 0.2345 (56.7 s)".
TRAINING_SECONDS = re.compile(r"served valid NDCG@\d+ \S+ HR@\d+ \S+ \(([\d.]+) s\)")


@dataclass
class TrainingRun:
    wall_seconds: float
    max_rss_bytes: int
    exit_code: int
    stdout: str
    stderr: str

    @property
    def training_seconds(self) -> float | None:
        """Seconds of one model training (the validation run), as bench.quality reports it."""
        found = TRAINING_SECONDS.findall(self.stderr)
        return float(found[0]) if found else None


def run_quality(arguments: list[str]) -> TrainingRun:
    started = time.perf_counter()
    result = subprocess.run(
        [sys.executable, "-c", PEAK_RSS_WRAPPER, *arguments], cwd=REPO_ROOT, capture_output=True, text=True
    )
    wall = time.perf_counter() - started
    peaks = PEAK_RSS_LINE.findall(result.stderr)
    peak = int(peaks[-1]) * 1024 if peaks else 0
    return TrainingRun(wall, peak, result.returncode, result.stdout, result.stderr)


def section(config: Config, results: dict[str, Any]) -> Section:
    if config.quick:
        return Section(
            "6. Training",
            "Skipped with `--quick` (a full retrain on MovieLens-100K takes minutes). `python -m bench` runs "
            f"it; so does `python -m {QUALITY_MODULE}` on its own.",
        )
    with tempfile.TemporaryDirectory(prefix="nextpick-quality-") as folder:
        # Its report goes to a scratch file: docs/quality.md is the ML engineer's to regenerate and commit.
        run = run_quality(["--out", f"{folder}/quality.md"])
    results["training"] = run
    if run.exit_code != 0:
        tail = "\n".join(run.stderr.splitlines()[-15:])
        return Section(
            "6. Training",
            f"`python -m {QUALITY_MODULE}` failed (exit code {run.exit_code}) after {fmt(run.wall_seconds)} s:\n\n"
            f"```\n{tail}\n```",
        )
    table_lines = "\n".join(line for line in run.stdout.splitlines() if line.startswith("|"))
    verdicts = "\n".join(
        f"- {line}" for line in run.stdout.splitlines() if line.startswith(("PASS:", "FAIL:"))
    )
    training = run.training_seconds
    body = "\n\n".join(
        part
        for part in (
            f"`python -m {QUALITY_MODULE}` (the ML engineer's quality benchmark) in a child process: "
            "MovieLens-100K, leave-last-out; baselines tuned on validation; the model trained on the "
            "validation split, then retrained from scratch on everything before the test item, each time "
            "exported to `.tflite` and scored through LiteRT. Its full report, with the protocol, is "
            "[docs/quality.md](quality.md) (written by `python -m bench.quality` itself; this run sends its "
            "copy to a scratch file).",
            table_rows(run, training),
            "Its result on test and validation, as it printed it:",
            table_lines,
            verdicts,
        )
        if part
    )
    return Section("6. Training", body)


def table_rows(run: TrainingRun, training: float | None) -> str:
    lines = [
        "| figure | value |",
        "|---|---|",
        f"| wall time of the whole quality benchmark (2 trainings + exports + evaluations + baselines) "
        f"| **{fmt(run.wall_seconds)} s** |",
        f"| peak RSS of that process | **{mib(run.max_rss_bytes)}** (the retrain function has 4096 MB) |",
    ]
    if training is not None:
        lines.append(
            f"| one model training on ML-100K (validation run, as it logs it) | **{fmt(training)} s** |"
        )
    return "\n".join(lines)
