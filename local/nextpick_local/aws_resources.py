"""Stand up the AWS resources that template.yaml declares, in any account boto3 can reach.

template.yaml is the one source of truth for the infrastructure. This module reads it and creates
the stateful resources - DynamoDB tables, the S3 bucket, the EventBridge bus and rules, the SQS
queues and the Firehose delivery stream - with the settings the template declares, so tests and the
local stack (moto, in-process or in server mode via `endpoint_url`) run against the same shapes
that `sam deploy` creates. It also resolves the Lambda environment exactly as the template would,
so handler code under test is configured the way it is in AWS.

What it does not create: functions, the API, IAM, the bucket policy (moto would apply its TLS-only
condition to plain-HTTP local traffic) and rule targets (the functions do not exist outside Lambda;
callers attach what they need, e.g. an SQS queue, with `events.put_targets`).

Kept free of test-only imports (PyYAML and boto3 only) so that the local stack can import it.

    with moto.mock_aws():
        stack = create_stack("nextpick-test")
        os.environ.update(stack.env("ApiFunction"))
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import boto3
import yaml
from botocore.exceptions import ClientError

DEFAULT_STACK_NAME = "nextpick-local"
DEFAULT_REGION = "us-east-1"
# moto's default account; used only when names are planned without asking an account (plan_stack).
DEFAULT_ACCOUNT_ID = "123456789012"
PLANNED_STREAM_SUFFIX = "/stream/planned"

TABLE = "AWS::DynamoDB::Table"
BUCKET = "AWS::S3::Bucket"
EVENT_BUS = "AWS::Events::EventBus"
QUEUE = "AWS::SQS::Queue"
DELIVERY_STREAM = "AWS::KinesisFirehose::DeliveryStream"
ROLE = "AWS::IAM::Role"
SERVERLESS_FUNCTION = "AWS::Serverless::Function"

# The property that, when a resource declares it, fixes its physical name.
NAME_PROPERTIES = {
    TABLE: "TableName",
    BUCKET: "BucketName",
    EVENT_BUS: "Name",
    QUEUE: "QueueName",
    DELIVERY_STREAM: "DeliveryStreamName",
    ROLE: "RoleName",
    SERVERLESS_FUNCTION: "FunctionName",
}


class TemplateError(ValueError):
    """template.yaml uses something this module cannot resolve or create."""


# ---------------------------------------------------------------------------------------------- loading


class _CloudFormationLoader(yaml.SafeLoader):
    """A YAML loader that turns CloudFormation short-form tags (!Ref, !GetAtt, !Sub...) into the
    long form ({"Ref": ...}, {"Fn::GetAtt": [...]}, ...) that the resolver below understands."""


def _construct_intrinsic(loader: yaml.SafeLoader, tag_suffix: str, node: yaml.Node) -> dict[str, Any]:
    value: Any
    if isinstance(node, yaml.ScalarNode):
        value = loader.construct_scalar(node)
    elif isinstance(node, yaml.SequenceNode):
        value = loader.construct_sequence(node, deep=True)
    elif isinstance(node, yaml.MappingNode):
        value = loader.construct_mapping(node, deep=True)
    else:  # pragma: no cover - yaml has no other node kinds
        raise TemplateError(f"unexpected YAML node for !{tag_suffix}")
    if tag_suffix == "Ref":
        return {"Ref": value}
    if tag_suffix == "GetAtt" and isinstance(value, str):
        logical_id, _, attribute = value.partition(".")
        return {"Fn::GetAtt": [logical_id, attribute]}
    return {f"Fn::{tag_suffix}": value}


_CloudFormationLoader.add_multi_constructor("!", _construct_intrinsic)


def find_template(start: Path | None = None) -> Path:
    """The template.yaml of the repository this module lives in (searched upwards, so the module
    can move between packages without changing)."""
    here = (start or Path(__file__)).resolve()
    for folder in [here, *here.parents]:
        candidate = folder / "template.yaml"
        if candidate.is_file():
            return candidate
    raise FileNotFoundError(f"no template.yaml above {here}")


def load_template(path: Path | str | None = None) -> dict[str, Any]:
    """template.yaml as plain data, intrinsic functions in their long form."""
    text = Path(path or find_template()).read_text(encoding="utf-8")
    template = yaml.load(text, Loader=_CloudFormationLoader)  # a SafeLoader subclass: no arbitrary objects
    if not isinstance(template, dict) or "Resources" not in template:
        raise TemplateError("not a CloudFormation template: no Resources")
    return template


# ---------------------------------------------------------------------------------------------- naming


@dataclass(frozen=True)
class Stack:
    """The physical resources of one stack, as created (or as they would be) from template.yaml."""

    name: str
    region: str
    account_id: str
    parameters: Mapping[str, str]
    # logical id -> the value `!Ref <logical id>` resolves to (a name; a queue URL for queues).
    refs: Mapping[str, str]
    # logical id -> ARN.
    arns: Mapping[str, str]
    # function logical id -> its resolved Lambda environment.
    environments: Mapping[str, Mapping[str, str]]
    # "<function logical id>.<event name>" -> (rule name, bus name) for EventBridgeRule/Schedule events.
    rules: Mapping[str, tuple[str, str]] = field(default_factory=dict)
    # table logical id -> its stream's ARN; known only once the table exists (create_stack).
    stream_arns: Mapping[str, str] = field(default_factory=dict)

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


def _arn(resource_type: str, name: str, region: str, account_id: str) -> str:
    arns = {
        TABLE: f"arn:aws:dynamodb:{region}:{account_id}:table/{name}",
        BUCKET: f"arn:aws:s3:::{name}",
        EVENT_BUS: f"arn:aws:events:{region}:{account_id}:event-bus/{name}",
        QUEUE: f"arn:aws:sqs:{region}:{account_id}:{name}",
        DELIVERY_STREAM: f"arn:aws:firehose:{region}:{account_id}:deliverystream/{name}",
        ROLE: f"arn:aws:iam::{account_id}:role/{name}",
        SERVERLESS_FUNCTION: f"arn:aws:lambda:{region}:{account_id}:function:{name}",
    }
    return arns.get(resource_type, "")


class _Resolver:
    """Evaluates the intrinsic functions template.yaml uses, against planned physical names."""

    def __init__(self, stack_name: str, region: str, account_id: str, parameters: Mapping[str, str]):
        self.pseudo = {
            "AWS::StackName": stack_name,
            "AWS::Region": region,
            "AWS::AccountId": account_id,
            "AWS::Partition": "aws",
            "AWS::URLSuffix": "amazonaws.com",
        }
        self.parameters = dict(parameters)
        self.refs: dict[str, str] = {}
        self.attributes: dict[tuple[str, str], str] = {}

    def ref(self, name: str) -> str:
        for scope in (self.pseudo, self.parameters, self.refs):
            if name in scope:
                return scope[name]
        raise TemplateError(f"cannot resolve !Ref {name}")

    def get_att(self, logical_id: str, attribute: str) -> str:
        try:
            return self.attributes[(logical_id, attribute)]
        except KeyError:
            raise TemplateError(f"cannot resolve !GetAtt {logical_id}.{attribute}") from None

    def sub(self, text: str, variables: Mapping[str, Any]) -> str:
        def replace(match: re.Match[str]) -> str:
            expression = match.group(1)
            if expression.startswith("!"):  # ${!Literal} escapes a literal ${Literal}
                return "${" + expression[1:] + "}"
            if expression in variables:
                return str(self.resolve(variables[expression]))
            if "." in expression:
                return self.get_att(*expression.split(".", 1))
            return self.ref(expression)

        return re.sub(r"\$\{([^}]+)\}", replace, text)

    def resolve(self, value: Any) -> Any:
        if isinstance(value, list):
            return [self.resolve(item) for item in value]
        if not isinstance(value, dict):
            return value
        if len(value) == 1:
            (key, argument), *_ = value.items()
            if key == "Ref":
                return self.ref(argument)
            if key == "Fn::GetAtt":
                return self.get_att(*argument)
            if key == "Fn::Sub":
                text, variables = (argument, {}) if isinstance(argument, str) else argument
                return self.sub(text, variables)
            if key == "Fn::Join":
                separator, items = argument
                return separator.join(str(item) for item in self.resolve(items))
            if key.startswith("Fn::"):
                raise TemplateError(f"{key} is not supported by aws_resources")
        return {key: self.resolve(item) for key, item in value.items()}


def _parameter_values(template: Mapping[str, Any], overrides: Mapping[str, Any]) -> dict[str, str]:
    declared = template.get("Parameters", {})
    unknown = set(overrides) - set(declared)
    if unknown:
        raise TemplateError(f"unknown parameters {sorted(unknown)}; the template declares {sorted(declared)}")
    values: dict[str, str] = {}
    for name, spec in declared.items():
        if name in overrides:
            values[name] = str(overrides[name])
        elif "Default" in spec:
            values[name] = str(spec["Default"])
        else:
            raise TemplateError(f"parameter {name} has no default; pass it in `parameters`")
    return values


def _plan(
    stack_name: str,
    template: Mapping[str, Any],
    parameters: Mapping[str, Any],
    region: str,
    account_id: str,
) -> tuple[_Resolver, dict[str, str], dict[str, tuple[str, str]]]:
    """A resolver knowing every resource's planned name, attributes and ARN; the ARNs; the rules."""
    resolver = _Resolver(stack_name, region, account_id, _parameter_values(template, parameters))
    arns: dict[str, str] = {}
    rules: dict[str, tuple[str, str]] = {}
    resources: dict[str, dict[str, Any]] = template["Resources"]
    for logical_id, resource in resources.items():
        resource_type = resource["Type"]
        if resource_type not in NAME_PROPERTIES:
            continue
        # A declared name may itself refer to a parameter or to AWS::StackName.
        declared = resource.get("Properties", {}).get(NAME_PROPERTIES[resource_type])
        name = (
            resolver.resolve(declared) if declared else physical_name(stack_name, logical_id, resource_type)
        )
        arn = _arn(resource_type, name, region, account_id)
        arns[logical_id] = arn
        resolver.attributes[(logical_id, "Arn")] = arn
        resolver.attributes[(logical_id, "Name")] = name
        if resource_type == QUEUE:
            resolver.refs[logical_id] = f"https://sqs.{region}.amazonaws.com/{account_id}/{name}"
            resolver.attributes[(logical_id, "QueueName")] = name
            resolver.attributes[(logical_id, "QueueUrl")] = resolver.refs[logical_id]
        else:
            resolver.refs[logical_id] = name
        if resource_type == TABLE:
            # Real stream ARNs end in the stream's creation time; create_stack puts the real one here.
            resolver.attributes[(logical_id, "StreamArn")] = f"{arn}{PLANNED_STREAM_SUFFIX}"
        if resource_type != SERVERLESS_FUNCTION:
            continue
        for event_name, event in resource.get("Properties", {}).get("Events", {}).items():
            if event["Type"] == "EventBridgeRule":
                bus = resolver.resolve(event.get("Properties", {}).get("EventBusName", "default"))
            elif event["Type"] == "Schedule":
                bus = "default"
            else:
                continue
            # SAM gives the generated rule the logical id <function><event>.
            rules[f"{logical_id}.{event_name}"] = (f"{stack_name}-{logical_id}{event_name}", bus)
    return resolver, arns, rules


