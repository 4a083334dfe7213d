"""template.yaml is valid, builds within Lambda's limits, and every trigger it declares has a sample event."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from nextpick.domain.events import CatalogBatch, CatalogItem, EventBatch, ItemFields, TrackedEvent
from nextpick.settings import Settings
from nextpick_local.aws_resources import find_template, load_template, plan_stack
from nextpick_training.settings import TrainingSettings

TEMPLATE_PATH = find_template()
REPO = TEMPLATE_PATH.parent
EVENTS_DIR = REPO / "events"
# Lambda's limit for a function's code plus all its layers, unzipped.
LAMBDA_UNZIPPED_LIMIT_BYTES = 250 * 1024 * 1024
# Variables the Powertools library reads, rather than nextpick's Settings.
POWERTOOLS_VARIABLES = {"POWERTOOLS_SERVICE_NAME", "POWERTOOLS_METRICS_NAMESPACE", "POWERTOOLS_LOG_LEVEL"}


def _sam() -> str | None:
    """The sam executable of this virtualenv, else the one on PATH."""
    beside_python = Path(sys.executable).with_name("sam")
    return str(beside_python) if beside_python.exists() else shutil.which("sam")


def _sam_env() -> dict[str, str]:
    # The layer's Makefile runs `python3 -m pip`: make it this virtualenv's.
    path = f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"
    return {**os.environ, "PATH": path, "SAM_CLI_TELEMETRY": "0", "AWS_DEFAULT_REGION": "us-east-1"}


@pytest.fixture(scope="module")
def template() -> dict[str, Any]:
    return load_template(TEMPLATE_PATH)


@pytest.fixture(scope="module")
def samples() -> dict[str, Any]:
    return {path.name: json.loads(path.read_text()) for path in sorted(EVENTS_DIR.glob("*.json"))}


def _functions(template: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {
        logical_id: resource["Properties"]
        for logical_id, resource in template["Resources"].items()
        if resource["Type"] == "AWS::Serverless::Function"
    }


def test_sam_validate_lint_passes() -> None:
    sam = _sam()
    if sam is None:
        pytest.skip("the sam CLI is not installed (pip install aws-sam-cli)")
    result = subprocess.run(
        [sam, "validate", "--lint", "--region", "us-east-1", "--template-file", str(TEMPLATE_PATH)],
        capture_output=True,
        text=True,
        env=_sam_env(),
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_environment_variable_is_a_setting_or_read_by_powertools(template: dict[str, Any]) -> None:
    variables = set(template["Globals"]["Function"]["Environment"]["Variables"])
    settings = {name.upper() for name in Settings.model_fields}
    assert variables - POWERTOOLS_VARIABLES <= settings, "a variable no Settings field reads (a typo?)"
    assert variables >= POWERTOOLS_VARIABLES


def test_retrain_variables_are_training_settings(template: dict[str, Any]) -> None:
    variables = set(_functions(template)["RetrainFunction"]["Environment"]["Variables"])
    assert variables <= {name.upper() for name in TrainingSettings.model_fields}


def test_environment_resolves_to_valid_settings() -> None:
    stack = plan_stack("nextpick-test")
    for function, environment in stack.environments.items():
        settings = Settings.from_env(dict(environment))
        assert settings.state_table_name == stack.state_table, function
        assert settings.event_log_stream_name == stack.event_log_stream, function
    training = TrainingSettings.from_env(stack.env("RetrainFunction"))
    assert (training.model_bucket_name, training.items_table_name, training.event_bus_name) == (
        stack.model_bucket,
        stack.items_table,
        stack.event_bus,
    )
    assert training.training_window_days == 90


def test_runtime_layer_ships_no_tensorflow_and_no_boto3() -> None:
    requirements = (REPO / "layers" / "runtime" / "requirements.txt").read_text().lower()
    names = {
        line.split("[")[0].split(">")[0].split("=")[0].split("<")[0].strip()
        for line in requirements.splitlines()
        if line.strip() and not line.startswith("#")
    }
    assert {"numpy", "ai-edge-litert", "pydantic", "aws-lambda-powertools"} <= names
    assert not names & {"tensorflow", "tensorflow-cpu", "boto3", "botocore"}


def test_sample_events_are_json_objects(samples: dict[str, Any]) -> None:
    assert samples, "no sample events"
    assert all(isinstance(sample, dict) for sample in samples.values())


def test_env_json_matches_the_template() -> None:
    """events/env.json (for `sam local`) names the resources aws_resources creates for nextpick-local."""
    env_json = json.loads((EVENTS_DIR / "env.json").read_text())
    assert env_json == {name: dict(env) for name, env in plan_stack().environments.items()}


def _api_samples(samples: dict[str, Any]) -> dict[tuple[str, str], list[str]]:
    routes: dict[tuple[str, str], list[str]] = {}
    for name, sample in samples.items():
        if "httpMethod" in sample and "requestContext" in sample:
            routes.setdefault((sample["httpMethod"], sample["resource"]), []).append(name)
    return routes


def _matches(pattern: dict[str, Any], event: dict[str, Any]) -> bool:
    """EventBridge matching for the patterns the template uses: each key lists the allowed values."""
    return all(event.get(key) in allowed for key, allowed in pattern.items())


def _samples_for(event: dict[str, Any], samples: dict[str, Any]) -> list[str]:
    kind, properties = event["Type"], event.get("Properties", {})
    if kind == "Api":
        return _api_samples(samples).get((properties["Method"].upper(), properties["Path"]), [])
    if kind == "EventBridgeRule":
        return [
            name
            for name, sample in samples.items()
            if "detail-type" in sample and _matches(properties["Pattern"], sample)
        ]
    if kind == "Schedule":
        return [
            name
            for name, sample in samples.items()
            if sample.get("source") == "aws.events" and sample.get("detail-type") == "Scheduled Event"
        ]
    if kind == "DynamoDB":
        return [
            name
            for name, sample in samples.items()
            if sample.get("Records")
            and all(r.get("eventSource") == "aws:dynamodb" for r in sample["Records"])
        ]
    raise AssertionError(f"no sample-matching rule for {kind} events: add one here and a sample in events/")


def test_every_trigger_has_a_sample_event(template: dict[str, Any], samples: dict[str, Any]) -> None:
    for function, properties in _functions(template).items():
        assert properties.get("Events"), f"{function} has no trigger"
        for event_name, event in properties["Events"].items():
            assert _samples_for(event, samples), f"no events/ sample for {function}.{event_name}"


def test_every_bus_detail_type_has_a_sample(template: dict[str, Any], samples: dict[str, Any]) -> None:
    for properties in _functions(template).values():
        for event in properties.get("Events", {}).values():
            if event["Type"] != "EventBridgeRule":
                continue
            covered = {samples[name]["detail-type"] for name in _samples_for(event, samples)}
            assert covered == set(event["Properties"]["Pattern"]["detail-type"])


def test_every_sample_belongs_to_a_trigger(template: dict[str, Any], samples: dict[str, Any]) -> None:
    used = {"env.json"}
    for properties in _functions(template).values():
        for event in properties.get("Events", {}).values():
            used.update(_samples_for(event, samples))
    assert set(samples) == used, f"samples no trigger would send: {sorted(set(samples) - used)}"


def test_api_samples_are_complete_rest_proxy_events(samples: dict[str, Any]) -> None:
    for name in (name for names in _api_samples(samples).values() for name in names):
        sample = samples[name]
        assert sample["headers"]["x-api-key"] == sample["requestContext"]["identity"]["apiKey"], name
        assert sample["multiValueHeaders"] == {key: [value] for key, value in sample["headers"].items()}, name
        assert sample["requestContext"]["resourcePath"] == sample["resource"], name
        assert sample["requestContext"]["httpMethod"] == sample["httpMethod"], name
        assert sample["requestContext"]["path"] == f"/{sample['requestContext']['stage']}{sample['path']}", (
            name
        )
        assert sample["resource"].format(**(sample["pathParameters"] or {})) == sample["path"], name
        assert sample["isBase64Encoded"] is False, name


def test_sample_payloads_follow_the_event_contract(samples: dict[str, Any]) -> None:
    """The samples are requests nextpick accepts, so `sam local invoke` shows the happy path."""
    TrackedEvent.model_validate_json(samples["api_post_event.json"]["body"])
    batch = EventBatch.model_validate_json(samples["api_post_events_batch.json"]["body"])
    assert {"purchase", "rate"} <= {event.event_type.value for event in batch.events}
    ItemFields.model_validate_json(samples["api_put_item.json"]["body"])
    CatalogBatch.model_validate_json(samples["api_put_items_batch.json"]["body"])
    TrackedEvent.model_validate(samples["bus_shopper_event.json"]["detail"])
    CatalogItem.model_validate(samples["bus_catalog_item.json"]["detail"])
    for record in samples["dynamodb_stream_state.json"]["Records"]:
        outbox = record["dynamodb"]["NewImage"]["outbox"]["L"]
        assert outbox
        for entry in outbox:
            log_record = json.loads(entry["S"])
            received_at = log_record.pop("received_at")
            assert received_at.endswith("Z")
            TrackedEvent.model_validate(log_record)


@pytest.mark.slow
def test_zip_functions_build_without_docker_and_fit_lambda(tmp_path: Path) -> None:
    """`sam build` of every zip resource (the image needs Docker) gives a layer + function within 250 MB."""
    sam = _sam()
    if sam is None:
        pytest.skip("the sam CLI is not installed (pip install aws-sam-cli)")
    build_dir = tmp_path / "build"
    command = [sam, "build", "--region", "us-east-1", "--template-file", str(TEMPLATE_PATH)]
    command += ["--exclude", "RetrainFunction", "--no-cached", "--build-dir", str(build_dir)]
    result = subprocess.run(
        command, cwd=REPO, capture_output=True, text=True, env=_sam_env(), timeout=900, check=False
    )
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]

    layer, function = build_dir / "RuntimeLayer", build_dir / "ApiFunction"
    assert sorted(path.name for path in function.iterdir()) == ["nextpick"]
    assert not list(function.rglob("__pycache__"))
    size = sum(
        path.stat().st_size for root in (layer, function) for path in root.rglob("*") if path.is_file()
    )
    assert size < LAMBDA_UNZIPPED_LIMIT_BYTES, f"{size / 2**20:.1f} MiB"
    assert not [path for path in layer.rglob("tensorflow") if path.is_dir()]
    assert not list(layer.glob("python/boto3")) and not list(layer.glob("python/botocore"))
    assert (layer / "python" / "ai_edge_litert").is_dir() and (layer / "python" / "numpy").is_dir()
