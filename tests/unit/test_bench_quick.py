"""`python -m bench --quick` produces a complete report. Timings are never asserted: they depend on the
machine; what must hold is that every section is there and none of them failed."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

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
