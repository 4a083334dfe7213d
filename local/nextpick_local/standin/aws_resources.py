"""Stand up the AWS resources that template.yaml declares, in a moto account, through moto's CloudFormation.

template.yaml is the one source of truth for the infrastructure. This module reads it with cfn-lint's
decoder, expands it with the SAM translator (template.py), and hands moto's CloudFormation every
resource moto models whose references it can resolve: tables, the bucket, queues, the bus and its
rules, roles, log groups and whatever is added later that moto covers. moto evaluates the intrinsic
functions (!Ref, !GetAtt, !Sub...) as CloudFormation would, and the stack's outputs carry back every
value the stand-in needs: physical names, ARNs, each function's environment, its event sources'
settings. Nothing here evaluates an intrinsic function.

moto_plan.py decides what goes to moto and which expressions come back as outputs; completion.py
creates what moto's CloudFormation leaves out. Three kinds of resource are not given to moto:
* what the stand-in itself emulates (`EMULATED_PREFIXES`: Lambda functions, their event source
  mappings, invoke configs, aliases and versions, and API Gateway) - they have no Docker-free runtime
  in moto; `functions.py`, `dispatch.py` and `gateway.py` read their translated definitions;
* what moto's CloudFormation does not cover but the system needs (`COMPLETED`: the Firehose delivery
  stream, point-in-time recovery, bucket versioning and public access blocks); created through the
  services' APIs with the properties moto resolved;
* everything else: skipped, with a note in `Stack.notes` (a type moto does not model, the TLS-only
  bucket policy moto would enforce on plain-HTTP local traffic, or a resource that refers to one of
  the emulated ones, e.g. an alarm on a function's errors).

Physical names are deterministic (`<stack>-<LogicalId>`, buckets in lower case) where the template
leaves a resource unnamed, so events/env.json and the tests can name them.

    with moto.mock_aws():
        stack = create_stack("nextpick-test")
        os.environ.update(stack.env("ApiFunction"))
"""

from __future__ import annotations

import json
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import boto3
from botocore.exceptions import ClientError

from nextpick_local.standin import moto_patches
from nextpick_local.standin.completion import (
    complete_bucket,
    complete_table,
    create_delivery_stream,
    create_secret,
)
from nextpick_local.standin.moto_plan import (
    BUCKET,
    DELIVERY_STREAM,
    EVENT_BUS,
    LAMBDA_FUNCTION,
    NAME_PROPERTIES,
    QUEUE,
    ROLE,
    RULE,
    SECRET,
    SERVERLESS_FUNCTION,
    TABLE,
    Plan,
    physical_name,
    substitute,
)
from nextpick_local.standin.moto_plan import plan as plan_moto_stack
from nextpick_local.standin.template import (
    TemplateError,
    find_template,
    load_template,
    parameter_values,
    translate,
)

DEFAULT_STACK_NAME = "nextpick-local"
DEFAULT_REGION = "us-east-1"
# moto's default account: plan_stack's names and ARNs are those of this account.
DEFAULT_ACCOUNT_ID = "123456789012"
# Set while a moto server runs in this process: plan_stack's throwaway mock would reset its data.
LOCAL_SERVER_RUNNING = threading.Event()


@dataclass(frozen=True)
class Stack:
    """The physical resources of one stack, as created from template.yaml."""

    name: str
    region: str
    account_id: str
    parameters: Mapping[str, str]
    # logical id -> the value `!Ref <logical id>` resolves to (a name; a queue URL for queues).
    refs: Mapping[str, str]
    # logical id -> ARN.
    arns: Mapping[str, str]
    # function logical id -> its resolved Lambda environment (Globals merged by the SAM translator).
    environments: Mapping[str, Mapping[str, str]]
    # "<function logical id>.<event name>" -> (rule name, bus name) for EventBridgeRule/Schedule events.
    rules: Mapping[str, tuple[str, str]] = field(default_factory=dict)
    # table logical id -> its stream's ARN.
    stream_arns: Mapping[str, str] = field(default_factory=dict)
    # The translated template's resources, every intrinsic moto could resolve replaced by its value;
    # the stand-in reads functions, event source mappings, invoke configs and rules from here.
    resources: Mapping[str, Any] = field(default_factory=dict, compare=False, repr=False)
    # What was not created, and why (one line each).
    notes: tuple[str, ...] = ()

    @property
    def state_table(self) -> str:
        return self.refs["StateTable"]

    @property
    def items_table(self) -> str:
        return self.refs["ItemsTable"]

    @property
    def model_bucket(self) -> str:
        return self.refs["ModelBucket"]

    @property
    def event_bus(self) -> str:
        return self.refs["NextpickBus"]

    @property
    def event_log_stream(self) -> str:
        return self.refs["EventLogStream"]

    @property
    def bus_dead_letter_queue_url(self) -> str:
        return self.refs["BusDeadLetterQueue"]

    @property
    def event_log_failure_queue_url(self) -> str:
        return self.refs["EventLogFailureQueue"]

    @property
    def auth_secret(self) -> str:
        return self.refs["AuthSecret"]

    def env(self, function: str = "ApiFunction") -> dict[str, str]:
        """The environment variables Lambda gives `function` (a logical id in template.yaml)."""
        try:
            return dict(self.environments[function])
        except KeyError:
            known = sorted(self.environments)
            raise KeyError(f"{function} is not a function of the template; have {known}") from None


