"""What of a translated template goes to moto's CloudFormation, and how its answers come back.

* `plan`: the resources moto models and can resolve (closed over references: one that refers to an
  emulated function is skipped with a note), named deterministically, rule targets left out; and one
  stack output per intrinsic expression the stand-in needs evaluated - every `!Ref`/`!GetAtt .Arn` of
  what moto creates, and every expression elsewhere in the template whose references moto can resolve
  (the functions' environments, their event sources, what is completed through the APIs).
* `substitute`: the template with those expressions replaced by the values moto computed.

No intrinsic function is evaluated here: `references` only reads which names an expression mentions.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

TABLE = "AWS::DynamoDB::Table"
BUCKET = "AWS::S3::Bucket"
BUCKET_POLICY = "AWS::S3::BucketPolicy"
EVENT_BUS = "AWS::Events::EventBus"
RULE = "AWS::Events::Rule"
QUEUE = "AWS::SQS::Queue"
DELIVERY_STREAM = "AWS::KinesisFirehose::DeliveryStream"
SECRET = "AWS::SecretsManager::Secret"
ROLE = "AWS::IAM::Role"
LAMBDA_FUNCTION = "AWS::Lambda::Function"
SERVERLESS_FUNCTION = "AWS::Serverless::Function"

# The stand-in runs these itself (functions, their triggers, API Gateway): never handed to moto.
EMULATED_PREFIXES = ("AWS::Lambda::", "AWS::ApiGateway::", "AWS::Serverless::")
# Created through the service APIs (moto's CloudFormation has no model for them).
COMPLETED = frozenset({DELIVERY_STREAM, SECRET})
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
    SECRET: "Name",
    ROLE: "RoleName",
    "AWS::Logs::LogGroup": "LogGroupName",
    "AWS::Kinesis::Stream": "Name",
}
_SUB_VARIABLE = re.compile(r"\$\{([^}!][^}]*)\}")


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


def substitute(value: Any, resolved: Mapping[str, Any]) -> Any:
    if _is_intrinsic(value):
        return resolved.get(json.dumps(value, sort_keys=True), value)
    if isinstance(value, dict):
        return {key: substitute(item, resolved) for key, item in value.items()}
    if isinstance(value, list):
        return [substitute(item, resolved) for item in value]
    return value


# ---------------------------------------------------------------------------------------------- planning


@dataclass
class Plan:
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
        elif resource.get("Type") == SECRET:
            # `!Ref` of a secret is its ARN, whose random suffix Secrets Manager picks at creation; its
            # name is an equally valid SecretId, and it is known now.
            name = resource.get("Properties", {}).get("Name") or physical_name(stack_name, logical_id, SECRET)
            values[json.dumps({"Ref": logical_id}, sort_keys=True)] = name
    return values


def plan(stack_name: str, template: dict[str, Any], region: str, account_id: str) -> Plan:
    completed = _completed_values(stack_name, template["Resources"], region, account_id)
    resources = {key: substitute(value, completed) for key, value in template["Resources"].items()}
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
    return Plan(template, moto_resources, notes, outputs)
