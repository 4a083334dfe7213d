"""A/B variants and shadow models (issue 13, docs/variants.md): which live model answers a shopper.

The variants document lives inside the model pointer (`models/current.json`, docs/model-contract.md),
so an experiment is switched by the same single PutObject that switches a model: a reader sees the old
document or the new one, never a mix. Its top-level fields stay those of the control, so an old
pointer (no `variants`) is an experiment of one variant, and code that only knows the old format
still reads the control.

Assignment is a pure function of (salt, user id, the ordered weights): BLAKE2b of the salt and the
user id is read as a number u in [0, 1), and the variants own consecutive slices of [0, 1) in their
fixed order, each as wide as its share of the total weight. Every container therefore assigns a
shopper alike, a shopper keeps their variant across calls, and a weight change moves only the shoppers
whose u lies in a slice that changed owner (|the shares' differences| / 2 of them at most, for two
variants exactly the difference).
"""

from __future__ import annotations

import hashlib
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any, Protocol, runtime_checkable

from nextpick.domain.impressions import CONTROL_VARIANT
from nextpick.domain.ports import ModelSource, RankingModel

# A variant's name: what answers, impressions and the report show. Short and log-safe.
VARIANT_NAME_PATTERN = r"^[a-z0-9][a-z0-9_-]{0,31}$"
_VARIANT_NAME = re.compile(VARIANT_NAME_PATTERN)
# The name a shadow model's impressions carry unless the document names it otherwise.
SHADOW_VARIANT = "shadow"
# The salt of a pointer that names none (an old pointer, or a test set up before salts): any fixed
# string does; changing it reshuffles every shopper, which is what a new experiment wants.
DEFAULT_SALT = "nextpick"
# 8 bytes of BLAKE2b: 2**64 buckets, so weights are honoured to ~1e-19 and two ids collide never in practice.
_HASH_BYTES = 8
_HASH_SPAN = float(2 ** (8 * _HASH_BYTES))


class InvalidVariants(ValueError):
    """A variants document that cannot be served: the message names the field."""


@dataclass(frozen=True)
class Variant:
    name: str
    version: str
    weight: float


@dataclass(frozen=True)
class Shadow:
    name: str
    version: str
    # The share of eligible requests whose answer the shadow also scores (cost control).
    sample_rate: float


@dataclass(frozen=True)
class VariantConfig:
    """The experiment a pointer describes: variants in their fixed order (the control first) and an
    optional shadow."""

    variants: tuple[Variant, ...]
    shadow: Shadow | None = None
    salt: str = DEFAULT_SALT

    @property
    def control(self) -> Variant:
        return self.variants[0]

    @property
    def is_experiment(self) -> bool:
        """More than the control can be assigned: anything else is a plain single-model pointer."""
        return any(v.weight > 0 for v in self.variants[1:])

    def boundaries(self) -> tuple[float, ...]:
        """The upper end of each variant's slice of [0, 1), in order (the last is 1.0)."""
        total = sum(v.weight for v in self.variants)
        running, ends = 0.0, []
        for variant in self.variants:
            running += variant.weight
            ends.append(running / total)
        ends[-1] = 1.0
        return tuple(ends)

    def assign(self, user_id: str) -> Variant:
        """The variant of `user_id`: the one whose slice holds the user's hash."""
        if not self.is_experiment:
            return self.control
        u = unit_hash(self.salt, user_id)
        for variant, end in zip(self.variants, self.boundaries(), strict=True):
            if u < end and variant.weight > 0:
                return variant
        return self.control  # unreachable: the last end is 1.0 > u

    def shares(self) -> dict[str, float]:
        total = sum(v.weight for v in self.variants)
        return {v.name: v.weight / total for v in self.variants}

    def versions(self) -> set[str]:
        """Every model version the document needs loaded."""
        return {v.version for v in self.variants} | ({self.shadow.version} if self.shadow else set())


def unit_hash(salt: str, key: str) -> float:
    """BLAKE2b(salt, key) as a number in [0, 1): the same in every process (no PYTHONHASHSEED)."""
    digest = hashlib.blake2b(key.encode(), digest_size=_HASH_BYTES, person=b"nextpick-ab", key=salt.encode())
    return int.from_bytes(digest.digest(), "big") / _HASH_SPAN