def _rules(
    resources: Mapping[str, Any], refs: Mapping[str, str], raw: Mapping[str, Any]
) -> dict[str, tuple[str, str]]:
    """ "<function>.<event>" -> (rule name, bus name): SAM names the rule of event E of function F `FE`."""
    rules: dict[str, tuple[str, str]] = {}
    for function, resource in raw["Resources"].items():
        for event_name in resource.get("Properties", {}).get("Events", {}) or {}:
            rule = resources.get(f"{function}{event_name}")
            if rule is None or rule.get("Type") != RULE or f"{function}{event_name}" not in refs:
                continue
            bus = rule.get("Properties", {}).get("EventBusName", "default")
            rules[f"{function}.{event_name}"] = (refs[f"{function}{event_name}"], str(bus))
    return rules


# What the stand-in runs instead of a service moto does not emulate: the retrain's window query runs on
# DuckDB over the same Parquet objects instead of on Athena (issue 14, docs/event-log.md).
STANDIN_ENVIRONMENT = {"EVENT_LOG_ENGINE": "duckdb"}


def create_stack(
    stack_name: str = DEFAULT_STACK_NAME,
    *,
    template_path: Path | str | None = None,
    parameters: Mapping[str, Any] | None = None,
    session: boto3.Session | None = None,
    endpoint_url: str | None = None,
    region: str | None = None,
) -> Stack:
    """Create the template's stack in the account boto3 reaches (moto: `mock_aws()` or a moto server at
    `endpoint_url`); return its names. A stack of the same name that exists already is reused."""
    session = session or boto3.Session()
    region = region or session.region_name or DEFAULT_REGION

    def client(service: str) -> Any:
        return session.client(service, region_name=region, endpoint_url=endpoint_url)  # type: ignore[call-overload]

    moto_patches.cloudformation_refs()
    moto_patches.log_group_keys()
    moto_patches.firehose_record_format_conversion()
    # The window query reads Hive partitions (issue 14): keys as Firehose names them, not moto's.
    moto_patches.firehose_prefixes()
    raw = load_template(template_path)
    values = parameter_values(raw, parameters or {})
    account_id = client("sts").get_caller_identity()["Account"]
    template = translate(raw, stack_name=stack_name, region=region, account_id=account_id, parameters=values)
    plan = plan_moto_stack(stack_name, template, region, account_id)
    moto_template = {
        "AWSTemplateFormatVersion": "2010-09-09",
        "Parameters": template.get("Parameters", {}),
        "Conditions": template.get("Conditions", {}),
        "Resources": plan.moto_resources,
        "Outputs": {name: {"Value": json.loads(expression)} for expression, name in plan.outputs.items()},
    }
    cloudformation = client("cloudformation")
    try:
        cloudformation.create_stack(
            StackName=stack_name,
            TemplateBody=json.dumps(moto_template),
            Parameters=[{"ParameterKey": k, "ParameterValue": v} for k, v in values.items()],
        )
    except ClientError as error:
        if error.response.get("Error", {}).get("Code") != "AlreadyExistsException":
            raise
    described = cloudformation.describe_stacks(StackName=stack_name)["Stacks"][0]
    by_name = {o["OutputKey"]: o.get("OutputValue", "") for o in described.get("Outputs", [])}
    if plan.outputs and not by_name:
        # moto answers without any output when one of them fails to evaluate.
        raise TemplateError(
            f"moto's CloudFormation created stack {stack_name} but could not evaluate its outputs; "
            "a resource type it models only partly is the usual cause (see moto_patches.py)"
        )
    resolved = {expression: by_name[name] for expression, name in plan.outputs.items() if name in by_name}
    return _finish(stack_name, region, account_id, values, raw, plan, resolved, client)


