"""Training: a full retrain on MovieLens-100K through the ML engineer's quality benchmark (`bench.quality`),
run in a child process so that its wall time and peak memory are its own."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from typing import Any

from bench.common import REPO_ROOT, Config, Section, fmt, mib

QUALITY_MODULE = "bench.quality"
QUALITY_DOC = REPO_ROOT / "docs" / "quality.md"


@dataclass
class TrainingRun:
    wall_seconds: float
    max_rss_bytes: int
    exit_code: int
    output: str


def run_quality(arguments: list[str]) -> TrainingRun:
    started = time.perf_counter()
    process = subprocess.Popen(
        [sys.executable, "-m", QUALITY_MODULE, *arguments],
        cwd=REPO_ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    assert process.stdout is not None
    output = process.stdout.read()
    # wait4 gives this child's own resource usage (RUSAGE_CHILDREN would mix in every other child).
    _, status, usage = os.wait4(process.pid, 0)
    process.returncode = os.waitstatus_to_exitcode(status)
    return TrainingRun(time.perf_counter() - started, usage.ru_maxrss * 1024, process.returncode, output)


def _tables(output: str) -> str:
    """The markdown tables the quality benchmark printed, if any."""
    lines = [line for line in output.splitlines() if line.startswith("|")]
    return "\n".join(lines)


def section(config: Config, results: dict[str, Any]) -> Section:
    if config.quick:
        return Section(
            "6. Training",
            "Skipped with `--quick` (a full retrain on MovieLens-100K takes minutes). Run `python -m bench` "
            "or `python -m bench.quality` for it.",
        )
    if importlib.util.find_spec(QUALITY_MODULE) is None:
        return Section(
            "6. Training",
            f"`{QUALITY_MODULE}` (the ML-100K quality benchmark) is not in this checkout yet, so the retrain "
            "was not timed. Once it is, `python -m bench` runs it in a child process and reports its wall "
            "time, peak RSS and quality table here.",
        )
    run = run_quality([])
    results["training"] = run
    if run.exit_code != 0:
        tail = "\n".join(run.output.splitlines()[-15:])
        return Section(
            "6. Training",
            f"`python -m {QUALITY_MODULE}` failed (exit code {run.exit_code}) after {fmt(run.wall_seconds)} s:\n\n"
            f"```\n{tail}\n```",
        )
    tables = _tables(run.output)
    link = "The full quality report is in [docs/quality.md](quality.md)." if QUALITY_DOC.is_file() else ""
    body = "\n\n".join(
        part
        for part in (
            f"`python -m {QUALITY_MODULE}` in a child process: a full retrain on MovieLens-100K (train, "
            "export, evaluate through LiteRT), as the ML engineer's quality benchmark runs it.",
            f"- wall time: **{fmt(run.wall_seconds)} s**\n- peak RSS: **{mib(run.max_rss_bytes)}** (the retrain "
            "function has 4096 MB)",
            tables,
            link,
        )
        if part
    )
    return Section("6. Training", body)
