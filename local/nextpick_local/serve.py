"""`nextpick serve`: the whole system on this machine, until Ctrl-C / SIGTERM.

moto (AWS stand-in) -> template's resources -> functions, event sources -> [demo shop, first model,
warm demo shoppers] -> HTTP (storefront, API, /_local) -> state file -> wait -> stop it all, exit 0
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import signal
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any, TextIO

from nextpick.adapters.dynamodb_catalog import decode_item
from nextpick.settings import get_settings
from nextpick_local import demo_shop, seed
from nextpick_local import state_file as state_file_lib
from nextpick_local.aws_resources import find_template, load_template
from nextpick_local.dispatch import (
    AsyncInvokeConfig,
    BusDispatcher,
    ScheduleBusy,
    Scheduler,
    StreamDispatcher,
    Worker,
    scheduled_event,
)
from nextpick_local.functions import FunctionError, Invoker, functions_of
from nextpick_local.gateway import ApiGateway, HttpResponse, json_response, routes_of
from nextpick_local.http_server import LocalHttpServer
from nextpick_local.progress import Step
from nextpick_local.stack import LocalStack, describe, start_stack
from nextpick_local.status import Names, status

# Small enough to train in seconds on a laptop; a local override of RetrainFunction's HYPERPARAMETERS.
DEMO_HYPERPARAMETERS = {"embedding_dim": 32, "hidden_dim": 64, "epochs": 8, "batch_size": 256}
DEMO_SHOP = demo_shop.DemoConfig(items=2000, shoppers=500)
EVENT_LOG_PREFIX = "events/"


@dataclass
class ServeOptions:
    host: str = "127.0.0.1"
    port: int = 8000
    api_key: str | None = None
    demo: bool = False
    retrain_every: float = 600.0
    stack_name: str = "nextpick-local"
    parameters: dict[str, str] = field(default_factory=dict)
    hyperparameters: dict[str, Any] | None = None
    state_file: Path | None = None
    # Where the functions' output goes (CloudWatch Logs' stand-in); None = this console.
    function_log: Path | None = None
    seed: int = DEMO_SHOP.seed


class ServeError(RuntimeError):
    """The stack cannot start (e.g. the port is taken); everything started so far is stopped."""


def _raise_interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


def serve(options: ServeOptions, console: TextIO | None = None) -> int:
    """Run until interrupted; 0 after a clean stop."""
    console = console or sys.stderr
    # SIGTERM stops as cleanly as Ctrl-C: the same unwinding closes every piece below. SIGINT is set
    # too: a shell starting a background job hands it over ignored, and Ctrl-C must still work.
    signal.signal(signal.SIGTERM, _raise_interrupt)
    signal.signal(signal.SIGINT, _raise_interrupt)
    try:
        with contextlib.ExitStack() as cleanup:
            _run(options, cleanup, console)
    except KeyboardInterrupt:
        pass
    print("nextpick: stopped", file=console, flush=True)
    return 0


def _function_log(options: ServeOptions, cleanup: contextlib.ExitStack) -> TextIO | None:
    """Send the functions' stdout (Powertools logs and metrics) to a file, as Lambda sends it to
    CloudWatch Logs; the console keeps the progress and the banner (stderr)."""
    if options.function_log is None:
        return None
    state_file_lib.prepare_folder(options.function_log.parent)
    log = cleanup.enter_context(options.function_log.open("a", encoding="utf-8", buffering=1))
    cleanup.enter_context(contextlib.redirect_stdout(log))
    return log


def _run(options: ServeOptions, cleanup: contextlib.ExitStack, console: TextIO) -> None:
    started = time.monotonic()
    template = load_template()
    repo = find_template().parent
    log = _function_log(options, cleanup)
    print(f"nextpick: starting the local stack {options.stack_name!r}", file=console, flush=True)

    with Step("AWS stand-in (moto) + template resources", console):
        stack = start_stack(template, options.stack_name, options.parameters)
        cleanup.callback(stack.stop)
    if options.hyperparameters is not None:
        os.environ["HYPERPARAMETERS"] = json.dumps(options.hyperparameters)
    resources = stack.resources
    functions = functions_of(template, repo)
    invoker = Invoker(
        functions,
        {f: resources.refs.get(f, f) for f in functions},
        resources.region,
        resources.account_id,
        log,
    )
    api_key = options.api_key or f"np-local-{secrets.token_hex(12)}"
    stage = resources.parameters.get("Stage", "prod")
    gateway = ApiGateway(
        routes_of(template), invoker.invoke, frozenset({api_key}), stage, resources.account_id
    )
    # Bound now, served last: a busy port fails in a second, not after the demo has loaded.
    control: dict[tuple[str, str], Any] = {}
    page_config: dict[str, Any] = {}
    try:
        http = LocalHttpServer(options.host, options.port, gateway, control, page_config)
    except OSError as error:
        raise ServeError(
            f"cannot listen on {options.host}:{options.port}: {error.strerror or error}"
        ) from error
    api_url = f"http://{options.host}:{http.port}"
    demo_users = [p.user_id for p in demo_shop.PERSONAS] if options.demo else []
    page_config.update(apiUrl=api_url, apiKey=api_key, stage=stage, demoUsers=demo_users, local=True)

    workers, schedulers = _start_event_sources(stack, template, invoker, options.retrain_every)
    cleanup.callback(_stop_event_sources, workers, invoker)
    # The template has one schedule: the retrain job's.
    scheduler = next(iter(schedulers.values()))
    names = Names(resources.model_bucket, resources.items_table, resources.state_table, resources.event_bus)
    control.update(_control_routes(stack, scheduler, names, page_config))

    if options.demo:
        _load_demo(stack, gateway, api_key, scheduler, options, console)

    http.start()
    cleanup.callback(http.stop)
    state_path = options.state_file or state_file_lib.default_path()
    state_file_lib.write(
        state_path,
        {
            "pid": os.getpid(),
            "api_url": api_url,
            "api_key": api_key,
            "storefront_url": f"{api_url}/",
            **describe(stack),
        },
    )
    cleanup.callback(state_file_lib.remove, state_path, os.getpid())
    _banner(console, api_url, api_key, stage, options, state_path, time.monotonic() - started)
    while True:
        time.sleep(3600)


def _resolve_arn(stack: LocalStack, reference: Any) -> str:
    """The local value of `!GetAtt <Table>.StreamArn` / `!GetAtt <Queue>.Arn` in an event source."""
    logical_id, attribute = reference["Fn::GetAtt"]
    if attribute == "StreamArn":
        table = stack.client("dynamodb").describe_table(TableName=stack.resources.refs[logical_id])["Table"]
        return str(table["LatestStreamArn"])
    return str(stack.resources.arns[logical_id])


def _async_invoke_config(
    stack: LocalStack, template: Mapping[str, Any], function: str, queue_url_of_arn: Mapping[str, str]
) -> AsyncInvokeConfig:
    """The function's EventInvokeConfig (Lambda's defaults where it is silent), with local queue URLs."""
    config = template["Resources"][function].get("Properties", {}).get("EventInvokeConfig", {})
    destination = config.get("DestinationConfig", {}).get("OnFailure", {}).get("Destination")
    return AsyncInvokeConfig(
        function_arn=stack.resources.arns[function],
        max_retries=int(config.get("MaximumRetryAttempts", 2)),
        on_failure_queue_url=queue_url_of_arn.get(_resolve_arn(stack, destination)) if destination else None,
    )


def _start_event_sources(
    stack: LocalStack,
    template: Mapping[str, Any],
    invoker: Invoker,
    retrain_every: float,
) -> tuple[list[Worker], dict[str, Scheduler]]:
    """A started dispatcher for every event source of every function; the schedulers by function."""
    resources = stack.resources
    sqs = stack.client("sqs")
    queue_url_of_arn = {resources.arns[q]: resources.refs[q] for q in resources.arns if q in resources.refs}
    workers: list[Worker] = []
    schedulers: dict[str, Scheduler] = {}
    for key, queue_url in stack.rule_queues.items():
        function = key.partition(".")[0]
        config = _async_invoke_config(stack, template, function, queue_url_of_arn)
        workers.append(BusDispatcher(sqs, queue_url, function, invoker.invoke, resources.account_id, config))
    for function, resource in template["Resources"].items():
        for event_name, event in resource.get("Properties", {}).get("Events", {}).items():
            properties = event.get("Properties", {})
            if event["Type"] == "DynamoDB":
                destination = properties.get("DestinationConfig", {}).get("OnFailure", {}).get("Destination")
                workers.append(
                    StreamDispatcher(
                        stack.client("dynamodbstreams"),
                        sqs,
                        _resolve_arn(stack, properties["Stream"]),
                        function,
                        properties,
                        invoker.invoke,
                        queue_url_of_arn.get(_resolve_arn(stack, destination)) if destination else None,
                    )
                )
            elif event["Type"] == "Schedule":
                rule_name, _ = resources.rules[f"{function}.{event_name}"]
                rule_arn = f"arn:aws:events:{resources.region}:{resources.account_id}:rule/{rule_name}"
                make_event = partial(scheduled_event, rule_arn, resources.account_id, resources.region)
                schedulers[function] = Scheduler(function, make_event, invoker.invoke, retrain_every)
                workers.append(schedulers[function])
    for worker in workers:
        worker.start()
    return workers, schedulers


def _stop_event_sources(workers: list[Worker], invoker: Invoker) -> None:
    """Signal every dispatcher, end a retrain process still running (rather than wait for it), then
    wait for the threads: they wind down in parallel."""
    for worker in workers:
        worker.stopping.set()
    invoker.stop()
    for worker in workers:
        worker.stop()


def _control_routes(
    stack: LocalStack, scheduler: Scheduler, names: Names, page_config: Mapping[str, Any]
) -> dict[tuple[str, str], Any]:
    def get_status(_: bytes) -> HttpResponse:
        report = status(stack.client("s3"), stack.client("dynamodb"), names)
        return json_response(200, {**report, "stack": describe(stack)})

    def retrain(_: bytes) -> HttpResponse:
        try:
            return json_response(200, scheduler.fire())
        except ScheduleBusy as busy:
            return json_response(409, {"message": str(busy)})
        except FunctionError as error:
            return json_response(502, {"message": str(error)})

    def put_bus_events(body: bytes) -> HttpResponse:
        try:
            request = json.loads(body or b"{}")
            entries = request.get("Entries", [request])
            for entry in entries:
                entry.setdefault("EventBusName", names.event_bus)
                if not isinstance(entry.get("Detail"), str):
                    entry["Detail"] = json.dumps(entry.get("Detail", {}))
        except (ValueError, TypeError, KeyError, AttributeError) as error:
            return json_response(
                400, {"message": f'expected a PutEvents entry or {{"Entries": [...]}}: {error}'}
            )
        response = stack.client("events").put_events(Entries=entries)
        response.pop("ResponseMetadata", None)
        return json_response(200, response)

    def list_catalog(_: bytes) -> HttpResponse:
        # The public API has no catalog listing; the storefront needs one to show products.
        return json_response(200, {"items": catalog_listing(stack.client("dynamodb"), names.items_table)})

    return {
        ("GET", "/_local/catalog"): list_catalog,
        ("GET", "/_local/status"): get_status,
        ("GET", "/_local/config"): lambda _: json_response(200, page_config),
        ("POST", "/_local/retrain"): retrain,
        ("POST", "/_local/bus"): put_bus_events,
    }


def catalog_listing(dynamodb: Any, table: str) -> list[dict[str, Any]]:
    """Every item of the items table, as the storefront shows it, in item id order."""
    items = [
        decode_item(raw)
        for page in dynamodb.get_paginator("scan").paginate(TableName=table)
        for raw in page.get("Items", [])
    ]
    fields = {"item_id", "title", "category", "price", "stock"}
    return [item.model_dump(include=fields) for item in sorted(items, key=lambda i: i.item_id)]


def _load_demo(
    stack: LocalStack,
    gateway: ApiGateway,
    api_key: str,
    scheduler: Scheduler,
    options: ServeOptions,
    console: TextIO,
) -> None:
    resources = stack.resources
    shop = demo_shop.generate(
        demo_shop.DemoConfig(seed=options.seed, items=DEMO_SHOP.items, shoppers=DEMO_SHOP.shoppers)
    )
    print(
        f"nextpick: demo shop: {len(shop.items)} products, {len(shop.shoppers)} shoppers, "
        f"{len(shop.history)} past events",
        file=console,
        flush=True,
    )
    seed.load_catalog(resources.items_table, shop.items)
    seed.write_event_log(
        stack.client("s3"), resources.model_bucket, resources.event_log_stream, EVENT_LOG_PREFIX, shop.history
    )
    with Step("first model (RetrainFunction, scheduled event)", console):
        result = scheduler.fire()
    print(f"  retrain: {result.get('status')}: {result.get('reason')}", file=console, flush=True)

    def check(status_code: int, body: bytes) -> None:
        if status_code != 200:
            raise RuntimeError(f"warming a demo shopper failed: {status_code} {body[:300]!r}")

    # The handler's own per-request limit (MAX_BATCH_EVENTS), as the function environment sets it.
    batch_size = get_settings().max_batch_events
    seed.send_live_events(gateway, api_key, shop.live_events, batch_size, check)


def _banner(
    console: TextIO,
    api_url: str,
    api_key: str,
    stage: str,
    options: ServeOptions,
    state_path: Path,
    seconds: float,
) -> None:
    personas = ", ".join(p.user_id for p in demo_shop.PERSONAS)
    try_path = f"/users/{demo_shop.PERSONAS[0].user_id}/recommendations" if options.demo else "/model"
    lines = [
        "",
        f"nextpick is running (ready in {seconds:.0f}s)",
        f"  storefront   {api_url}/",
        f"  API          {api_url}/   (also {api_url}/{stage}/, the deployed URL's shape)",
        f"  API key      {api_key}   (header x-api-key)",
        f"  try          curl -H 'x-api-key: {api_key}' {api_url}{try_path}",
        f"  local only   GET {api_url}/_local/status   POST {api_url}/_local/retrain   POST {api_url}/_local/bus",
        f"  retrain      every {options.retrain_every:g}s"
        if options.retrain_every > 0
        else "  retrain      on demand only",
        f"  state file   {state_path}",
    ]
    if options.demo:
        lines.append(f"  demo users   {personas}")
    if options.function_log is not None:
        lines.append(f"  function logs {options.function_log}")
    lines.append("  stop         Ctrl-C")
    print("\n".join(lines), file=console, flush=True)
