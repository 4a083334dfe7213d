"""Setting up an A/B experiment (docs/variants.md): read the pointer's variants, change them, and switch
the whole experiment with one conditional PutObject of the pointer, the same atomic switch as a publish.

Every version the new document names is read back verified (manifest, sha256, bought-together table)
and built and run in LiteRT before the pointer moves, exactly as a rollback checks its version: a
variant serving could not load is refused here rather than silently served by the control.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from aws_lambda_powertools import Logger

from nextpick.adapters import model_registry as registry
from nextpick.adapters.variants_pointer import build_variants_pointer, read_variants, version_ref
from nextpick.domain.variants import VariantConfig
from nextpick.errors import NotFound
from nextpick_training import publish as publish_lib

logger = Logger(child=True)


@dataclass(frozen=True)
class Experiment:
    """The live pointer's experiment and the ETag it was read at (the switch's precondition)."""

    config: VariantConfig
    etag: str | None
    pointer: dict[str, Any]


def read_experiment(s3: Any, bucket: str, prefix: str = registry.DEFAULT_PREFIX) -> Experiment:
    """The live experiment (an old pointer reads as the control alone). NotFound before any publish;
    ModelIntegrityError for a pointer that does not parse."""
    read = registry.read_pointer(s3, bucket, prefix)
    if read.pointer is None:
        raise NotFound("no model is published yet: publish or train one first")
    config, _ = read_variants(read.pointer)
    return Experiment(config, read.etag, read.pointer)


def switch_experiment(
    s3: Any,
    bucket: str,
    prefix: str,
    config: VariantConfig,
    expected: Experiment,
    now: datetime | None = None,
) -> dict[str, Any]:
    """Make `config` live, only if the pointer is still the one `expected` read (else PointerConflict).
    Every version it names is verified first (NotFound, ModelIntegrityError or ArtifactRefused: nothing
    switched). Returns the new pointer."""
    refs: dict[str, dict[str, Any]] = {}
    for version in sorted(config.versions()):
        publish_lib.check_stored(s3, bucket, prefix, version)
        refs[version] = version_ref(registry.read_manifest(s3, bucket, prefix, version), prefix)
    pointer = build_variants_pointer(config, refs, prefix, now or datetime.now(UTC))
    publish_lib.put_pointer(s3, bucket, prefix, pointer, expected.etag)
    publish_lib.record_history(s3, bucket, prefix, pointer)
    logger.info(
        "experiment switched",
        extra={
            "variants": pointer.get("variants"),
            "shadow": pointer.get("shadow"),
            "control": pointer["version"],
        },
    )
    return pointer
