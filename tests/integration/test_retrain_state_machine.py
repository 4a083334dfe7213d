"""The retrain's state machine (statemachine/retrain.asl.json, issue 14) on the local stand-in: the same
definition file the template deploys, run by moto's ASL interpreter with the stand-in's tasks (the real
step handler in a child process per step, the real train entry as the SageMaker / Batch job).

The four paths of the issue: a success publishes and records; a training job that exits non-zero goes
down the failure path (recorded failed, the live pointer untouched, the execution FAILED); a rejected
gate records `rejected` and succeeds with the pointer untouched; a job whose spot capacity is reclaimed
after its first checkpoint resumes from it and ends with the same model bytes as an uninterrupted run."""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
from cfnlint.api import lint_all
from moto.stepfunctions.parser.asl.parse.asl_parser import AmazonStateLanguageParser

from nextpick.adapters import model_registry as registry
from nextpick_local.standin.aws_resources import find_template, load_template
from nextpick_local.standin.functions import Invoker, functions_of
from nextpick_local.standin.stack import LocalStack, start_stack
from nextpick_local.standin.state_machines import StateMachines
from nextpick_local.standin.template import translated_template
from tests.integration.test_retrain import TINY, pointer_bytes, shop_log, write_log

MACHINE = "RetrainStateMachine"
DEFINITION = find_template().parent / "statemachine" / "retrain.asl.json"
# Small-data thresholds, as tests/integration/test_retrain.py uses them.
TEST_ENVIRONMENT = {"MIN_EVENTS": "500", "MIN_USERS": "10", "HYPERPARAMETERS": json.dumps(TINY)}


@pytest.fixture(scope="module")
def local() -> Iterator[tuple[LocalStack, StateMachines]]:
    saved = dict(os.environ)
    stack = start_stack("nextpick-sfn", {})
    try:
        functions = functions_of(stack.resources.resources, find_template().parent)
        resources = stack.resources
        invoker = Invoker(functions, resources.refs, resources.region, resources.account_id)
        machines = StateMachines.start(stack, invoker)
        yield stack, machines
        machines.stop()
    finally:
        stack.stop()
        os.environ.clear()
        os.environ.update(saved)


@pytest.fixture
def stack(local: tuple[LocalStack, StateMachines], monkeypatch: pytest.MonkeyPatch) -> LocalStack:
    """The stack with an empty bucket and the small-data settings (the steps' processes inherit them)."""
    stack = local[0]
    s3 = stack.client("s3")
    bucket = stack.resources.model_bucket
    for page in s3.get_paginator("list_object_versions").paginate(Bucket=bucket):
        for version in [*page.get("Versions", []), *page.get("DeleteMarkers", [])]:
            s3.delete_object(Bucket=bucket, Key=version["Key"], VersionId=version["VersionId"])
    for name, value in TEST_ENVIRONMENT.items():
        monkeypatch.setenv(name, value)
    return stack


@pytest.fixture
def machines(local: tuple[LocalStack, StateMachines]) -> StateMachines:
    return local[1]


def run(
    machines: StateMachines, monkeypatch: pytest.MonkeyPatch, reclaim_spot: int = 0, **env: str
) -> dict[str, Any]:
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return machines.run(MACHINE, {"detail-type": "Scheduled Event", "source": "aws.events"}, reclaim_spot)


def pointer(stack: LocalStack) -> bytes | None:
    return pointer_bytes(stack.client("s3"), stack.resources.model_bucket)


