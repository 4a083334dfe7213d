"""A/B assignment (issue 13, docs/variants.md): deterministic, stable across processes, honouring the
weights within sampling error, and moving only the shoppers a weight change must move."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

from nextpick.domain.impressions import new_recommendation_id
from nextpick.domain.variants import (
    InvalidVariants,
    Shadow,
    Variant,
    VariantConfig,
    in_shadow_sample,
    parse_variants,
    variants_fields,
    with_challenger,
    with_control,
    with_variant,
    with_weights,
    without_variant,
)

USERS = [f"shopper-{n}" for n in range(10_000)]
ROOT = Path(__file__).resolve().parents[2]


def pointer(variants: list[tuple[str, str, float]], **extra: object) -> dict[str, object]:
    return {
        "version": variants[0][1],
        "variants": [{"name": n, "version": v, "weight": w} for n, v, w in variants],
        **extra,
    }


def binomial_bound(n: int, p: float, sigmas: float = 4.5) -> float:
    """Half-width of the count interval: a fixed id set is deterministic, so this only has to hold for
    hashing that behaves like a fair sampler (4.5 sigma: a one-in-150,000 outlier)."""
    return sigmas * math.sqrt(n * p * (1 - p))


def test_an_old_pointer_is_the_control_alone_and_assigns_everyone_to_it() -> None:
    config = parse_variants({"version": "v1", "model_key": "k", "manifest_key": "m", "sha256": "s"})
    assert config.variants == (Variant("control", "v1", 1.0),) and config.shadow is None
    assert not config.is_experiment
    assert {config.assign(user).name for user in USERS[:500]} == {"control"}


def test_assignment_is_the_same_in_another_process_with_another_hash_seed() -> None:
    config = parse_variants(pointer([("control", "v1", 1), ("b", "v2", 1), ("c", "v3", 2)], salt="exp-1"))
    here = [config.assign(user).name for user in USERS]
    script = (
        "import json, sys\n"
        "from nextpick.domain.variants import parse_variants\n"
        "config = parse_variants(json.loads(sys.argv[1]))\n"
        f"print(json.dumps([config.assign(f'shopper-{{n}}').name for n in range({len(USERS)})]))\n"
    )
    document = json.dumps(pointer([("control", "v1", 1), ("b", "v2", 1), ("c", "v3", 2)], salt="exp-1"))
    environment = {**os.environ, "PYTHONHASHSEED": "12345", "PYTHONPATH": f"{ROOT / 'functions'}"}
    output = subprocess.run(
        [sys.executable, "-c", script, document], env=environment, capture_output=True, text=True, check=True
    ).stdout
    assert json.loads(output) == here
    # ...and the same across calls in this process.
    assert [config.assign(user).name for user in USERS] == here


@pytest.mark.parametrize(
    "weights", [(1.0, 1.0), (9.0, 1.0), (0.7, 0.2, 0.1), (5.0, 0.0, 5.0)], ids=lambda w: "/".join(map(str, w))
)
def test_split_shares_match_the_weights_within_sampling_error(weights: tuple[float, ...]) -> None:
    names = ["control", *(f"v{i}" for i in range(1, len(weights)))]
    config = parse_variants(pointer([(n, f"ver-{n}", w) for n, w in zip(names, weights, strict=True)]))
    counts = dict.fromkeys(names, 0)
    for user in USERS:
        counts[config.assign(user).name] += 1
    total = sum(weights)
    for name, weight in zip(names, weights, strict=True):
        expected = len(USERS) * weight / total
        assert abs(counts[name] - expected) <= binomial_bound(len(USERS), weight / total), (name, counts)
    assert all(counts[n] == 0 for n, w in zip(names, weights, strict=True) if w == 0)


def test_a_weight_change_moves_only_the_shoppers_between_the_old_and_new_boundary() -> None:
    before = parse_variants(pointer([("control", "v1", 0.5), ("b", "v2", 0.5)], salt="s"))
    after = with_weights(before, {"control": 0.6, "b": 0.4})
    moved = [user for user in USERS if before.assign(user).name != after.assign(user).name]
    # Exactly those that left b for the control: nobody moved from the control to b.
    assert all(before.assign(u).name == "b" and after.assign(u).name == "control" for u in moved)
    assert abs(len(moved) - 1000) <= binomial_bound(len(USERS), 0.1)
    # A salt change, by contrast, reshuffles about half of everyone: the salt names an experiment.
    reshuffled = sum(
        before.assign(u).name != VariantConfig(before.variants, salt="other").assign(u).name for u in USERS
    )
    assert abs(reshuffled - 5000) <= binomial_bound(len(USERS), 0.5)


def test_the_same_weights_in_another_scale_assign_alike() -> None:
    a = parse_variants(pointer([("control", "v1", 9), ("b", "v2", 1)], salt="s"))
    b = with_weights(a, {"control": 0.9, "b": 0.1})
    assert [a.assign(u).name for u in USERS] == [b.assign(u).name for u in USERS]


@pytest.mark.parametrize(
    ("document", "field"),
    [
        (pointer([("control", "v1", 0), ("b", "v2", 0)]), "sum to more than 0"),
        (pointer([("control", "v1", 1), ("control", "v2", 1)]), "distinct"),
        (pointer([("b", "v1", 1), ("control", "v2", 1)]), "variants[0]"),
        (pointer([("control", "v1", 1), ("b", "v2", -1)]), "variants[1].weight"),
        (pointer([("control", "v1", 1), ("b", "v2", float("nan"))]), "variants[1].weight"),
        (pointer([("control", "v1", 1), ("B b", "v2", 1)]), "variants[1].name"),
        (pointer([("control", "v1", 1), ("b", "", 1)]), "variants[1].version"),
        ({**pointer([("control", "v1", 1)]), "version": "v9"}, "variants[0]"),
        (pointer([("control", "v1", 1)], shadow={"version": "v2", "sample_rate": 1.5}), "shadow.sample_rate"),
        (
            pointer([("control", "v1", 1)], shadow={"name": "control", "version": "v2", "sample_rate": 1}),
            "shadow.name",
        ),
        ({"version": "v1", "variants": []}, "variants"),
        (pointer([("control", "v1", 1)], salt=""), "salt"),
    ],
)
def test_a_malformed_document_is_refused_naming_the_field(document: dict[str, object], field: str) -> None:
    with pytest.raises(InvalidVariants, match=field.replace("[", r"\[").replace("]", r"\]")):
        parse_variants(document)


def test_edits_round_trip_through_the_document() -> None:
    config = parse_variants({"version": "v1"})
    config = with_variant(config, "b", "v2", 1.0)
    config = with_control(config, "v3")
    config = VariantConfig(config.variants, Shadow("shadow", "v4", 0.25), "salt-1")
    assert parse_variants({"version": "v3", **variants_fields(config)}) == config
    assert without_variant(config, "b").variants == (Variant("control", "v3", 1.0),)
    with pytest.raises(InvalidVariants, match="control cannot be removed"):
        without_variant(config, "control")
    with pytest.raises(InvalidVariants, match="no variant named 'zz'"):
        with_weights(config, {"zz": 1})


def test_a_challenger_gets_its_share_and_a_newer_challenger_keeps_the_weight() -> None:
    config = with_challenger(parse_variants({"version": "v1"}), "v2", 0.1)
    assert config.shares() == pytest.approx({"control": 0.9, "challenger": 0.1})
    assigned = [config.assign(u).name for u in USERS]
    newer = with_challenger(config, "v3", 0.5)  # an existing challenger keeps its weight: nobody moves
    assert newer.shares() == pytest.approx({"control": 0.9, "challenger": 0.1})
    assert [v.version for v in newer.variants] == ["v1", "v3"]
    assert [newer.assign(u).name for u in USERS] == assigned


def test_shadow_sampling_follows_the_rate_and_is_decided_by_the_recommendation_id() -> None:
    shadow = Shadow("shadow", "v2", 0.2)
    ids = [new_recommendation_id() for _ in range(10_000)]
    sampled = sum(in_shadow_sample(shadow, rid) for rid in ids)
    assert abs(sampled - 2000) <= binomial_bound(len(ids), 0.2)
    assert [in_shadow_sample(shadow, rid) for rid in ids[:100]] == [
        in_shadow_sample(shadow, r) for r in ids[:100]
    ]
    assert not any(in_shadow_sample(Shadow("shadow", "v2", 0.0), rid) for rid in ids[:1000])
    assert all(in_shadow_sample(Shadow("shadow", "v2", 1.0), rid) for rid in ids[:1000])


def test_the_retrain_reads_its_publish_mode_and_refuses_a_bad_one(monkeypatch: pytest.MonkeyPatch) -> None:
    from pydantic import ValidationError

    from nextpick_training.settings import TrainingSettings

    assert (TrainingSettings.from_env().publish_mode, TrainingSettings.from_env().challenger_share) == (
        "replace",
        0.1,
    )
    monkeypatch.setenv("PUBLISH_MODE", "challenger")
    monkeypatch.setenv("CHALLENGER_SHARE", "0.25")
    assert (TrainingSettings.from_env().publish_mode, TrainingSettings.from_env().challenger_share) == (
        "challenger",
        0.25,
    )
    for name, value in (("PUBLISH_MODE", "swap"), ("CHALLENGER_SHARE", "1.0")):
        monkeypatch.setenv(name, value)
        with pytest.raises(ValidationError, match=name.lower()):
            TrainingSettings.from_env()
        monkeypatch.setenv(name, {"PUBLISH_MODE": "challenger", "CHALLENGER_SHARE": "0.25"}[name])
