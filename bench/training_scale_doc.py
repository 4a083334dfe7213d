"""docs/training-scale.md and capacity.md's "## Training", written from `bench.training_scale`'s saved
results through the projections of `bench.training_scale_report`."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from bench.common import fmt, table
from bench.cost import PRICES
from bench.training_scale_cost import (
    FARGATE_GB_HOUR,
    FARGATE_START_S,
    FARGATE_VCPU_HOUR,
    LAMBDA_MB,
    LAMBDA_SECONDS,
    LAMBDA_VCPUS,
    LAMBDA_X86_GB_SECOND,
    PRICES_NOTE,
    SAGEMAKER_START_BILLED_S,
    SAGEMAKER_START_S,
    SPOT_DISCOUNT,
    billed_dollars,
)
from bench.training_scale_report import (
    COMMAND,
    EVALUATIONS,
    LAMBDA_BUDGET_SHARE,
    PROJECTED_EVENTS,
    RETRAIN_EPOCHS,
    Projection,
    Size,
    athena_rows,
    cost_table,
    limits,
    retrain_table,
    summary_table,
)


def _probe_line(results: dict[str, Any], model: Projection) -> str:
    probe = results.get("thread_scaling") or {}
    if "1" not in probe or "2" not in probe:
        return (
            "No thread probe saved: no multi-core scaling is assumed (every engine runs at 2 cores' speed)."
        )
    one, two = Size(probe["1"]), Size(probe["2"])
    share = one.cpu("train") / one.wall("train")
    return (
        f"An epoch of {one.events:,} events took {fmt(one.epoch_s)} s on 1 TF thread and {fmt(two.epoch_s)} s "
        f"on 2 (`tf.config.threading`, intra and inter op; `{COMMAND} --threads-probe "
        f"{probe['1']['events_generated']}`; train CPU {fmt(one.cpu('train'))} s and {fmt(two.cpu('train'))} s; "
        f"load average {probe['1']['load_average']} and {probe['2']['load_average']}): a speed-up of "
        f"{model.speedup_2:.2f}, so by Amdahl's law a parallel share p = {model.parallel:.2f} of an epoch; on n "
        "vCPUs an epoch takes ((1 - p) + p / n) / ((1 - p) + p / 2) of its time here: "
        + ", ".join(f"{n} vCPUs x{model.scaled(n):.2f}" for n in (6, 8, 16, 48))
        + ". A projection: TF's CPU scaling flattens past a few cores for this model's small steps (256 "
        "examples), and the cloud cores are taken as fast as these."
        + (
            f" **The probe was starved**: its 1-thread run got {share:.0%} of a core (train CPU over wall), so "
            "the other jobs, not TF, set both times; the speed-up it shows is not TF's and no speed-up from "
            "more cores is counted: the engines' times below are upper bounds. Re-run the probe on an idle "
            "machine to measure it."
            if share < 0.8
            else ""
        )
    )


def _read_path(results: dict[str, Any], model: Projection) -> list[str]:
    """Does the read path limit (issue 14's question)? Its share of the retrain, and its memory."""
    shares = ", ".join(
        f"{s.events:,} events {fmt(s.wall('read'))} s of {fmt(s.projected_s())} s "
        f"({s.wall('read') / s.projected_s():.1%})"
        for s in model.sizes
    )
    lines = [
        f"Time: the read (the query and its rows validated into fold steps) takes {shares} of the projected "
        "retrain: it does not dominate, the epochs do."
    ]
    memory = results.get("read_memory")
    if memory:
        per_row, kept = memory["dict_rows_bytes_per_row"], memory["records_bytes_per_row"]
        lines.append("")
        lines.append(
            f"Memory (`{COMMAND} --read-memory`, at {memory['rows']:,} rows): "
            f"the answer's rows as Python dicts take {per_row:,.0f} bytes each, {per_row * 1e7 / 1e9:.1f} GB "
            f"at 10M events, on top of the records the retrain keeps ({kept:,.0f} bytes each, "
            f"{kept * 1e7 / 1e9:.1f} GB at 10M). Fetched all at once, as before this change, a 10M-event "
            f"window needed {(per_row + kept) * 1e7 / 1e9:.1f} GB for its rows and records alone, before "
            "training: more than Lambda's 10 GB, and most of this shared machine's free memory. "
            "`read_window` now turns DuckDB's answer into records 50,000 rows at a time (peak over the "
            f"records: {memory['batched_peak_mb']:,.0f} MB at {memory['rows']:,} rows, DuckDB's buffer "
            "included); same records, counts and dataset (tests/integration/test_event_log_query.py). The "
            "records stay: `read_log_window` returns them and `build_dataset`, trending and bought together "
            "read them. A columnar build (DuckDB's arrays straight into the encoded sequences) would save at "
            "most the read's share above: not done."
        )
    return lines


def render(results: dict[str, Any]) -> str:
    hw = results.get("hardware", {})
    model = Projection.of(results)
    cut = model.threshold()
    by_cpu = Projection.of(results, by_cpu=True).threshold()
    at_100m, misfit_100m = model.cheapest(PROJECTED_EVENTS)
    wall_100m, dollars_100m = billed_dollars(at_100m, model.run_s(PROJECTED_EVENTS, at_100m.vcpus))
    at_10m, _ = model.cheapest(10_000_000)
    loads = "; ".join(
        f"{s.events:,} events: mean {s.raw['load_average']}, max {s.raw['load_average_max']}"
        for s in model.sizes
    )
    measured_epochs = ", ".join(f"{s.events:,}: {len(s.raw['epoch_s'])}" for s in model.sizes)
    sections = [
        "# Training at scale: the whole retrain against the size of its window",
        "",
        f"Generated by `{COMMAND}` (bench/training_scale.py, bench/training_scale_report.py, bench/training_scale_doc.py, "
        "bench/training_scale_cost.py) from the results it saves in `docs/benchmarks/training-scale.json`; "
        f"re-render with `{COMMAND} --render-only`. Each size ran under `nice`, in its own child process:",
        "",
        f"- **Hardware**: {hw.get('cpu', '?')}, {hw.get('cpus', '?')} vCPUs ({hw.get('hypervisor', '')} VM, "
        f"{hw.get('machine', '')}), {hw.get('memory_gb', '?')} GB RAM, **shared** with four other engineers' "
        f"tests and benchmarks. Load average (1 min) at each phase's end, this job's own 1-2 included: {loads}. "
        "A load above 2 means this job had less than the 2 cores: its wall times are then upper bounds "
        "(the CPU times are not inflated).",
        "- **Data**: `bench.training_scale.shop_columns`: Zipf(1.1) item popularity over 100,000 items, 10 "
        "staples per shopper making 70 % of their baskets, baskets of ~8 items every 2-12 days, ~60 "
        "purchases per shopper; written as Firehose writes the log (`bench.event_log_query.write_partitions`: "
        "Parquet, Snappy, day partitions, 1 % delivered twice, 0.1 % of shoppers erased mid-way); a catalog "
        "of every item (category, price). The window is the whole 160-day log.",
        "- **Phases, as the retrain runs them**: `window_query.read_window(DuckDbWindow(folder))` (the "
        "deployed DuckDB path downloads the objects first; Athena queries remotely), `data.build_dataset`, "
        "`model.train` (default hyperparameters), `export.export_tflite`, the candidate scored through LiteRT "
        "on the gate's sample (`pipeline.evaluate_candidate`, `gate_max_users` 5,000), the publish tables "
        "(no S3 writes). Wall time, CPU time (all threads) and peak RSS (VmHWM, reset between phases).",
        "",
        "## Measured phases",
        "",
        retrain_table(results),
        "",
        f"## The whole retrain: measured, and projected to {RETRAIN_EPOCHS} epochs",
        "",
        f"A retrain runs {RETRAIN_EPOCHS} epochs (it has no validation split, so no early stop). Epochs "
        f"measured: {measured_epochs} (12 at 10M would take hours on this machine). **Projected**: setup + "
        f"{RETRAIN_EPOCHS} x the measured per-epoch time (the mean after the first when there are two: the "
        "first also traces the graph) + the other measured phases, the candidate's evaluation counted "
        f"{EVALUATIONS} times (the gate also scores the live model). The engine is the one the threshold "
        "below picks.",
        "",
        summary_table(model),
        "",
        "## The read path",
        "",
        *_read_path(results, model),
        "",
        "## Threads: how an epoch scales with cores",
        "",
        _probe_line(results, model),
        "",
        "## The threshold between Lambda and the large engines",
        "",
        f"Through the two largest sizes, a retrain costs {cut['fixed_intercept_s']:.0f} s + "
        f"{cut['per_event_fixed_us']:.1f} µs per event (read, dataset, setup, export, two evaluations, publish "
        f"tables) + {cut['per_event_epoch_us']:.1f} µs per event and epoch, on these 2 cores. Lambda gives "
        f"{LAMBDA_SECONDS} s; the measured phases may take {LAMBDA_BUDGET_SHARE:.0%} of it "
        f"({cut['budget_s']:.0f} s), the rest is for the container's start and image load, the S3 transfers the "
        f"bench does not make and a slower host. At {RETRAIN_EPOCHS} epochs that is {cut['events']:,.0f} events, "
        f"{cut['event_epochs']:,.0f} event-epochs: **`lambda_training_max_event_epochs` = {cut['setting']:,}** "
        f"(rounded down to 0.5M). Memory there: ~{cut['memory_gb_at_threshold']:.1f} GB projected, of Lambda's "
        f"{LAMBDA_MB / 1024:.0f}: time binds first. Lambda's {LAMBDA_VCPUS} vCPUs would make an epoch "
        f"x{model.scaled(LAMBDA_VCPUS):.2f} of its time here by the thread probe: kept as margin, not counted. "
        "The wall times were taken under the load above; from CPU times instead (what the phases cost on "
        f"one core without the other jobs) the same rule gives {by_cpu['setting']:,} "
        f"({by_cpu['events']:,.0f} events): the setting takes the wall-time figure.",
        "",
        "## Engines and cost per retrain",
        "",
        f"Prices: {PRICES_NOTE}. Lambda x86 ${LAMBDA_X86_GB_SECOND}/GB-second at 10 GB; SageMaker training "
        "ml.m5.2xlarge $0.461/h, ml.c5.4xlarge $0.816/h, ml.m5.12xlarge $2.765/h; managed spot and Fargate "
        f"Spot at a typical {SPOT_DISCOUNT:.0%} discount (assumed: spot prices vary); Fargate "
        f"${FARGATE_VCPU_HOUR}/vCPU-h + ${FARGATE_GB_HOUR}/GB-h (Batch adds nothing). Start-up: SageMaker "
        f"~{SAGEMAKER_START_S} s before the script runs, of which the image download (~"
        f"{SAGEMAKER_START_BILLED_S} s, assumed) is billed, the instance provisioning is not; Fargate "
        f"~{FARGATE_START_S} s, billed from the image pull, one minute minimum. Time (**projected**) = the "
        "fitted fixed phases + 12 epochs scaled to the engine's vCPUs by the thread probe, + the start-up. "
        "*Does not fit*: the window's projected peak memory (the line through the measured sizes) is over "
        "80 % of the machine's; on Lambda, the work is over the threshold's budget; elsewhere the run takes "
        "more than a day (the retrain is daily).",
        "",
        cost_table(model, (1_000_000, 10_000_000, PROJECTED_EVENTS)),
        "",
        f"**Chosen large engine** (the cheapest that holds the window; `large_training_engine` "
        f"{'batch' if at_10m.name.startswith('Batch') else 'sagemaker'}): at 10M events **{at_10m.name}**; at "
        f"{PROJECTED_EVENTS / 1e6:.0f}M events (projected) **{at_100m.name}**, {wall_100m / 3600:.1f} h, "
        f"**${dollars_100m:.2f} per retrain**"
        + (
            " — longer than a day: at 100M a daily 12-epoch retrain needs fewer epochs, a weekly schedule "
            "or data-parallel training (below)"
            if misfit_100m == "over a day"
            else ""
        )
        + ". Checkpoints make a spot interruption cost only the work since the last one.",
        "",
        "## What limits the single-instance path",
        "",
        *(f"- {line}" for line in limits(model)),
        "",
        "The window lives in Python objects (fold steps, then the encoded sequences and the training "
        "examples): memory grows linearly with events. Time per epoch grows linearly with events and "
        "shrinks with cores by what the thread probe above measures. **Data-parallel training is not built** (optional in issue 14): one "
        "instance holds the window to the sizes above, and it would need TF's "
        "`MultiWorkerMirroredStrategy` (SageMaker's distribution settings or Batch multi-node jobs), the "
        "examples sharded by shopper, the item table's gradients all-reduced every step (100k x 64 floats, "
        "dense), the shared negatives and the weight average kept in step on every worker, and checkpoints "
        "written by one chief; the Lambda and large-engine artifacts would no longer be byte-identical (the "
        "reduction order changes the floats).",
        "",
        "## The window query: DuckDB here, Athena's estimated cost",
        "",
        "DuckDB's own time is the `window query alone` row above; `read` adds turning the rows into fold "
        "steps in Python, 50,000 rows at a time. Athena bills the bytes it scans: on Parquet, the columns the "
        "query names in the partitions it reads, plus the tombstone scan (Trino reads the CTE twice), taken "
        "from the generated files' column chunks (`bench.event_log_query._scanned_bytes`), at "
        f"${PRICES['athena_tb_scanned'].amount:g} per TB, 10 MB minimum per query. It can exceed the files' "
        "size: `user_id` is read twice. The generated events carry no `context`, which the query does not "
        "name anyway.",
        "",
        table(["events", "figure", "Parquet MB", "MB Athena scans", "$ per retrain"], athena_rows(results)),
        "",
    ]
    return "\n".join(sections)


def capacity_section(results: dict[str, Any]) -> str:
    """capacity.md's "## Training": the summary, linked to the full report."""
    model = Projection.of(results)
    cut = model.threshold()
    (engine_10m, _), (engine_100m, misfit_100m) = model.cheapest(10_000_000), model.cheapest(PROJECTED_EVENTS)
    wall_10m, dollars_10m = billed_dollars(engine_10m, model.run_s(10_000_000, engine_10m.vcpus))
    wall_100m, dollars_100m = billed_dollars(engine_100m, model.run_s(PROJECTED_EVENTS, engine_100m.vcpus))
    commands = ", ".join(
        f"`--sizes {s.raw['events_generated']} --epochs {s.raw['epochs']}`" for s in model.sizes
    )
    queries = ", ".join(f"{s.events:,} events {fmt(s.wall('query'))} s" for s in model.sizes)
    athena = ", ".join(f"{row[0]} events {row[4]}" for row in athena_rows(results))
    return "\n".join(
        [
            "## Training",
            "",
            f"Generated by `{COMMAND}` (the sizes measured with {commands}, the thread probe with "
            f"`--threads-probe`, the docs with `--render-only`); the phases, the hardware, its load and every "
            "engine are in [training-scale.md](training-scale.md). Measured on 2 shared vCPUs; the "
            f"{RETRAIN_EPOCHS}-epoch times and everything on other engines are projections from the measured "
            "per-epoch time.",
            "",
            summary_table(model),
            "",
            f"- **Threshold: `lambda_training_max_event_epochs` = {cut['setting']:,}** ({cut['events']:,.0f} "
            f"events at {RETRAIN_EPOCHS} epochs): the largest window whose whole retrain (read, dataset, "
            f"{RETRAIN_EPOCHS} epochs, export, two evaluations, publish tables) takes {LAMBDA_BUDGET_SHARE:.0%} "
            f"of Lambda's {LAMBDA_SECONDS} s at the measured {cut['per_event_epoch_us']:.1f} µs per event-epoch; "
            "time binds, not memory "
            f"(~{cut['memory_gb_at_threshold']:.1f} GB there).",
            f"- **Cost per retrain** (projected; {PRICES_NOTE}): 10M events on {engine_10m.name} "
            f"${dollars_10m:.2f} ({wall_10m / 3600:.1f} h); 100M events on {engine_100m.name} "
            f"${dollars_100m:.2f} ({wall_100m / 3600:.1f} h"
            + ("; over a day: see training-scale.md" if misfit_100m else "")
            + ").",
            f"- **Window query**: on DuckDB here {queries}; on Athena, from the bytes it scans: {athena} per "
            "retrain.",
            "",
        ]
    )


def update_capacity(path: Path, results: dict[str, Any]) -> None:
    """Replaces capacity.md's "## Training" (its last section) with `capacity_section`."""
    text = path.read_text()
    head, marker, _ = text.partition("## Training")
    if not marker:
        raise ValueError(f"{path} has no '## Training' section")
    path.write_text(head + capacity_section(results))
