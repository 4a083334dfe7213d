"""What moto's CloudFormation leaves out, created through the services' APIs with the values moto
resolved: the Firehose delivery stream (no model in moto), point-in-time recovery and time to live on
tables, versioning and the public access block on buckets."""

from __future__ import annotations

from collections.abc import Mapping
from functools import partial
from typing import Any

from botocore.exceptions import ClientError

from nextpick_local.standin.template import TemplateError


def _ignore_existing(create: Any, *codes: str) -> None:
    """Create a resource; one left by an earlier run of the same stack (same name) is reused."""
    try:
        create()
    except ClientError as error:
        if error.response.get("Error", {}).get("Code") not in codes:
            raise


def create_delivery_stream(firehose: Any, name: str, properties: Mapping[str, Any]) -> None:
    destination = properties.get("ExtendedS3DestinationConfiguration")
    if destination is None:
        raise TemplateError(f"delivery stream {name}: only ExtendedS3DestinationConfiguration is supported")
    request: dict[str, Any] = {
        "DeliveryStreamName": name,
        "DeliveryStreamType": properties.get("DeliveryStreamType", "DirectPut"),
        # CloudFormation's and the API's shapes agree on these keys.
        "ExtendedS3DestinationConfiguration": {
            key: destination[key]
            for key in (
                "RoleARN",
                "BucketARN",
                "Prefix",
                "ErrorOutputPrefix",
                "BufferingHints",
                "CompressionFormat",
            )
            if key in destination
        },
    }
    if "DeliveryStreamEncryptionConfigurationInput" in properties:
        request["DeliveryStreamEncryptionConfigurationInput"] = properties[
            "DeliveryStreamEncryptionConfigurationInput"
        ]
    _ignore_existing(partial(firehose.create_delivery_stream, **request), "ResourceInUseException")


def complete_table(dynamodb: Any, name: str, properties: Mapping[str, Any]) -> None:
    """What moto's CloudFormation leaves out of a table: point-in-time recovery and time to live."""
    if properties.get("PointInTimeRecoverySpecification", {}).get("PointInTimeRecoveryEnabled"):
        dynamodb.update_continuous_backups(
            TableName=name, PointInTimeRecoverySpecification={"PointInTimeRecoveryEnabled": True}
        )
    ttl = properties.get("TimeToLiveSpecification")
    if ttl and ttl.get("Enabled"):
        dynamodb.update_time_to_live(
            TableName=name, TimeToLiveSpecification={"Enabled": True, "AttributeName": ttl["AttributeName"]}
        )


def complete_bucket(s3: Any, name: str, properties: Mapping[str, Any]) -> None:
    """What moto's CloudFormation leaves out of a bucket: versioning and the public access block."""
    versioning = properties.get("VersioningConfiguration")
    if versioning:
        s3.put_bucket_versioning(Bucket=name, VersioningConfiguration={"Status": versioning["Status"]})
    public_access = properties.get("PublicAccessBlockConfiguration")
    if public_access:
        s3.put_public_access_block(Bucket=name, PublicAccessBlockConfiguration=public_access)