def _environments(template: Mapping[str, Any], resolver: _Resolver) -> dict[str, dict[str, str]]:
    globals_env = template.get("Globals", {}).get("Function", {}).get("Environment", {}).get("Variables", {})
    environments: dict[str, dict[str, str]] = {}
    for logical_id, resource in template["Resources"].items():
        if resource["Type"] != SERVERLESS_FUNCTION:
            continue
        own_env = resource.get("Properties", {}).get("Environment", {}).get("Variables", {})
        # SAM merges Globals into each function; the function's own value wins.
        resolved = resolver.resolve({**globals_env, **own_env})
        environments[logical_id] = {key: str(value) for key, value in resolved.items()}
    return environments


def _stack(
    template: Mapping[str, Any],
    resolver: _Resolver,
    arns: dict[str, str],
    rules: dict[str, tuple[str, str]],
) -> Stack:
    return Stack(
        name=resolver.pseudo["AWS::StackName"],
        region=resolver.pseudo["AWS::Region"],
        account_id=resolver.pseudo["AWS::AccountId"],
        parameters=dict(resolver.parameters),
        refs=dict(resolver.refs),
        arns=arns,
        environments=_environments(template, resolver),
        rules=rules,
        stream_arns={
            logical_id: value
            for (logical_id, attribute), value in resolver.attributes.items()
            if attribute == "StreamArn" and not value.endswith(PLANNED_STREAM_SUFFIX)
        },
    )


