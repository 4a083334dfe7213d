"""The places where the stand-in changes moto's internals - the reason moto is pinned exactly in
pyproject.toml. Each patch is idempotent and says what real AWS does that moto does not."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any, Protocol


def cloudformation_refs() -> None:
    """`!Ref` of an AWS::Events::EventBus is its name in CloudFormation; moto's EventBus model has no
    physical resource id, so its CloudFormation hands the model object itself to whatever refers to
    the bus (a rule's EventBusName, an output) and fails."""
    from moto.events.models import EventBus

    if not hasattr(EventBus, "physical_resource_id"):

        def physical_resource_id(self: Any) -> str:
            return str(self.name)

        EventBus.physical_resource_id = property(physical_resource_id)  # type: ignore[attr-defined]


def log_group_keys() -> None:
    """CloudFormation encrypts an AWS::Logs::LogGroup with its `KmsKeyId`; moto's CloudFormation hands
    the template's property names to `create_log_group`, which reads the API's `kmsKeyId`, so the key
    was dropped and every group looked unencrypted."""
    from moto.logs.models import LogGroup

    if getattr(LogGroup, "_nextpick_reads_kms_key_id", False):
        return
    original = LogGroup.create_from_cloudformation_json.__func__  # type: ignore[attr-defined]

    def create(cls: Any, resource_name: str, cloudformation_json: Any, *args: Any, **kwargs: Any) -> Any:
        properties = cloudformation_json.get("Properties", {})
        if "KmsKeyId" in properties:
            properties = {**properties, "kmsKeyId": properties["KmsKeyId"]}
            cloudformation_json = {**cloudformation_json, "Properties": properties}
        return original(cls, resource_name, cloudformation_json, *args, **kwargs)

    LogGroup.create_from_cloudformation_json = classmethod(create)  # type: ignore[method-assign,assignment]
    LogGroup._nextpick_reads_kms_key_id = True  # type: ignore[attr-defined]


def firehose_prefixes() -> None:
    """moto writes `!{timestamp:yyyy}` into keys literally; real Firehose evaluates it, and the retrain
    job's reader prunes old partitions by those values. Replace moto's key builder with Firehose's."""
    from moto.firehose.models import FirehoseBackend

    from nextpick_local.standin.firehose import firehose_object_key

    def object_path(delivery_stream_name: str, version_id: str, prefix: str) -> str:
        return firehose_object_key(delivery_stream_name, version_id, prefix, datetime.now(UTC))

    FirehoseBackend._format_s3_object_path = staticmethod(object_path)  # type: ignore[method-assign]


def firehose_record_format_conversion() -> None:
    """A delivery stream whose S3 destination enables DataFormatConversionConfiguration writes Parquet
    (issue 14): real Firehose converts each record (one JSON document) to a row of the Glue table and
    names the object with the destination's FileExtension; moto stores the JSON as sent. The rows take
    the columns of `nextpick.domain.log_schema`, which tests/integration/test_event_log_schema.py
    checks are the template's Glue table's (moto's CloudFormation does not create Glue tables)."""
    from moto.firehose.models import FirehoseBackend

    if getattr(FirehoseBackend, "_nextpick_converts_records", False):
        return
    original = FirehoseBackend.put_s3_records

    def put_s3_records(
        self: Any,
        delivery_stream_name: str,
        version_id: str,
        s3_destination: dict[str, Any],
        records: list[dict[str, bytes]],
    ) -> list[dict[str, str]]:
        conversion = s3_destination.get("DataFormatConversionConfiguration") or {}
        if not conversion.get("Enabled"):
            return original(self, delivery_stream_name, version_id, s3_destination, records)
        from moto.moto_api._internal import mock_random
        from moto.s3.models import s3_backends

        from nextpick_training.parquet_log import json_lines_to_parquet

        # One JSON document per record: a record holding several would not convert on AWS either.
        body = json_lines_to_parquet(b"\n".join(r["Data"].rstrip(b"\n") for r in records))
        if body is not None:
            key = self._format_s3_object_path(
                delivery_stream_name, version_id, s3_destination.get("Prefix", "")
            ) + str(s3_destination.get("FileExtension", ""))
            bucket = s3_destination["BucketARN"].split(":")[-1]
            s3_backends[self.account_id][self.partition].put_object(bucket, key, body)
        return [{"RecordId": str(mock_random.uuid4())} for _ in records]

    FirehoseBackend.put_s3_records = put_s3_records  # type: ignore[method-assign]
    FirehoseBackend._nextpick_converts_records = True  # type: ignore[attr-defined]


class LocalTasks(Protocol):
    """What the state machine's tasks reach locally instead of Lambda, SageMaker and Batch (moto would run
    Lambda functions and Batch jobs in Docker, and has no SageMaker .sync integration at all)."""

    def invoke(self, function_name: str, event: Any) -> tuple[Any, str | None]:
        """The function's answer and, if it failed, its error type (the answer then is Lambda's error
        payload, {"errorType", "errorMessage"})."""

    def get_function(self, function_name: str) -> dict[str, Any]: ...

    def start_training_job(self, parameters: dict[str, Any]) -> dict[str, Any]: ...

    def describe_training_job(self, name: str) -> dict[str, Any]: ...

    def submit_job(self, parameters: dict[str, Any]) -> dict[str, Any]: ...

    def describe_job(self, job_id: str) -> dict[str, Any]: ...


# The stand-in's tasks the patched interpreter calls (one local stack per process).
_local_tasks: list[LocalTasks] = []


def _tasks() -> LocalTasks:
    if not _local_tasks:
        raise RuntimeError("no local tasks registered: call moto_patches.stepfunctions_local_tasks first")
    return _local_tasks[0]


def stepfunctions_local_tasks(tasks: LocalTasks) -> None:
    """Run state machines with moto's ASL interpreter (a port of LocalStack's), but with the stand-in's
    tasks: a `lambda:invoke` task calls the stand-in's invoker (real Lambda runs the function; moto
    would start a Docker container), `sagemaker:createTrainingJob.sync` and `batch:submitJob.sync` run the
    training container's entry in a local process (training_jobs.py; moto has no SageMaker integration
    and would run Batch in Docker), and `aws-sdk:lambda:getFunction` answers the function's image.
    Everything else (Pass, Choice, Retry, Catch, intrinsics, events:putEvents on moto's bus) is moto's."""
    from moto.core.config import default_user_config

    default_user_config.setdefault("stepfunctions", {})["execute_state_machine"] = True
    _local_tasks[:] = [tasks]
    from moto.stepfunctions.parser.asl.component.state.exec.state_task import lambda_eval_utils
    from moto.stepfunctions.parser.asl.component.state.exec.state_task.service import (
        state_task_service_aws_sdk,
        state_task_service_factory,
    )

    if getattr(lambda_eval_utils, "_nextpick_local", False):
        return
    from nextpick_local.standin.state_machine_tasks import (
        LocalBatchTask,
        LocalSageMakerTask,
        local_sdk_call,
    )

    def invoke_lambda(parameters: dict[str, Any], region: str, state_credentials: Any) -> dict[str, Any]:
        payload = parameters.get("Payload")
        event = json.loads(payload) if isinstance(payload, bytes | str) and payload else (payload or {})
        answer, error = _tasks().invoke(str(parameters["FunctionName"]), event)
        response: dict[str, Any] = {"StatusCode": 200, "Payload": answer, "ExecutedVersion": "$LATEST"}
        if error is not None:
            response["FunctionError"] = "Unhandled"
        return response

    lambda_eval_utils._invoke_lambda_function = invoke_lambda
    original_for = state_task_service_factory.state_task_service_for

    def service_for(service_name: str) -> Any:
        if service_name == "sagemaker":
            return LocalSageMakerTask(_tasks)
        if service_name == "batch":
            return LocalBatchTask(_tasks)
        return original_for(service_name)

    from moto.stepfunctions.parser.asl.component.state.exec.state_task import state_task_factory

    state_task_factory.state_task_service_for = service_for
    sdk = state_task_service_aws_sdk.StateTaskServiceAwsSdk
    original_sdk = sdk._eval_service_task

    def eval_sdk(
        self: Any,
        env: Any,
        resource_runtime_part: Any,
        normalised_parameters: dict[str, Any],
        state_credentials: Any,
    ) -> None:
        resource = self.resource
        answer = local_sdk_call(_tasks(), resource.api_name, resource.api_action, normalised_parameters)
        if answer is None:
            original_sdk(self, env, resource_runtime_part, normalised_parameters, state_credentials)
        else:
            env.stack.append(answer)

    sdk._eval_service_task = eval_sdk  # type: ignore[method-assign]
    lambda_eval_utils._nextpick_local = True  # type: ignore[attr-defined]
