"""Stand up the AWS resources that template.yaml declares, in a moto account, through moto's CloudFormation.

template.yaml is the one source of truth for the infrastructure. This module reads it with cfn-lint's
decoder, expands it with the SAM translator (template.py), and hands moto's CloudFormation every
resource moto models whose references it can resolve: tables, the bucket, queues, the bus and its
rules, roles, log groups and whatever is added later that moto covers. moto evaluates the intrinsic
functions (!Ref, !GetAtt, !Sub...) as CloudFormation would, and the stack's outputs carry back every
value the stand-in needs: physical names, ARNs, each function's environment, its event sources'
settings. Nothing here evaluates an intrinsic function.

Three kinds of resource are not given to moto:
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
import re
import threading
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import boto3
from botocore.exceptions import ClientError

from nextpick_local.standin import moto_patches
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

TABLE = "AWS::DynamoDB::Table"
BUCKET = "AWS::S3::Bucket"
BUCKET_POLICY = "AWS::S3::BucketPolicy"
EVENT_BUS = "AWS::Events::EventBus"
RULE = "AWS::Events::Rule"
QUEUE = "AWS::SQS::Queue"
DELIVERY_STREAM = "AWS::KinesisFirehose::DeliveryStream"
ROLE = "AWS::IAM::Role"
LAMBDA_FUNCTION = "AWS::Lambda::Function"
SERVERLESS_FUNCTION = "AWS::Serverless::Function"

# The stand-in runs these itself (functions, their triggers, API Gateway): never handed to moto.
EMULATED_PREFIXES = ("AWS::Lambda::", "AWS::ApiGateway::", "AWS::Serverless::")
# Created through the service APIs (moto's CloudFormation has no model for them).
COMPLETED = frozenset({DELIVERY_STREAM})
# moto models these, but creating them locally would be wrong (see the module docstring).
NOT_CREATED = {BUCKET_POLICY: "moto would enforce its TLS-only condition on plain-HTTP local traffic"}
PSEUDO_PARAMETERS = frozenset(
    {
        "AWS::AccountId",
        "AWS::NoValue",
        "AWS::NotificationARNs",
        "AWS::Partition",
        "AWS::Region",
        "AWS::StackId",
        "AWS::StackName",
        "AWS::URLSuffix",
    }
)
# The property that fixes a resource's physical name, for the types this module names itself.
NAME_PROPERTIES = {
    TABLE: "TableName",
    BUCKET: "BucketName",
    EVENT_BUS: "Name",
    RULE: "Name",
    QUEUE: "QueueName",
    DELIVERY_STREAM: "DeliveryStreamName",
    ROLE: "RoleName",
    "AWS::Logs::LogGroup": "LogGroupName",
}
_SUB_VARIABLE = re.compile(r"\$\{([^}!][^}]*)\}")
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

    def env(self, function: str = "ApiFunction") -> dict[str, str]:
        """The environment variables Lambda gives `function` (a logical id in template.yaml)."""
        try:
            return dict(self.environments[function])
        except KeyError:
            known = sorted(self.environments)
            raise KeyError(f"{function} is not a function of the template; have {known}") from None


def physical_name(stack_name: str, logical_id: str, resource_type: str) -> str:
    """The name this module gives a resource that the template leaves unnamed: deterministic per stack."""
    name = f"{stack_name}-{logical_id}"
    # Bucket names are lower case only.
    return name.lower() if resource_type == BUCKET else name


# ---------------------------------------------------------------------------------------------- references


def _is_intrinsic(value: Any) -> bool:
    return (
        isinstance(value, dict)
        and len(value) == 1
        and (next(iter(value)) == "Ref" or next(iter(value)).startswith("Fn::"))
    )


def references(value: Any) -> set[str]:
    """The logical ids and parameters an expression refers to (Ref, GetAtt, ${...} in Sub)."""
    found: set[str] = set()
    if isinstance(value, list):
        for item in value:
            found |= references(item)
    elif isinstance(value, dict):
        for key, argument in value.items():
            if key == "Ref" and isinstance(argument, str):
                found.add(argument)
            elif key == "Fn::GetAtt":
                target = argument.split(".", 1)[0] if isinstance(argument, str) else argument[0]
                found.add(str(target))
            elif key == "Fn::Sub":
                text, variables = (argument, {}) if isinstance(argument, str) else argument
                found |= {name.split(".", 1)[0] for name in _SUB_VARIABLE.findall(text)} - set(variables)
                found |= references(variables)
            else:
                found |= references(argument)
    return found


def _expressions(value: Any) -> Iterator[Any]:
    """Every outermost intrinsic expression inside `value`."""
    if _is_intrinsic(value):
        yield value
    elif isinstance(value, dict):
        for item in value.values():
            yield from _expressions(item)
    elif isinstance(value, list):
        for item in value:
            yield from _expressions(item)


def _substitute(value: Any, resolved: Mapping[str, Any]) -> Any:
    if _is_intrinsic(value):
        return resolved.get(json.dumps(value, sort_keys=True), value)
    if isinstance(value, dict):
        return {key: _substitute(item, resolved) for key, item in value.items()}
    if isinstance(value, list):
        return [_substitute(item, resolved) for item in value]
    return value


# ---------------------------------------------------------------------------------------------- planning


@dataclass
class _Plan:
    """What goes to moto, what the stand-in completes itself, and what is skipped."""

    template: dict[str, Any]
    moto_resources: dict[str, Any]
    notes: list[str]
    # Expression (canonical JSON) -> output name, for every value to read back from the stack.
    outputs: dict[str, str]


def _moto_models() -> Mapping[str, Any]:
    from moto.cloudformation.parsing import get_model_map

    return get_model_map()


def _select_for_moto(resources: Mapping[str, Any], known: set[str]) -> tuple[dict[str, Any], list[str]]:
    """The resources moto's CloudFormation can create, closed over references: one referring to a
    resource that is not created (a function, say) is skipped too, or moto could not resolve it."""
    models = _moto_models()
    candidates: dict[str, Any] = {}
    notes: list[str] = []
    for logical_id, resource in resources.items():
        kind = resource.get("Type", "?")
        if kind.startswith(EMULATED_PREFIXES) or kind in COMPLETED:
            continue
        if kind in NOT_CREATED:
            notes.append(f"{logical_id} ({kind}) not created: {NOT_CREATED[kind]}")
        elif kind not in models:
            notes.append(f"{logical_id} ({kind}) not created: moto's CloudFormation does not model it")
        else:
            candidates[logical_id] = resource
    changed = True
    while changed:
        changed = False
        for logical_id, resource in list(candidates.items()):
            missing = references(resource.get("Properties", {})) - set(candidates) - known
            if missing:
                del candidates[logical_id]
                notes.append(
                    f"{logical_id} ({resource['Type']}) not created: refers to {', '.join(sorted(missing))}, "
                    "which the local stack does not create"
                )
                changed = True
    return candidates, notes


def _named(stack_name: str, logical_id: str, resource: dict[str, Any]) -> dict[str, Any]:
    kind = resource["Type"]
    resource = {key: value for key, value in resource.items() if key not in ("DependsOn", "Metadata")}
    properties = dict(resource.get("Properties", {}))
    name_property = NAME_PROPERTIES.get(kind)
    if name_property and name_property not in properties:
        properties[name_property] = physical_name(stack_name, logical_id, kind)
    resource["Properties"] = properties
    return resource


def _without_rule_targets(resources: Mapping[str, Any]) -> dict[str, Any]:
    """Rule targets are the functions (emulated; the stand-in adds its own queue target per rule)."""
    stripped = dict(resources)
    for logical_id, resource in resources.items():
        if resource.get("Type") == RULE:
            properties = {k: v for k, v in resource.get("Properties", {}).items() if k != "Targets"}
            stripped[logical_id] = {**resource, "Properties": properties}
    return stripped


def _completed_values(
    stack_name: str, resources: Mapping[str, Any], region: str, account_id: str
) -> dict[str, Any]:
    """`!Ref` and `!GetAtt .Arn` of the resources created through the APIs (their names are ours)."""
    values: dict[str, Any] = {}
    for logical_id, resource in resources.items():
        if resource.get("Type") == DELIVERY_STREAM:
            name = resource.get("Properties", {}).get("DeliveryStreamName") or physical_name(
                stack_name, logical_id, DELIVERY_STREAM
            )
            arn = f"arn:aws:firehose:{region}:{account_id}:deliverystream/{name}"
            values[json.dumps({"Ref": logical_id}, sort_keys=True)] = name
            for form in ([logical_id, "Arn"], f"{logical_id}.Arn"):
                values[json.dumps({"Fn::GetAtt": form}, sort_keys=True)] = arn
    return values


def _plan(stack_name: str, template: dict[str, Any], region: str, account_id: str) -> _Plan:
    completed = _completed_values(stack_name, template["Resources"], region, account_id)
    resources = {key: _substitute(value, completed) for key, value in template["Resources"].items()}
    template = {**template, "Resources": resources}
    known = set(template.get("Parameters", {})) | PSEUDO_PARAMETERS
    selected, notes = _select_for_moto(_without_rule_targets(resources), known)
    created = set(selected) | known
    models = _moto_models()
    wanted: list[Any] = []
    for logical_id in selected:
        wanted.append({"Ref": logical_id})
        model = models[resources[logical_id]["Type"]]
        for attribute in ("Arn", "StreamArn"):
            # Some models claim attributes they cannot compute (moto 5.2.5's Dashboard claims Arn).
            if (
                hasattr(model, "get_cfn_attribute")
                and model.has_cfn_attr(attribute)
                and not (
                    attribute == "StreamArn"
                    and "StreamSpecification" not in resources[logical_id]["Properties"]
                )
            ):
                wanted.append({"Fn::GetAtt": [logical_id, attribute]})
    # Every other value the stand-in reads: functions' environments, event sources, rules' buses, what
    # it completes through the APIs.
    for resource in resources.values():
        wanted.extend(e for e in _expressions(resource.get("Properties", {})) if references(e) <= created)
    outputs: dict[str, str] = {}
    for expression in wanted:
        outputs.setdefault(json.dumps(expression, sort_keys=True), f"Value{len(outputs)}")
    moto_resources = {key: _named(stack_name, key, value) for key, value in selected.items()}
    return _Plan(template, moto_resources, notes, outputs)


# ---------------------------------------------------------------------------------------------- creating


def _ignore_existing(create: Any, *codes: str) -> None:
    """Create a resource; one left by an earlier run of the same stack (same name) is reused."""
    try:
        create()
    except ClientError as error:
        if error.response.get("Error", {}).get("Code") not in codes:
            raise


def _create_delivery_stream(firehose: Any, name: str, properties: Mapping[str, Any]) -> None:
    destination = properties.get("ExtendedS3DestinationConfiguration")
    if destination is None:
        raise TemplateError(f"delivery stream {name}: only ExtendedS3DestinationConfiguration is supported")
    request: dict[str, Any] = {
        "DeliveryStreamName": name,
        "DeliveryStreamType": properties.get("DeliveryStreamType", "DirectPut"),
        # CloudFormation's and the API's shapes agree on these keys.
        "ExtendedS3DestinationConfiguration": {
            key: destination[key]
            for key in (
                "RoleARN",
                "BucketARN",
                "Prefix",
                "ErrorOutputPrefix",
                "BufferingHints",
                "CompressionFormat",
            )
            if key in destination
        },
    }
    if "DeliveryStreamEncryptionConfigurationInput" in properties:
        request["DeliveryStreamEncryptionConfigurationInput"] = properties[
            "DeliveryStreamEncryptionConfigurationInput"
        ]
    _ignore_existing(partial(firehose.create_delivery_stream, **request), "ResourceInUseException")


def _complete_table(dynamodb: Any, name: str, properties: Mapping[str, Any]) -> None:
    """What moto's CloudFormation leaves out of a table: point-in-time recovery and time to live."""
    if properties.get("PointInTimeRecoverySpecification", {}).get("PointInTimeRecoveryEnabled"):
        dynamodb.update_continuous_backups(
            TableName=name, PointInTimeRecoverySpecification={"PointInTimeRecoveryEnabled": True}
        )
    ttl = properties.get("TimeToLiveSpecification")
    if ttl and ttl.get("Enabled"):
        dynamodb.update_time_to_live(
            TableName=name, TimeToLiveSpecification={"Enabled": True, "AttributeName": ttl["AttributeName"]}
        )


