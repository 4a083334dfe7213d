"""`nextpick`: run the system locally and operate models, locally or on AWS.

    nextpick serve [--demo]          the whole system on this machine (make local)
    nextpick train                   run the retrain pipeline once (--step: one step of it)
    nextpick retrain                 run the local stack's retrain state machine now (one execution)
    nextpick publish FILE --manifest M.json
    nextpick rollback VERSION
    nextpick replay FILE.jsonl       send tracked events through POST /events
    nextpick status                  live model, versions, last retrain, table sizes
    nextpick variants ACTION         show or change the A/B variants and the shadow model
    nextpick ab-traffic              simulated shoppers on the running local stack (an A/B demo's traffic)
    nextpick walkthrough             the scripted tour of a running local stack
    nextpick compact-log             run the event-log compaction once on the running local stack
    nextpick export-user USER        what nextpick holds about a shopper: the API export + log lines
    nextpick report [--days N]       online metrics per variant and model version (docs/attribution.md)

Commands that touch storage find a running local stack through its state file; `--aws` targets real
AWS instead (the usual boto3 credentials/region), with names from `--stack-name` (CloudFormation
outputs) or the environment (MODEL_BUCKET_NAME, ITEMS_TABLE_NAME, STATE_TABLE_NAME, EVENT_BUS_NAME).
Exit codes: 0 success, 1 failure, 2 bad arguments.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from nextpick.errors import NextpickError
from nextpick_local import state_file
from nextpick_local.errors import CommandError, UsageError

EXIT_FAILURE = 1
EXIT_USAGE = 2
DEBUG_VARIABLE = "NEXTPICK_DEBUG"


# ---------------------------------------------------------------------------------------- argument types


def _port(text: str) -> int:
    try:
        port = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a port number: {text!r}") from None
    if not 0 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"port must be 0-65535, got {port}")
    return port


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError("must be >= 0 (0 turns it off)")
    return value


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError("must be >= 1")
    return value


def _json_object(text: str) -> dict[str, Any]:
    try:
        value = json.loads(text)
    except json.JSONDecodeError as error:
        raise argparse.ArgumentTypeError(f"not JSON: {error}") from None
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError("must be a JSON object")
    return value


def _parameter(text: str) -> tuple[str, str]:
    name, equals, value = text.partition("=")
    if not equals or not name:
        raise argparse.ArgumentTypeError(f"expected Name=Value, got {text!r}")
    return name, value


def _existing_file(text: str) -> Path:
    path = Path(text)
    if not path.is_file():
        raise argparse.ArgumentTypeError(f"no such file: {text}")
    return path


def _url(text: str) -> str:
    if not text.startswith(("http://", "https://")):
        raise argparse.ArgumentTypeError(f"not an http(s) URL: {text!r}")
    return text.rstrip("/")


# ---------------------------------------------------------------------------------------------- parser


def _target_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("target (default: the running local stack)")
    group.add_argument(
        "--state-file", type=Path, help="the local stack's state file (default .nextpick/local.json)"
    )
    group.add_argument("--aws", action="store_true", help="target real AWS with the usual boto3 credentials")
    group.add_argument("--stack-name", help="with --aws: read resource names from this stack's outputs")


def _credential_parsers(commands: Any) -> None:
    show = commands.add_parser(
        "credentials",
        help="print the admin key, server key and token signing key",
        description=("Print the credentials derived from the stack's master secret (docs/security.md)."),
    )
    show.add_argument("--json", action="store_true", help="print JSON")
    _target_options(show)
    rotate = commands.add_parser(
        "rotate-credentials",
        help="replace the master secret (no redeploy)",
        description="Write a new master secret; the previous credentials stay valid until the next rotation.",
    )
    rotate.add_argument(
        "--revoke-previous", action="store_true", help="also invalidate the previous credentials"
    )
    _target_options(rotate)
    token = commands.add_parser(
        "shopper-token",
        help="mint a shopper token, as a shop's backend does",
        description=("Print an HS256 token bound to USER_ID, signed with the stack's token signing key."),
    )
    token.add_argument("user_id", metavar="USER_ID")
    token.add_argument("--ttl", type=_positive_int, default=900, help="lifetime in seconds (default 900)")
    _target_options(token)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="nextpick",
        description="nextpick: real-time recommendations. Run the whole system locally, train, publish, roll back.",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    serve = commands.add_parser(
        "serve",
        help="run the whole system on this machine (AWS stand-in, API, storefront)",
        description="Start moto as the AWS stand-in, create template.yaml's resources, serve the API "
        "(API Gateway semantics), the storefront and the event sources until Ctrl-C.",
    )
    serve.add_argument(
        "--demo", action="store_true", help="load the demo shop, train the first model, warm demo shoppers"
    )
    serve.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    serve.add_argument("--port", type=_port, default=8000, help="HTTP port (default 8000; 0 = any free port)")
    serve.add_argument(
        "--retrain-every",
        type=_seconds,
        default=600.0,
        metavar="SECONDS",
        help="fire the retrain schedule this often (default 600; 0 = only on demand)",
    )
    serve.add_argument(
        "--parameter-overrides",
        type=_parameter,
        nargs="+",
        default=[],
        metavar="NAME=VALUE",
        help="template parameters, as for `sam deploy` (e.g. ModelRefreshSeconds=5)",
    )
    serve.add_argument(
        "--training-engine",
        choices=["auto", "lambda", "sagemaker", "batch"],
        help="where the retrain's state machine trains (the TrainingEngine parameter; default auto): "
        "sagemaker / batch run the training job's container entry locally (docs/retrain.md)",
    )
    serve.add_argument(
        "--stack-name", default="nextpick-local", help="names the resources (default nextpick-local)"
    )
    serve.add_argument(
        "--hyperparameters",
        type=_json_object,
        metavar="JSON",
        help="RetrainFunction's HYPERPARAMETERS (default with --demo: a small, fast model)",
    )
    serve.add_argument(
        "--state-file", type=Path, help="where to write the stack's state file (default .nextpick/local.json)"
    )
    serve.add_argument(
        "--function-logs",
        metavar="PATH",
        help="the functions' log output (default .nextpick/functions.log; '-' = console)",
    )
    serve.add_argument("--seed", type=int, default=7, help="seed of the generated demo shop (default 7)")

    train = commands.add_parser(
        "train",
        help="run the retrain pipeline once (read log, train, gate, publish)",
        description="Run nextpick_training.pipeline.run_retrain once against the target's bucket and log.",
    )
    train.add_argument(
        "--hyperparameters",
        type=_json_object,
        metavar="JSON",
        help="overrides of the model's hyperparameters",
    )
    train.add_argument(
        "--publish-mode",
        choices=("replace", "challenger"),
        default="replace",
        help="replace the live model (default) or publish as the A/B challenger (docs/variants.md)",
    )
    train.add_argument(
        "--challenger-share",
        type=float,
        default=0.1,
        help="with --publish-mode challenger: the share of shoppers a new challenger gets (default 0.1)",
    )
    train.add_argument(
        "--step",
        choices=("query", "train", "evaluate", "publish", "record"),
        help="run one step of the retrain against the target and print its JSON output "
        '(docs/retrain.md, "Steps"); without it, the whole retrain runs',
    )
    train.add_argument(
        "--run-id",
        metavar="ID",
        help="the run folder (training-runs/ID/): required for train, evaluate, publish and record; "
        "for query, the execution name (default cli-<time>)",
    )
    train.add_argument(
        "--status",
        choices=("published", "rejected", "skipped", "failed"),
        help="with --step record: the run's outcome (default: what its run.json says)",
    )
    _target_options(train)

    retrain = commands.add_parser(
        "retrain",
        help="run the local stack's retrain state machine now (one execution)",
        description="POST /_local/retrain on the running local stack: one execution of RetrainStateMachine "
        "(query, train, evaluate, gate, publish, record, notify); prints the run's record and the execution.",
    )
    retrain.add_argument("--state-file", type=Path, help="the local stack's state file")
    retrain.add_argument(
        "--reclaim-spot",
        type=int,
        default=0,
        metavar="N",
        help="a drill: the run's SageMaker / Batch job loses its spot capacity N times, each after a "
        "complete checkpoint, and resumes (serve --training-engine sagemaker|batch)",
    )

    publish = commands.add_parser(
        "publish",
        help="publish an existing model artifact",
        description="Publish FILE.tflite with its manifest and make it live.",
    )
    publish.add_argument("file", type=_existing_file, metavar="FILE.tflite")
    publish.add_argument(
        "--manifest", type=_existing_file, required=True, metavar="M.json", help="the model's manifest"
    )
    _target_options(publish)

    rollback = commands.add_parser(
        "rollback",
        help="make an earlier model version live again",
        description="Point serving at VERSION (checked by sha256).",
    )
    rollback.add_argument("version", metavar="VERSION")
    _target_options(rollback)

    replay = commands.add_parser(
        "replay",
        help="send tracked events from a JSON-lines file through POST /events",
        description="Send every event of FILE.jsonl (one shopper event per line: any event_type, search and review included) in batches, then summarize.",
    )
    replay.add_argument("file", type=_existing_file, metavar="FILE.jsonl")
    replay.add_argument("--api-url", type=_url, help="API base URL (default: the running local stack's)")
    replay.add_argument(
        "--server-key", help="the server key (Authorization: Bearer; default: the running local stack's)"
    )
    replay.add_argument(
        "--batch-size", type=_positive_int, default=25, help="events per request (default 25)"
    )
    replay.add_argument("--state-file", type=Path, help="the local stack's state file")

    status = commands.add_parser(
        "status", help="live model, versions, last retrain, table sizes", description="Show what is live."
    )
    status.add_argument("--json", action="store_true", help="print JSON")
    _target_options(status)

    _privacy_commands(commands)
    _credential_parsers(commands)
    from nextpick_local.ops.variants import add_parser as add_variants_parser

    add_variants_parser(commands, _target_options)
    traffic = commands.add_parser(
        "ab-traffic",
        help="simulated shoppers on the running local stack (traffic for an A/B demo)",
        description="Each demo shopper views an item through POST /events, then may click and buy one of "
        "the answer's picks (docs/variants.md, 'A demo with two variants').",
    )
    traffic.add_argument(
        "--shoppers", type=_positive_int, default=300, help="shoppers to simulate (default 300)"
    )
    traffic.add_argument("--seed", type=int, default=7, help="the demo shop's seed (default 7, as serve's)")
    traffic.add_argument("--state-file", type=Path, help="the local stack's state file")

    online = commands.add_parser(
        "report",
        help="online metrics per variant and model version, from the event log",
        description=(
            "Impressions, CTR, add-to-cart rate, conversion and revenue per 1000 impressions with 95 %% "
            "intervals, and every variant against the control (an always-valid test): docs/attribution.md."
        ),
    )
    online.add_argument("--days", type=_positive_int, default=14, help="days of impressions (default 14)")
    online.add_argument("--json", action="store_true", help="print JSON instead of markdown")
    online.add_argument("--write", action="store_true", help="also store it under reports/ in the bucket")
    _target_options(online)

    # Listed for `nextpick --help`; main() hands `walkthrough ...` over before parsing.
    commands.add_parser("walkthrough", help="scripted tour of a running local stack (its own --help)")
    return parser


def _privacy_commands(commands: Any) -> None:
    """Issue 9 (docs/privacy.md): erasure's log compaction and the access request's export."""
    compact = commands.add_parser(
        "compact-log",
        help="run the event-log compaction once on the running local stack",
        description="POST /_local/compact-log: EventLogCompactionFunction runs with a scheduled event.",
    )
    compact.add_argument("--state-file", type=Path, help="the local stack's state file")
    export = commands.add_parser(
        "export-user",
        help="what nextpick holds about a shopper: the API export and their event-log lines",
        description="GET /users/USER/data, plus every line naming USER in every version of the S3 event log.",
    )
    export.add_argument("user_id", metavar="USER")
    export.add_argument("--api-url", type=_url, help="API base URL (default: the running local stack's)")
    export.add_argument(
        "--server-key",
        help="the server or admin key (Authorization: Bearer; default: the running local stack's)",
    )
    _target_options(export)
    migrate = commands.add_parser(
        "migrate-event-log",
        help="convert the JSON-lines event log written before issue 14 to Parquet (one-off)",
        description="Every JSON-lines object under events/ becomes <key>.parquet in its partition; every "
        "version of the JSON object is then deleted (docs/event-log.md).",
    )
    migrate.add_argument("--dry-run", action="store_true", help="only count what would be converted")
    _target_options(migrate)


# ---------------------------------------------------------------------------------------------- commands


def _serve(args: argparse.Namespace) -> int:
    from nextpick_local.serve import DEMO_HYPERPARAMETERS, ServeError, ServeOptions, serve
    from nextpick_local.standin.aws_resources import TemplateError

    state_path = args.state_file or state_file.default_path()
    if args.function_logs == "-":
        function_log = None
    else:
        function_log = Path(args.function_logs) if args.function_logs else state_path.parent / "functions.log"
    options = ServeOptions(
        host=args.host,
        port=args.port,
        demo=args.demo,
        retrain_every=args.retrain_every,
        stack_name=args.stack_name,
        parameters={
            **dict(args.parameter_overrides),
            **({"TrainingEngine": args.training_engine} if args.training_engine else {}),
        },
        hyperparameters=args.hyperparameters or (DEMO_HYPERPARAMETERS if args.demo else None),
        state_file=state_path,
        function_log=function_log,
        seed=args.seed,
    )
    try:
        return serve(options)
    except ServeError as error:
        raise CommandError(str(error)) from error
    except TemplateError as error:  # e.g. --parameter-overrides naming no parameter of the template
        raise UsageError(str(error)) from error


def _retrain(args: argparse.Namespace) -> int:
    from nextpick_local.ops.target import local_state

    state = local_state(args.state_file)
    print("retraining (an execution of RetrainStateMachine, as its schedule starts it) ...", file=sys.stderr)
    options = {"reclaim_spot": args.reclaim_spot} if args.reclaim_spot else None
    code, body = _request(state["api_url"], "POST", "/_local/retrain", options)
    print(json.dumps(body, indent=2))
    if code != 200 or not isinstance(body, dict) or body.get("status") == "failed":
        return EXIT_FAILURE
    # A run recorded as succeeded whose execution still failed (its RetrainFinished event was lost).
    execution = body.get("execution") or {}
    return 0 if execution.get("execution_status", "SUCCEEDED") == "SUCCEEDED" else EXIT_FAILURE


def _request(
    api_url: str, method: str, path: str, body: Any = None, credential: str | None = None
) -> tuple[int, Any]:
    from nextpick_local.http_client import JsonClient, Unreachable

    try:
        return JsonClient(api_url, credential).request(method, path, body)
    except Unreachable as error:
        raise CommandError(f"{error}; is the stack running (`nextpick serve --demo`)?") from error


def _replay(args: argparse.Namespace) -> int:
    from nextpick_local.demo.replay import replay
    from nextpick_local.ops.target import local_state

    api_url, server_key = args.api_url, args.server_key
    if api_url is None or server_key is None:
        state = local_state(args.state_file)
        api_url, server_key = api_url or state["api_url"], server_key or state["server_key"]
    summary = replay(
        args.file, args.batch_size, post=lambda body: _request(api_url, "POST", "/events", body, server_key)
    )
    print(summary.describe())
    return 0 if summary.rejected == 0 and summary.errors == 0 else EXIT_FAILURE


def _ab_traffic(args: argparse.Namespace) -> int:
    from nextpick_local.demo import demo_shop
    from nextpick_local.demo.ab_traffic import run_traffic
    from nextpick_local.demo.load import DEMO_SHOP
    from nextpick_local.ops.target import local_state

    state = local_state(args.state_file)
    config = demo_shop.DemoConfig(seed=args.seed, items=DEMO_SHOP.items, shoppers=DEMO_SHOP.shoppers)
    items = [item.item_id for item in demo_shop.generate(config).items]
    shoppers = min(args.shoppers, DEMO_SHOP.shoppers)
    summary = run_traffic(
        lambda path, body: _request(state["api_url"], "POST", path, body, state["server_key"]),
        items,
        shoppers,
        args.seed,
    )
    print(summary.describe())
    return 0 if summary.errors == 0 else EXIT_FAILURE


def _walkthrough(argv: list[str]) -> int:
    import importlib

    try:
        walkthrough = importlib.import_module("nextpick_local.demo.walkthrough")
    except ImportError as error:
        print(f"nextpick walkthrough: not installed ({error})", file=sys.stderr)
        return EXIT_FAILURE
    return int(walkthrough.main(argv))


def _operation(name: str, module: str = "commands") -> Callable[[argparse.Namespace], int]:
    """An operations command (`ops.<module>`), imported when it runs: `--help` stays fast."""

    def run(args: argparse.Namespace) -> int:
        import importlib

        command: Callable[[argparse.Namespace], int] = getattr(
            importlib.import_module(f"nextpick_local.ops.{module}"), name
        )
        return command(args)

    return run


COMMANDS: dict[str, Callable[[argparse.Namespace], int]] = {
    "serve": _serve,
    "train": _operation("train"),
    "retrain": _retrain,
    "publish": _operation("publish"),
    "rollback": _operation("rollback"),
    "replay": _replay,
    "status": _operation("status"),
    "compact-log": _operation("compact_log", "privacy"),
    "export-user": _operation("export_user", "privacy"),
    "report": _operation("report", "report"),
    "migrate-event-log": _operation("migrate_event_log", "event_log"),
    "credentials": _operation("show", "credentials"),
    "rotate-credentials": _operation("rotate_command", "credentials"),
    "shopper-token": _operation("shopper_token", "credentials"),
    "variants": _operation("variants_command", "variants"),
    "ab-traffic": _ab_traffic,
}


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["walkthrough"]:
        # Everything after the word belongs to the walkthrough, `--help` included (argparse's
        # REMAINDER cannot take leading options), so it is handed over before parsing.
        return _walkthrough(argv[1:])
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return COMMANDS[args.command](args)
    except UsageError as error:
        parser.print_usage(sys.stderr)
        print(f"nextpick {args.command}: error: {error}", file=sys.stderr)
        return EXIT_USAGE
    except (CommandError, NextpickError, BotoCoreError, ClientError) as error:
        print(f"nextpick {args.command}: {_one_line(error)}", file=sys.stderr)
        return EXIT_FAILURE
    except KeyboardInterrupt:
        return 130
    except Exception as error:
        # A failure is one line, never a traceback (NEXTPICK_DEBUG=1 shows it).
        if os.environ.get(DEBUG_VARIABLE):
            raise
        print(
            f"nextpick {args.command}: unexpected {type(error).__name__}: {_one_line(error)} "
            f"(run with {DEBUG_VARIABLE}=1 for the traceback)",
            file=sys.stderr,
        )
        return EXIT_FAILURE


def _one_line(error: BaseException) -> str:
    return " ".join(str(error).split())


if __name__ == "__main__":
    sys.exit(main())