def in_shadow_sample(shadow: Shadow, recommendation_id: str) -> bool:
    """Whether this request's answer is also scored by the shadow: decided by its recommendation id
    (random per answer), so sampling spreads over requests and a test can predict it."""
    return shadow.sample_rate > 0 and unit_hash("shadow", recommendation_id) < shadow.sample_rate


# ---------------------------------------------------------------------------------- the document


def _name(raw: Any, where: str) -> str:
    if not isinstance(raw, str) or not _VARIANT_NAME.match(raw):
        raise InvalidVariants(f"{where}.name must match {VARIANT_NAME_PATTERN}")
    return raw


def _fraction(raw: Any, where: str, *, upper: float | None) -> float:
    if isinstance(raw, bool) or not isinstance(raw, int | float) or not math.isfinite(raw) or raw < 0:
        raise InvalidVariants(f"{where} must be a finite number >= 0")
    if upper is not None and raw > upper:
        raise InvalidVariants(f"{where} must be <= {upper}")
    return float(raw)


def _version(raw: Mapping[str, Any], where: str) -> str:
    version = raw.get("version")
    if not isinstance(version, str) or not version:
        raise InvalidVariants(f"{where}.version must be a model version")
    return version


def parse_variants(pointer: Mapping[str, Any]) -> VariantConfig:
    """The experiment of a pointer document. A pointer without `variants` is the control alone (weight
    1), named by its top-level `version`. Raises InvalidVariants naming the faulty field."""
    control_version = pointer.get("version")
    if not isinstance(control_version, str):
        raise InvalidVariants("version must be a model version")
    raw_variants = pointer.get("variants")
    if raw_variants is None:
        variants: tuple[Variant, ...] = (Variant(CONTROL_VARIANT, control_version, 1.0),)
    else:
        if not isinstance(raw_variants, list) or not raw_variants:
            raise InvalidVariants("variants must be a non-empty list")
        parsed = []
        for position, raw in enumerate(raw_variants):
            where = f"variants[{position}]"
            if not isinstance(raw, dict):
                raise InvalidVariants(f"{where} must be an object")
            parsed.append(
                Variant(
                    _name(raw.get("name"), where),
                    _version(raw, where),
                    _fraction(raw.get("weight"), f"{where}.weight", upper=None),
                )
            )
        variants = tuple(parsed)
    if variants[0].name != CONTROL_VARIANT or variants[0].version != control_version:
        raise InvalidVariants(f"variants[0] must be {CONTROL_VARIANT!r} with the pointer's version")
    if len({v.name for v in variants}) != len(variants):
        raise InvalidVariants("variants names must be distinct")
    if sum(v.weight for v in variants) <= 0:
        raise InvalidVariants("variants weights must sum to more than 0")
    shadow = _parse_shadow(pointer.get("shadow"), {v.name for v in variants})
    salt = pointer.get("salt", DEFAULT_SALT)
    if not isinstance(salt, str) or not salt or len(salt.encode()) > 64:
        raise InvalidVariants("salt must be a string of 1-64 bytes")
    return VariantConfig(variants, shadow, salt)


def _parse_shadow(raw: Any, variant_names: set[str]) -> Shadow | None:
    if raw is None:
        return None
    if not isinstance(raw, dict):
        raise InvalidVariants("shadow must be an object")
    name = _name(raw.get("name", SHADOW_VARIANT), "shadow")
    if name in variant_names:
        raise InvalidVariants("shadow.name must differ from every variant's")
    rate = _fraction(raw.get("sample_rate"), "shadow.sample_rate", upper=1.0)
    return Shadow(name, _version(raw, "shadow"), rate)


def variants_fields(config: VariantConfig) -> dict[str, Any]:
    """The fields a pointer carries for `config` beyond the control's own (none for a plain pointer).
    Entries are completed with each version's keys and checksum by the model registry."""
    fields: dict[str, Any] = {}
    if len(config.variants) > 1:
        fields["variants"] = [
            {"name": v.name, "version": v.version, "weight": v.weight} for v in config.variants
        ]
        fields["salt"] = config.salt
    if config.shadow is not None:
        shadow = config.shadow
        fields["shadow"] = {"name": shadow.name, "version": shadow.version, "sample_rate": shadow.sample_rate}
        fields.setdefault("salt", config.salt)
    return fields


# ---------------------------------------------------------------------------------- serving