def _complete_bucket(s3: Any, name: str, properties: Mapping[str, Any]) -> None:
    """What moto's CloudFormation leaves out of a bucket: versioning and the public access block."""
    versioning = properties.get("VersioningConfiguration")
    if versioning:
        s3.put_bucket_versioning(Bucket=name, VersioningConfiguration={"Status": versioning["Status"]})
    public_access = properties.get("PublicAccessBlockConfiguration")
    if public_access:
        s3.put_public_access_block(Bucket=name, PublicAccessBlockConfiguration=public_access)


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
    raw = load_template(template_path)
    values = parameter_values(raw, parameters or {})
    account_id = client("sts").get_caller_identity()["Account"]
    template = translate(raw, stack_name=stack_name, region=region, account_id=account_id, parameters=values)
    plan = _plan(stack_name, template, region, account_id)
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
    plan: _Plan,
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
    resources = {key: _substitute(item, resolved) for key, item in plan.template["Resources"].items()}
    for logical_id, resource in resources.items():
        properties = resource.get("Properties", {})
        if resource["Type"] == DELIVERY_STREAM:
            name = properties.get("DeliveryStreamName") or physical_name(
                stack_name, logical_id, DELIVERY_STREAM
            )
            _create_delivery_stream(client("firehose"), name, properties)
            refs[logical_id] = name
            arns[logical_id] = f"arn:aws:firehose:{region}:{account_id}:deliverystream/{name}"
        elif resource["Type"] == TABLE and logical_id in refs:
            _complete_table(client("dynamodb"), refs[logical_id], properties)
        elif resource["Type"] == BUCKET and logical_id in refs:
            _complete_bucket(client("s3"), refs[logical_id], properties)
    for logical_id, resource in resources.items():
        if resource["Type"] == LAMBDA_FUNCTION:
            # Functions are emulated, not created: their names follow the stack's naming all the same.
            name = str(
                resource["Properties"].get("FunctionName") or physical_name(stack_name, logical_id, "")
            )
            refs[logical_id] = name
            arns[logical_id] = f"arn:aws:lambda:{region}:{account_id}:function:{name}"
    environments = {
        logical_id: {
            key: str(item)
            for key, item in resource.get("Properties", {})
            .get("Environment", {})
            .get("Variables", {})
            .items()
        }
        for logical_id, resource in resources.items()
        if resource["Type"] == LAMBDA_FUNCTION
    }
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
