"""`nextpick train | publish | rollback | status`: the same code against the local stack or real AWS."""

from __future__ import annotations

import argparse
import json
import sys

from nextpick_local.errors import UsageError
from nextpick_local.ops.target import clients
from nextpick_local.ops.target import names as target

EXIT_FAILURE = 1


def train(args: argparse.Namespace) -> int:
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
    s3, events, _ = clients()
    result = run_retrain(s3, events, settings)
    print(json.dumps(result.model_dump(mode="json", exclude={"error"}), indent=2))
    if result.status is RetrainStatus.FAILED:
        print(result.error or result.reason, file=sys.stderr)
        return EXIT_FAILURE
    return 0


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
