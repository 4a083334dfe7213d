"""The large-catalog side artifacts of a candidate (docs/ranking-1m.md), built by the train step next to
the export and handed to the publish step through the run folder.

They are built where the model is exported because that is where the memory is: at 1M items the model's
export peaks at ~6 GB and the scan's conversion at ~4 GB (measured, docs/ranking-1m.md "Memory"), which
the large engines have and the publish step's Lambda does not. `candidate/large_catalog.json` says what
was built, so the publish step never rebuilds or guesses.
"""

from __future__ import annotations

import json
from typing import Any

from nextpick_training import explore_index as explore_index_lib
from nextpick_training import explore_scan as explore_scan_lib
from nextpick_training import export as export_lib

from .run_folder import RunFolder

LARGE_CATALOG = "candidate/large_catalog.json"
CANDIDATE_INDEX = "candidate/explore_index.npz"
CANDIDATE_SCAN = "candidate/explore_scan.tflite"

Built = tuple[bytes, float] | None


def build(run: RunFolder, trained: Any, tflite: bytes) -> dict[str, float | None]:
    """Build the explore index, or where it is refused the explore scan (None below 200,000 items), put
    them in the run folder and say which: {"explore_index": recall or None, "explore_scan": ...}."""
    tables, runner = trained.tables(), export_lib.ExportedModel(tflite)
    index = explore_index_lib.for_model(tables, runner)
    scan = explore_scan_lib.for_model(tables, runner) if index is None else None
    if index is not None:
        run.put(CANDIDATE_INDEX, index[0])
    if scan is not None:
        run.put(CANDIDATE_SCAN, scan[0])
    built = {
        "explore_index": index[1] if index is not None else None,
        "explore_scan": scan[1] if scan is not None else None,
    }
    run.put(LARGE_CATALOG, json.dumps(built).encode(), "application/json")
    return built


def read(run: RunFolder, step: str) -> tuple[Built, Built]:
    """(explore index, explore scan) as the train step built them, each (bytes, calibration recall)."""
    built = json.loads(run.require(LARGE_CATALOG, step))
    index_recall, scan_recall = built.get("explore_index"), built.get("explore_scan")
    index = (run.require(CANDIDATE_INDEX, step), float(index_recall)) if index_recall is not None else None
    scan = (run.require(CANDIDATE_SCAN, step), float(scan_recall)) if scan_recall is not None else None
    return index, scan
