"""The retrain as steps that hand over through a run folder in the model bucket (issue 14).

`run_step(event, ...)` is what `RetrainFunction` does with a step payload (the state machine's tasks, the
CLI's `nextpick train --step`); `nextpick_training.train_job` runs the train step in the SageMaker / Batch
container; `pipeline.run_retrain` runs all of them in sequence in one process. The payloads and outputs
are the contract of /docs/retrain.md, "Steps".
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, ValidationError

from nextpick_training.settings import TrainingSettings

from .finish import publish, record
from .run_folder import RUN_ID, RunFolder
from .stages import ENGINES, StepClients, StepError, choose_engine, evaluate, folder, query, run_id_for, train

STEPS = ("query", "train", "evaluate", "publish", "record")
RunId = Annotated[str, StringConstraints(pattern=RUN_ID.pattern)]


class StepPayloadError(ValueError):
    """A step payload that is not one of the contract's; nothing was read or written."""


class _Payload(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class QueryPayload(_Payload):
    step: Literal["query"]
    # $$.Execution.Name: the run id derives from it, so a retried query reuses the folder.
    execution: str = Field(min_length=1, max_length=256)
    # $$.Execution.StartTime: the run's "now" (the window's end, the version's time).
    started_at: datetime | None = None


class RunPayload(_Payload):
    step: Literal["train", "evaluate", "publish"]
    run_id: RunId


class StepFailure(BaseModel):
    """What a Step Functions Catch puts in ResultPath: the error name and its cause."""

    model_config = ConfigDict(extra="ignore", frozen=True)
    Error: str
    Cause: str = ""


class RecordPayload(_Payload):
    step: Literal["record"]
    run_id: RunId | None
    status: Literal["published", "rejected", "skipped", "failed"]
    error: StepFailure | None = None


def parse_payload(event: Any) -> QueryPayload | RunPayload | RecordPayload:
    """The payload as its step's model; StepPayloadError naming the field otherwise."""
    if not isinstance(event, dict):
        raise StepPayloadError("step payload: must be a JSON object")
    step = event.get("step")
    if step not in STEPS:
        raise StepPayloadError(f"step: must be one of {', '.join(STEPS)}, not {step!r}")
    model: type[QueryPayload | RunPayload | RecordPayload] = (
        QueryPayload if step == "query" else RecordPayload if step == "record" else RunPayload
    )
    try:
        return model.model_validate(event)
    except ValidationError as error:
        problems = "; ".join(
            f"{'.'.join(str(part) for part in e['loc']) or 'payload'}: {e['msg']}" for e in error.errors()
        )
        raise StepPayloadError(f"{step} step payload: {problems}") from error


def run_step(event: Any, aws: StepClients, settings: TrainingSettings) -> dict[str, Any]:
    """Run the step the payload names and answer its JSON output."""
    payload = parse_payload(event)
    if isinstance(payload, QueryPayload):
        return query(aws, settings, payload.execution, payload.started_at or datetime.now(UTC))
    if isinstance(payload, RecordPayload):
        error = payload.error.model_dump() if payload.error is not None else None
        result = record(aws, settings, payload.run_id, payload.status, error)
        return result.model_dump(mode="json")
    step = {"train": train, "evaluate": evaluate, "publish": publish}[payload.step]
    return step(aws, settings, payload.run_id)


__all__ = [
    "ENGINES",
    "STEPS",
    "QueryPayload",
    "RecordPayload",
    "RunFolder",
    "RunPayload",
    "StepClients",
    "StepError",
    "StepPayloadError",
    "choose_engine",
    "evaluate",
    "folder",
    "parse_payload",
    "publish",
    "query",
    "record",
    "run_id_for",
    "run_step",
    "train",
]
