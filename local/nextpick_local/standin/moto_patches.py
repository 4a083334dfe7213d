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
