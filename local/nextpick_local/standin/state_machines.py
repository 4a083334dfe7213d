"""The template's state machines on the local stack: the same definition file (statemachine/*.asl.json,
inlined by template.py), created in moto's Step Functions with its `DefinitionSubstitutions` applied as
CloudFormation applies them, and run by moto's ASL interpreter with the stand-in's tasks
(moto_patches.stepfunctions_local_tasks: the steps through the invoker, training jobs as local
processes, training_jobs.py).

    machines = StateMachines.start(stack, invoker, log)
    result = machines.run("RetrainStateMachine", scheduled_event)   # waits for the execution's end
"""

from __future__ import annotations

import json
import re
import tempfile
import threading
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

from nextpick_local.standin import moto_patches
from nextpick_local.standin.functions import Invoker
from nextpick_local.standin.stack import LocalStack
from nextpick_local.standin.training_jobs import LocalJobs

STATE_MACHINE = "AWS::StepFunctions::StateMachine"
POLL_SECONDS = 0.5
# The states whose output holds the run's record (the RetrainResult, at `record.result`).
RECORD_STATES = ("Record", "RecordFailure")
_SUBSTITUTION = re.compile(r"\$\{([A-Za-z0-9_.]+)\}")


class ExecutionError(RuntimeError):
    """An execution that could not be started or followed (not a run that failed: that is an answer)."""


def _joined(value: Any) -> str:
    """A DefinitionString: the translator's `Fn::Join` of the definition's lines, if moto left it."""
    if isinstance(value, str):
        return value
    separator, lines = value["Fn::Join"]
    return str(separator).join(str(line) for line in lines)


def _substitution(value: Any, stack: LocalStack, name: str) -> str:
    """A DefinitionSubstitutions value: as moto resolved it, or, for what the stand-in runs itself, its
    local name (a function's ARN), or for a resource the stack's conditions leave out (the Batch queue
    and job definition without a VPC) the first branch of the `Fn::If`: locally every engine runs."""
    resources = stack.resources
    if isinstance(value, str | int | float):
        return str(value)
    if isinstance(value, dict) and "Fn::If" in value:
        return _substitution(value["Fn::If"][1], stack, name)
    if isinstance(value, dict) and "Fn::GetAtt" in value:
        logical_id = value["Fn::GetAtt"][0]
        if logical_id in resources.arns:
            return resources.arns[logical_id]
    if isinstance(value, dict) and "Ref" in value:
        logical_id = str(value["Ref"])
        if logical_id in resources.refs:
            return resources.refs[logical_id]
        return f"arn:aws:local:{resources.region}:{resources.account_id}:{logical_id}"
    raise ExecutionError(f"DefinitionSubstitutions.{name}: cannot resolve {json.dumps(value)} locally")


def definition_of(resource: Mapping[str, Any], stack: LocalStack) -> str:
    """The definition CloudFormation would hand Step Functions: `${Name}` replaced by its substitution."""
    properties = resource["Properties"]
    text = _joined(properties["DefinitionString"])
    values = {
        name: _substitution(value, stack, name)
        for name, value in (properties.get("DefinitionSubstitutions") or {}).items()
    }
    return _SUBSTITUTION.sub(lambda m: values.get(m.group(1), m.group(0)), text)


@dataclass
class StateMachines:
    sfn: Any
    # logical id -> ARN in moto.
    arns: Mapping[str, str]
    jobs: LocalJobs
    _running: threading.Lock
    # Spot reclaims for the next execution's training job (POST /_local/retrain {"reclaim_spot": n}).
    reclaim_pending: int = 0

    @classmethod
    def start(cls, stack: LocalStack, invoker: Invoker, log: TextIO | None = None) -> StateMachines:
        resources = stack.resources
        function_ids = {
            **{resources.arns[f]: f for f in invoker.functions if f in resources.arns},
            **{resources.refs[f]: f for f in invoker.functions if f in resources.refs},
        }
        workdir = Path(tempfile.mkdtemp(prefix="nextpick-jobs-"))
        jobs = LocalJobs(invoker, function_ids, resources.resources, stack.client("s3"), workdir, log)
        moto_patches.stepfunctions_local_tasks(jobs)
        sfn = stack.client("stepfunctions")
        arns: dict[str, str] = {}
        for logical_id, resource in resources.resources.items():
            if resource.get("Type") != STATE_MACHINE:
                continue
            name = f"{resources.name}-{logical_id}"
            existing = [m for m in sfn.list_state_machines()["stateMachines"] if m["name"] == name]
            if existing:
                arns[logical_id] = existing[0]["stateMachineArn"]
                continue
            arns[logical_id] = sfn.create_state_machine(
                name=name,
                definition=definition_of(resource, stack),
                roleArn=f"arn:aws:iam::{resources.account_id}:role/{name}",
                type=resource["Properties"].get("StateMachineType", "STANDARD"),
            )["stateMachineArn"]
        return cls(sfn, arns, jobs, threading.Lock())

    def run(self, logical_id: str, event: dict[str, Any], reclaim_spot: int | None = None) -> dict[str, Any]:
        """Start an execution with `event` (a scheduled event), wait for its end; the run's record (the
        RetrainResult the record step answered) with the execution's status, or the execution alone
        if nothing was recorded. `reclaim_spot`: the training job loses its spot capacity this many
        times, after each complete checkpoint (training_jobs.py); default: `reclaim_pending`."""
        with self._running:
            self.jobs.reclaim_next = self.reclaim_pending if reclaim_spot is None else reclaim_spot
            try:
                execution = self.sfn.start_execution(
                    stateMachineArn=self.arns[logical_id],
                    name=f"local-{uuid.uuid4()}",
                    input=json.dumps(event),
                )["executionArn"]
                description = self._wait(execution)
            finally:
                self.jobs.reclaim_next = 0
        summary = {
            "execution_arn": execution,
            "execution_status": description["status"],
            "execution_error": description.get("error"),
            "execution_cause": description.get("cause"),
        }
        return {**self._record(execution), "execution": summary}

    def _wait(self, execution: str) -> dict[str, Any]:
        while True:
            description: dict[str, Any] = self.sfn.describe_execution(executionArn=execution)
            if description["status"] != "RUNNING":
                return description
            time.sleep(POLL_SECONDS)

    def history(self, execution: str) -> list[dict[str, Any]]:
        events: list[dict[str, Any]] = []
        paginator = self.sfn.get_paginator("get_execution_history")
        for page in paginator.paginate(executionArn=execution):
            events.extend(page["events"])
        return events

    def _record(self, execution: str) -> dict[str, Any]:
        """The RetrainResult of the execution's last Record / RecordFailure state ({} if none ran)."""
        for event in reversed(self.history(execution)):
            details = event.get("stateExitedEventDetails")
            if details and details.get("name") in RECORD_STATES:
                result = json.loads(details.get("output") or "{}").get("record", {}).get("result")
                if isinstance(result, dict):
                    return result
        return {}

    def stop(self) -> None:
        self.jobs.stop()
