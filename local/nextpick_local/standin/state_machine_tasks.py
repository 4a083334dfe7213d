"""The SageMaker and Batch `.sync` tasks of moto's ASL interpreter, run by the stand-in's local jobs
(training_jobs.py) instead of AWS: moto_patches.stepfunctions_local_tasks installs them.

As on AWS, the task starts the job, then polls it until it ends: `Completed` / `SUCCEEDED` is the task's
output (the job's description), `Failed` / `FAILED` fails the task with `States.TaskFailed` and the
description as the cause, which the state machine's Catch sends down its failure path."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from moto.stepfunctions.parser.api import HistoryEventType, TaskFailedEventDetails
from moto.stepfunctions.parser.asl.component.common.error_name.failure_event import (
    FailureEvent,
    FailureEventException,
)
from moto.stepfunctions.parser.asl.component.common.error_name.states_error_name import StatesErrorName
from moto.stepfunctions.parser.asl.component.common.error_name.states_error_name_type import (
    StatesErrorNameType,
)
from moto.stepfunctions.parser.asl.component.state.exec.state_task.service.resource import ResourceCondition
from moto.stepfunctions.parser.asl.component.state.exec.state_task.service.state_task_service_callback import (
    StateTaskServiceCallback,
)
from moto.stepfunctions.parser.asl.eval.event.event_detail import EventDetails
from moto.stepfunctions.parser.asl.utils.encoding import to_json_str

# WaitForTaskToken only because moto's callback machinery expects an endpoint; the ASL uses .sync.
_PATTERNS: set[ResourceCondition] = {ResourceCondition.Sync, ResourceCondition.WaitForTaskToken}  # type: ignore[arg-type]


class _LocalJobTask(StateTaskServiceCallback):
    # (status of a finished job that succeeded, statuses of one that did not), per service.
    succeeded: str = ""
    failed: frozenset[str] = frozenset()
    status_key: str = ""

    def __init__(self, tasks: Callable[[], Any]) -> None:
        super().__init__(supported_integration_patterns=_PATTERNS)
        self._tasks = tasks

    def _get_supported_parameters(self) -> set[str] | None:
        return set()  # any parameter: the local job reads what it needs

    def _start(self, parameters: dict[str, Any]) -> dict[str, Any]:
        raise NotImplementedError

    def _describe(self, started: dict[str, Any]) -> dict[str, Any]:
        raise NotImplementedError

    def _eval_service_task(
        self,
        env: Any,
        resource_runtime_part: Any,
        normalised_parameters: dict[str, Any],
        state_credentials: Any,
    ) -> None:
        env.stack.append(self._start(normalised_parameters))

    def _build_sync_resolver(
        self,
        env: Any,
        resource_runtime_part: Any,
        normalised_parameters: dict[str, Any],
        state_credentials: Any,
    ) -> Callable[[], Any]:
        started: dict[str, Any] = env.stack.pop()

        def resolve() -> dict[str, Any] | None:
            job = self._describe(started)
            status = job[self.status_key]
            if status == self.succeeded:
                return job
            if status in self.failed:
                error = StatesErrorNameType.StatesTaskFailed.to_name()
                raise FailureEventException(
                    FailureEvent(
                        env=env,
                        error_name=StatesErrorName(typ=StatesErrorNameType.StatesTaskFailed),
                        event_type=HistoryEventType.TaskFailed,
                        event_details=EventDetails(  # type: ignore[typeddict-item]
                            taskFailedEventDetails=TaskFailedEventDetails(
                                resource=self._get_sfn_resource(),
                                resourceType=self._get_sfn_resource_type(),
                                error=error,
                                cause=to_json_str(job),
                            )
                        ),
                    )
                )
            return None

        return resolve


class LocalSageMakerTask(_LocalJobTask):
    """`arn:aws:states:::sagemaker:createTrainingJob.sync`."""

    succeeded = "Completed"
    failed = frozenset({"Failed", "Stopped"})
    status_key = "TrainingJobStatus"

    def _start(self, parameters: dict[str, Any]) -> dict[str, Any]:
        answer: dict[str, Any] = self._tasks().start_training_job(parameters)
        return answer

    def _describe(self, started: dict[str, Any]) -> dict[str, Any]:
        name = str(started["TrainingJobArn"]).rsplit("/", 1)[-1]
        answer: dict[str, Any] = self._tasks().describe_training_job(name)
        return answer


class LocalBatchTask(_LocalJobTask):
    """`arn:aws:states:::batch:submitJob.sync`."""

    succeeded = "SUCCEEDED"
    failed = frozenset({"FAILED"})
    status_key = "Status"

    def _start(self, parameters: dict[str, Any]) -> dict[str, Any]:
        answer: dict[str, Any] = self._tasks().submit_job(parameters)
        return answer

    def _describe(self, started: dict[str, Any]) -> dict[str, Any]:
        answer: dict[str, Any] = self._tasks().describe_job(str(started["JobId"]))
        return answer


def local_sdk_call(
    tasks: Any, service: str, action: str, parameters: dict[str, Any]
) -> dict[str, Any] | None:
    """An `aws-sdk:` task the stand-in answers itself (the functions live in the stand-in, not in moto's
    Lambda); None = moto answers it."""
    if service == "lambda" and action == "getFunction":
        answer: dict[str, Any] = tasks.get_function(str(parameters["FunctionName"]))
        return answer
    return None