def finished_events(stack: LocalStack) -> list[dict[str, Any]]:
    """The RetrainFinished events on the stack's bus since the last call (a test rule's queue)."""
    sqs, events = stack.client("sqs"), stack.client("events")
    queue = sqs.create_queue(QueueName="retrain-finished-test")["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    bus = stack.resources.event_bus
    events.put_rule(
        Name="retrain-finished-test",
        EventBusName=bus,
        EventPattern=json.dumps({"detail-type": ["RetrainFinished"]}),
    )
    events.put_targets(Rule="retrain-finished-test", EventBusName=bus, Targets=[{"Id": "q", "Arn": arn}])
    found = []
    while messages := sqs.receive_message(QueueUrl=queue, MaxNumberOfMessages=10).get("Messages", []):
        for message in messages:
            found.append(json.loads(message["Body"]))
            sqs.delete_message(QueueUrl=queue, ReceiptHandle=message["ReceiptHandle"])
    return found


def states_entered(machines: StateMachines, result: dict[str, Any]) -> list[str]:
    return [
        event["stateEnteredEventDetails"]["name"]
        for event in machines.history(result["execution"]["execution_arn"])
        if "stateEnteredEventDetails" in event
    ]


def candidate(stack: LocalStack, run_id: str) -> bytes:
    key = f"training-runs/{run_id}/candidate/model.tflite"
    body: bytes = stack.client("s3").get_object(Bucket=stack.resources.model_bucket, Key=key)["Body"].read()
    return body


def with_log(stack: LocalStack) -> None:
    now = datetime.now(UTC)
    write_log(stack.client("s3"), stack.resources.model_bucket, shop_log(now), now)


# ------------------------------------------------------------------------------------------ the definition


def test_the_definition_is_valid_asl_and_every_reference_is_the_templates() -> None:
    raw = load_template()
    machine = raw["Resources"][MACHINE]["Properties"]
    text = DEFINITION.read_text(encoding="utf-8")
    # moto's ASL parser (LocalStack's) accepts it, as create_state_machine did for the local stack.
    AmazonStateLanguageParser.parse(text)
    # Every ${Name} is one of the template's substitutions, and every substitution is used.
    assert set(re.findall(r"\$\{([A-Za-z0-9]+)\}", text)) == set(machine["DefinitionSubstitutions"])
    substitutions = machine["DefinitionSubstitutions"]
    assert substitutions["RetrainFunctionArn"] == {"Fn::GetAtt": ["RetrainFunction", "Arn"]}
    assert substitutions["TrainingJobRoleArn"] == {"Fn::GetAtt": ["TrainingJobRole", "Arn"]}
    assert substitutions["EventBusName"] == {"Ref": "NextpickBus"}
    assert substitutions["ModelBucketName"] == {"Ref": "ModelBucket"}


def test_cfn_lint_validates_the_inlined_definition() -> None:
    """cfn-lint checks an inline definition against the ASL schema (a DefinitionUri file it cannot read)."""
    translated = translated_template()
    template = {
        "AWSTemplateFormatVersion": "2010-09-09",
        "Resources": {
            "Role": {
                "Type": "AWS::IAM::Role",
                "Properties": {"AssumeRolePolicyDocument": {"Version": "2012-10-17", "Statement": []}},
            },
            MACHINE: {
                "Type": "AWS::StepFunctions::StateMachine",
                "Properties": {
                    "RoleArn": {"Fn::GetAtt": ["Role", "Arn"]},
                    "Definition": json.loads(DEFINITION.read_text(encoding="utf-8")),
                    "DefinitionSubstitutions": {
                        name: "placeholder"
                        for name in translated["Resources"][MACHINE]["Properties"]["DefinitionSubstitutions"]
                    },
                },
            },
        },
    }
    problems = [str(p) for p in lint_all(json.dumps(template)) if p.rule.id[0] in "EW"]
    assert problems == []
    # It does look inside (the ASL schema): a task without a resource is reported.
    broken = json.loads(json.dumps(template))
    del broken["Resources"][MACHINE]["Properties"]["Definition"]["States"]["Query"]["Resource"]
    assert [p for p in lint_all(json.dumps(broken)) if p.rule.id[0] == "E"]


# What each task's resource is authorised as (the role must grant it, and nothing it grants is unused).
TASK_ACTIONS = {
    "arn:aws:states:::lambda:invoke": {"lambda:InvokeFunction"},
    "arn:aws:states:::aws-sdk:lambda:getFunction": {"lambda:GetFunction"},
    "arn:aws:states:::sagemaker:createTrainingJob.sync": {
        "sagemaker:CreateTrainingJob", "sagemaker:DescribeTrainingJob", "sagemaker:StopTrainingJob",
        "events:PutTargets", "events:PutRule", "events:DescribeRule", "iam:PassRole",
    },
    "arn:aws:states:::batch:submitJob.sync": {
        "batch:SubmitJob", "batch:DescribeJobs", "batch:TerminateJob",
        "events:PutTargets", "events:PutRule", "events:DescribeRule",
    },
    "arn:aws:states:::events:putEvents": {"events:PutEvents"},
}  # fmt: skip


def test_the_role_grants_what_the_tasks_call_and_nothing_else() -> None:
    definition = json.loads(DEFINITION.read_text(encoding="utf-8"))
    tasks = {name: state for name, state in definition["States"].items() if state["Type"] == "Task"}
    needed = set().union(*(TASK_ACTIONS[state["Resource"]] for state in tasks.values()))
    role = translated_template()["Resources"]["RetrainStateMachineRole"]["Properties"]
    granted = {
        action
        for policy in role["Policies"]
        for statement in policy["PolicyDocument"]["Statement"]
        for action in ([statement["Action"]] if isinstance(statement["Action"], str) else statement["Action"])
    }
    assert granted == needed


def test_every_task_retries_transient_errors_and_the_failure_path_never_publishes() -> None:
    states = json.loads(DEFINITION.read_text(encoding="utf-8"))["States"]
    for name, state in states.items():
        if state["Type"] != "Task":
            continue
        assert state.get("Retry"), f"{name} has no Retry"
        assert state.get("Catch"), f"{name} has no Catch"
        if state["Resource"] == "arn:aws:states:::lambda:invoke":
            assert "Lambda.TooManyRequestsException" in state["Retry"][0]["ErrorEquals"], name
    # Whatever fails before the record lands in RecordFailure.
    for name in (
        "Query",
        "TrainOnLambda",
        "LocateImage",
        "TrainOnSageMaker",
        "TrainOnBatch",
        "Evaluate",
        "Publish",
        "Record",
    ):
        assert states[name]["Catch"][0]["Next"] == "RecordFailure", name
    # From RecordFailure no path leads to Publish (the pointer switch is publish's last write).
    reachable, frontier = set(), ["RecordFailure"]
    while frontier:
        name = frontier.pop()
        if name in reachable:
            continue
        reachable.add(name)
        state = states[name]
        frontier += [n for n in [state.get("Next"), state.get("Default")] if n]
        frontier += [c["Next"] for c in state.get("Catch", []) + state.get("Choices", [])]
    assert reachable == {"RecordFailure", "NotifyFailure", "Failed"}


# ------------------------------------------------------------------------------------------ the paths


def test_a_run_on_lambda_publishes_records_and_announces(
    stack: LocalStack, machines: StateMachines, monkeypatch: pytest.MonkeyPatch
) -> None:
    with_log(stack)
    finished_events(stack)

    result = run(machines, monkeypatch, TRAINING_ENGINE="lambda")

    assert result["execution"]["execution_status"] == "SUCCEEDED", result
    assert result["status"] == "published", result["reason"]
    assert result["engine"] == "lambda"
    assert states_entered(machines, result) == [
        "Begin", "Query", "ChooseEngine", "TrainOnLambda", "Evaluate", "Gate", "Publish", "Published",
        "Record", "Notify", "Done",
    ]  # fmt: skip
    assert json.loads(pointer(stack) or b"{}")["version"] == result["published_version"]
    record = json.loads(
        stack.client("s3")
        .get_object(Bucket=stack.resources.model_bucket, Key=result["run_key"])["Body"]
        .read()
    )
    assert record["status"] == "published" and record["run_id"] == result["run_id"]
    # The record step erased the window copy and the checkpoints; the candidate stays for the lifecycle rule.
    keys = [
        o["Key"]
        for o in stack.client("s3")
        .list_objects_v2(Bucket=stack.resources.model_bucket, Prefix=f"training-runs/{result['run_id']}/")
        .get("Contents", [])
    ]
    assert not [k for k in keys if k.endswith("window.parquet") or "/checkpoints/" in k], keys
    (announced,) = finished_events(stack)
    assert announced["source"] == "nextpick"
    assert announced["detail"] == {
        "status": "published",
        "run_id": result["run_id"],
        "published_version": result["published_version"],
    }


def test_a_training_job_that_exits_non_zero_fails_the_run_and_leaves_the_live_model(
    stack: LocalStack, machines: StateMachines, monkeypatch: pytest.MonkeyPatch
) -> None:
    with_log(stack)
    first = run(machines, monkeypatch, TRAINING_ENGINE="lambda")
    assert first["status"] == "published", first["reason"]
    live = pointer(stack)
    finished_events(stack)

    # A negative embedding size passes the query step and breaks the training container.
    broken = json.dumps({**TINY, "embedding_dim": -1})
    result = run(machines, monkeypatch, TRAINING_ENGINE="sagemaker", HYPERPARAMETERS=broken)

    assert result["execution"]["execution_status"] == "FAILED", result
    assert result["execution"]["execution_error"] == "RetrainFailed"
    assert result["execution"]["execution_cause"].startswith("States.TaskFailed: ")
    assert "AlgorithmError" in result["execution"]["execution_cause"]
    entered = states_entered(machines, result)
    assert entered[-4:] == ["TrainOnSageMaker", "RecordFailure", "NotifyFailure", "Failed"], entered
    assert "Publish" not in entered
    assert result["status"] == "failed" and result["run_id"]
    assert pointer(stack) == live
    assert [e["detail"]["status"] for e in finished_events(stack)] == ["failed"]
    assert registry.list_versions(stack.client("s3"), stack.resources.model_bucket) == [
        first["published_version"]
    ]


def test_a_rejected_candidate_is_recorded_and_the_live_model_stays(
    stack: LocalStack, machines: StateMachines, monkeypatch: pytest.MonkeyPatch
) -> None:
    with_log(stack)
    first = run(machines, monkeypatch, TRAINING_ENGINE="lambda")
    assert first["status"] == "published", first["reason"]
    live = pointer(stack)

    # learning_rate 0: the candidate keeps its random weights and must lose to the live model.
    weak = json.dumps({**TINY, "learning_rate": 0.0})
    result = run(machines, monkeypatch, TRAINING_ENGINE="lambda", HYPERPARAMETERS=weak)

    assert result["execution"]["execution_status"] == "SUCCEEDED", result
    assert result["status"] == "rejected", result["reason"]
    entered = states_entered(machines, result)
    assert entered[-5:] == ["Gate", "Rejected", "Record", "Notify", "Done"], entered
    assert pointer(stack) == live


@pytest.mark.parametrize("engine", ["sagemaker", "batch"])
def test_a_job_reclaimed_after_its_first_checkpoint_resumes_to_the_same_model(
    stack: LocalStack, machines: StateMachines, monkeypatch: pytest.MonkeyPatch, engine: str
) -> None:
    with_log(stack)
    # Enough epochs that the reclaim (after the first complete checkpoint) lands before the end.
    hyperparameters = json.dumps({**TINY, "epochs": 4})

    reclaimed = run(machines, monkeypatch, 1, TRAINING_ENGINE=engine, HYPERPARAMETERS=hyperparameters)
    straight = run(machines, monkeypatch, 0, TRAINING_ENGINE=engine, HYPERPARAMETERS=hyperparameters)

    for result in (reclaimed, straight):
        assert result["execution"]["execution_status"] == "SUCCEEDED", result
        assert result["engine"] == engine
    assert reclaimed["counts"]["resumed_from_epoch"] >= 1, reclaimed["counts"]
    assert straight["counts"]["resumed_from_epoch"] == 0
    # The engine itself absorbed the reclaim: SageMaker restarted the job, Batch retried the attempt.
    job = training_job(machines, reclaimed)
    if engine == "sagemaker":
        assert [t["Status"] for t in job["SecondaryStatusTransitions"]] == [
            "Training",
            "Interrupted",
            "Training",
        ]
    else:
        first, second = job["Attempts"]
        assert first["StatusReason"].startswith("Host EC2") and second["Container"]["ExitCode"] == 0
    assert (
        states_entered(machines, reclaimed).count(
            f"TrainOn{'SageMaker' if engine == 'sagemaker' else 'Batch'}"
        )
        == 1
    )
    # The same bytes as the run nobody interrupted (same data, seed and hyperparameters).
    assert candidate(stack, reclaimed["run_id"]) == candidate(stack, straight["run_id"])


def training_job(machines: StateMachines, result: dict[str, Any]) -> dict[str, Any]:
    """The training job's description as the .sync task answered it (the execution's history)."""
    for event in machines.history(result["execution"]["execution_arn"]):
        details = event.get("taskSucceededEventDetails")
        if details and details.get("resourceType") in ("sagemaker", "batch"):
            job: dict[str, Any] = json.loads(details["output"])
            return job
    raise AssertionError("no training job in the execution's history")
