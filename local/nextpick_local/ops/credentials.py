"""`nextpick credentials | rotate-credentials | shopper-token`: the keys of a stack, their rotation, and
a shopper token as a shop's backend mints one. Against the local stack or, with --aws, a deployed one.

Rotation writes a new master secret (Secrets Manager AWSCURRENT). The previous one (AWSPREVIOUS) stays
valid until the next rotation, so clients switch without a refused call; `--revoke-previous` rotates
twice, which leaves no old credential valid. Either way a credential API Gateway already accepted keeps
working until its cached answer expires (AuthCacheSeconds, 300 s) and a container's copy of the secret is
refreshed (300 s): at most 10 minutes (docs/security.md)."""

from __future__ import annotations

import argparse
import json
import os
import secrets
from typing import Any

from nextpick.domain.credentials import ShopCredentials, mint_shopper_token
from nextpick_local.errors import UsageError
from nextpick_local.ops.target import local_state

# As long as the template's GenerateSecretString (64 characters).
MASTER_SECRET_BYTES = 48


def secret_id(args: argparse.Namespace) -> str:
    """The target's master secret; for a local stack, also points this process's boto3 at it."""
    if args.aws:
        if args.stack_name:
            import boto3

            stacks = boto3.client("cloudformation").describe_stacks(StackName=args.stack_name)["Stacks"]
            outputs = {o["OutputKey"]: o["OutputValue"] for o in stacks[0].get("Outputs", [])}
            return str(outputs["AuthSecretArn"])
        if not os.environ.get("AUTH_SECRET_ID"):
            raise UsageError("--aws needs --stack-name or the environment variable AUTH_SECRET_ID")
        return os.environ["AUTH_SECRET_ID"]
    if args.stack_name:
        raise UsageError("--stack-name only applies with --aws")
    from nextpick_local.standin.stack import aws_environment

    state = local_state(args.state_file)
    os.environ.update(aws_environment(state["endpoint_url"], state["region"]))
    return str(state["resources"]["AuthSecret"])


def _client() -> Any:
    import boto3

    return boto3.client("secretsmanager")


def current_credentials(secretsmanager: Any, secret: str) -> ShopCredentials:
    return ShopCredentials.derive(secretsmanager.get_secret_value(SecretId=secret)["SecretString"])


def rotate(secretsmanager: Any, secret: str, revoke_previous: bool = False) -> ShopCredentials:
    """Write a new master secret (twice with `revoke_previous`: AWSPREVIOUS then names no old value)."""
    master = secrets.token_urlsafe(MASTER_SECRET_BYTES)
    for _ in range(2 if revoke_previous else 1):
        secretsmanager.put_secret_value(SecretId=secret, SecretString=master)
    return ShopCredentials.derive(master)


def show(args: argparse.Namespace) -> int:
    secret = secret_id(args)  # first: for a local stack it points boto3 at the stand-in
    credentials = current_credentials(_client(), secret)
    keys = {
        "admin_key": credentials.admin_key,
        "server_key": credentials.server_key,
        "token_signing_key": credentials.token_signing_key,
    }
    print(json.dumps(keys, indent=2) if args.json else "\n".join(f"{k:18} {v}" for k, v in keys.items()))
    return 0


def rotate_command(args: argparse.Namespace) -> int:
    secret = secret_id(args)
    credentials = rotate(_client(), secret, args.revoke_previous)
    still = (
        "no earlier credential is valid"
        if args.revoke_previous
        else "the previous ones stay valid until the next rotation"
    )
    print(f"rotated: new server key {credentials.server_key}; {still}")
    return 0


def shopper_token(args: argparse.Namespace) -> int:
    secret = secret_id(args)
    credentials = current_credentials(_client(), secret)
    print(mint_shopper_token(credentials.token_signing_key, args.user_id, args.ttl))
    return 0
