"""Least privilege, both ways (docs/operations.md, "Least privilege").

1. template.yaml, translated by the SAM translator exactly as the local stand-in translates it, grants
   each function (and each other role) exactly what iam_allow_list.py lists: an extra action, a wider
   resource, a broader key prefix, a dropped condition or a function without an entry fails.
2. The allow list is what the code needs: every function's real handler runs its flows under moto
   while a botocore hook records each AWS call it makes; each call, as the IAM action and resource it
   is authorised as, must be allowed by that function's list. A grant no flow exercises must say why
   it is there (`unrecorded` in the list); those are printed."""

from __future__ import annotations

import copy
import json
from collections import defaultdict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from fnmatch import fnmatchcase
from functools import cache
from typing import Any, cast

import boto3
import pytest
from moto.athena.models import QueryResults, athena_backends

from nextpick.domain.credentials import ShopCredentials
from nextpick.errors import InvalidRequest
from nextpick.handlers import (
    api,
    authorizer,
    bus,
    catalog_artifact,
    log_shipper,
    stream_events,
    wiring,
)
from nextpick.settings import get_settings
from nextpick_local.standin.aws_resources import Stack
from nextpick_local.standin.template import translated_template
from nextpick_training import compaction_handler, refresh_handler, report_handler
from nextpick_training import handler as retrain_handler
from nextpick_training.event_log import LogStats
from nextpick_training.pipeline import read_log_window
from nextpick_training.settings import TrainingSettings, get_training_settings
from nextpick_training.window_query import ROW_COLUMNS
from tests.integration.iam_allow_list import ALLOW_LIST, EVENT_LOG_WORK_GROUP, NOT_RECORDED, Grant, condition
from tests.integration.serving import FakeLambdaContext, call, proxy_event, sample_event
from tests.integration.test_log_shipper import stream_event
from tests.integration.test_retrain import SCHEDULE_EVENT, TINY, shop_log, write_log
from tests.integration.test_stream_events import batch as kinesis_batch

Key = tuple[str, str, str | None]
FUNCTION = "AWS::Lambda::Function"
ROLE = "AWS::IAM::Role"

# ------------------------------------------------------------------------------ 1. template vs the list


@cache
def _resources() -> dict[str, Any]:
    resources: dict[str, Any] = translated_template()["Resources"]
    return resources


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def resource_name(value: Any) -> str:
    """A statement's Resource in the allow list's notation ("ModelBucket/models/*"), else as JSON."""
    if value == "*":
        return "*"
    if isinstance(value, dict) and list(value) == ["Ref"]:
        return str(value["Ref"])  # a secret's Ref is its ARN
    if isinstance(value, dict) and list(value) == ["Fn::GetAtt"]:
        logical_id, attribute = value["Fn::GetAtt"]
        return str(logical_id) if attribute == "Arn" else f"{logical_id}.{attribute}"
    if isinstance(value, dict) and list(value) == ["Fn::Sub"] and isinstance(value["Fn::Sub"], str):
        text: str = value["Fn::Sub"]
        head, _, rest = text.partition("}")
        if text.startswith("${") and head.endswith(".Arn") and "${" not in rest:
            return head[2:-4] + rest
    return json.dumps(value, sort_keys=True)


def principals(resources: dict[str, Any]) -> dict[str, str]:
    """Each function's logical id -> its role's, and each role no function uses -> itself."""
    found: dict[str, str] = {}
    for logical_id, resource in resources.items():
        if resource["Type"] == FUNCTION:
            role = resource["Properties"]["Role"]
            assert isinstance(role, dict) and "Fn::GetAtt" in role, (
                f"{logical_id}: role not from this template"
            )
            found[logical_id] = role["Fn::GetAtt"][0]
    used = set(found.values())
    found.update({lid: lid for lid, r in resources.items() if r["Type"] == ROLE and lid not in used})
    return found


