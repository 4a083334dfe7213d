"""What every IAM principal of template.yaml may do: the one list to edit when a function or a call is
added (test_least_privilege.py holds the template to it, and it to the calls the code makes).

One entry per function (by its logical id: the role it runs with is found through `Role`) and per role
no function uses (by the role's logical id). A grant is one (action, resource[, condition]). Resources
are named by logical id, as the template names them:

    "StateTable"              !GetAtt StateTable.Arn
    "ModelBucket/models/*"    !Sub "${ModelBucket.Arn}/models/*"   (a key prefix of the bucket)
    "StateTable/stream/*"     !Sub "${StateTable.Arn}/stream/*"    (the table's streams)
    "*"                       every resource (only where the service has no resource-level permission)

A grant the code never exercises in the recorded flows says why it is there anyway (`unrecorded`):
the service calls it on the function's behalf, or a path the flows do not reach needs it."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from nextpick_training.publish import EVENT_DETAIL_TYPE, EVENT_SOURCE


@dataclass(frozen=True)
class Grant:
    action: str
    resource: str
    # Canonical JSON of the statement's Condition block (None: unconditional).
    condition: str | None = None
    # Why the grant stays although the recorded flows never make this call (None: they do).
    unrecorded: str | None = field(default=None, compare=False)

    @property
    def key(self) -> tuple[str, str, str | None]:
        return self.action, self.resource, self.condition


@dataclass(frozen=True)
class Principal:
    grants: tuple[Grant, ...]
    # AWS managed policies attached to the role: ARN -> why (their statements live outside the template).
    managed_policies: Mapping[str, str] = field(default_factory=dict)


def _sub(text: str) -> str:
    """A resource the template writes as `!Sub` (no logical id to name it by), as the test names it."""
    return json.dumps({"Fn::Sub": text}, sort_keys=True)


_GLUE = "arn:${AWS::Partition}:glue:${AWS::Region}:${AWS::AccountId}:"
# The event log's Glue catalog, database and table, and its Athena workgroup (issue 14).
EVENT_LOG_GLUE = (
    _sub(_GLUE + "catalog"),
    _sub(_GLUE + "database/${EventLogDatabaseName}"),
    _sub(_GLUE + "table/${EventLogDatabaseName}/events"),
)
EVENT_LOG_WORK_GROUP = _sub(
    "arn:${AWS::Partition}:athena:${AWS::Region}:${AWS::AccountId}:workgroup/${AWS::StackName}-event-log"
)


def condition(block: Mapping[str, Any]) -> str:
    return json.dumps(block, sort_keys=True)


def grants(
    actions: Iterable[str],
    resources: Iterable[str],
    when: Mapping[str, Any] | None = None,
    unrecorded: str | None = None,
) -> tuple[Grant, ...]:
    """Every action on every resource, under one condition."""
    block = condition(when) if when is not None else None
    return tuple(Grant(a, r, block, unrecorded) for a in actions for r in resources)


# S3 refuses the PutObject unless it carries If-None-Match (creates, never overwrites) / If-Match (swaps).
CREATE_ONLY = {"Null": {"s3:if-none-match": "false"}}
COMPARE_AND_SWAP = {"Null": {"s3:if-match": "false"}}
MODEL_PUBLISHED = {"StringEquals": {"events:source": EVENT_SOURCE, "events:detail-type": EVENT_DETAIL_TYPE}}

LIST_FOR_404 = (
    "S3 answers a GetObject of a missing key (no model published yet) with 403 instead of 404 without "
    "it; the recorded flows only list on the serving fallback path (models/history/)"
)


def _runtime(log_group: str) -> tuple[Grant, ...]:
    """What Lambda itself does with the function's role: its log lines and its trace segments."""
    return (
        *grants(
            ["logs:CreateLogStream", "logs:PutLogEvents"],
            [log_group],
            unrecorded="Lambda writes the function's output to its own log group with the role",
        ),
        *grants(
            ["xray:PutTraceSegments", "xray:PutTelemetryRecords"],
            ["*"],
            unrecorded="Lambda's X-Ray daemon sends the traces; X-Ray has no resource-level permissions",
        ),
    )


