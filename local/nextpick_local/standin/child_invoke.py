"""One invocation of a container-image function in its own process (see functions.Invoker).

    python -m nextpick_local.standin.child_invoke HANDLER FUNCTION_NAME MEMORY_MB TIMEOUT_S ACCOUNT RESULT_PATH < event

The handler's logs go to this process's stdout; its return value (JSON) to RESULT_PATH, or, if it raised,
Lambda's error payload ({"errorType", "errorMessage"}) to RESULT_PATH.error and the exit code is 1."""

from __future__ import annotations

import json
import os
import sys

from nextpick_local.standin.functions import LambdaContext, load_handler


def main(argv: list[str]) -> int:
    handler, function_name, memory, timeout, account_id, result_path = argv
    event = json.load(sys.stdin)
    # The region is the stack's: the parent set AWS_REGION before starting this process.
    context = LambdaContext(function_name, int(memory), int(timeout), os.environ["AWS_REGION"], account_id)
    try:
        result = load_handler(handler)(event, context)
    except Exception as error:
        with open(result_path + ".error", "w", encoding="utf-8") as out:
            json.dump({"errorType": type(error).__name__, "errorMessage": str(error)}, out)
        raise
    with open(result_path, "w", encoding="utf-8") as out:
        json.dump(result, out)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