def role_grants(resources: dict[str, Any], role_id: str) -> tuple[set[Key], set[str]]:
    """Every (action, resource, condition) a role allows, and the AWS managed policies it has."""
    role = resources[role_id]["Properties"]
    documents = [policy["PolicyDocument"] for policy in role.get("Policies", [])]
    managed: set[str] = set()
    for arn in role.get("ManagedPolicyArns", []):
        if isinstance(arn, str):
            managed.add(arn)
        else:  # a customer managed policy of this template
            documents.append(resources[arn["Ref"]]["Properties"]["PolicyDocument"])
    documents += [
        resource["Properties"]["PolicyDocument"]
        for resource in resources.values()
        if resource["Type"] in ("AWS::IAM::Policy", "AWS::IAM::ManagedPolicy")
        and {"Ref": role_id} in resource["Properties"].get("Roles", [])
    ]
    keys: set[Key] = set()
    for document in documents:
        for statement in _list(document["Statement"]):
            unsupported = {"NotAction", "NotResource", "NotPrincipal"} & set(statement)
            assert statement.get("Effect") == "Allow" and not unsupported, f"{role_id}: {statement}"
            block = condition(statement["Condition"]) if "Condition" in statement else None
            for action in _list(statement["Action"]):
                keys |= {(action, resource_name(r), block) for r in _list(statement["Resource"])}
    return keys, managed


def differences(resources: dict[str, Any], principal: str) -> list[str]:
    """What the template grants `principal` beyond its allow list, and what it lacks of it."""
    granted, managed = role_grants(resources, principals(resources)[principal])
    allowed = ALLOW_LIST[principal]
    listed = {grant.key for grant in allowed.grants}
    return [
        *(f"granted, not in the allow list: {key}" for key in sorted(granted - listed, key=str)),
        *(f"in the allow list, not granted: {key}" for key in sorted(listed - granted, key=str)),
        *(
            f"managed policy not in the allow list: {arn}"
            for arn in sorted(managed - set(allowed.managed_policies))
        ),
        *(f"managed policy not attached: {arn}" for arn in sorted(set(allowed.managed_policies) - managed)),
    ]


def test_every_function_and_role_has_an_allow_list_entry_and_no_entry_is_stale() -> None:
    found = principals(_resources())
    assert set(found) - set(ALLOW_LIST) == set(), "add these to tests/integration/iam_allow_list.py"
    assert set(ALLOW_LIST) - set(found) == set(), "these entries name nothing in template.yaml"


@pytest.mark.parametrize("principal", sorted(ALLOW_LIST))
def test_the_template_grants_exactly_the_allow_list(principal: str) -> None:
    assert differences(_resources(), principal) == []


def test_every_function_has_its_own_role_that_only_lambda_can_assume() -> None:
    resources = _resources()
    roles = {f: r for f, r in principals(resources).items() if resources[f]["Type"] == FUNCTION}
    assert len(set(roles.values())) == len(roles), f"a role is shared: {roles}"
    for function, role in roles.items():
        (trust,) = resources[role]["Properties"]["AssumeRolePolicyDocument"]["Statement"]
        assert trust["Principal"] in (
            {"Service": "lambda.amazonaws.com"},
            {"Service": ["lambda.amazonaws.com"]},
        )
        assert _list(trust["Action"]) == ["sts:AssumeRole"], function


def _statement(resources: dict[str, Any], role: str, sid: str) -> dict[str, Any]:
    (policy,) = resources[role]["Properties"]["Policies"]
    (found,) = [s for s in policy["PolicyDocument"]["Statement"] if s.get("Sid") == sid]
    return cast(dict[str, Any], found)


STATE_TABLE = {"Fn::GetAtt": ["StateTable", "Arn"]}
# Ways a retrain role could grow back what the issue took away: (statement Sid, change).
BROADER: dict[str, tuple[str, Callable[[dict[str, Any]], Any]]] = {
    "an extra action": ("ReadCatalog", lambda s: s.update(Action=["dynamodb:Scan", "dynamodb:GetItem"])),
    "a wildcard resource": ("ReadCatalog", lambda s: s.update(Resource="*")),
    "a broader key prefix": (
        "ReadEventLogAndModels",
        lambda s: s.update(Resource={"Fn::Sub": "${ModelBucket.Arn}/*"}),
    ),
    "a dropped condition": ("CreateVersionsAndRunRecords", lambda s: s.pop("Condition")),
    "the state table": ("ReadCatalog", lambda s: s.update(Resource=[s["Resource"], STATE_TABLE])),
}


