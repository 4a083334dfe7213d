"""The places where the stand-in changes moto's internals - the reason moto is pinned exactly in
pyproject.toml. Each patch is idempotent and says what real AWS does that moto does not."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any


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
