"""The AWS stand-in: a moto server on 127.0.0.1, the process environment pointed at it, and the
resources of template.yaml created from the template itself (aws_resources).

Everything the handlers build lazily (boto3 clients, settings) then talks to moto: `AWS_ENDPOINT_URL`
redirects every boto3 client, dummy credentials make sure nothing can reach a real account, and the
Lambda environment is the one the template resolves to.

Timeouts and retries are the stand-in's, not Lambda's (see LOCAL_CLIENT_CONFIG): the functions' 2 s
connect / 5 s read budget assumes DynamoDB answering in milliseconds, while moto on a busy two-core
laptop took more than 5 s to answer a 2,000-item catalog scan (load average near 8), and `make local`
died of it.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from typing import Any

import boto3
from botocore.config import Config
from moto.server import ThreadedMotoServer

from nextpick_local.standin import moto_patches
from nextpick_local.standin.aws_resources import (
    DEFAULT_REGION,
    LOCAL_SERVER_RUNNING,
    RULE,
    Stack,
    create_stack,
)

DUMMY_CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SESSION_TOKEN": "testing",
}
# Local-only queues that stand in for "EventBridge invokes the function": one per rule of the template.
RULE_QUEUE_TARGET_ID = "nextpick-local-dispatch"
# A failed bus invocation is retried (Lambda's asynchronous retries) once the message becomes visible again.
RULE_QUEUE_VISIBILITY_SECONDS = 2
# botocore's own defaults (60 s read) and more retries: a local stand-in is slow when the machine is
# busy, never far away; waiting is right, failing fast is not. Applies to the stand-in's own clients,
# to the functions' (nextpick.adapters.CLIENT_CONFIG, replaced in this process) and, through
# AWS_RETRY_MODE / AWS_MAX_ATTEMPTS, to every other client of this process and its children.
LOCAL_CONNECT_TIMEOUT_SECONDS = 10
LOCAL_READ_TIMEOUT_SECONDS = 60
LOCAL_MAX_ATTEMPTS = 6


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
        return boto3.client(  # type: ignore[call-overload]
            service,
            endpoint_url=self.endpoint_url,
            region_name=self.resources.region,
            config=local_client_config(),
        )

    def stop(self) -> None:
        self.server.stop()
        LOCAL_SERVER_RUNNING.clear()


def local_client_config() -> Config:
    return Config(
        connect_timeout=LOCAL_CONNECT_TIMEOUT_SECONDS,
        read_timeout=LOCAL_READ_TIMEOUT_SECONDS,
        retries={"mode": "standard", "max_attempts": LOCAL_MAX_ATTEMPTS},
    )


def use_local_client_config() -> None:
    """The functions' boto3 clients (built lazily from nextpick.adapters.CLIENT_CONFIG) get the
    stand-in's timeouts; this process runs the zip functions in-process."""
    import nextpick.adapters

    nextpick.adapters.CLIENT_CONFIG = local_client_config()
    # The impression log's one short try too: a busy laptop's moto is slow, not broken.
    nextpick.adapters.BEST_EFFORT_CLIENT_CONFIG = local_client_config()


def aws_environment(endpoint_url: str, region: str) -> dict[str, str]:
    """What makes every boto3 client of this process (and its children) use the local stand-in."""
    return {
        **DUMMY_CREDENTIALS,
        "AWS_ENDPOINT_URL": endpoint_url,
        "AWS_DEFAULT_REGION": region,
        "AWS_REGION": region,
        "AWS_RETRY_MODE": "standard",
        "AWS_MAX_ATTEMPTS": str(LOCAL_MAX_ATTEMPTS),
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


def _attach_rule_queues(stack: LocalStack) -> None:
    """Add a local SQS queue as an extra target of every event-pattern rule of the template.

    moto matches events against the rules' patterns and delivers them to the queue; a poller
    (dispatch.BusDispatcher) invokes the rule's function with each. Schedule rules get none: moto does
    not run schedules, dispatch.Scheduler does."""
    events, sqs = stack.client("events"), stack.client("sqs")
    for key, (rule_name, bus_name) in stack.resources.rules.items():
        function, _, event_name = key.partition(".")
        rule = stack.resources.resources.get(f"{function}{event_name}", {})
        if rule.get("Type") != RULE or "EventPattern" not in rule.get("Properties", {}):
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
    stack_name: str,
    parameters: dict[str, str],
    region: str = DEFAULT_REGION,
    host: str = "127.0.0.1",
) -> LocalStack:
    """Start moto, point this process at it, create the template's resources; return the stack."""
    moto_patches.firehose_prefixes()
    use_local_client_config()
    # moto's server logs every request it answers; the pollers alone would flood the console.
    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    server = ThreadedMotoServer(ip_address=host, port=0, verbose=False)
    server.start()
    LOCAL_SERVER_RUNNING.set()
    _, port = server.get_host_and_port()
    endpoint_url = f"http://{host}:{port}"
    try:
        os.environ.update(aws_environment(endpoint_url, region))
        # moto's ASL interpreter calls services (a state machine's events:putEvents) on this port.
        os.environ["MOTO_PORT"] = str(port)
        session = boto3.Session()
        resources = create_stack(
            stack_name,
            parameters=parameters,
            session=session,
            endpoint_url=endpoint_url,
            region=region,
        )
        env = function_environment(resources)
        os.environ.update(env)
        stack = LocalStack(server, endpoint_url, resources, env)
        _attach_rule_queues(stack)
    except BaseException:
        server.stop()
        LOCAL_SERVER_RUNNING.clear()
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