@pytest.mark.parametrize("what", sorted(BROADER))
def test_a_broader_grant_fails(what: str) -> None:
    resources = copy.deepcopy(_resources())
    sid, change = BROADER[what]
    change(_statement(resources, "RetrainFunctionRole", sid))
    assert differences(resources, "RetrainFunction"), f"{what} went unnoticed"


def test_a_role_no_function_uses_says_why_for_every_grant() -> None:
    resources = _resources()
    roles = [p for p, role in principals(resources).items() if p == role and p in ALLOW_LIST]
    assert roles and all(grant.unrecorded for p in roles for grant in ALLOW_LIST[p].grants)


def test_a_function_without_an_entry_fails() -> None:
    resources = copy.deepcopy(_resources())
    resources["SpareFunction"] = copy.deepcopy(resources["ApiFunction"])
    resources["SpareFunction"]["Properties"]["Role"] = {"Fn::GetAtt": ["SpareRole", "Arn"]}
    resources["SpareRole"] = copy.deepcopy(resources["ApiFunctionRole"])
    assert set(principals(resources)) - set(ALLOW_LIST) == {"SpareFunction"}


# ------------------------------------------------------------------------------ 2. the list vs the code

# The IAM action an operation is authorised as, where it is not "<service>:<operation>".
ACTION_OF = {
    "ListObjectsV2": "s3:ListBucket",
    "ListObjects": "s3:ListBucket",
    "ListObjectVersions": "s3:ListBucketVersions",
    "HeadObject": "s3:GetObject",
}
Call = tuple[str, str, dict[str, str]]


class CallRecorder:
    """A botocore hook on boto3's default session (the one every adapter's client comes from): each
    call made while a function runs, as (IAM action, resource in the allow list's notation, the request's
    condition keys)."""

    def __init__(self, stack: Stack) -> None:
        self.names = {value: logical_id for logical_id, value in stack.refs.items()}
        self.event_log_work_group = stack.env("RetrainFunction")["EVENT_LOG_WORK_GROUP"]
        self.work_group: str | None = None
        self.calls: dict[str, list[Call]] = defaultdict(list)
        self.function: str | None = None

    def hook(self, params: dict[str, Any], model: Any, **_: Any) -> None:
        if self.function is not None:
            self.calls[self.function].extend(
                self.as_iam(model.service_model.signing_name, model.name, params)
            )

    def as_iam(self, service: str, operation: str, params: dict[str, Any]) -> list[Call]:
        name = self.names.get
        if service == "s3":
            bucket = name(params["Bucket"], params["Bucket"])
            keys = {
                k: params[p]
                for k, p in (("s3:if-none-match", "IfNoneMatch"), ("s3:if-match", "IfMatch"))
                if p in params
            }
            where = f"{bucket}/{params['Key']}" if "Key" in params else bucket
            action = ACTION_OF.get(operation, f"s3:{operation}")
            if "VersionId" in params and operation in ("GetObject", "DeleteObject"):
                action += "Version"  # a call on one version is authorised as s3:<Operation>Version
            return [(action, where, keys)]
        if service == "dynamodb":
            tables = list(params["RequestItems"]) if "RequestItems" in params else [params["TableName"]]
            return [(f"dynamodb:{operation}", name(t, t), {}) for t in tables]
        if service == "events" and operation == "PutEvents":
            return [
                (
                    "events:PutEvents",
                    name(e.get("EventBusName", "default"), "default"),
                    {"events:source": e["Source"], "events:detail-type": e["DetailType"]},
                )
                for e in params["Entries"]
            ]
        if service == "secretsmanager":
            return [(f"secretsmanager:{operation}", name(params["SecretId"], "?"), {})]
        if service == "sqs":
            return [(f"sqs:{operation}", name(params["QueueUrl"], "?"), {})]
        if service == "firehose":
            return [(f"firehose:{operation}", name(params["DeliveryStreamName"], "?"), {})]
        if service == "athena":
            # Only StartQueryExecution names the workgroup; the polls and reads follow the query it started.
            if "WorkGroup" in params:
                self.work_group = params["WorkGroup"]
            group = EVENT_LOG_WORK_GROUP if self.work_group == self.event_log_work_group else "?"
            return [(f"athena:{operation}", group, {})]
        return [(f"{service}:{operation}", "?", {})]

    @contextmanager
    def running(self, function: str) -> Iterator[None]:
        self.function = function
        try:
            yield
        finally:
            self.function = None


