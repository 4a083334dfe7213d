"""The pointer's experiment fields (issue 13, docs/variants.md): building a pointer that names several
live versions with weights and a shadow, and reading each version's keys back for loading.

Part of the model registry (`model_registry`, the one definition of keys, manifest and pointer): the
top-level fields stay `build_pointer`'s (the control's), and every variant and the shadow carry the
same `version`, `model_key`, `manifest_key` and `sha256` as a pointer does, so each is loaded by the
same verified reader (`load_live`) as the control.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from nextpick.adapters import model_registry as registry
from nextpick.domain.variants import InvalidVariants, VariantConfig, parse_variants, variants_fields
from nextpick.errors import ModelIntegrityError

_REF_FIELDS = ("version", "model_key", "manifest_key", "sha256")


def version_ref(manifest: Mapping[str, Any], prefix: str) -> dict[str, str]:
    """What a pointer entry says of a version: its keys and its model's sha256."""
    version = str(manifest["version"])
    return {
        "version": version,
        "model_key": registry.model_key(prefix, version),
        "manifest_key": registry.manifest_key(prefix, version),
        "sha256": str(manifest["sha256"]),
    }


def build_variants_pointer(
    config: VariantConfig,
    refs: Mapping[str, Mapping[str, Any]],
    prefix: str,
    published_at: datetime,
) -> dict[str, Any]:
    """The pointer document of `config`: the control's pointer (`build_pointer`) plus, for an
    experiment, `variants`, `shadow` and `salt`, each entry with its version's keys and sha256.
    `refs` maps every version `config` names to its manifest or a pointer entry of it (both carry
    `version` and `sha256`; the caller has verified the version)."""
    pointer = registry.build_pointer(refs[config.control.version], prefix, published_at)
    fields = variants_fields(config)
    for entry in fields.get("variants", []):
        entry.update(version_ref(refs[entry["version"]], prefix))
    if "shadow" in fields:
        fields["shadow"].update(version_ref(refs[fields["shadow"]["version"]], prefix))
    pointer.update(fields)
    parse_variants(pointer)  # the document we write is one we can read back
    return pointer


def read_variants(pointer: Mapping[str, Any]) -> tuple[VariantConfig, dict[str, dict[str, Any]]]:
    """The experiment of a read pointer and, per version it names, a pointer-shaped entry for
    `load_live`. An old pointer is the control alone. ModelIntegrityError when the fields are malformed."""
    try:
        config = parse_variants(pointer)
    except InvalidVariants as exc:
        raise ModelIntegrityError(f"the model pointer's experiment is malformed: {exc}") from exc
    refs: dict[str, dict[str, Any]] = {config.control.version: dict(pointer)}
    entries = [*(pointer.get("variants") or [])[1:], *([pointer["shadow"]] if pointer.get("shadow") else [])]
    for entry in entries:
        if not all(isinstance(entry.get(name), str) for name in _REF_FIELDS):
            raise ModelIntegrityError(f"the model pointer's entry for {entry.get('name')!r} lacks its keys")
        refs.setdefault(str(entry["version"]), {name: entry[name] for name in _REF_FIELDS})
    return config, refs
