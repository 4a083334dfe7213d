"""The engines a retrain can run on and what they cost (bench.training_scale_report, docs/training-scale.md).

List prices as stated here, us-east-1; the dates and assumptions are printed with every table that uses them.
"""

from __future__ import annotations

from dataclasses import dataclass

LAMBDA_SECONDS, LAMBDA_MB, LAMBDA_VCPUS = 900, 10_240, 6
PRICES_DATE = "2026-11-30"
PRICES_NOTE = (
    f"us-east-1 on-demand list prices as stated here on {PRICES_DATE} (from the public price pages as "
    "known; not fetched: no network on this machine; check before relying on them)"
)
SPOT_DISCOUNT = 0.70  # typical, not guaranteed: spot prices vary by type, zone and hour
LAMBDA_X86_GB_SECOND = 0.0000166667
FARGATE_VCPU_HOUR, FARGATE_GB_HOUR = 0.04048, 0.004445
# A training container image with TensorFlow is ~2 GB: pulled at each start (assumed durations).
SAGEMAKER_START_S, SAGEMAKER_START_BILLED_S = 150, 60  # provisioning not billed; image download billed
FARGATE_START_S = 90  # billed from the image pull on, per second, 1 minute minimum


@dataclass(frozen=True)
class Engine:
    """A machine a retrain can run on: its vCPUs, memory, price and start-up (wall and billed)."""

    name: str
    vcpus: int
    memory_gb: float
    hourly: float  # $ per hour of the whole machine, on-demand
    spot: bool
    start_s: float
    start_billed_s: float

    def hour_price(self) -> float:
        return self.hourly * (1 - SPOT_DISCOUNT) if self.spot else self.hourly


def _fargate(vcpus: int, memory_gb: int) -> float:
    return vcpus * FARGATE_VCPU_HOUR + memory_gb * FARGATE_GB_HOUR


ENGINES = (
    Engine(
        "Lambda 10,240 MB (x86)",
        LAMBDA_VCPUS,
        LAMBDA_MB / 1024,
        LAMBDA_X86_GB_SECOND * 3600 * 10,
        False,
        0,
        0,
    ),
    Engine("SageMaker ml.m5.2xlarge", 8, 32, 0.461, False, SAGEMAKER_START_S, SAGEMAKER_START_BILLED_S),
    Engine(
        "SageMaker ml.m5.2xlarge, managed spot",
        8,
        32,
        0.461,
        True,
        SAGEMAKER_START_S,
        SAGEMAKER_START_BILLED_S,
    ),
    Engine("SageMaker ml.c5.4xlarge", 16, 32, 0.816, False, SAGEMAKER_START_S, SAGEMAKER_START_BILLED_S),
    Engine(
        "SageMaker ml.c5.4xlarge, managed spot",
        16,
        32,
        0.816,
        True,
        SAGEMAKER_START_S,
        SAGEMAKER_START_BILLED_S,
    ),
    Engine(
        "SageMaker ml.m5.12xlarge, managed spot",
        48,
        192,
        2.765,
        True,
        SAGEMAKER_START_S,
        SAGEMAKER_START_BILLED_S,
    ),
    Engine(
        "SageMaker ml.m5.24xlarge, managed spot",
        96,
        384,
        5.53,
        True,
        SAGEMAKER_START_S,
        SAGEMAKER_START_BILLED_S,
    ),
    Engine(
        "Batch on Fargate Spot, 8 vCPU 32 GB", 8, 32, _fargate(8, 32), True, FARGATE_START_S, FARGATE_START_S
    ),
    Engine(
        "Batch on Fargate Spot, 16 vCPU 120 GB",
        16,
        120,
        _fargate(16, 120),
        True,
        FARGATE_START_S,
        FARGATE_START_S,
    ),
)


def is_lambda(engine: Engine) -> bool:
    return engine.name.startswith("Lambda")


def billed_dollars(engine: Engine, run_s: float) -> tuple[float, float]:
    """(wall s, $) of a run of `run_s` seconds of work on `engine`, its start-up added."""
    billed = run_s + engine.start_billed_s
    if engine.name.startswith("Batch"):
        billed = max(billed, 60.0)  # Fargate's one-minute minimum
    return run_s + engine.start_s, billed / 3600 * engine.hour_price()