def plan_stack(
    stack_name: str = DEFAULT_STACK_NAME,
    *,
    template: Mapping[str, Any] | None = None,
    parameters: Mapping[str, Any] | None = None,
    region: str = DEFAULT_REGION,
    account_id: str = DEFAULT_ACCOUNT_ID,
) -> Stack:
    """Names, ARNs and function environments of the stack, without creating anything."""
    template = template if template is not None else load_template()
    return _stack(template, *_plan(stack_name, template, parameters or {}, region, account_id))


# ---------------------------------------------------------------------------------------------- creating


def _ignore_existing(create: Callable[[], Any], *codes: str) -> None:
    """Create a resource; one left by an earlier run of the same stack (same name) is reused."""
    try:
        create()
    except ClientError as error:
        if error.response.get("Error", {}).get("Code") not in codes:
            raise


def _create_table(dynamodb: Any, name: str, properties: Mapping[str, Any]) -> None:
    request: dict[str, Any] = {
        "TableName": name,
        "AttributeDefinitions": properties["AttributeDefinitions"],
        "KeySchema": properties["KeySchema"],
        "BillingMode": properties.get("BillingMode", "PROVISIONED"),
    }
    if "ProvisionedThroughput" in properties:
        request["ProvisionedThroughput"] = properties["ProvisionedThroughput"]
    for index_kind in ("GlobalSecondaryIndexes", "LocalSecondaryIndexes"):
        if index_kind in properties:
            request[index_kind] = properties[index_kind]
    stream = properties.get("StreamSpecification")
    if stream:
        request["StreamSpecification"] = {"StreamEnabled": True, "StreamViewType": stream["StreamViewType"]}
    sse = properties.get("SSESpecification")
    if sse:
        request["SSESpecification"] = {"Enabled": bool(sse.get("SSEEnabled"))}
    _ignore_existing(partial(dynamodb.create_table, **request), "ResourceInUseException")
    dynamodb.get_waiter("table_exists").wait(TableName=name, WaiterConfig={"Delay": 1, "MaxAttempts": 30})
    recovery = properties.get("PointInTimeRecoverySpecification", {})
    if recovery.get("PointInTimeRecoveryEnabled"):
        dynamodb.update_continuous_backups(
            TableName=name, PointInTimeRecoverySpecification={"PointInTimeRecoveryEnabled": True}
        )
    ttl = properties.get("TimeToLiveSpecification")
    if ttl and ttl.get("Enabled"):
        dynamodb.update_time_to_live(
            TableName=name, TimeToLiveSpecification={"Enabled": True, "AttributeName": ttl["AttributeName"]}
        )


