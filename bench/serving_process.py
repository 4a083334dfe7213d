"""A fresh serving process, as a Lambda cold start runs it: import the event handler module, load the
model from bytes on disk (as fetched from S3), answer the first event, then keep serving on one core.

Run as a script by bench/coldstart.py (never imported: anything imported before the timer starts
would be missing from the import time). Prints one JSON object on stdout.

    python bench/serving_process.py MODEL.tflite MANIFEST.json WORKLOAD.json [--pin]

Cold start runs on whatever CPUs the process may use; with --pin, the events after the first (the
throughput figure) are served on one CPU.
"""

import time

STARTED = time.perf_counter()

import argparse  # noqa: E402  (after the timer on purpose)
import json  # noqa: E402
import os  # noqa: E402
import sys  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402


def peak_rss_bytes() -> int:
    """VmHWM, the peak RSS of this process image. Not `ru_maxrss`: Linux carries that over from the
    parent through fork and exec, so a child of a big benchmark process would report the parent's."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError("no VmHWM in /proc/self/status")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("model", type=Path)
    parser.add_argument("manifest", type=Path)
    parser.add_argument("workload", type=Path, help="JSON: {'bodies': [...], 'out_of_stock': [...]}")
    parser.add_argument("--pin", action="store_true", help="serve the events after the first on one CPU")
    args = parser.parse_args()

    # CPU time next to wall time: on a shared machine the wall time includes waiting for a CPU.
    import_started, import_started_cpu = time.perf_counter(), time.process_time()
    import nextpick.handlers.api  # noqa: F401  the module Lambda imports at init

    imported, imported_cpu = time.perf_counter(), time.process_time()
    import hashlib

    from nextpick.adapters.litert_model import LiteRTModel

    model_bytes = args.model.read_bytes()
    manifest = json.loads(args.manifest.read_text())
    if hashlib.sha256(model_bytes).hexdigest() != manifest["sha256"]:
        sys.exit("model does not match its manifest")
    model = LiteRTModel(model_bytes, manifest)
    loaded, loaded_cpu = time.perf_counter(), time.process_time()

    from pydantic import TypeAdapter

    from nextpick.adapters.memory import InMemoryStateRepository, StaticModelSource
    from nextpick.domain.catalog import CatalogSnapshot
    from nextpick.domain.events import EventBatch, EventsRequest
    from nextpick.domain.ranking import RecommendOptions
    from nextpick.domain.service import Recommender

    workload = json.loads(args.workload.read_text())
    snapshot = CatalogSnapshot(1, frozenset(workload["out_of_stock"]))

    class FixedCatalog:
        def snapshot(self) -> CatalogSnapshot:
            return snapshot

    bodies = workload["bodies"]
    answer_started, answer_started_cpu = time.perf_counter(), time.process_time()
    request_adapter: TypeAdapter[Any] = TypeAdapter(EventsRequest)
    recommender = Recommender(InMemoryStateRepository(), StaticModelSource(model), FixedCatalog())
    options = RecommendOptions()

    def answer(body: str) -> None:
        request = request_adapter.validate_json(body)
        events = request.events if isinstance(request, EventBatch) else [request]
        recommender.track(events, options)

    answer(bodies[0])
    answered, answered_cpu = time.perf_counter(), time.process_time()
    first_answer_wall = time.time()

    if args.pin and hasattr(os, "sched_setaffinity"):
        # Throughput on one core, as a Lambda of up to 1769 MB (one vCPU) gets at most.
        os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})
    served_started, served_started_cpu = time.perf_counter(), time.process_time()
    for body in bodies[1:]:
        answer(body)
    served, served_cpu = time.perf_counter() - served_started, time.process_time() - served_started_cpu

    print(
        json.dumps(
            {
                "startup_to_main_s": import_started - STARTED,
                "import_s": imported - import_started,
                "model_load_s": loaded - imported,
                "first_event_s": answered - answer_started,
                "first_answer_wall": first_answer_wall,
                "import_cpu_s": imported_cpu - import_started_cpu,
                "model_load_cpu_s": loaded_cpu - imported_cpu,
                "first_event_cpu_s": answered_cpu - answer_started_cpu,
                # process_time counts from the process's start: interpreter start-up included.
                "to_first_answer_cpu_s": answered_cpu,
                "events_served": len(bodies) - 1,
                "events_per_second": (len(bodies) - 1) / served,
                "events_per_cpu_second": (len(bodies) - 1) / served_cpu,
                "cpus": sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
                "max_rss_bytes": peak_rss_bytes(),
            }
        )
    )


if __name__ == "__main__":
    main()