def satisfies(context: dict[str, str], block: str | None) -> bool:
    for operator, pairs in json.loads(block or "{}").items():
        for key, expected in pairs.items():
            if operator == "Null":
                if (key in context) != (expected == "false"):
                    return False
            elif operator == "StringEquals":
                if context.get(key) not in _list(expected):
                    return False
            else:
                raise AssertionError(f"teach satisfies() the condition operator {operator}")
    return True


def allows(grant: Grant, made: Call) -> bool:
    action, resource, context = made
    return (
        grant.action == action
        and fnmatchcase(resource, grant.resource)
        and satisfies(context, grant.condition)
    )


@pytest.fixture
def recorder(stack: Stack, monkeypatch: pytest.MonkeyPatch) -> Iterator[CallRecorder]:
    env = {
        **stack.env("ApiFunction"),
        **stack.env("RetrainFunction"),
        **stack.env("AuthorizerFunction"),
        **stack.env("EventLogCompactionFunction"),
        **stack.env("StreamEventFunction"),
        **stack.env("OnlineReportFunction"),
    }
    env.update(MODEL_REFRESH_SECONDS="0", CATALOG_REFRESH_SECONDS="0", MIN_EVENTS="100", MIN_USERS="10")
    env.update(HYPERPARAMETERS=json.dumps(TINY), GATE_TOLERANCE="1.0")  # every candidate published
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    recorder = CallRecorder(stack)
    session = boto3._get_default_session()
    session.events.register("provide-client-params", recorder.hook)
    caches = (
        wiring.reset,
        get_settings.cache_clear,
        log_shipper.event_log.cache_clear,
        log_shipper.trending.cache_clear,
        report_handler.report_store.cache_clear,
        catalog_artifact.reset,
    )
    for forget in (
        *caches,
        get_training_settings.cache_clear,
        retrain_handler.reset_clients,
        compaction_handler.log_compaction.cache_clear,
    ):
        forget()  # clients are built after the hook: a client copies its session's hooks when made
    yield recorder
    session.events.unregister("provide-client-params", recorder.hook)
    for forget in (
        *caches,
        get_training_settings.cache_clear,
        retrain_handler.reset_clients,
        compaction_handler.log_compaction.cache_clear,
    ):
        forget()


class FullRun(FakeLambdaContext):
    """The compaction's whole 900 s ahead of it (the fake context's 10 s is below its reserve)."""

    def get_remaining_time_in_millis(self) -> int:
        return 900_000


