"""The train step as a container job: `python -m nextpick_training.train_job --run-id ID [--checkpoints LOC]`.

The retrain image runs this when its environment has `NEXTPICK_ENTRY=train-job` (training/entry.sh):
the SageMaker training job and the Batch job definition set it, with the same settings variables as
`RetrainFunction` (`MODEL_BUCKET_NAME`, `TRAINING_RUNS_PREFIX`, ...). It is the same function the Lambda
engine runs for `{"step": "train"}` (`nextpick_training.steps.train`), on the same run folder.

Checkpoints (`--checkpoints`): a local directory or an `s3://bucket/prefix`. Default: /opt/ml/checkpoints
when it exists (SageMaker syncs it with the job's CheckpointConfig S3 URI, the run folder's
checkpoints/, and puts it back before a restarted spot job starts), else the run folder's checkpoints/
prefix directly (Batch). Exit status 0 when the candidate is in the run folder; 1 with the error on stderr
otherwise (2 for bad arguments).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import traceback
from collections.abc import Sequence
from pathlib import Path

SAGEMAKER_CHECKPOINTS = Path("/opt/ml/checkpoints")
RUN_ID_VARIABLE = "NEXTPICK_RUN_ID"


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m nextpick_training.train_job",
        description="Run the retrain's train step on a run folder (the SageMaker / Batch engines).",
    )
    parser.add_argument(
        "--run-id",
        default=os.environ.get(RUN_ID_VARIABLE),
        help=f"the run folder's id (training-runs/<run_id>/; default: ${RUN_ID_VARIABLE})",
    )
    parser.add_argument(
        "--checkpoints",
        help="checkpoint location: a local directory or s3://bucket/prefix "
        f"(default: {SAGEMAKER_CHECKPOINTS} if it exists, else the run folder's checkpoints/)",
    )
    args = parser.parse_args(list(argv))
    if not args.run_id:
        parser.error(f"--run-id is required (or ${RUN_ID_VARIABLE})")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    try:
        import boto3

        from nextpick_training import steps
        from nextpick_training.checkpoints import store_for
        from nextpick_training.settings import TrainingSettings

        settings = TrainingSettings.from_env()
        s3 = boto3.client("s3")
        location = args.checkpoints or (
            str(SAGEMAKER_CHECKPOINTS) if SAGEMAKER_CHECKPOINTS.is_dir() else None
        )
        store = store_for(location, s3) if location else None
        output = steps.train(steps.StepClients(s3=s3), settings, args.run_id, store)
    except Exception as exc:
        print(f"train job {args.run_id}: {type(exc).__name__}: {exc}", file=sys.stderr)
        traceback.print_exc(file=sys.stderr)
        return 1
    print(json.dumps(output))
    return 0


if __name__ == "__main__":
    sys.exit(main())
