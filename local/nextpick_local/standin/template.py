"""template.yaml, read by cfn-lint's decoder and expanded by the SAM translator: what `sam deploy` hands
CloudFormation, without a line of hand-written YAML or intrinsic-function handling.

    raw = load_template()                       # the SAM template, intrinsics in their long form
    cfn = translate(raw, stack_name="x", ...)   # plain CloudFormation: Globals merged into each
                                                # AWS::Lambda::Function, events expanded into rules,
                                                # event source mappings, invoke configs, the REST API

Code locations (`CodeUri: functions/`, an image function's missing `ImageUri`) are what `sam build` and
`sam package` would fill in; the translator insists on S3 / ECR shapes, so local placeholders stand in.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from functools import lru_cache
from pathlib import Path
from typing import Any

SERVERLESS_FUNCTION = "AWS::Serverless::Function"
SERVERLESS_LAYER = "AWS::Serverless::LayerVersion"
SERVERLESS_STATE_MACHINE = "AWS::Serverless::StateMachine"
PLACEHOLDER_CODE_URI = "s3://nextpick-local-code/{logical_id}.zip"
PLACEHOLDER_IMAGE_URI = "{account_id}.dkr.ecr.{region}.amazonaws.com/nextpick-local:{logical_id}"


class TemplateError(ValueError):
    """template.yaml cannot be read, translated, or used with the given parameters."""


def find_template(start: Path | None = None) -> Path:
    """The template.yaml of the repository this module lives in (searched upwards)."""
    here = (start or Path(__file__)).resolve()
    for folder in [here, *here.parents]:
        candidate = folder / "template.yaml"
        if candidate.is_file():
            return candidate
    raise FileNotFoundError(f"no template.yaml above {here}")


@lru_cache(maxsize=8)
def _decoded(path: str, modified_ns: int) -> str:
    from cfnlint.decode import decode

    template, problems = decode(path)
    if problems or template is None:
        detail = "; ".join(str(problem) for problem in problems[:3]) or "empty"
        raise TemplateError(f"{path}: not a readable template ({detail})")
    # cfn-lint's nodes carry line numbers; plain JSON data is all the stand-in needs.
    return json.dumps(template)


def load_template(path: Path | str | None = None) -> dict[str, Any]:
    """template.yaml as plain data, short-form intrinsics (!Ref, !Sub...) in their long form."""
    location = Path(path or find_template()).resolve()
    template: dict[str, Any] = json.loads(_decoded(str(location), location.stat().st_mtime_ns))
    if not isinstance(template, dict) or "Resources" not in template:
        raise TemplateError(f"{location}: not a CloudFormation template: no Resources")
    return _with_inline_definitions(template, location.parent)


def _with_inline_definitions(template: dict[str, Any], folder: Path) -> dict[str, Any]:
    """A state machine's `DefinitionUri: <local file>` becomes its `Definition`, the file's JSON: what
    `sam package` uploads and CloudFormation reads, without the upload (the translator wants S3)."""
    for logical_id, resource in template["Resources"].items():
        properties = resource.get("Properties", {})
        uri = properties.get("DefinitionUri")
        if resource.get("Type") != SERVERLESS_STATE_MACHINE or not isinstance(uri, str):
            continue
        if uri.startswith("s3://"):
            continue
        try:
            definition = json.loads((folder / uri).read_text(encoding="utf-8"))
        except (OSError, ValueError) as error:
            raise TemplateError(f"{logical_id}: DefinitionUri {uri}: {error}") from error
        properties.pop("DefinitionUri")
        properties["Definition"] = definition
    return template


def parameter_values(template: Mapping[str, Any], overrides: Mapping[str, Any]) -> dict[str, str]:
    """Every declared parameter's value: the override, else the default. Unknown names are refused
    (a typo in `--parameter-overrides` must not be silently ignored), as `sam deploy` refuses them."""
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


def _with_placeholder_code(template: dict[str, Any], region: str, account_id: str) -> dict[str, Any]:
    for logical_id, resource in template["Resources"].items():
        properties = resource.setdefault("Properties", {})
        if resource.get("Type") == SERVERLESS_FUNCTION:
            if properties.get("PackageType") == "Image":
                properties.setdefault(
                    "ImageUri",
                    PLACEHOLDER_IMAGE_URI.format(account_id=account_id, region=region, logical_id=logical_id),
                )
            elif "InlineCode" not in properties and not str(properties.get("CodeUri", "")).startswith(
                "s3://"
            ):
                properties["CodeUri"] = PLACEHOLDER_CODE_URI.format(logical_id=logical_id)
        elif resource.get("Type") == SERVERLESS_LAYER and isinstance(properties.get("ContentUri"), str):
            properties["ContentUri"] = PLACEHOLDER_CODE_URI.format(logical_id=logical_id)
    return template


@lru_cache(maxsize=16)
def _translated(
    template_json: str, parameters_json: str, stack_name: str, region: str, account_id: str
) -> str:
    import boto3
    from samtranslator.model.exceptions import InvalidDocumentException
    from samtranslator.parser.parser import Parser
    from samtranslator.translator.translator import Translator

    # The translator logs feature-toggle notes at WARNING for every template; they are not ours.
    logging.getLogger("samtranslator").setLevel(logging.ERROR)
    template = _with_placeholder_code(json.loads(template_json), region, account_id)
    values = {
        **json.loads(parameters_json),
        "AWS::StackName": stack_name,
        "AWS::Region": region,
        "AWS::AccountId": account_id,
    }
    # A session with a region and no credentials: the translator only reads the region from it.
    session = boto3.Session(region_name=region)
    try:
        translated = Translator(None, Parser(), boto_session=session).translate(
            template, values, get_managed_policy_map=dict, passthrough_metadata=True
        )
    except InvalidDocumentException as error:
        causes = "; ".join(str(cause) for cause in error.causes[:3])
        raise TemplateError(f"the SAM translator refused the template: {causes}") from error
    return json.dumps(translated)


def translate(
    template: Mapping[str, Any],
    *,
    stack_name: str,
    region: str,
    account_id: str,
    parameters: Mapping[str, str],
) -> dict[str, Any]:
    """The CloudFormation the SAM transform makes of `template` (cached: the integration tests build
    the same stack hundreds of times)."""
    result: dict[str, Any] = json.loads(
        _translated(
            json.dumps(template, sort_keys=True),
            json.dumps(dict(parameters), sort_keys=True),
            stack_name,
            region,
            account_id,
        )
    )
    return result


def translated_template(
    path: Path | str | None = None,
    *,
    stack_name: str = "nextpick-local",
    region: str = "us-east-1",
    account_id: str = "123456789012",
    parameters: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """template.yaml read and translated in one step (defaults: the local stack's names)."""
    raw = load_template(path)
    values = parameter_values(raw, parameters or {})
    return translate(raw, stack_name=stack_name, region=region, account_id=account_id, parameters=values)