def _create_bucket(s3: Any, name: str, properties: Mapping[str, Any], region: str) -> None:
    request: dict[str, Any] = {"Bucket": name}
    if region != "us-east-1":  # S3 rejects a location constraint naming its default region
        request["CreateBucketConfiguration"] = {"LocationConstraint": region}
    _ignore_existing(partial(s3.create_bucket, **request), "BucketAlreadyOwnedByYou")
    versioning = properties.get("VersioningConfiguration")
    if versioning:
        s3.put_bucket_versioning(Bucket=name, VersioningConfiguration={"Status": versioning["Status"]})
    encryption = properties.get("BucketEncryption")
    if encryption:
        # CloudFormation's names for the API's Rules / ApplyServerSideEncryptionByDefault.
        rules = [
            {
                "ApplyServerSideEncryptionByDefault": rule["ServerSideEncryptionByDefault"],
                **({"BucketKeyEnabled": rule["BucketKeyEnabled"]} if "BucketKeyEnabled" in rule else {}),
            }
            for rule in encryption["ServerSideEncryptionConfiguration"]
        ]
        s3.put_bucket_encryption(Bucket=name, ServerSideEncryptionConfiguration={"Rules": rules})
    public_access = properties.get("PublicAccessBlockConfiguration")
    if public_access:
        s3.put_public_access_block(Bucket=name, PublicAccessBlockConfiguration=public_access)


def _queue_attributes(properties: Mapping[str, Any]) -> dict[str, str]:
    attributes = {
        key: str(properties[key]).lower() if isinstance(properties[key], bool) else str(properties[key])
        for key in (
            "DelaySeconds",
            "MaximumMessageSize",
            "MessageRetentionPeriod",
            "ReceiveMessageWaitTimeSeconds",
            "SqsManagedSseEnabled",
            "VisibilityTimeout",
        )
        if key in properties
    }
    if "RedrivePolicy" in properties:
        attributes["RedrivePolicy"] = json.dumps(properties["RedrivePolicy"])
    return attributes