def _flows(stack: Stack, recorder: CallRecorder, dynamodb: Any, streams: Any, s3: Any) -> None:
    """Every function's real handler, as its triggers invoke it, through one shop's life."""
    now = datetime.now(UTC).replace(microsecond=0)
    items = [{"item_id": f"item-{n}", "category": f"c{n % 4}", "price": 9.5, "stock": 3} for n in range(40)]
    event = {
        "event_id": "e-1",
        "user_id": "u-1",
        "item_id": "item-3",
        "event_type": "purchase",
        "timestamp": (now - timedelta(minutes=1)).isoformat(),
    }
    with recorder.running("ApiFunction"):
        assert call(api.lambda_handler, proxy_event("PUT", "/items", {"items": items}))[0] == 200
        assert call(api.lambda_handler, proxy_event("GET", "/model"))[1] == {"model_version": None}
        assert call(api.lambda_handler, proxy_event("POST", "/events", event))[0] == 200
    write_log(s3, stack.model_bucket, shop_log(now, users=20, per_user=30), now)
    for run in ("first model", "candidate"):
        with recorder.running("RetrainFunction"):
            result = retrain_handler.lambda_handler(SCHEDULE_EVENT, FakeLambdaContext())
        assert result["status"] == "published" and result["reason"].startswith(run), result
    athena_window(stack, recorder)
    with recorder.running("ApiFunction"):
        status, body = call(api.lambda_handler, proxy_event("GET", "/users/u-1/recommendations"))
        assert status == 200 and body["recommendations"], body
        spring = {"filter": "price < 10", "promotions": [{"name": "spring", "slots": 1, "items": ["item-5"]}]}
        assert call(api.lambda_handler, proxy_event("PUT", "/rule-sets/spring", spring))[0] == 200
        assert call(api.lambda_handler, proxy_event("GET", "/rule-sets/spring"))[0] == 200
        ruled = proxy_event("GET", "/users/u-1/recommendations", query="rules=spring&exclude_items=item-1")
        assert call(api.lambda_handler, ruled)[0] == 200
        assert call(api.lambda_handler, proxy_event("DELETE", "/rule-sets/spring"))[0] == 200
        assert call(api.lambda_handler, proxy_event("GET", "/trending"))[0] == 200
        # Similar items: the model's signature; the catalog and live trending (fallback) as above.
        assert call(api.lambda_handler, proxy_event("GET", "/items/item-3/similar"))[0] == 200
        new_item = {"category": "c1", "price": 3.0, "stock": 9}
        assert call(api.lambda_handler, proxy_event("PUT", "/items/item-new", new_item))[0] == 200
    with recorder.running("CatalogRefreshFunction"):
        refreshed = refresh_handler.lambda_handler(
            stream_event(dynamodb, streams, stack.items_table), FakeLambdaContext()
        )
    assert refreshed["status"] == "published", refreshed
    # The catalog artifact (docs/catalog-artifact.md): the first batch bootstraps from a scan, the daily
    # schedule reconciles and rewrites the snapshot, then the API serves from it.
    with recorder.running("CatalogArtifactFunction"):
        items_batch = stream_event(dynamodb, streams, stack.items_table)
        assert catalog_artifact.lambda_handler(items_batch, FakeLambdaContext())["version"] == 1
        catalog_artifact.lambda_handler(sample_event("schedule_retrain.json"), FakeLambdaContext())
    with recorder.running("ApiFunction"):
        sold_out = {"category": "c1", "price": 3.0, "stock": 0}
        assert call(api.lambda_handler, proxy_event("PUT", "/items/item-new", sold_out))[0] == 200
    with recorder.running("CatalogArtifactFunction"):
        items_batch = stream_event(dynamodb, streams, stack.items_table)
        assert catalog_artifact.lambda_handler(items_batch, FakeLambdaContext())["version"] == 2
    with recorder.running("ApiFunction"):
        assert call(api.lambda_handler, proxy_event("GET", "/users/u-1/recommendations"))[0] == 200
    shopper, item, rejected = (
        sample_event(f"bus_{n}.json") for n in ("shopper_event", "catalog_item", "shopper_event")
    )
    rejected["detail"]["event_type"] = "teleport"
    with recorder.running("BusEventFunction"):
        assert bus.lambda_handler(shopper, FakeLambdaContext())["results"][0]["status"] == "accepted"
        assert bus.lambda_handler(item, FakeLambdaContext()) == {"stored": 1}
        with pytest.raises(InvalidRequest):
            bus.lambda_handler(rejected, FakeLambdaContext())
    kinesis = boto3.client("kinesis")
    for data in (json.dumps({**event, "event_id": "e-k"}).encode(), b"not json"):
        kinesis.put_record(StreamName=stack.refs["EventStream"], Data=data, PartitionKey="u-1")
    records = kinesis_batch(stack)
    with recorder.running("StreamEventFunction"):
        assert stream_events.lambda_handler(records, FakeLambdaContext()) == {"batchItemFailures": []}
    with recorder.running("AuthorizerFunction"):
        server_key = ShopCredentials.derive(
            boto3.client("secretsmanager").get_secret_value(SecretId=stack.auth_secret)["SecretString"]
        ).server_key
        request = sample_event("authorizer_request.json")
        request["headers"]["Authorization"] = f"Bearer {server_key}"
        allowed = authorizer.lambda_handler(request, FakeLambdaContext())
    assert allowed["context"] == {"scope": "server"}, allowed
    with recorder.running("ApiFunction"):
        assert call(api.lambda_handler, proxy_event("DELETE", "/users/u-1"))[0] == 200
        assert call(api.lambda_handler, proxy_event("GET", "/users/u-1/data"))[0] == 200
    with recorder.running("EventLogShipperFunction"):
        shipped = log_shipper.lambda_handler(
            stream_event(dynamodb, streams, stack.state_table), FakeLambdaContext()
        )
    assert shipped == {"batchItemFailures": []}
    with recorder.running("OnlineReportFunction"):
        reported = report_handler.lambda_handler(sample_event("schedule_log_compaction.json"), FullRun())
    assert reported["status"] == "written" and reported["impressions"] > 0, reported
    with recorder.running("EventLogCompactionFunction"):
        compacted = compaction_handler.lambda_handler(sample_event("schedule_log_compaction.json"), FullRun())
    # u-1's events (API + Kinesis) and the impressions of u-1's answers (POST /events, 3 GETs).
    assert compacted["status"] == "complete" and compacted["lines_erased"] == 6, compacted


