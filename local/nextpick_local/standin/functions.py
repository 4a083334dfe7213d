"""The template's functions as local callables: what Lambda would run, invoked the way Lambda would.

Zip functions run in this process, one invocation at a time: Lambda gives each invocation a container
of its own, and the handlers rely on that (Powertools' resolver keeps the current request on a module
global, metrics are a process-wide set). Container-image functions (the retrain job, with TensorFlow)
run in a child process per invocation, like a separate container: a 30-second training run never
blocks the API, and TensorFlow never loads into the serving process.
"""

from __future__ import annotations

import importlib
import json
import os
import re
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

LAMBDA_FUNCTION = "AWS::Lambda::Function"
# Lambda's defaults when neither the function nor Globals set them.
DEFAULT_TIMEOUT = 3
DEFAULT_MEMORY = 128


class FunctionError(RuntimeError):
    """The handler raised (in-process) or its process failed: Lambda would report a function error.
    `error_type` is the payload's errorType Lambda would report (the exception's class name)."""

    def __init__(self, message: str, error_type: str = "Unhandled") -> None:
        super().__init__(message)
        self.error_type = error_type


@dataclass(frozen=True)
class Function:
    logical_id: str
    # "module.attribute", as the template's Handler (zip) or the image's CMD names it.
    handler: str
    timeout: int
    memory: int
    image: bool


def _image_handler(repo: Path, properties: Mapping[str, Any], metadata: Mapping[str, Any]) -> str:
    """The handler an image function runs: its ImageConfig.Command if the template sets one, else the
    CMD of its Dockerfile (the Lambda base image's convention)."""
    command = properties.get("ImageConfig", {}).get("Command")
    if command:
        return str(command[0])
    if "Dockerfile" not in metadata:
        raise ValueError("an image function needs ImageConfig.Command or Metadata.Dockerfile")
    dockerfile = repo / str(metadata.get("DockerContext", ".")) / str(metadata["Dockerfile"])
    match = re.search(r'^CMD\s*\[\s*"([^"]+)"', dockerfile.read_text(encoding="utf-8"), re.MULTILINE)
    if match is None:
        raise ValueError(f'{dockerfile}: no CMD ["module.handler"] line')
    return match.group(1)


def functions_of(resources: Mapping[str, Any], repo: Path) -> dict[str, Function]:
    """Every AWS::Lambda::Function of the translated template (the SAM translator has merged Globals)."""
    functions: dict[str, Function] = {}
    for logical_id, resource in resources.items():
        if resource.get("Type") != LAMBDA_FUNCTION:
            continue
        properties = resource.get("Properties", {})
        image = properties.get("PackageType") == "Image"
        handler = (
            _image_handler(repo, properties, resource.get("Metadata", {})) if image else properties["Handler"]
        )
        functions[logical_id] = Function(
            logical_id=logical_id,
            handler=handler,
            timeout=int(properties.get("Timeout", DEFAULT_TIMEOUT)),
            memory=int(properties.get("MemorySize", DEFAULT_MEMORY)),
            image=image,
        )
    return functions


def load_handler(handler: str) -> Callable[[dict[str, Any], Any], Any]:
    module_name, _, attribute = handler.rpartition(".")
    function: Callable[[dict[str, Any], Any], Any] = getattr(importlib.import_module(module_name), attribute)
    return function


class LambdaContext:
    """The attributes of Lambda's context object that handlers (and Powertools) read."""

    def __init__(self, function_name: str, memory: int, timeout: int, region: str, account_id: str) -> None:
        self.function_name = function_name
        self.function_version = "$LATEST"
        self.invoked_function_arn = f"arn:aws:lambda:{region}:{account_id}:function:{function_name}"
        self.memory_limit_in_mb = memory
        self.aws_request_id = str(uuid.uuid4())
        self.log_group_name = f"/aws/lambda/{function_name}"
        self.log_stream_name = f"local/[$LATEST]{uuid.uuid4().hex}"
        self._deadline = time.monotonic() + timeout

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self._deadline - time.monotonic()) * 1000))


@dataclass
class Invoker:
    """Invokes the template's functions by logical id."""

    functions: Mapping[str, Function]
    # The physical name of each function (the stack's naming), for contexts and logs.
    names: Mapping[str, str]
    region: str
    account_id: str
    # Where a child process (image function) writes its logs; in-process handlers use sys.stdout.
    log: TextIO | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _children: set[subprocess.Popen[bytes]] = field(default_factory=set)

    def context(self, logical_id: str) -> LambdaContext:
        function = self.functions[logical_id]
        return LambdaContext(
            self.names.get(logical_id, logical_id),
            function.memory,
            function.timeout,
            self.region,
            self.account_id,
        )

    def invoke(self, logical_id: str, event: dict[str, Any]) -> Any:
        function = self.functions[logical_id]
        if function.image:
            return self._invoke_in_child(function, event)
        handler = load_handler(function.handler)
        with self._lock:
            try:
                return handler(event, self.context(logical_id))
            except Exception as error:
                message = f"{logical_id}: {type(error).__name__}: {error}"
                raise FunctionError(message, type(error).__name__) from error

    def _invoke_in_child(self, function: Function, event: dict[str, Any]) -> Any:
        with tempfile.TemporaryDirectory(prefix="nextpick-invoke-") as folder:
            result_path = Path(folder) / "result.json"
            command = [
                sys.executable,
                "-m",
                "nextpick_local.standin.child_invoke",
                function.handler,
                self.names.get(function.logical_id, function.logical_id),
                str(function.memory),
                str(function.timeout),
                self.account_id,
                str(result_path),
            ]
            # TensorFlow's C++ start-up chatter is not function output.
            env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
            log = self.log or sys.stdout
            log.flush()
            child = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=log, stderr=log, env=env)
            self._children.add(child)
            try:
                child.communicate(json.dumps(event).encode(), timeout=function.timeout)
            except subprocess.TimeoutExpired:
                child.kill()
                child.wait()
                message = f"{function.logical_id}: timed out after {function.timeout} s"
                raise FunctionError(message, "Sandbox.Timedout") from None
            finally:
                self._children.discard(child)
            error_path = result_path.with_name(result_path.name + ".error")
            if error_path.exists():
                error = json.loads(error_path.read_text(encoding="utf-8"))
                message = f"{function.logical_id}: {error['errorType']}: {error['errorMessage']}"
                raise FunctionError(message, str(error["errorType"]))
            if child.returncode != 0 or not result_path.exists():
                raise FunctionError(f"{function.logical_id}: process exited with {child.returncode}")
            return json.loads(result_path.read_text(encoding="utf-8"))

    def stop(self) -> None:
        """End child processes still running (shutdown in the middle of a retrain)."""
        for child in list(self._children):
            child.terminate()
            try:
                child.wait(timeout=5)
            except subprocess.TimeoutExpired:
                child.kill()
