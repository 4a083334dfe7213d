"""The AWS stand-in: a moto server on 127.0.0.1, the process environment pointed at it, and the
resources of template.yaml created from the template itself (aws_resources).

Everything the handlers build lazily (boto3 clients, settings) then talks to moto: `AWS_ENDPOINT_URL`
redirects every boto3 client, dummy credentials make sure nothing can reach a real account, and the
Lambda environment is the one the template resolves to.
"""

from __future__ import annotations

import logging
import os
import re
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import boto3
from moto.server import ThreadedMotoServer

from nextpick_local.aws_resources import DEFAULT_REGION, Stack, create_stack

DUMMY_CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SESSION_TOKEN": "testing",
}
# Local-only queues that stand in for "EventBridge invokes the function": one per rule of the template.
RULE_QUEUE_TARGET_ID = "nextpick-local-dispatch"
# A failed bus invocation is retried (Lambda's asynchronous retries) once the message becomes visible again.
RULE_QUEUE_VISIBILITY_SECONDS = 2


@dataclass
class LocalStack:
    server: ThreadedMotoServer
    endpoint_url: str
    resources: Stack
    # The environment every function of the template gets (Globals + its own; see function_environment).
    function_env: dict[str, str]
    # "<function>.<event>" -> URL of the local queue the rule delivers to (EventBridgeRule events only).
    rule_queues: dict[str, str] = field(default_factory=dict)

    def client(self, service: str) -> Any:
        return boto3.client(service, endpoint_url=self.endpoint_url, region_name=self.resources.region)  # type: ignore[call-overload]

    def stop(self) -> None:
        self.server.stop()


def aws_environment(endpoint_url: str, region: str) -> dict[str, str]:
    """What makes every boto3 client of this process (and its children) use the local stand-in."""
    return {
        **DUMMY_CREDENTIALS,
        "AWS_ENDPOINT_URL": endpoint_url,
        "AWS_DEFAULT_REGION": region,
        "AWS_REGION": region,
    }


def function_environment(resources: Stack) -> dict[str, str]:
    """The one environment all functions share in this process.

    Every handler runs in this process (or a child of it), so a variable the template gives two
    functions different values could not be honoured: refuse to start rather than misconfigure one."""
    merged: dict[str, str] = {}
    for function, environment in resources.environments.items():
        for name, value in environment.items():
            if merged.setdefault(name, value) != value:
                raise ValueError(
                    f"{function} sets {name}={value!r} but another function sets {merged[name]!r}; "
                    "the local stack runs all functions in one environment"
                )
    return merged


_FIREHOSE_EXPRESSION = re.compile(r"!\{timestamp:([^}]+)\}")
# Firehose's (Java DateTimeFormatter) pattern letters -> strftime.
_JAVA_TO_STRFTIME = (("yyyy", "%Y"), ("MM", "%m"), ("dd", "%d"), ("HH", "%H"), ("mm", "%M"), ("ss", "%S"))


def firehose_object_key(stream_name: str, version_id: str, prefix: str, now: datetime) -> str:
    """The S3 key Firehose gives a delivery: the prefix with its `!{timestamp:...}` expressions
    evaluated (arrival time, UTC), then `<stream>-<version>-<yyyy-MM-dd-HH-mm-ss>-<uuid>`.

    Firehose appends the default `yyyy/MM/dd/HH/` only to prefixes without expressions."""

    def evaluate(match: re.Match[str]) -> str:
        pattern = match.group(1)
        for java, strftime in _JAVA_TO_STRFTIME:
            pattern = pattern.replace(java, strftime)
        return now.strftime(pattern)

    if _FIREHOSE_EXPRESSION.search(prefix):
        folder = _FIREHOSE_EXPRESSION.sub(evaluate, prefix)
    else:
        folder = f"{prefix}{'' if not prefix or prefix.endswith('/') else '/'}{now.strftime('%Y/%m/%d/%H')}/"
    return f"{folder}{stream_name}-{version_id}-{now.strftime('%Y-%m-%d-%H-%M-%S')}-{uuid.uuid4()}"


def _evaluate_firehose_prefixes() -> None:
    """moto writes `!{timestamp:yyyy}` into keys literally; real Firehose evaluates it, and the retrain
    job's reader prunes old partitions by those values. Replace moto's key builder with Firehose's."""
    from moto.firehose.models import FirehoseBackend

    def object_path(delivery_stream_name: str, version_id: str, prefix: str) -> str:
        return firehose_object_key(delivery_stream_name, version_id, prefix, datetime.now(UTC))

    FirehoseBackend._format_s3_object_path = staticmethod(object_path)  # type: ignore[method-assign]


def _attach_rule_queues(stack: LocalStack, template: Mapping[str, Any]) -> None:
    """Add a local SQS queue as an extra target of every EventBridge rule of the template.

    moto matches events against the rules' patterns and delivers them to the queue; a poller
    (dispatch.BusDispatcher) invokes the rule's function with each. Schedule rules get none: moto does
    not run schedules, dispatch.Scheduler does."""
    events, sqs = stack.client("events"), stack.client("sqs")
    for key, (rule_name, bus_name) in stack.resources.rules.items():
        function, _, event_name = key.partition(".")
        if template["Resources"][function]["Properties"]["Events"][event_name]["Type"] != "EventBridgeRule":
            continue
        queue_url = sqs.create_queue(
            QueueName=f"{rule_name}-local",
            Attributes={"VisibilityTimeout": str(RULE_QUEUE_VISIBILITY_SECONDS)},
        )["QueueUrl"]
        queue_arn = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])["Attributes"][
            "QueueArn"
        ]
        events.put_targets(
            Rule=rule_name, EventBusName=bus_name, Targets=[{"Id": RULE_QUEUE_TARGET_ID, "Arn": queue_arn}]
        )
        stack.rule_queues[key] = queue_url


def start_stack(
    template: Mapping[str, Any],
    stack_name: str,
    parameters: Mapping[str, str],
    region: str = DEFAULT_REGION,
    host: str = "127.0.0.1",
) -> LocalStack:
    """Start moto, point this process at it, create the template's resources; return the stack."""
    _evaluate_firehose_prefixes()
    # moto's server logs every request it answers; the pollers alone would flood the console.
    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    server = ThreadedMotoServer(ip_address=host, port=0, verbose=False)
    server.start()
    _, port = server.get_host_and_port()
    endpoint_url = f"http://{host}:{port}"
    try:
        os.environ.update(aws_environment(endpoint_url, region))
        resources = create_stack(
            stack_name,
            parameters=parameters,
            session=boto3.Session(),
            endpoint_url=endpoint_url,
            region=region,
        )
        env = function_environment(resources)
        os.environ.update(env)
        stack = LocalStack(server, endpoint_url, resources, env)
        _attach_rule_queues(stack, template)
    except BaseException:
        server.stop()
        raise
    return stack


def describe(stack: LocalStack) -> dict[str, Any]:
    """JSON-ready summary (the state file and /_local/status use it)."""
    resources = stack.resources
    return {
        "endpoint_url": stack.endpoint_url,
        "region": resources.region,
        "account_id": resources.account_id,
        "stack_name": resources.name,
        "parameters": dict(resources.parameters),
        "resources": dict(resources.refs),
        "function_env": stack.function_env,
        "rule_queues": stack.rule_queues,
    }