def _finish(
    stack_name: str,
    region: str,
    account_id: str,
    values: Mapping[str, str],
    raw: Mapping[str, Any],
    plan: Plan,
    resolved: dict[str, Any],
    client: Any,
) -> Stack:
    """Complete what moto's CloudFormation leaves out; collect names, ARNs and environments."""

    def value(expression: Any) -> str | None:
        found = resolved.get(json.dumps(expression, sort_keys=True))
        return None if found is None else str(found)

    sqs = client("sqs")
    refs: dict[str, str] = {}
    arns: dict[str, str] = {}
    for logical_id, resource in plan.moto_resources.items():
        ref, arn = value({"Ref": logical_id}), value({"Fn::GetAtt": [logical_id, "Arn"]})
        if resource["Type"] == QUEUE and ref is not None:
            # The account's own URL for the queue (a moto server answers with its endpoint).
            ref = sqs.get_queue_url(QueueName=ref.rsplit("/", 1)[-1])["QueueUrl"]
            resolved[json.dumps({"Ref": logical_id}, sort_keys=True)] = ref
        if ref is not None:
            refs[logical_id] = ref
        if arn is not None:
            arns[logical_id] = arn
    resources = {key: substitute(item, resolved) for key, item in plan.template["Resources"].items()}
    _complete(resources, refs, arns, stack_name, region, account_id, client)
    environments = _functions(resources, refs, arns, stack_name, region, account_id)
    for function, environment in environments.items():
        unresolved = sorted(key for key, item in environment.items() if item.startswith("{"))
        if unresolved:
            plan.notes.append(
                f"{function}: environment variables {unresolved} refer to resources not created"
            )
    return Stack(
        name=stack_name,
        region=region,
        account_id=account_id,
        parameters=dict(values),
        refs=refs,
        arns=arns,
        environments=environments,
        rules=_rules(resources, refs, raw),
        stream_arns={
            logical_id: stream
            for logical_id in refs
            if (stream := value({"Fn::GetAtt": [logical_id, "StreamArn"]})) is not None
        },
        resources=resources,
        notes=tuple(plan.notes),
    )


def _complete(
    resources: Mapping[str, Any],
    refs: dict[str, str],
    arns: dict[str, str],
    stack_name: str,
    region: str,
    account_id: str,
    client: Any,
) -> None:
    """Create or finish, through the APIs, what moto's CloudFormation leaves out (completion.py)."""
    for logical_id, resource in resources.items():
        properties = resource.get("Properties", {})
        if resource["Type"] == DELIVERY_STREAM:
            name = properties.get("DeliveryStreamName") or physical_name(
                stack_name, logical_id, DELIVERY_STREAM
            )
            create_delivery_stream(client("firehose"), name, properties)
            refs[logical_id] = name
            arns[logical_id] = f"arn:aws:firehose:{region}:{account_id}:deliverystream/{name}"
        elif resource["Type"] == SECRET:
            name = properties.get("Name") or physical_name(stack_name, logical_id, SECRET)
            create_secret(client("secretsmanager"), name, properties)
            refs[logical_id] = name
        elif resource["Type"] == TABLE and logical_id in refs:
            complete_table(client("dynamodb"), refs[logical_id], properties)
        elif resource["Type"] == BUCKET and logical_id in refs:
            complete_bucket(client("s3"), refs[logical_id], properties)


def _functions(
    resources: Mapping[str, Any],
    refs: dict[str, str],
    arns: dict[str, str],
    stack_name: str,
    region: str,
    account_id: str,
) -> dict[str, dict[str, str]]:
    """Each function's environment; its name and ARN go into `refs`/`arns`. Functions are emulated,
    not created, but their names follow the stack's naming all the same."""
    environments: dict[str, dict[str, str]] = {}
    for logical_id, resource in resources.items():
        if resource["Type"] != LAMBDA_FUNCTION:
            continue
        properties = resource.get("Properties", {})
        name = str(properties.get("FunctionName") or physical_name(stack_name, logical_id, LAMBDA_FUNCTION))
        refs[logical_id] = name
        arns[logical_id] = f"arn:aws:lambda:{region}:{account_id}:function:{name}"
        variables = properties.get("Environment", {}).get("Variables", {})
        environments[logical_id] = {
            key: STANDIN_ENVIRONMENT.get(key, str(item)) for key, item in variables.items()
        }
    return environments


def plan_stack(
    stack_name: str = DEFAULT_STACK_NAME,
    *,
    template_path: Path | str | None = None,
    parameters: Mapping[str, Any] | None = None,
    region: str = DEFAULT_REGION,
) -> Stack:
    """Names, ARNs and function environments of the stack, without touching any real account: the
    stack is created in moto's in-process account (moto's default account id) and, unless a moto mock
    was already active, thrown away with it."""
    if LOCAL_SERVER_RUNNING.is_set():
        raise RuntimeError("plan_stack would reset the moto server running in this process")
    from moto import mock_aws

    session = boto3.Session(
        aws_access_key_id="planning", aws_secret_access_key="planning", region_name=region
    )
    with mock_aws():
        return create_stack(
            stack_name, template_path=template_path, parameters=parameters, session=session, region=region
        )


__all__ = [
    "BUCKET",
    "DEFAULT_ACCOUNT_ID",
    "DEFAULT_REGION",
    "DEFAULT_STACK_NAME",
    "DELIVERY_STREAM",
    "EVENT_BUS",
    "NAME_PROPERTIES",
    "QUEUE",
    "ROLE",
    "SERVERLESS_FUNCTION",
    "TABLE",
    "Stack",
    "TemplateError",
    "create_stack",
    "find_template",
    "load_template",
    "physical_name",
    "plan_stack",
]
