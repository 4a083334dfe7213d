"""The AWS quotas the capacity model (bench.capacity, docs/capacity.md) checks against: documented
defaults, each with its page. Most are raised on request; the report says which."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Quota:
    value: float
    unit: str
    source: str


QUOTAS = {
    "lambda_concurrency": Quota(
        1_000,
        "concurrent executions per account and region (default, raised on request)",
        "https://docs.aws.amazon.com/lambda/latest/dg/lambda-concurrency.html",
    ),
    "lambda_scaling": Quota(
        1_000,
        "new concurrent executions per function every 10 s",
        "https://docs.aws.amazon.com/lambda/latest/dg/scaling-behavior.html",
    ),
    "ddb_partition_wcu": Quota(
        1_000,
        "write units per second per partition (one partition key: one shopper)",
        "https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/bp-partition-key-design.html",
    ),
    "ddb_partition_rcu": Quota(
        3_000,
        "read units per second per partition",
        "https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/bp-partition-key-design.html",
    ),
    "ddb_table_wru": Quota(
        40_000,
        "on-demand write request units per second per table (default, raised on request)",
        "https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/ServiceQuotas.html",
    ),
    "ddb_table_rru": Quota(
        40_000,
        "on-demand read request units per second per table (default, raised on request)",
        "https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/ServiceQuotas.html",
    ),
    "api_account_rps": Quota(
        10_000,
        "requests per second per account and region, REST and HTTP APIs together (raised on request)",
        "https://docs.aws.amazon.com/apigateway/latest/developerguide/limits.html",
    ),
    "api_account_burst": Quota(
        5_000,
        "burst (token bucket) per account and region",
        "https://docs.aws.amazon.com/apigateway/latest/developerguide/limits.html",
    ),
    "kinesis_shard_records": Quota(
        1_000,
        "records per second written per shard",
        "https://docs.aws.amazon.com/streams/latest/dev/service-sizes-and-limits.html",
    ),
    "kinesis_shard_bytes": Quota(
        1_048_576,
        "bytes per second written per shard",
        "https://docs.aws.amazon.com/streams/latest/dev/service-sizes-and-limits.html",
    ),
    "kinesis_ondemand_initial_records": Quota(
        4_000,
        "records per second an on-demand stream takes at creation (then up to twice its peak of the "
        "last 30 days, up to 200 MiB/s)",
        "https://docs.aws.amazon.com/streams/latest/dev/how-do-i-size-a-stream.html",
    ),
    "firehose_records": Quota(
        500_000,
        "records per second per direct-put stream in us-east-1, us-west-2, eu-west-1 (100,000 elsewhere)",
        "https://docs.aws.amazon.com/firehose/latest/dev/limits.html",
    ),
    "firehose_requests": Quota(
        2_000,
        "PutRecordBatch requests per second per stream in those regions (1,000 elsewhere)",
        "https://docs.aws.amazon.com/firehose/latest/dev/limits.html",
    ),
    "firehose_bytes": Quota(
        5 * 1_048_576,
        "bytes per second per stream in those regions (1 MiB/s elsewhere)",
        "https://docs.aws.amazon.com/firehose/latest/dev/limits.html",
    ),
    "eventbridge_putevents": Quota(
        10_000,
        "PutEvents requests per second in us-east-1 (fewer in smaller regions), up to 10 entries each",
        "https://docs.aws.amazon.com/eventbridge/latest/userguide/eb-quota.html",
    ),
}
