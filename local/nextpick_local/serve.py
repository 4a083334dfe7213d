"""`nextpick serve`: the whole system on this machine, until Ctrl-C / SIGTERM.

moto (AWS stand-in) -> template's resources -> functions, event sources -> [demo shop, first model,
warm demo shoppers] -> HTTP (storefront, API, /_local) -> state file -> wait -> stop it all, exit 0
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import sys
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from botocore.exceptions import BotoCoreError, ClientError

from nextpick.adapters.dynamodb_catalog import decode_item
from nextpick.domain.credentials import ShopCredentials, mint_shopper_token
from nextpick.domain.events import ID_MAX_LENGTH, ID_PATTERN
from nextpick.errors import StorageUnavailable
from nextpick_local import state_file as state_file_lib
from nextpick_local.demo import STATIC_DIR, demo_shop
from nextpick_local.demo.load import DEMO_HYPERPARAMETERS, DEMO_SHOP, load_demo
from nextpick_local.ops.status import Names, status
from nextpick_local.progress import Step
from nextpick_local.standin.aws_resources import TemplateError, find_template
from nextpick_local.standin.dispatch import ScheduleBusy, Scheduler
from nextpick_local.standin.event_sources import RETRAIN_STATE_MACHINE, event_sources
from nextpick_local.standin.functions import FunctionError, Invoker, functions_of
from nextpick_local.standin.gateway import ApiGateway, HttpRequest, HttpResponse, json_response, stage_of
from nextpick_local.standin.http_server import LocalHttpServer
from nextpick_local.standin.stack import LocalStack, describe, start_stack
from nextpick_local.standin.state_machines import StateMachines

# The days of impressions the storefront's report view covers (`nextpick report`'s default).
REPORT_DAYS = 14
# The function /_local/compact-log fires (its schedule), as `nextpick compact-log` asks.
COMPACTION_FUNCTION = "EventLogCompactionFunction"
# The lifetime of the storefront's shopper tokens; the page asks for a new one when a call answers 401.
SHOPPER_TOKEN_SECONDS = 900
__all__ = ["DEMO_HYPERPARAMETERS", "ServeError", "ServeOptions", "serve"]


@dataclass
class ServeOptions:
    host: str = "127.0.0.1"
    port: int = 8000
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
    """The stack cannot start; everything started so far is stopped. One line: what failed, why, and
    what to try (the CLI prints it instead of a traceback)."""

    def __init__(self, what: str, reason: str, hint: str) -> None:
        super().__init__(f"{what} failed: {reason}. Try: {hint}")


# What to try when a start-up step fails (the usual cause first).
HINT_BUSY = (
    "the local AWS stand-in answered too slowly or not at all; on a busy machine wait for it to calm "
    "down and run the command again"
)
HINT_TEMPLATE = "run `cfn-lint template.yaml` and `sam validate --lint`; fix what they report"
HINT_FUNCTIONS = "read the functions' log ({log}) for the error, then run the command again"


def _one_line(error: BaseException) -> str:
    text = " ".join(str(error).split()) or type(error).__name__
    kind = type(error).__name__
    text = text if text.startswith(kind) or isinstance(error, ServeError) else f"{kind}: {text}"
    return text if len(text) <= 300 else text[:297] + "..."


@contextlib.contextmanager
def _step(what: str, hint: str) -> Iterator[None]:
    """Turn any failure of a start-up step into one ServeError line (Ctrl-C passes through). A storage
    error or timeout is the stand-in being slow or gone, whatever the step."""
    try:
        yield
    except (ServeError, TemplateError):
        raise  # TemplateError: e.g. an unknown --parameter-overrides name, a usage error for the CLI
    except (StorageUnavailable, BotoCoreError, ClientError) as error:
        raise ServeError(what, _one_line(error), HINT_BUSY) from error
    except Exception as error:
        raise ServeError(what, _one_line(error), hint) from error


def _raise_interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


def serve(options: ServeOptions, console: TextIO | None = None) -> int:
    """Run until interrupted; 0 after a clean stop. Raises ServeError if the stack cannot start."""
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
    repo = find_template().parent
    log = _function_log(options, cleanup)
    print(f"nextpick: starting the local stack {options.stack_name!r}", file=console, flush=True)

    with (
        _step("starting the AWS stand-in", HINT_BUSY),
        Step("AWS stand-in (moto) + template resources", console),
    ):
        stack = start_stack(options.stack_name, options.parameters)
        cleanup.callback(stack.stop)
    for note in stack.resources.notes:
        print(f"  note: {note}", file=console, flush=True)
    if options.hyperparameters is not None:
        os.environ["HYPERPARAMETERS"] = json.dumps(options.hyperparameters)
    resources = stack.resources
    with _step("reading the functions of template.yaml", HINT_TEMPLATE):
        functions = functions_of(resources.resources, repo)
    invoker = Invoker(functions, resources.refs, resources.region, resources.account_id, log)
    credentials = stack_credentials(stack)
    stage = stage_of(resources.resources)
    gateway = ApiGateway.of_template(
        resources.resources, invoker.invoke, resources.account_id, resources.region
    )
    # Bound now, served last: a busy port fails in a second, not after the demo has loaded.
    control: dict[tuple[str, str], Any] = {}
    page_config: dict[str, Any] = {}
    try:
        http = LocalHttpServer(options.host, options.port, gateway, control, page_config, STATIC_DIR)
    except OSError as error:
        raise ServeError(
            f"listening on {options.host}:{options.port}",
            str(error.strerror or error),
            "pick another port with --port (0 = any free one) or stop what uses it",
        ) from error
    api_url = f"http://{options.host}:{http.port}"
    demo_users = [p.user_id for p in demo_shop.PERSONAS] if options.demo else []
    # No key in the page: the storefront asks /_local/shopper-token, the demo's stand-in for a shop's
    # backend, for a token bound to the shopper it shows (docs/security.md).
    # The demo stores a rule set (docs/storefront.md, "The promotion"); the page names it on its calls.
    rule_set = demo_shop.STOREFRONT_RULE_SET if options.demo else None
    page_config.update(apiUrl=api_url, stage=stage, demoUsers=demo_users, ruleSet=rule_set, local=True)

    with _step("starting the state machines", HINT_BUSY):
        # The template's definition files, run by moto's ASL interpreter with local tasks (issue 14).
        machines = StateMachines.start(stack, invoker, log)
    cleanup.callback(machines.stop)
    with _step("starting the event sources", HINT_BUSY):
        sources = event_sources(stack, invoker.invoke, options.retrain_every, machines.run)
        sources.start()
    cleanup.callback(sources.stop, invoker.stop)
    for line in sources.unsupported:
        print(f"  note: {line}", file=console, flush=True)
    # What /_local/retrain and the demo's first model fire (the retrain's schedule: its state machine).
    scheduler = sources.schedulers.get(RETRAIN_STATE_MACHINE) or next(iter(sources.schedulers.values()), None)
    names = Names(resources.model_bucket, resources.items_table, resources.state_table, resources.event_bus)
    control[("POST", "/_local/compact-log")] = _fire_route(sources.schedulers.get(COMPACTION_FUNCTION))
    control.update(_control_routes(stack, scheduler, names, page_config, credentials))
    control[("POST", "/_local/retrain")] = _retrain_route(scheduler, machines)
    control[("GET", "/_local/model")] = _model_route(gateway, credentials.server_key)

    if options.demo:
        if scheduler is None:
            raise ServeError(
                "loading the demo", "the template has no scheduled retrain function", HINT_TEMPLATE
            )
        with _step("loading the demo shop", HINT_FUNCTIONS.format(log=options.function_log or "the console")):
            keys = (credentials.server_key, credentials.admin_key)
            load_demo(stack, gateway, keys, scheduler, options.seed, console)

    http.start()
    cleanup.callback(http.stop)
    state_path = options.state_file or state_file_lib.default_path()
    state_file_lib.write(
        state_path,
        {
            "pid": os.getpid(),
            "api_url": api_url,
            # This machine's throwaway stack only: a deployed stack's keys never leave Secrets Manager
            # but through `nextpick credentials`.
            "server_key": credentials.server_key,
            "admin_key": credentials.admin_key,
            "token_signing_key": credentials.token_signing_key,
            "storefront_url": f"{api_url}/",
            **describe(stack),
        },
    )
    cleanup.callback(state_file_lib.remove, state_path, os.getpid())
    _banner(console, api_url, credentials, stage, options, state_path, time.monotonic() - started)
    # Short sleeps, not one long one: the OS may deliver Ctrl-C/SIGTERM to any of the stack's threads,
    # and Python runs the handler only when the main thread next runs bytecode. A sleep of 3600 s then
    # ignored a Ctrl-C for up to an hour (seen in CI: the stack outlived its 30 s stop); 0.2 s bounds it.
    while True:
        time.sleep(0.2)


def stack_credentials(stack: LocalStack) -> ShopCredentials:
    """The keys derived from the stack's master secret (the template's AuthSecret)."""
    secret = stack.client("secretsmanager").get_secret_value(SecretId=stack.resources.auth_secret)
    return ShopCredentials.derive(secret["SecretString"])


def _shopper_token_route(credentials: ShopCredentials) -> Any:
    def shopper_token(body: bytes) -> HttpResponse:
        # What a shop's backend does once its own login knows the shopper: mint a short-lived token bound
        # to them. The demo has no login, so any page may ask for any shopper's token here, locally.
        try:
            user_id = json.loads(body or b"{}")["user_id"]
        except (ValueError, KeyError, TypeError):
            return json_response(400, {"message": 'expected {"user_id": "..."}'})
        # The authorizer refuses a token whose sub is no valid user id: refuse to mint one.
        if not isinstance(user_id, str) or len(user_id) > ID_MAX_LENGTH or not re.match(ID_PATTERN, user_id):
            error = {"field": "user_id", "message": f"must be 1-{ID_MAX_LENGTH} of {ID_PATTERN}"}
            return json_response(400, {"message": "invalid request", "errors": [error]})
        ttl = SHOPPER_TOKEN_SECONDS
        token = mint_shopper_token(credentials.token_signing_key, user_id, ttl)
        return json_response(200, {"token": token, "user_id": user_id, "expires_in": ttl})

    return shopper_token


def _model_route(gateway: ApiGateway, server_key: str) -> Any:
    def model(_: bytes) -> HttpResponse:
        # The storefront's model badge. `GET /model` is for the server and admin scopes and the page
        # holds only a shopper token, so it asks its backend's stand-in, which calls with the server key.
        authorization = [("Authorization", f"Bearer {server_key}")]
        return gateway.handle(HttpRequest("GET", "/model", authorization, b"", "127.0.0.1"))

    return model


def _control_routes(
    stack: LocalStack,
    scheduler: Scheduler | None,
    names: Names,
    page_config: Mapping[str, Any],
    credentials: ShopCredentials,
) -> dict[tuple[str, str], Any]:
    def get_status(_: bytes) -> HttpResponse:
        report = status(stack.client("s3"), stack.client("dynamodb"), names)
        return json_response(200, {**report, "stack": describe(stack)})

    def put_bus_events(body: bytes) -> HttpResponse:
        try:
            entries = _bus_entries(body, names.event_bus)
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

    def get_report(_: bytes) -> HttpResponse:
        # The storefront's status view: `nextpick report` over the stack's log, computed now.
        from nextpick_local.ops.report import report_of

        return json_response(200, report_of(stack.client("s3"), names.model_bucket, REPORT_DAYS))

    return {
        ("GET", "/_local/report"): get_report,
        ("GET", "/_local/catalog"): list_catalog,
        ("GET", "/_local/status"): get_status,
        ("GET", "/_local/config"): lambda _: json_response(200, page_config),
        ("POST", "/_local/bus"): put_bus_events,
        ("POST", "/_local/shopper-token"): _shopper_token_route(credentials),
    }


def _retrain_route(scheduler: Scheduler | None, machines: StateMachines) -> Any:
    """`POST /_local/retrain`: one execution of the retrain's state machine, as its schedule starts it;
    answers the run's record (the RetrainResult) with the execution's status under `execution`. Body
    (optional): {"reclaim_spot": n} - the run's SageMaker / Batch job loses its spot capacity n times,
    each after a complete checkpoint (a local-only drill of a spot reclaim; docs/retrain.md)."""
    fire = _fire_route(scheduler)

    def retrain(body: bytes) -> HttpResponse:
        try:
            options = json.loads(body or b"{}")
            reclaim = options.get("reclaim_spot", 0) if isinstance(options, dict) else None
            if not isinstance(reclaim, int) or isinstance(reclaim, bool) or not 0 <= reclaim <= 10:
                raise ValueError
        except ValueError:
            error = {"field": "reclaim_spot", "message": "must be an integer from 0 to 10"}
            return json_response(400, {"message": "invalid request", "errors": [error]})
        machines.reclaim_pending = reclaim
        try:
            return fire(body)
        finally:
            machines.reclaim_pending = 0

    return retrain


def _fire_route(scheduler: Scheduler | None) -> Any:
    """A control route that runs a scheduled function now, as its schedule would, and answers its result."""

    def fire(_: bytes) -> HttpResponse:
        if scheduler is None:
            return json_response(404, {"message": "the template has no such scheduled function"})
        try:
            return json_response(200, scheduler.fire())
        except ScheduleBusy as busy:
            return json_response(409, {"message": str(busy)})
        except FunctionError as error:
            return json_response(502, {"message": str(error)})

    return fire


def _bus_entries(body: bytes, event_bus: str) -> list[dict[str, Any]]:
    """PutEvents entries from one entry or `{"Entries": [...]}`, on the stack's bus, Detail as JSON text."""
    request = json.loads(body or b"{}")
    entries: list[dict[str, Any]] = request.get("Entries", [request])
    for entry in entries:
        entry.setdefault("EventBusName", event_bus)
        if not isinstance(entry.get("Detail"), str):
            entry["Detail"] = json.dumps(entry.get("Detail", {}))
    return entries


def catalog_listing(dynamodb: Any, table: str) -> list[dict[str, Any]]:
    """Every item of the items table, as the storefront shows it, in item id order."""
    items = [
        decode_item(raw)
        for page in dynamodb.get_paginator("scan").paginate(TableName=table)
        for raw in page.get("Items", [])
    ]
    fields = {"item_id", "title", "category", "price", "stock"}
    return [item.model_dump(include=fields) for item in sorted(items, key=lambda i: i.item_id)]


def _banner(
    console: TextIO,
    api_url: str,
    credentials: ShopCredentials,
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
        f"  server key   {credentials.server_key}   (Authorization: Bearer <key>)",
        f"  admin key    {credentials.admin_key}",
        f"  try          curl -H 'Authorization: Bearer {credentials.server_key}' {api_url}{try_path}",
        f"  local only   GET {api_url}/_local/status   POST {api_url}/_local/retrain   POST {api_url}/_local/bus",
        f"               POST {api_url}/_local/compact-log (nextpick compact-log)",
        f'               POST {api_url}/_local/shopper-token  {{"user_id": ...}}  (the demo\'s token minting)',
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