def _stream(table: str, queue: str) -> tuple[Grant, ...]:
    """A DynamoDB stream's event source mapping: it reads the stream and parks failed batches as the
    function."""
    return (
        *grants(
            [
                "dynamodb:DescribeStream",
                "dynamodb:GetRecords",
                "dynamodb:GetShardIterator",
                "dynamodb:ListStreams",
            ],
            [f"{table}/stream/*"],
            unrecorded="Lambda's event source mapping reads the stream with the function's role",
        ),
        *grants(
            ["sqs:SendMessage"], [queue], unrecorded="the mapping's on-failure destination, sent by Lambda"
        ),
    )


_READ_MODELS = (
    *grants(["s3:GetObject"], ["ModelBucket/models/*"]),
    *grants(["s3:ListBucket"], ["ModelBucket"], unrecorded=LIST_FOR_404),
)
_PUBLISH = (
    *grants(["s3:PutObject"], ["ModelBucket/models/*"], CREATE_ONLY),
    *grants(["s3:PutObject"], ["ModelBucket/models/current.json"], COMPARE_AND_SWAP),
    *grants(["events:PutEvents"], ["NextpickBus"], MODEL_PUBLISHED),
)

ALLOW_LIST: dict[str, Principal] = {
    "ApiFunction": Principal(
        (
            *grants(["dynamodb:GetItem", "dynamodb:PutItem"], ["StateTable"]),
            *grants(["dynamodb:Scan", "dynamodb:BatchWriteItem"], ["ItemsTable"]),
            *_READ_MODELS,
            *grants(["s3:GetObject"], ["ModelBucket/catalog/*"]),
            *grants(["s3:GetObject", "s3:PutObject", "s3:DeleteObject"], ["ModelBucket/rules/*"]),
            *grants(["dynamodb:BatchGetItem"], ["TrendingTable"]),
            # Every answer's impression (docs/attribution.md).
            *grants(["firehose:PutRecordBatch"], ["EventLogStream"]),
            *_runtime("ApiLogGroup"),
        )
    ),
    "BusEventFunction": Principal(
        (
            *grants(["dynamodb:GetItem", "dynamodb:PutItem"], ["StateTable"]),
            *grants(["dynamodb:BatchWriteItem"], ["ItemsTable"]),
            *_READ_MODELS,
            *grants(
                ["sqs:SendMessage"],
                ["BusDeadLetterQueue"],
                unrecorded="the asynchronous invocation's on-failure destination, sent by Lambda",
            ),
            *_runtime("BusEventLogGroup"),
        )
    ),
    "StreamEventFunction": Principal(
        (
            *grants(
                [
                    "kinesis:DescribeStream",
                    "kinesis:DescribeStreamSummary",
                    "kinesis:GetRecords",
                    "kinesis:GetShardIterator",
                    "kinesis:ListShards",
                ],
                ["EventStream"],
                unrecorded="Lambda's event source mapping reads the stream with the function's role",
            ),
            *grants(["dynamodb:GetItem", "dynamodb:PutItem"], ["StateTable"]),
            *_READ_MODELS,
            # The function parks poison records; Lambda sends failed batches' positions (on-failure).
            *grants(["sqs:SendMessage"], ["StreamDeadLetterQueue"]),
            *_runtime("StreamEventLogGroup"),
        )
    ),
    "EventLogShipperFunction": Principal(
        (
            *grants(["firehose:PutRecordBatch"], ["EventLogStream"]),
            *_stream("StateTable", "EventLogFailureQueue"),
            *grants(["dynamodb:UpdateItem", "dynamodb:PutItem"], ["TrendingTable"]),
            *grants(
                ["dynamodb:GetItem"],
                ["TrendingTable"],
                unrecorded="asked only of a full hour bucket (docs/trending.md, the per-bucket cap)",
            ),
            *_runtime("EventLogShipperLogGroup"),
        )
    ),
    "RetrainFunction": Principal(
        (
            *grants(["s3:ListBucket"], ["ModelBucket"]),
            *grants(["s3:GetObject"], ["ModelBucket/events/*", "ModelBucket/models/*"]),
            *grants(["s3:PutObject"], ["ModelBucket/models/*", "ModelBucket/runs/*"], CREATE_ONLY),
            *grants(["s3:PutObject"], ["ModelBucket/models/current.json"], COMPARE_AND_SWAP),
            *grants(["events:PutEvents"], ["NextpickBus"], MODEL_PUBLISHED),
            *grants(["dynamodb:Scan"], ["ItemsTable"]),
            # The window query on Athena (issue 14).
            *grants(
                ["athena:StartQueryExecution", "athena:GetQueryExecution", "athena:GetQueryResults"],
                [EVENT_LOG_WORK_GROUP],
            ),
            *grants(
                ["athena:StopQueryExecution"],
                [EVENT_LOG_WORK_GROUP],
                unrecorded="only a query still running at the adapter's 600 s deadline is stopped "
                "(tests/integration/test_athena_window.py runs that path)",
            ),
            *grants(
                ["glue:GetDatabase", "glue:GetTable", "glue:GetPartitions"],
                EVENT_LOG_GLUE,
                unrecorded="Athena reads the table's definition with the caller's rights",
            ),
            *grants(
                ["s3:GetObject", "s3:PutObject", "s3:AbortMultipartUpload", "s3:ListMultipartUploadParts"],
                ["ModelBucket/athena-results/*"],
                unrecorded="Athena writes the query's results to the workgroup's location with the "
                "caller's rights",
            ),
            *grants(
                ["s3:GetBucketLocation", "s3:ListBucketMultipartUploads"],
                ["ModelBucket"],
                unrecorded="Athena locates the log's and the results' bucket with the caller's rights",
            ),
            # The steps hand over through the run folder (issue 14); record deletes the window copy.
            *grants(["s3:GetObject", "s3:PutObject", "s3:DeleteObject"], ["ModelBucket/training-runs/*"]),
            *_runtime("RetrainLogGroup"),
        )
    ),
    "CatalogRefreshFunction": Principal(
        (
            *grants(["s3:GetObject"], ["ModelBucket/models/*"]),
            *grants(
                ["s3:ListBucket"],
                ["ModelBucket"],
                unrecorded="a missing pointer must read as 404 (refresh skipped), not 403 (every batch "
                "retried, then dead-lettered); the recorded refresh runs with a model live",
            ),
            *_PUBLISH,
            *_stream("ItemsTable", "CatalogRefreshFailureQueue"),
            *_runtime("CatalogRefreshLogGroup"),
        )
    ),
    # The catalog artifact's only writer (docs/catalog-artifact.md).
    "CatalogArtifactFunction": Principal(
        (
            *grants(["s3:GetObject"], ["ModelBucket/catalog/*"]),
            *grants(
                ["s3:ListBucket"],
                ["ModelBucket"],
                unrecorded="a missing pointer must read as 404 (bootstrap from the table), not 403; the "
                "botocore hook sees the GetObject, not this permission",
            ),
            *grants(["s3:PutObject"], ["ModelBucket/catalog/*"], CREATE_ONLY),
            *grants(["s3:PutObject"], ["ModelBucket/catalog/current.json"], COMPARE_AND_SWAP),
            *grants(["dynamodb:Scan"], ["ItemsTable"]),
            *_stream("ItemsTable", "CatalogArtifactFailureQueue"),
            *_runtime("CatalogArtifactLogGroup"),
        )
    ),
    "AuthorizerFunction": Principal(
        (
            *grants(["secretsmanager:GetSecretValue"], ["AuthSecret"]),
            *_runtime("AuthorizerLogGroup"),
        )
    ),
    # The only writer of events/ besides Firehose: it rewrites objects and deletes their old versions.
    "EventLogCompactionFunction": Principal(
        (
            *grants(["s3:ListBucketVersions"], ["ModelBucket"]),
            *grants(
                ["s3:ListBucket"],
                ["ModelBucket"],
                unrecorded="S3 answers a GetObject of the missing checkpoint (the first run) with 403 "
                "instead of 404 without it; the botocore hook sees the GetObject, not this permission",
            ),
            *grants(
                ["s3:GetObjectVersion", "s3:PutObject", "s3:DeleteObjectVersion"], ["ModelBucket/events/*"]
            ),
            *grants(
                ["s3:GetObjectVersion", "s3:PutObject", "s3:DeleteObjectVersion"],
                ["ModelBucket/events-errors/*"],
                unrecorded="Firehose's error output (events-errors/) is compacted like events/; it only "
                "exists after a failed delivery, which the recorded flows do not cause",
            ),
            *grants(["s3:GetObject", "s3:PutObject"], ["ModelBucket/runs/compaction/*"]),
            *_runtime("EventLogCompactionLogGroup"),
        )
    ),
    # `nextpick report` on a schedule (docs/attribution.md): reads the log, writes reports/.
    "OnlineReportFunction": Principal(
        (
            *grants(["s3:ListBucket"], ["ModelBucket"]),
            *grants(["s3:GetObject"], ["ModelBucket/events/*"]),
            *grants(["s3:PutObject"], ["ModelBucket/reports/*"]),
            *_runtime("OnlineReportLogGroup"),
        )
    ),
    # The retrain's state machine (issue 14, docs/retrain.md "Engines and the state machine"): Step Functions
    # calls these with the role; statemachine/retrain.asl.json's tasks and tests/integration/
    # test_retrain_state_machine.py (every task's resource is granted) say which.
    "RetrainStateMachineRole": Principal(
        (
            *grants(
                ["lambda:InvokeFunction"],
                ["RetrainFunction"],
                unrecorded="the Query/Train/Evaluate/Publish/Record tasks invoke the steps",
            ),
            *grants(
                ["lambda:GetFunction"],
                ["RetrainFunction"],
                unrecorded="LocateImage: the training job runs RetrainFunction's own image",
            ),
            *grants(
                ["sagemaker:CreateTrainingJob", "sagemaker:DescribeTrainingJob", "sagemaker:StopTrainingJob"],
                [
                    _sub(
                        "arn:${AWS::Partition}:sagemaker:${AWS::Region}:${AWS::AccountId}:"
                        "training-job/nextpick-*"
                    )
                ],
                unrecorded="TrainOnSageMaker (.sync: create, watch, stop when the execution stops)",
            ),
            *grants(
                ["iam:PassRole"],
                ["TrainingJobRole"],
                {"StringEquals": {"iam:PassedToService": "sagemaker.amazonaws.com"}},
                unrecorded="CreateTrainingJob hands the job its execution role",
            ),
            *grants(
                ["batch:SubmitJob"],
                [
                    _sub("arn:${AWS::Partition}:batch:${AWS::Region}:${AWS::AccountId}:job-queue/*"),
                    _sub(
                        "arn:${AWS::Partition}:batch:${AWS::Region}:${AWS::AccountId}:"
                        "job-definition/${AWS::StackName}-training*"
                    ),
                ],
                unrecorded="TrainOnBatch submits to the training queue with the training job definition",
            ),
            *grants(
                ["batch:DescribeJobs", "batch:TerminateJob"],
                [_sub("arn:${AWS::Partition}:batch:${AWS::Region}:${AWS::AccountId}:job/*")],
                unrecorded="TrainOnBatch (.sync: watch, stop when the execution stops)",
            ),
            *grants(
                ["events:PutTargets", "events:PutRule", "events:DescribeRule"],
                [
                    _sub(
                        "arn:${AWS::Partition}:events:${AWS::Region}:${AWS::AccountId}:rule/"
                        f"StepFunctionsGetEventsFor{service}"
                    )
                    for service in ("SageMakerTrainingJobsRule", "BatchJobsRule")
                ],
                unrecorded="the .sync integrations learn a job's end from these rules Step Functions manages",
            ),
            *grants(
                ["events:PutEvents"],
                ["NextpickBus"],
                {"StringEquals": {"events:source": EVENT_SOURCE, "events:detail-type": "RetrainFinished"}},
                unrecorded="Notify / NotifyFailure announce the run's end",
            ),
        )
    ),
    # SAM's role for the state machine's Schedule event: EventBridge starts the executions with it.
    "RetrainStateMachineScheduleRole": Principal(
        grants(
            ["states:StartExecution"],
            ["RetrainStateMachine"],
            unrecorded="EventBridge starts the scheduled execution with this role",
        )
    ),
    # The retrain image as a SageMaker training job or a Batch job (execution and job role).
    "TrainingJobRole": Principal(
        (
            *grants(
                ["s3:ListBucket"],
                ["ModelBucket"],
                {"StringLike": {"s3:prefix": ["training-runs/*", "models/*"]}},
                unrecorded="train_job lists its run's checkpoints",
            ),
            *grants(
                ["s3:GetObject", "s3:PutObject", "s3:DeleteObject"],
                ["ModelBucket/training-runs/*"],
                unrecorded="train_job reads the window, writes the candidate and its checkpoints; SageMaker "
                "syncs /opt/ml/checkpoints with the role",
            ),
            *grants(
                ["s3:GetObject"], ["ModelBucket/models/*"], unrecorded="train_job may read the live model"
            ),
            *grants(
                ["ecr:GetAuthorizationToken"],
                ["*"],
                unrecorded="SageMaker / Fargate pull the image with the role; no resource-level permission",
            ),
            *grants(
                ["ecr:BatchGetImage", "ecr:GetDownloadUrlForLayer", "ecr:BatchCheckLayerAvailability"],
                [_sub("arn:${AWS::Partition}:ecr:${AWS::Region}:${AWS::AccountId}:repository/*")],
                unrecorded="SageMaker / Fargate pull the image with the role",
            ),
            *grants(
                [
                    "logs:CreateLogGroup",
                    "logs:CreateLogStream",
                    "logs:PutLogEvents",
                    "logs:DescribeLogStreams",
                ],
                [
                    _sub(
                        "arn:${AWS::Partition}:logs:${AWS::Region}:${AWS::AccountId}:log-group:"
                        "/aws/sagemaker/TrainingJobs:*"
                    ),
                    _sub(
                        "arn:${AWS::Partition}:logs:${AWS::Region}:${AWS::AccountId}:log-group:"
                        "/nextpick/${AWS::StackName}/training-jobs:*"
                    ),
                ],
                unrecorded="SageMaker / the awslogs driver write the job's output with the role",
            ),
            *grants(
                ["cloudwatch:PutMetricData"],
                ["*"],
                {"StringEquals": {"cloudwatch:namespace": ["/aws/sagemaker/TrainingJobs", "Nextpick"]}},
                unrecorded="SageMaker's instance metrics; PutMetricData has no resource-level permission",
            ),
        )
    ),
    # Firehose's S3 destination (AWS documents these actions); Firehose, not nextpick's code, calls them.
    "EventLogDeliveryRole": Principal(
        (
            *grants(
                ["s3:AbortMultipartUpload", "s3:PutObject"],
                ["ModelBucket/events/*", "ModelBucket/events-errors/*"],
                unrecorded="Firehose delivers the event log with this role",
            ),
            *grants(
                ["s3:GetBucketLocation", "s3:ListBucket", "s3:ListBucketMultipartUploads"],
                ["ModelBucket"],
                unrecorded="Firehose checks the bucket and its multipart uploads with this role",
            ),
            *grants(
                ["glue:GetTable", "glue:GetTableVersion", "glue:GetTableVersions"],
                EVENT_LOG_GLUE,
                unrecorded="Firehose reads the table's schema for record-format conversion (issue 14)",
            ),
        )
    ),
    # SAM's role for the gradual deployments of the functions with a DeploymentPreference.
    "CodeDeployServiceRole": Principal(
        (),
        {
            "arn:aws:iam::aws:policy/service-role/AWSCodeDeployRoleForLambda": "CodeDeploy shifts the `live` "
            "alias and reads the rollback alarms; SAM creates this role and attaches the AWS policy"
        },
    ),
}

# Functions whose calls test_least_privilege.py does not record yet: function -> why. Empty is the goal.
NOT_RECORDED: dict[str, str] = {}
