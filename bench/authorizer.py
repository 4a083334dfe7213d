"""The API authorizer's whole `lambda_handler` per call, and what it costs per million calls.

`python -m bench.authorizer [--calls 5000]` prints a Markdown report (docs/security.md holds its output).

Set up as Lambda runs it (bench.handler.LAMBDA_ENVIRONMENT: tracer, logger with its context, EMF
metrics all on; stdout to /dev/null as CloudWatch takes it), with the template's stack in moto, so the
master secret comes from Secrets Manager's API. The cold figure is the first call of a fresh process:
the handler's imports plus the two GetSecretValue calls (against in-process moto: the network round
trip of a real region, ~10-20 ms, is not in it)."""

from __future__ import annotations

import argparse
import contextlib
import importlib
import os
import statistics
import sys
import time
from typing import Any

from bench.common import BenchLambdaContext
from bench.handler import LAMBDA_ENVIRONMENT

# us-east-1, x86_64, October 2026 price list.
LAMBDA_REQUEST_USD = 0.20 / 1_000_000
LAMBDA_GB_SECOND_USD = 0.0000166667
AUTHORIZER_MEMORY_GB = 0.25  # template.yaml: AuthorizerFunction MemorySize 256
SECRETS_MANAGER_CALL_USD = 0.05 / 10_000


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def _event(sample: dict[str, Any], credential: str) -> dict[str, Any]:
    event = dict(sample)
    event["headers"] = {**sample["headers"], "Authorization": f"Bearer {credential}"}
    return event


def run(calls: int) -> dict[str, Any]:
    os.environ.update({**LAMBDA_ENVIRONMENT, "AWS_LAMBDA_FUNCTION_NAME": "nextpick-bench-AuthorizerFunction"})
    from moto import mock_aws

    with mock_aws():
        from nextpick_local.standin.aws_resources import create_stack

        stack = create_stack("nextpick-bench")
        os.environ.update(stack.env("AuthorizerFunction"))
        import boto3

        from nextpick.domain.credentials import ShopCredentials, mint_shopper_token

        master = boto3.client("secretsmanager").get_secret_value(SecretId=stack.auth_secret)["SecretString"]
        keys = ShopCredentials.derive(master)
        import json
        from pathlib import Path

        sample = json.loads(
            (Path(__file__).resolve().parent.parent / "events" / "authorizer_request.json").read_text()
        )
        token = mint_shopper_token(keys.token_signing_key, sample["pathParameters"]["user_id"], 3600)
        context = BenchLambdaContext()
        context.function_name = "nextpick-bench-AuthorizerFunction"
        context.memory_limit_in_mb = 256
        with open(os.devnull, "w") as sink, contextlib.redirect_stdout(sink):
            started = time.perf_counter()
            handler = importlib.import_module("nextpick.handlers.authorizer")
            handler.lambda_handler(_event(sample, keys.server_key), context)
            cold_ms = (time.perf_counter() - started) * 1000
            figures = {"cold start (import + secret + first call)": [cold_ms]}
            for name, credential in (
                ("server key", keys.server_key),
                ("admin key", keys.admin_key),
                ("shopper token", token),
                (
                    "forged token (401)",
                    mint_shopper_token("npt_forged-0123456789abcdef0123456789ab", "u", 60),
                ),
            ):
                times = []
                event = _event(sample, credential)
                for _ in range(calls):
                    begun = time.perf_counter_ns()
                    with contextlib.suppress(handler.Unauthorized):
                        handler.lambda_handler(event, context)
                    times.append((time.perf_counter_ns() - begun) / 1e6)
                figures[name] = times
    return figures


def report(figures: dict[str, list[float]], calls: int) -> str:
    lines = [
        f"Whole `lambda_handler` of the authorizer, Powertools included, {calls} warm calls per row:",
        "",
        "| credential | p50 ms | p99 ms | mean ms |",
        "|---|---|---|---|",
    ]
    for name, times in figures.items():
        lines.append(
            f"| {name} | {_percentile(times, 0.5):.3f} | {_percentile(times, 0.99):.3f} | {statistics.fmean(times):.3f} |"
        )
    warm = max(_percentile(times, 0.99) for name, times in figures.items() if not name.startswith("cold"))
    billed_ms = max(1, int(warm) + 1)  # Lambda bills whole milliseconds
    per_million = 1_000_000 * (
        LAMBDA_REQUEST_USD + LAMBDA_GB_SECOND_USD * AUTHORIZER_MEMORY_GB * billed_ms / 1000
    )
    # Each warm container reads AWSCURRENT and AWSPREVIOUS every AUTH_SECRET_REFRESH_SECONDS (300 s).
    secrets_per_container_month = 2 * (30 * 86400 / 300) * SECRETS_MANAGER_CALL_USD
    lines += [
        "",
        f"Cost per million authorizer invocations (256 MB, billed {billed_ms} ms each, the warm p99 rounded up): "
        f"**${per_million:.3f}** (${LAMBDA_REQUEST_USD * 1e6:.2f} requests + "
        f"${per_million - LAMBDA_REQUEST_USD * 1e6:.3f} duration). API Gateway calls it only on a cache miss: "
        "once per credential per AuthCacheSeconds (300 s), so a shopper's session of 30 calls in 5 minutes "
        f"costs one invocation, and a million API calls cost about ${per_million / 30:.3f}. Secrets Manager: "
        f"${secrets_per_container_month:.2f} per warm authorizer container per month (two GetSecretValue "
        "calls per 300 s) plus $0.40 per month for the secret.",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=5000)
    args = parser.parse_args(argv)
    print(report(run(args.calls), args.calls))
    return 0


if __name__ == "__main__":
    sys.exit(main())