def _create_delivery_stream(firehose: Any, name: str, properties: Mapping[str, Any]) -> None:
    destination = properties.get("ExtendedS3DestinationConfiguration")
    if destination is None:
        raise TemplateError(f"delivery stream {name}: only ExtendedS3DestinationConfiguration is supported")
    request: dict[str, Any] = {
        "DeliveryStreamName": name,
        "DeliveryStreamType": properties.get("DeliveryStreamType", "DirectPut"),
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
    encryption = properties.get("DeliveryStreamEncryptionConfigurationInput")
    if encryption:
        request["DeliveryStreamEncryptionConfigurationInput"] = encryption
    _ignore_existing(partial(firehose.create_delivery_stream, **request), "ResourceInUseException")


def create_stack(
    stack_name: str = DEFAULT_STACK_NAME,
    *,
    template_path: Path | str | None = None,
    parameters: Mapping[str, Any] | None = None,
    session: boto3.Session | None = None,
    endpoint_url: str | None = None,
    region: str | None = None,
) -> Stack:
    """Create the template's tables, bucket, bus, rules, queues and delivery stream; return their names.

    `session`/`endpoint_url`/`region` choose the account: under `moto.mock_aws()` the defaults do;
    for a moto server pass its `endpoint_url`. Resources left by an earlier call with the same
    stack name are reused, so a restarted local stack finds its data where it was."""
    session = session or boto3.Session()
    region = region or session.region_name or DEFAULT_REGION

    def client(service: str) -> Any:
        return session.client(service, region_name=region, endpoint_url=endpoint_url)  # type: ignore[call-overload]

    template = load_template(template_path)
    account_id = client("sts").get_caller_identity()["Account"]
    resolver, arns, rules = _plan(stack_name, template, parameters or {}, region, account_id)
    resources: dict[str, dict[str, Any]] = template["Resources"]

    def of_type(resource_type: str) -> list[tuple[str, dict[str, Any]]]:
        return [(key, value) for key, value in resources.items() if value["Type"] == resource_type]

    dynamodb = client("dynamodb")
    for logical_id, resource in of_type(TABLE):
        name = resolver.refs[logical_id]
        _create_table(dynamodb, name, resolver.resolve(resource["Properties"]))
        stream_arn = dynamodb.describe_table(TableName=name)["Table"].get("LatestStreamArn")
        if stream_arn:
            resolver.attributes[(logical_id, "StreamArn")] = stream_arn

    s3 = client("s3")
    for logical_id, resource in of_type(BUCKET):
        _create_bucket(
            s3, resolver.refs[logical_id], resolver.resolve(resource.get("Properties", {})), region
        )

    sqs = client("sqs")
    for logical_id, resource in of_type(QUEUE):
        attributes = _queue_attributes(resolver.resolve(resource.get("Properties", {})))
        queue_name = resolver.attributes[(logical_id, "QueueName")]
        # The account's own URL (a moto server answers with its endpoint) replaces the planned one.
        url = sqs.create_queue(QueueName=queue_name, Attributes=attributes)["QueueUrl"]
        resolver.refs[logical_id] = resolver.attributes[(logical_id, "QueueUrl")] = url

    events = client("events")
    for logical_id, _resource in of_type(EVENT_BUS):
        bus_name = resolver.refs[logical_id]
        _ignore_existing(partial(events.create_event_bus, Name=bus_name), "ResourceAlreadyExistsException")
    for logical_id, resource in of_type(SERVERLESS_FUNCTION):
        for event_name, event in resource.get("Properties", {}).get("Events", {}).items():
            rule = rules.get(f"{logical_id}.{event_name}")
            if rule is None:
                continue
            rule_name, bus_name = rule
            event_properties = resolver.resolve(event.get("Properties", {}))
            if event["Type"] == "EventBridgeRule":
                pattern = json.dumps(event_properties["Pattern"])
                events.put_rule(Name=rule_name, EventBusName=bus_name, EventPattern=pattern)
            else:
                schedule = event_properties["Schedule"]
                events.put_rule(Name=rule_name, EventBusName=bus_name, ScheduleExpression=schedule)

    firehose = client("firehose")
    for logical_id, resource in of_type(DELIVERY_STREAM):
        _create_delivery_stream(firehose, resolver.refs[logical_id], resolver.resolve(resource["Properties"]))

    return _stack(template, resolver, arns, rules)