@dataclass(frozen=True)
class Assignment:
    """Which variant answers a request and the model it answers with (None: no model loaded)."""

    variant: str
    model: RankingModel | None


@dataclass(frozen=True)
class ShadowModel:
    shadow: Shadow
    model: RankingModel


@runtime_checkable
class VariantSource(Protocol):
    """A model source that serves an experiment (the S3 source); a plain ModelSource serves the control."""

    def assign(self, user_id: str) -> Assignment: ...

    def shadow(self) -> ShadowModel | None:
        """The loaded shadow model, or None: none configured, or it failed to load."""
        ...


def model_for(models: ModelSource, user_id: str | None) -> Assignment:
    """The one function every service calls for (variant, model): a shopper's variant by the hash of
    their id; an anonymous request (no user id: trending, item pages, an anonymous cart) gets the
    control, so those answers never depend on who is not logged in."""
    if user_id is not None and isinstance(models, VariantSource):
        return models.assign(user_id)
    return Assignment(CONTROL_VARIANT, models.current())


def shadow_of(models: ModelSource) -> ShadowModel | None:
    return models.shadow() if isinstance(models, VariantSource) else None


def variant_names(config: VariantConfig) -> Sequence[str]:
    return [v.name for v in config.variants]


# ---------------------------------------------------------------------------------- editing


def with_control(config: VariantConfig, version: str) -> VariantConfig:
    """The same experiment with a new control version (a replacing publish, a rollback)."""
    control = replace(config.control, version=version)
    return replace(config, variants=(control, *config.variants[1:]))


def with_variant(config: VariantConfig, name: str, version: str, weight: float) -> VariantConfig:
    """Add `name` (last, so no existing shopper's slice moves except by the renormalisation of the
    weights) or, if it exists, change its version and weight in place."""
    if name == CONTROL_VARIANT:
        control = Variant(CONTROL_VARIANT, version, weight)
        return checked(replace(config, variants=(control, *config.variants[1:])))
    variants = list(config.variants)
    for position, variant in enumerate(variants):
        if variant.name == name:
            variants[position] = Variant(name, version, weight)
            break
    else:
        variants.append(Variant(name, version, weight))
    return checked(replace(config, variants=tuple(variants)))


def without_variant(config: VariantConfig, name: str) -> VariantConfig:
    if name == CONTROL_VARIANT:
        raise InvalidVariants("the control cannot be removed; set its version instead")
    if name not in variant_names(config):
        raise InvalidVariants(f"there is no variant named {name!r}")
    return checked(replace(config, variants=tuple(v for v in config.variants if v.name != name)))


def with_weights(config: VariantConfig, weights: Mapping[str, float]) -> VariantConfig:
    unknown = set(weights) - set(variant_names(config))
    if unknown:
        raise InvalidVariants(f"there is no variant named {sorted(unknown)[0]!r}")
    return checked(
        replace(
            config, variants=tuple(replace(v, weight=weights.get(v.name, v.weight)) for v in config.variants)
        )
    )


def with_shadow(
    config: VariantConfig, version: str, sample_rate: float, name: str = SHADOW_VARIANT
) -> VariantConfig:
    return checked(replace(config, shadow=Shadow(name, version, sample_rate)))


def with_challenger(
    config: VariantConfig, version: str, share: float, name: str = "challenger"
) -> VariantConfig:
    """A retrain's challenger (docs/retrain.md, PublishMode=challenger): an existing variant `name`
    gets the new version and keeps its weight (no shopper moves); otherwise it is added with a weight
    that gives it `share` of the traffic, the others keeping their proportions."""
    if not 0 < share < 1:
        raise InvalidVariants("the challenger's share must be between 0 and 1")
    existing = {v.name: v for v in config.variants}
    if name in existing:
        return with_variant(config, name, version, existing[name].weight)
    others = sum(v.weight for v in config.variants)
    return with_variant(config, name, version, share / (1 - share) * others)


def checked(config: VariantConfig) -> VariantConfig:
    """`config` if it is a document serving accepts (the same rules as reading it back)."""
    document = {"version": config.control.version, **variants_fields(config)}
    if len(config.variants) == 1:
        document["variants"] = [
            {"name": v.name, "version": v.version, "weight": v.weight} for v in config.variants
        ]
    parse_variants(document)
    return config
