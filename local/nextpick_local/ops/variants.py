"""`nextpick variants`: show and change the live A/B experiment (docs/variants.md), against the running
local stack or real AWS (`--aws`, by its model bucket). Every change is validated (names, weights that
sum to more than 0, every version published and verified) before one atomic put of the pointer."""

from __future__ import annotations

import argparse
import json
import secrets
from typing import TYPE_CHECKING, Any

from nextpick_local.errors import UsageError
from nextpick_local.ops.target import clients
from nextpick_local.ops.target import names as target

if TYPE_CHECKING:  # the parser is built for every `nextpick --help`: numpy and boto stay unimported
    from nextpick.domain.variants import VariantConfig

# A VERSION argument naming the newest published version (what a demo just trained).
LATEST = "latest"


def add_parser(commands: Any, target_options: Any) -> None:
    variants = commands.add_parser(
        "variants",
        help="show or change the A/B variants and the shadow model",
        description="Several live model versions with traffic weights, assigned by a hash of the user id, "
        "and an optional shadow model scored on live traffic and never served (docs/variants.md). "
        "Every change is one atomic switch of the model pointer.",
    )
    actions = variants.add_subparsers(dest="action", required=True, metavar="ACTION")
    show = actions.add_parser("show", help="the live control, variants, weights and shadow")
    show.add_argument("--json", action="store_true", help="print JSON")
    add = actions.add_parser("add", help="add a variant (or change one's version and weight)")
    add.add_argument("name", metavar="NAME")
    add.add_argument("version", metavar="VERSION", help=f"a published version, or {LATEST!r}")
    add.add_argument("--weight", type=float, required=True, help="its traffic weight (relative)")
    add.add_argument(
        "--salt", help="a new experiment's salt (default: random when the first variant is added)"
    )
    remove = actions.add_parser("remove", help="remove a variant (its shoppers go back to the control)")
    remove.add_argument("name", metavar="NAME")
    weights = actions.add_parser("weights", help="set traffic weights, e.g. control=9 challenger=1")
    weights.add_argument("weights", nargs="+", metavar="NAME=WEIGHT")
    shadow = actions.add_parser("shadow", help="score VERSION on live traffic, logged and never served")
    shadow.add_argument("version", metavar="VERSION", help=f"a published version, or {LATEST!r}")
    shadow.add_argument("--sample-rate", type=float, default=1.0, help="share of answers scored (default 1)")
    actions.add_parser("clear-shadow", help="stop shadow scoring")
    for parser in (show, add, remove, weights, shadow, actions.choices["clear-shadow"]):
        target_options(parser)


def describe(config: VariantConfig) -> str:
    shares = config.shares()
    lines = [f"{'variant':<14} {'version':<28} {'weight':>8} {'share':>7}"]
    for variant in config.variants:
        lines.append(
            f"{variant.name:<14} {variant.version:<28} {variant.weight:>8g} {shares[variant.name]:>7.1%}"
        )
    if config.shadow is not None:
        shadow = config.shadow
        lines.append(f"shadow {shadow.name!r}: {shadow.version}, scoring {shadow.sample_rate:.0%} of answers")
    else:
        lines.append("no shadow model")
    lines.append(f"assignment salt: {config.salt}")
    return "\n".join(lines)


def as_json(config: VariantConfig) -> dict[str, Any]:
    return {
        "variants": [
            {"name": v.name, "version": v.version, "weight": v.weight, "share": config.shares()[v.name]}
            for v in config.variants
        ],
        "shadow": (
            {
                "name": config.shadow.name,
                "version": config.shadow.version,
                "sample_rate": config.shadow.sample_rate,
            }
            if config.shadow is not None
            else None
        ),
        "salt": config.salt,
    }


def _weight(text: str) -> tuple[str, float]:
    name, equals, value = text.partition("=")
    try:
        if not equals:
            raise ValueError(text)
        return name, float(value)
    except ValueError:
        raise UsageError(f"expected NAME=WEIGHT, got {text!r}") from None


def _edit(args: argparse.Namespace, config: VariantConfig, resolve: Any) -> VariantConfig:
    from dataclasses import replace

    from nextpick.domain.variants import with_shadow, with_variant, with_weights, without_variant

    if args.action == "add":
        fresh = not config.is_experiment and config.shadow is None
        edited = with_variant(config, args.name, resolve(args.version), args.weight)
        if args.salt or fresh:
            # A new experiment reshuffles shoppers: the previous test's groups do not carry over.
            edited = replace(edited, salt=args.salt or secrets.token_hex(8))
        return edited
    if args.action == "remove":
        return without_variant(config, args.name)
    if args.action == "weights":
        return with_weights(config, dict(_weight(text) for text in args.weights))
    if args.action == "shadow":
        return with_shadow(config, resolve(args.version), args.sample_rate)
    return replace(config, shadow=None)  # clear-shadow


def variants_command(args: argparse.Namespace) -> int:
    names = target(args)
    from nextpick.adapters import model_registry as registry
    from nextpick.domain.variants import InvalidVariants
    from nextpick_training.variants import read_experiment, switch_experiment

    s3, _, _ = clients()
    experiment = read_experiment(s3, names.model_bucket, names.model_prefix)
    if args.action == "show":
        config = experiment.config
        print(json.dumps(as_json(config), indent=2) if args.json else describe(config))
        return 0

    def resolve(version: str) -> str:
        if version != LATEST:
            return version
        versions = registry.list_versions(s3, names.model_bucket, names.model_prefix)
        return versions[-1]

    try:
        config = _edit(args, experiment.config, resolve)
    except InvalidVariants as error:
        raise UsageError(str(error)) from error
    switch_experiment(s3, names.model_bucket, names.model_prefix, config, experiment)
    print(describe(config))
    return 0
