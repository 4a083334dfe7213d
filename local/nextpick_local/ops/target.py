"""Which stack an operations command acts on: the running local stack (its state file) by default, or
real AWS with `--aws` (names from `--stack-name`'s CloudFormation outputs or from the environment)."""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Any

from nextpick_local import state_file
from nextpick_local.errors import CommandError, UsageError
from nextpick_local.ops.status import Names


def local_state(path: Path | None) -> dict[str, Any]:
    path = path or state_file.default_path()
    state = state_file.read(path)
    if state is None:
        raise CommandError(
            f"no local stack is running ({path} not found): start one with `nextpick serve --demo`"
        )
    return state


def names(args: argparse.Namespace) -> Names:
    """The target's resource names; for a local stack, also points this process's boto3 at it."""
    if args.aws:
        if args.stack_name:
            import boto3

            stacks = boto3.client("cloudformation").describe_stacks(StackName=args.stack_name)["Stacks"]
            outputs = {o["OutputKey"]: o["OutputValue"] for o in stacks[0].get("Outputs", [])}
            return Names(
                outputs["ModelBucketName"],
                outputs["ItemsTableName"],
                outputs["StateTableName"],
                outputs["EventBusName"],
            )
        variables = ("MODEL_BUCKET_NAME", "ITEMS_TABLE_NAME", "STATE_TABLE_NAME", "EVENT_BUS_NAME")
        missing = [v for v in variables if not os.environ.get(v)]
        if missing:
            raise UsageError(f"--aws needs --stack-name or the environment variables {', '.join(missing)}")
        return Names(*(os.environ[v] for v in variables))
    if args.stack_name:
        raise UsageError("--stack-name only applies with --aws")
    from nextpick_local.standin.stack import aws_environment

    state = local_state(args.state_file)
    os.environ.update(aws_environment(state["endpoint_url"], state["region"]))
    refs = state["resources"]
    return Names(refs["ModelBucket"], refs["ItemsTable"], refs["StateTable"], refs["NextpickBus"])


def clients() -> tuple[Any, Any, Any]:
    import boto3

    return boto3.client("s3"), boto3.client("events"), boto3.client("dynamodb")
