"""template.yaml is valid, builds within Lambda's limits, and every trigger it declares has a sample event."""

from __future__ import annotations

import copy
import importlib
import json
import os
import platform
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import boto3
import pytest
from moto.server import ThreadedMotoServer

from nextpick.domain.credentials import ShopCredentials, mint_shopper_token
from nextpick.domain.events import CatalogBatch, CatalogItem, EventBatch, ItemFields, TrackedEvent
from nextpick.domain.impressions import is_impression_record
from nextpick.settings import Settings
from nextpick_local.standin.aws_resources import Stack, create_stack, find_template, load_template, plan_stack
from nextpick_training.parquet_log import json_lines_of
from nextpick_training.settings import TrainingSettings

TEMPLATE_PATH = find_template()
REPO = TEMPLATE_PATH.parent
EVENTS_DIR = REPO / "events"
# Lambda's limit for a function's code plus all its layers, unzipped.
LAMBDA_UNZIPPED_LIMIT_BYTES = 250 * 1024 * 1024
# Variables the Powertools library reads, rather than nextpick's Settings.
POWERTOOLS_VARIABLES = {
    "POWERTOOLS_SERVICE_NAME",
    "POWERTOOLS_METRICS_NAMESPACE",
    "POWERTOOLS_LOG_LEVEL",
    "POWERTOOLS_TRACER_CAPTURE_RESPONSE",
    "POWERTOOLS_TRACER_CAPTURE_ERROR",
}


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


def test_failed_retrain_runs_are_not_retried(template: dict[str, Any]) -> None:
    """docs/retrain.md: a failed run is superseded by the next scheduled one, never retried (a step's
    transient errors are retried inside the execution, statemachine/retrain.asl.json)."""
    retrain = _functions(template)["RetrainFunction"]
    assert retrain["EventInvokeConfig"]["MaximumRetryAttempts"] == 0
    assert "Events" not in retrain, "the retrain's schedule runs the state machine, not the function"
    machine = _state_machines(template)["RetrainStateMachine"]
    assert [e["Properties"]["RetryPolicy"]["MaximumRetryAttempts"] for e in machine["Events"].values()] == [0]


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


def test_every_handler_is_a_function_of_the_code(template: dict[str, Any]) -> None:
    """A typo in Handler (or in the image's CMD) would otherwise surface only at the first invocation."""
    dockerfile = (REPO / "training" / "Dockerfile").read_text()
    image_cmd = json.loads(next(line for line in dockerfile.splitlines() if line.startswith("CMD "))[4:])
    for function, properties in _functions(template).items():
        handler = image_cmd[0] if properties.get("PackageType") == "Image" else properties["Handler"]
        module, _, name = handler.rpartition(".")
        assert callable(getattr(importlib.import_module(module), name, None)), f"{function}: {handler}"


def test_sample_events_are_json_objects(samples: dict[str, Any]) -> None:
    assert samples, "no sample events"
    assert all(isinstance(sample, dict) for sample in samples.values())


def test_env_json_matches_the_template() -> None:
    """events/env.json (for `sam local`) names the resources aws_resources creates for nextpick-local."""
    env_json = json.loads((EVENTS_DIR / "env.json").read_text())
    regenerate = (
        "regenerate: python -c 'import json; from nextpick_local.standin.aws_resources import plan_stack; "
        "print(json.dumps(dict(plan_stack().environments), indent=2))' > events/env.json"
    )
    assert env_json == {name: dict(env) for name, env in plan_stack().environments.items()}, regenerate


def _api_samples(samples: dict[str, Any]) -> dict[tuple[str, str], list[str]]:
    routes: dict[tuple[str, str], list[str]] = {}
    for name, sample in samples.items():
        if "httpMethod" in sample and "requestContext" in sample and "methodArn" not in sample:
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
    if kind == "Kinesis":
        return [
            name
            for name, sample in samples.items()
            if sample.get("Records") and all(r.get("eventSource") == "aws:kinesis" for r in sample["Records"])
        ]
    raise AssertionError(f"no sample-matching rule for {kind} events: add one here and a sample in events/")


def _authorizer_functions(template: dict[str, Any]) -> set[str]:
    """The functions an API calls as its Lambda authorizer (`Auth.Authorizers.*.FunctionArn`)."""
    found = set()
    for resource in template["Resources"].values():
        if resource["Type"] == "AWS::Serverless::Api":
            for spec in resource["Properties"].get("Auth", {}).get("Authorizers", {}).values():
                found.add(spec["FunctionArn"]["Fn::GetAtt"][0])
    return found