def athena_window(stack: Stack, recorder: CallRecorder) -> None:
    """The retrain's window query as deployed (EVENT_LOG_ENGINE=athena; the stand-in runs DuckDB):
    moto does not run SQL, so Athena's answer is queued (test_athena_window.py checks the rows)."""
    env = stack.env("RetrainFunction")
    boto3.client("athena").create_work_group(Name=env["EVENT_LOG_WORK_GROUP"])
    header = {"Data": [{"VarCharValue": column} for column in ROW_COLUMNS]}
    athena_backends[stack.account_id][stack.region].query_results_queue.append(
        QueryResults([header], [{"Name": c, "Type": "varchar"} for c in ROW_COLUMNS])
    )
    settings = TrainingSettings.from_env({**env, "EVENT_LOG_ENGINE": "athena"})
    now = datetime.now(UTC)
    with recorder.running("RetrainFunction"):
        assert read_log_window(boto3.client("s3"), settings, now - timedelta(days=1), now, LogStats()) == []


@pytest.mark.slow
def test_every_call_the_code_makes_is_in_its_functions_allow_list(
    stack: Stack, recorder: CallRecorder, dynamodb: Any, dynamodbstreams: Any, s3: Any
) -> None:
    _flows(stack, recorder, dynamodb, dynamodbstreams, s3)

    functions = {
        f for f in ALLOW_LIST if f in principals(_resources()) and _resources()[f]["Type"] == FUNCTION
    }
    assert functions - set(recorder.calls) == set(NOT_RECORDED), "a function whose calls were never recorded"
    denied = {
        f: sorted({c[:2] for c in made if not any(allows(g, c) for g in ALLOW_LIST[f].grants)})
        for f, made in recorder.calls.items()
    }
    assert {f: calls for f, calls in denied.items() if calls} == {}, (
        "the code makes calls its role does not allow"
    )
    unused = {
        f: [g for g in ALLOW_LIST[f].grants if not any(allows(g, c) for c in made)]
        for f, made in recorder.calls.items()
    }
    for function, grants in sorted(unused.items()):
        for grant in grants:
            print(
                f"allowed, never recorded: {function}: {grant.action} on {grant.resource}: {grant.unrecorded}"
            )
    unexplained = {f: [g.key for g in grants if not g.unrecorded] for f, grants in unused.items()}
    assert {f: keys for f, keys in unexplained.items() if keys} == {}, "allowed, never made, no reason given"
