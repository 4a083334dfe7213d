#!/bin/sh
# The retrain image's entry point: one image, three engines (docs/retrain.md, "Steps").
# NEXTPICK_ENTRY=train-job (set by the SageMaker training job and the Batch job definition) runs the
# train step as a job; anything else is the Lambda runtime exactly as the base image starts it.
set -e
if [ "${NEXTPICK_ENTRY:-}" = "train-job" ]; then
    # SageMaker starts a training image with the argument "train" unless ContainerArguments say otherwise.
    if [ "${1:-}" = "train" ]; then
        shift
    fi
    exec python3 -m nextpick_training.train_job "$@"
fi
exec /lambda-entrypoint.sh "$@"