def _authorizer_samples(samples: dict[str, Any]) -> list[str]:
    return [
        name for name, sample in samples.items() if sample.get("type") == "REQUEST" and "methodArn" in sample
    ]


def _state_machines(template: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {
        logical_id: resource["Properties"]
        for logical_id, resource in template["Resources"].items()
        if resource["Type"] == "AWS::Serverless::StateMachine"
    }


def _state_machine_functions(template: dict[str, Any]) -> set[str]:
    """The functions a state machine invokes (its DefinitionSubstitutions name them by ARN)."""
    return {
        value["Fn::GetAtt"][0]
        for properties in _state_machines(template).values()
        for value in properties.get("DefinitionSubstitutions", {}).values()
        if isinstance(value, dict)
        and "Fn::GetAtt" in value
        and value["Fn::GetAtt"][0] in _functions(template)
    }


def test_every_trigger_has_a_sample_event(template: dict[str, Any], samples: dict[str, Any]) -> None:
    authorizers = _authorizer_functions(template)
    assert authorizers and _authorizer_samples(samples), "the API's authorizer has no events/ sample"
    assert _state_machine_functions(template) == {"RetrainFunction"}
    for machine, properties in _state_machines(template).items():
        for event_name, event in properties["Events"].items():
            assert _samples_for(event, samples), f"no events/ sample for {machine}.{event_name}"
    for function, properties in _functions(template).items():
        if function in authorizers or function in _state_machine_functions(template):
            continue
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
    used = {"env.json", *_authorizer_samples(samples)}
    for properties in [*_functions(template).values(), *_state_machines(template).values()]:
        for event in properties.get("Events", {}).values():
            used.update(_samples_for(event, samples))
    assert set(samples) == used, f"samples no trigger would send: {sorted(set(samples) - used)}"


def test_api_samples_are_complete_rest_proxy_events(samples: dict[str, Any]) -> None:
    for name in (name for names in _api_samples(samples).values() for name in names):
        sample = samples[name]
        # As API Gateway forwards a call its authorizer allowed (none for the public /swagger).
        if sample["resource"] == "/swagger":
            assert "authorizer" not in sample["requestContext"], name
        else:
            assert sample["headers"]["Authorization"].startswith("Bearer "), name
            assert sample["requestContext"]["authorizer"]["scope"] in ("admin", "server"), name
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
    assert {"purchase", "rate"} <= {str(event.event_type) for event in batch.events}
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


@pytest.fixture(scope="module")
def sam_build(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """`sam build` of every zip resource (the image needs Docker): the directory of the artifacts."""
    sam = _sam()
    if sam is None:
        pytest.skip("the sam CLI is not installed (pip install aws-sam-cli)")
    build_dir = tmp_path_factory.mktemp("sam") / "build"
    command = [sam, "build", "--region", "us-east-1", "--template-file", str(TEMPLATE_PATH)]
    command += [
        "--exclude",
        "RetrainFunction",
        "--exclude",
        "CatalogRefreshFunction",
        "--exclude",
        "EventLogCompactionFunction",
        "--exclude",
        "OnlineReportFunction",
        "--no-cached",
        "--build-dir",
        str(build_dir),
    ]
    result = subprocess.run(
        command, cwd=REPO, capture_output=True, text=True, env=_sam_env(), timeout=900, check=False
    )
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    return build_dir


@pytest.mark.slow
def test_zip_functions_build_without_docker_and_fit_lambda(sam_build: Path) -> None:
    layer, function = sam_build / "RuntimeLayer", sam_build / "ApiFunction"
    assert sorted(path.name for path in function.iterdir()) == ["nextpick"]
    # Only bytecode for the runtime's Python, never the build machine's stray caches.
    assert {path.name.split(".")[1] for path in function.rglob("*.pyc")} <= {"cpython-312"}
    size = sum(
        path.stat().st_size for root in (layer, function) for path in root.rglob("*") if path.is_file()
    )
    assert size < LAMBDA_UNZIPPED_LIMIT_BYTES, f"{size / 2**20:.1f} MiB"
    assert not [path for path in layer.rglob("tensorflow") if path.is_dir()]
    assert not list(layer.glob("python/boto3")) and not list(layer.glob("python/botocore"))
    assert (layer / "python" / "ai_edge_litert").is_dir() and (layer / "python" / "numpy").is_dir()


# Calls one handler the way the Lambda runtime does: argv = sys.path entries, handler, event file.
INVOKE = """
import importlib, json, sys
sys.path[:0] = sys.argv[1].split(":")
module, _, function = sys.argv[2].rpartition(".")
handler = getattr(importlib.import_module(module), function)

class Context:
    function_name = "nextpick-local"
    function_version = "$LATEST"
    memory_limit_in_mb = 1024
    invoked_function_arn = "arn:aws:lambda:us-east-1:123456789012:function:nextpick-local"
    aws_request_id = "local-request"
    log_group_name = "/aws/lambda/nextpick-local"
    log_stream_name = "local"

    def get_remaining_time_in_millis(self):
        return 10_000

with open(sys.argv[3]) as event:
    print("RESULT=" + json.dumps(handler(json.load(event), Context())))
"""


def _python_312() -> str | None:
    """A real Python 3.12 interpreter (a version manager's shim may refuse to run outside its setting)."""
    pyenv_root = Path(os.environ.get("PYENV_ROOT", Path.home() / ".pyenv"))
    candidates = [
        shutil.which("python3.12"),
        *sorted(map(str, pyenv_root.glob("versions/3.12*/bin/python3.12"))),
    ]
    probe = "import sys; assert sys.version_info[:2] == (3, 12); print(sys.executable)"
    for candidate in filter(None, candidates):
        run = subprocess.run([candidate, "-c", probe], capture_output=True, text=True, check=False)
        if run.returncode == 0:
            return run.stdout.strip()
    return None


@pytest.fixture(scope="module")
def lambda_runtime(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, list[Path]]:
    """Python 3.12 and what Lambda puts beside the function code: the runtime layer, built by the same
    Makefile for this machine's CPU (the real one is arm64), and boto3, which the runtime ships."""
    python = _python_312()
    if python is None:
        pytest.skip("python3.12 (the Lambda runtime's version) is not installed")
    root = tmp_path_factory.mktemp("runtime")
    machine = platform.machine()
    platforms = " ".join(
        f"--platform {tag}_{machine}" for tag in ("manylinux2014", "manylinux_2_27", "manylinux_2_28")
    )
    pip = f"{sys.executable} -m pip"
    layer = [
        *("make", "-s", "-C", str(REPO / "layers" / "runtime"), "build-RuntimeLayer"),
        *(f"ARTIFACTS_DIR={root / 'layer'}", f"PIP={pip}", f"PLATFORMS={platforms}"),
    ]
    runtime = [
        *(
            sys.executable,
            "-m",
            "pip",
            "install",
            "--quiet",
            "--only-binary=:all:",
            "--python-version",
            "3.12",
        ),
        *platforms.split(),
        *("-t", str(root / "runtime"), "boto3"),
    ]
    for command in (layer, runtime):
        run = subprocess.run(command, capture_output=True, text=True, timeout=600, check=False)
        assert run.returncode == 0, run.stderr[-3000:]
    return python, [root / "layer" / "python", root / "runtime"]


def _invoke(
    python: str, code_paths: list[Path], handler: str, sample: str | Path, environment: dict[str, str]
) -> Any:
    paths = ":".join(str(path) for path in code_paths)
    command = [python, "-S", "-c", INVOKE, paths, handler, str(EVENTS_DIR / sample)]
    run = subprocess.run(command, env=environment, capture_output=True, text=True, timeout=120, check=False)
    assert run.returncode == 0, f"{handler} {sample}: {run.stderr[-3000:]}"
    line = next(line for line in run.stdout.splitlines() if line.startswith("RESULT="))
    return json.loads(line.removeprefix("RESULT="))


def _with_stack_token(folder: Path, name: str, sample: dict[str, Any], secrets: Any, stack: Stack) -> Path:
    """The authorizer sample, its shopper token re-signed with the stack's own secret."""
    master = secrets.get_secret_value(SecretId=stack.auth_secret)["SecretString"]
    user = sample["pathParameters"]["user_id"]
    token = mint_shopper_token(ShopCredentials.derive(master).token_signing_key, user)
    event = copy.deepcopy(sample)
    event["headers"]["Authorization"] = f"Bearer {token}"
    event["multiValueHeaders"]["Authorization"] = [f"Bearer {token}"]
    path = folder / name
    path.write_text(json.dumps(event))
    return path


@pytest.mark.slow
def test_built_functions_handle_every_sample_event(
    sam_build: Path,
    lambda_runtime: tuple[str, list[Path]],
    template: dict[str, Any],
    samples: dict[str, Any],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    """What `sam local invoke -e events/<sample>` does, without Docker: each zip function's built code,
    with only its layer and the runtime's boto3 importable (python -S: no site-packages), answers each
    of its sample events against the template's resources in a moto server. The authorizer's sample
    gets a token signed with this stack's secret, which the built authorizer must accept."""
    python, runtime_paths = lambda_runtime
    for variable in ("AWS_PROFILE", "AWS_ENDPOINT_URL"):
        monkeypatch.delenv(variable, raising=False)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    try:
        host, port = server.get_host_and_port()
        endpoint = f"http://{host}:{port}"
        session = boto3.Session(
            aws_access_key_id="local", aws_secret_access_key="local", region_name="us-east-1"
        )
        stack = create_stack("nextpick-local", session=session, endpoint_url=endpoint)
        # (function, sample) -> answer: two functions may share a trigger kind (two DynamoDB streams).
        results: dict[tuple[str, str], Any] = {}
        for function, properties in _functions(template).items():
            if properties.get("PackageType") == "Image":
                continue  # RetrainFunction: its image needs Docker to build
            code_paths = [sam_build / function, *runtime_paths]
            sent = [
                s for event in properties.get("Events", {}).values() for s in _samples_for(event, samples)
            ]
            if function in _authorizer_functions(template):
                sent = [
                    str(
                        _with_stack_token(
                            tmp_path,
                            name,
                            samples[name],
                            session.client("secretsmanager", endpoint_url=endpoint),
                            stack,
                        )
                    )
                    for name in _authorizer_samples(samples)
                ]
            for sample in sent:
                environment = {
                    "PATH": os.environ.get("PATH", ""),
                    "AWS_ACCESS_KEY_ID": "local",
                    "AWS_SECRET_ACCESS_KEY": "local",
                    "AWS_DEFAULT_REGION": "us-east-1",
                    "AWS_ENDPOINT_URL": endpoint,
                    "POWERTOOLS_TRACE_DISABLED": "true",
                    **stack.env(function),
                }
                results[function, Path(sample).name] = _invoke(
                    python, code_paths, properties["Handler"], sample, environment
                )

        s3 = session.client("s3", endpoint_url=endpoint)
        log_keys = [
            obj["Key"] for obj in s3.list_objects_v2(Bucket=stack.model_bucket, Prefix="events/")["Contents"]
        ]
        records = [
            json.loads(line)
            for key in log_keys
            # The stream converts records to Parquet (issue 14).
            for line in json_lines_of(
                s3.get_object(Bucket=stack.model_bucket, Key=key)["Body"].read()
            ).splitlines()
        ]
        # The API samples' answers are logged as impressions (docs/attribution.md), beside the events.
        logged = [record["event_id"] for record in records if not is_impression_record(record)]
        assert any(is_impression_record(record) for record in records)
    finally:
        server.stop()

    for (_, name), result in results.items():
        if name.startswith("api_"):
            assert result["statusCode"] == 200, f"{name}: {result}"
    assert results["BusEventFunction", "bus_shopper_event.json"]["results"][0]["status"] == "accepted"
    (authorizer_sample,) = _authorizer_samples(samples)
    (authorizer,) = _authorizer_functions(template)
    allowed = results[authorizer, authorizer_sample]["policyDocument"]["Statement"][0]
    assert allowed["Effect"] == "Allow"
    assert samples[authorizer_sample]["methodArn"] in allowed["Resource"]
    assert results["EventLogShipperFunction", "dynamodb_stream_state.json"] == {"batchItemFailures": []}
    assert results["StreamEventFunction", "kinesis_shopper_events.json"] == {"batchItemFailures": []}
    # The catalog artifact: built from the (empty) table by the first batch, then the sample item added.
    assert results["CatalogArtifactFunction", "dynamodb_stream_items.json"]["version"] >= 1
    records = samples["dynamodb_stream_state.json"]["Records"]
    shipped = [
        json.loads(entry["S"])["event_id"]
        for record in records
        for entry in record["dynamodb"]["NewImage"]["outbox"]["L"]
    ]
    assert sorted(logged) == sorted(shipped)
