"""`nextpick train | publish | rollback | status`: the same code against the local stack or real AWS."""

from __future__ import annotations

import argparse
import json
import sys
from datetime import UTC, datetime
from typing import Any

from nextpick_local.errors import CommandError, UsageError
from nextpick_local.ops.target import clients
from nextpick_local.ops.target import names as target

EXIT_FAILURE = 1


def train(args: argparse.Namespace) -> int:
    step = getattr(args, "step", None)
    if step in ("train", "evaluate", "publish", "record") and not args.run_id:
        raise UsageError(f"--step {step} needs --run-id (the query step's run_id)")
    if getattr(args, "status", None) and step != "record":
        raise UsageError("--status only applies with --step record")
    names = target(args)
    from nextpick_training.pipeline import RetrainStatus, run_retrain
    from nextpick_training.settings import TrainingSettings

    settings = TrainingSettings(
        model_bucket_name=names.model_bucket,
        items_table_name=names.items_table,
        event_bus_name=names.event_bus,
        hyperparameters=args.hyperparameters or {},
        publish_mode=getattr(args, "publish_mode", "replace"),
        challenger_share=getattr(args, "challenger_share", 0.1),
    )
    if step:
        return _train_step(args, settings)
    s3, events, _ = clients()
    result = run_retrain(s3, events, settings)
    print(json.dumps(result.model_dump(mode="json", exclude={"error"}), indent=2))
    if result.status is RetrainStatus.FAILED:
        print(result.error or result.reason, file=sys.stderr)
        return EXIT_FAILURE
    return 0


def _train_step(args: argparse.Namespace, settings: Any) -> int:
    """One step, as the state machine runs it: the same payload, the same function, its JSON output."""
    from nextpick_training import steps
    from nextpick_training.pipeline import RetrainStatus

    s3, events, dynamodb = clients()
    aws = steps.StepClients(s3, events, dynamodb)
    now = datetime.now(UTC)
    payload: dict[str, Any] = {"step": args.step}
    if args.step == "query":
        payload["execution"] = args.run_id or f"cli-{now.strftime('%Y%m%dT%H%M%SZ')}"
        payload["started_at"] = now.isoformat()
    else:
        payload["run_id"] = args.run_id
    if args.step == "record":
        result = steps.folder(aws, settings, args.run_id).read_result() if args.run_id else None
        payload["status"] = args.status or _outcome(result, RetrainStatus)
    try:
        output = steps.run_step(payload, aws, settings)
    except steps.StepPayloadError as error:
        raise UsageError(str(error)) from error
    except (steps.StepError, FileNotFoundError) as error:
        raise CommandError(str(error)) from error
    print(json.dumps(output, indent=2))
    return 0


def _outcome(result: Any, status: Any) -> str:
    """A run's outcome from its run.json: what its steps decided, or failed if they did not finish."""
    if result is None:
        return "failed"
    if result.status in (status.PUBLISHED, status.SKIPPED, status.REJECTED):
        return str(result.status.value)
    return "failed"


def publish(args: argparse.Namespace) -> int:
    try:
        manifest = json.loads(args.manifest.read_text(encoding="utf-8"))
        state_dim, items = int(manifest["state_dim"]), list(manifest["items"])
    except (ValueError, KeyError, TypeError) as error:
        raise UsageError(f"{args.manifest}: not a model manifest ({error})") from error
    names = target(args)
    from nextpick_training import publish as publish_lib

    s3, events, _ = clients()
    outcome = publish_lib.publish(
        s3,
        events,
        names.model_bucket,
        names.model_prefix,
        names.event_bus,
        args.file.read_bytes(),
        state_dim=state_dim,
        items=items,
        training_window=manifest.get("training_window", {}),
        hyperparameters=manifest.get("hyperparameters", {}),
        metrics=manifest.get("metrics", {}),
    )
    print(f"published {outcome.version} (previous: {outcome.previous_version or 'none'})")
    return 0


def rollback(args: argparse.Namespace) -> int:
    names = target(args)
    from nextpick_training import publish as publish_lib

    s3, events, _ = clients()
    outcome = publish_lib.rollback(
        s3, events, names.model_bucket, names.model_prefix, names.event_bus, args.version
    )
    print(f"live model is now {outcome.version} (was {outcome.previous_version or 'none'})")
    return 0


def status(args: argparse.Namespace) -> int:
    names = target(args)
    from nextpick_local.ops.status import describe_status
    from nextpick_local.ops.status import status as report_status

    s3, _, dynamodb = clients()
    report = report_status(s3, dynamodb, names)
    print(json.dumps(report, indent=2, default=str) if args.json else describe_status(report))
    return 0
