"""The functions' triggers, read from the translated template and started as dispatch.py's workers:

* an AWS::Events::Rule with an event pattern -> BusDispatcher on the rule's local queue
  (stack._attach_rule_queues), retried as the target function's AWS::Lambda::EventInvokeConfig says;
* an AWS::Events::Rule with a schedule -> Scheduler: the retrain's state machine every `retrain_every`
  seconds (the `--retrain-every` option; an execution through state_machines.py), any other function or
  state machine at its `rate(...)` (a `cron(...)`: on demand only);
* an AWS::Lambda::EventSourceMapping on a DynamoDB stream -> StreamDispatcher, on a Kinesis stream ->
  KinesisDispatcher.

Anything else (an SQS mapping, a rule targeting something other than a function) is not
emulated; `unsupported` says which, and `nextpick serve` prints it instead of failing."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import partial
from typing import Any

from nextpick.domain.erasure import schedule_seconds
from nextpick_local.standin.dispatch import (
    AsyncInvokeConfig,
    BusDispatcher,
    Invoke,
    KinesisDispatcher,
    Scheduler,
    StreamDispatcher,
    Worker,
    scheduled_event,
)
from nextpick_local.standin.gateway import function_of
from nextpick_local.standin.stack import LocalStack

RULE = "AWS::Events::Rule"
EVENT_SOURCE_MAPPING = "AWS::Lambda::EventSourceMapping"
EVENT_INVOKE_CONFIG = "AWS::Lambda::EventInvokeConfig"
# Lambda's default for asynchronous invocations without an EventInvokeConfig.
DEFAULT_ASYNC_RETRIES = 2
STATE_MACHINE = "AWS::StepFunctions::StateMachine"
# What `retrain_every` (and /_local/retrain) fires: the retrain's state machine (issue 14).
RETRAIN_STATE_MACHINE = "RetrainStateMachine"


@dataclass
class EventSources:
    workers: list[Worker] = field(default_factory=list)
    # Schedulers by function logical id (fired on demand by /_local/retrain).
    schedulers: dict[str, Scheduler] = field(default_factory=dict)
    # One line per trigger that is not emulated.
    unsupported: list[str] = field(default_factory=list)

    def start(self) -> None:
        for worker in self.workers:
            worker.start()

    def stop(self, invoker_stop: Any = None) -> None:
        """Signal every dispatcher, end a child invocation still running (rather than wait for it),
        then wait for the threads: they wind down in parallel."""
        for worker in self.workers:
            worker.stopping.set()
        if invoker_stop is not None:
            invoker_stop()
        for worker in self.workers:
            worker.stop()


def _async_configs(stack: LocalStack, queue_url_of_arn: Mapping[str, str]) -> dict[str, AsyncInvokeConfig]:
    resources = stack.resources.resources
    configs: dict[str, AsyncInvokeConfig] = {}
    for resource in resources.values():
        if resource.get("Type") != EVENT_INVOKE_CONFIG:
            continue
        properties = resource.get("Properties", {})
        function = function_of(properties.get("FunctionName"), resources)
        if function is None:
            continue
        destination = properties.get("DestinationConfig", {}).get("OnFailure", {}).get("Destination")
        configs[function] = AsyncInvokeConfig(
            function_arn=stack.resources.arns[function],
            max_retries=int(properties.get("MaximumRetryAttempts", DEFAULT_ASYNC_RETRIES)),
            on_failure_queue_url=queue_url_of_arn.get(str(destination)) if destination else None,
        )
    return configs


def _rule_function(rule: Mapping[str, Any], resources: Mapping[str, Any]) -> str | None:
    for target in rule.get("Properties", {}).get("Targets", []):
        function = function_of(target.get("Arn"), resources)
        if function is not None:
            return function
    return None


def _rule_state_machine(rule: Mapping[str, Any], resources: Mapping[str, Any]) -> str | None:
    """The state machine a rule starts (`Arn: !Ref <state machine>`), if any."""
    for target in rule.get("Properties", {}).get("Targets", []):
        arn = target.get("Arn")
        if isinstance(arn, dict) and resources.get(str(arn.get("Ref")), {}).get("Type") == STATE_MACHINE:
            return str(arn["Ref"])
    return None


def event_sources(
    stack: LocalStack, invoke: Invoke, retrain_every: float, run_state_machine: Invoke | None = None
) -> EventSources:
    """A dispatcher (not started) for every trigger of every function, and for every scheduled state
    machine if `run_state_machine` (state_machines.StateMachines.run) is given."""
    local = stack.resources
    resources = local.resources
    sqs = stack.client("sqs")
    queue_url_of_arn = {
        local.arns[q]: local.refs[q] for q in local.arns if str(local.refs[q]).startswith("http")
    }
    configs = _async_configs(stack, queue_url_of_arn)
    sources = EventSources()
    for key, queue_url in stack.rule_queues.items():
        bus_function = key.partition(".")[0]
        config = configs.get(bus_function, AsyncInvokeConfig(local.arns[bus_function], DEFAULT_ASYNC_RETRIES))
        sources.workers.append(BusDispatcher(sqs, queue_url, bus_function, invoke, local.account_id, config))
    for logical_id, resource in resources.items():
        properties = resource.get("Properties", {})
        if resource.get("Type") == RULE and "ScheduleExpression" in properties:
            function = _rule_function(resource, resources)
            machine = _rule_state_machine(resource, resources) if run_state_machine else None
            if function is None and machine is None:
                sources.unsupported.append(f"{logical_id}: schedule without a function target")
                continue
            target = function or str(machine)
            rule_arn = local.arns.get(logical_id, logical_id)
            make_event = partial(scheduled_event, rule_arn, local.account_id, local.region)
            every = (
                retrain_every
                if target == RETRAIN_STATE_MACHINE
                else _rate_seconds(str(properties["ScheduleExpression"]))
            )
            run = invoke if function is not None else run_state_machine
            assert run is not None
            sources.schedulers[target] = Scheduler(target, make_event, run, every)
            sources.workers.append(sources.schedulers[target])
        elif resource.get("Type") == EVENT_SOURCE_MAPPING:
            function = function_of(properties.get("FunctionName"), resources)
            source = str(properties.get("EventSourceArn", ""))
            if function is None or not (_is_table_stream(source) or ":kinesis:" in source):
                sources.unsupported.append(
                    f"{logical_id}: event source {source or '?'} is not emulated locally"
                )
                continue
            destination = properties.get("DestinationConfig", {}).get("OnFailure", {}).get("Destination")
            kinesis = ":kinesis:" in source
            dispatcher = KinesisDispatcher if kinesis else StreamDispatcher
            sources.workers.append(
                dispatcher(
                    stack.client("kinesis" if kinesis else "dynamodbstreams"),
                    sqs,
                    source,
                    function,
                    properties,
                    invoke,
                    queue_url_of_arn.get(str(destination)) if destination else None,
                )
            )
    return sources


def _is_table_stream(source: str) -> bool:
    return ":dynamodb:" in source and "/stream/" in source


def _rate_seconds(expression: str) -> float:
    """A `rate(...)` schedule's interval; 0 (on demand only) for anything else."""
    try:
        return float(schedule_seconds(expression))
    except ValueError:
        return 0.0
