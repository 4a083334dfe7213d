"""A model version's optional side artifacts (docs/model-contract.md): the bought-together partner
table (`bought_together.npz`), the large-catalog explore index (`explore_index.npz`) and explore scan
(`explore_scan.tflite`).

For each: how it is encoded, its manifest entry, and how serving reads it back verified (sha256 and
size against the manifest, then its own shape checks). Keys, names and checksums are the registry's
(`model_registry`); this module adds only what the two optional tables need. A version without one
(older models) reads as None; any artifact that is present but wrong is a `ModelIntegrityError`.
"""

from __future__ import annotations

import io
import zipfile
from collections.abc import Mapping
from typing import Any

import numpy as np

from nextpick.adapters.litert_scan import LiteRTExploreScan
from nextpick.adapters.model_registry import (
    EXPLORE_INDEX_NAME,
    EXPLORE_SCAN_NAME,
    bought_together_key,
    explore_index_key,
    explore_scan_key,
    load_artifact,
    sha256_hex,
)
from nextpick.domain.candidates import ExploreIndex
from nextpick.domain.together import PartnerTable
from nextpick.errors import ModelIntegrityError

# ---------------------------------------------------------------------------------------------------
# Bought together: `bought_together.npz`, two arrays (`partners` int32, `scores` float32) of one shape
# [rows, partners per item], rows = the vocabulary the table was computed for (a prefix of the
# manifest's items: a catalog refresh only appends). No pickles: np.load(allow_pickle=False).


def encode_partner_table(table: PartnerTable) -> bytes:
    buffer = io.BytesIO()
    np.savez_compressed(buffer, partners=table.partners, scores=table.scores)
    return buffer.getvalue()


def decode_partner_table(body: bytes, what: str = "bought_together.npz") -> PartnerTable:
    """The table in `body`; anything else (not an npz, missing arrays, bad dtypes or indices) is an
    integrity error."""
    try:
        with np.load(io.BytesIO(body), allow_pickle=False) as arrays:
            return PartnerTable(np.asarray(arrays["partners"]), np.asarray(arrays["scores"]))
    except (ValueError, KeyError, OSError, EOFError, zipfile.BadZipFile) as exc:
        raise ModelIntegrityError(f"{what} is not a valid partner table: {exc}") from exc


def bought_together_entry(body: bytes, parameters: Mapping[str, Any]) -> dict[str, Any]:
    """The manifest's `bought_together` field for the artifact `body`: its checksum, size and shape, and
    the parameters it was computed with (how partners are scored, how many orders it saw)."""
    table = decode_partner_table(body)
    return {
        "sha256": sha256_hex(body),
        "size_bytes": len(body),
        "shape": [int(table.partners.shape[0]), int(table.partners.shape[1])],
        "parameters": dict(parameters),
    }


def _entry_bytes(s3: Any, bucket: str, key: str, manifest: Mapping[str, Any], field: str) -> bytes | None:
    """The bytes of the optional artifact the manifest's `field` names (sha256 and size checked), or None
    when the version has none (older models)."""
    entry = manifest.get(field)
    if entry is None:
        return None
    version = str(manifest.get("version"))
    if not isinstance(entry, dict) or not isinstance(entry.get("sha256"), str):
        raise ModelIntegrityError(f"model {version!r}'s manifest has a malformed {field} entry")
    body = load_artifact(s3, bucket, key, entry["sha256"])
    if len(body) != entry.get("size_bytes"):
        raise ModelIntegrityError(f"model {version!r}'s {field} artifact has the wrong size")
    return body


def read_partner_bytes(s3: Any, bucket: str, prefix: str, manifest: Mapping[str, Any]) -> bytes | None:
    """A version's `bought_together.npz` bytes, checked against the manifest's sha256 and size, or None
    when the version has none (older models)."""
    key = bought_together_key(prefix, str(manifest.get("version")))
    return _entry_bytes(s3, bucket, key, manifest, "bought_together")


def load_partner_table(s3: Any, bucket: str, prefix: str, manifest: Mapping[str, Any]) -> PartnerTable | None:
    """A version's partner table, verified (sha256, size, shape, rows within the vocabulary), or None
    when the version has none. A missing artifact the manifest names is `NotFound`."""
    body = read_partner_bytes(s3, bucket, prefix, manifest)
    if body is None:
        return None
    version = str(manifest.get("version"))
    table = decode_partner_table(body, f"model {version!r}'s bought_together.npz")
    shape = [int(n) for n in table.partners.shape]
    if shape != manifest["bought_together"].get("shape") or shape[0] > len(manifest["items"]):
        raise ModelIntegrityError(f"model {version!r}'s bought_together.npz does not match its manifest")
    return table


# ---------------------------------------------------------------------------------------------------
# Explore index: `explore_index.npz` (docs/ranking-1m.md), the arrays of `candidates.INDEX_ARRAYS`, read
# with allow_pickle=False and checked against the manifest's vocabulary by `ExploreIndex.from_arrays`.


_NPY_HEADER_READERS = {
    (1, 0): np.lib.format.read_array_header_1_0,
    (2, 0): np.lib.format.read_array_header_2_0,
}


def _stored_npz_arrays(body: bytes) -> dict[str, np.ndarray]:
    """The arrays of an uncompressed `.npz`: read-only views of `body`, or one plain copy where a member
    does not start at an address its dtype can be read from. At 1M items `np.load` reads the 264 MB
    table in chunks and checks a CRC the sha256 already covers: 2.2 s against 0.4 s here (measured at a
    load average of 15 on 2 cores). A compressed member is read by `np.load`."""
    arrays: dict[str, np.ndarray] = {}
    with zipfile.ZipFile(io.BytesIO(body)) as archive:
        for info in archive.infolist():
            name = info.filename.removesuffix(".npy")
            if info.compress_type != zipfile.ZIP_STORED:
                with np.load(io.BytesIO(body), allow_pickle=False) as loaded:
                    arrays[name] = loaded[name]
                continue
            # The local file header: 30 bytes (name and extra-field lengths at 26 and 28), the name, the
            # extra field, then the member.
            offset = info.header_offset
            name_length = int.from_bytes(body[offset + 26 : offset + 28], "little")
            extra_length = int.from_bytes(body[offset + 28 : offset + 30], "little")
            start = offset + 30 + name_length + extra_length
            member = io.BytesIO(body[start : start + 4096])
            version = np.lib.format.read_magic(member)
            read_header = _NPY_HEADER_READERS.get(version)
            if read_header is None:
                raise ValueError(f"{name} has npy format {version}, not 1.0 or 2.0")
            shape, fortran, dtype = read_header(member)
            if fortran or dtype.hasobject:
                raise ValueError(f"{name} is not a C-ordered plain array")
            count = int(np.prod(shape, dtype=np.int64))
            array = np.frombuffer(body, dtype, count, start + member.tell()).reshape(shape)
            # A view at an address its dtype cannot be read from directly is copied once (BLAS wants it).
            arrays[name] = array if array.flags.aligned else array.copy()
    return arrays


def decode_explore_index(body: bytes, num_items: int, what: str = EXPLORE_INDEX_NAME) -> ExploreIndex:
    try:
        return ExploreIndex.from_arrays(_stored_npz_arrays(body), num_items)
    except (ValueError, KeyError, OSError, EOFError, zipfile.BadZipFile) as exc:
        raise ModelIntegrityError(f"{what} is not a valid explore index: {exc}") from exc


def explore_index_entry(body: bytes, num_items: int, calibration_recall: float) -> dict[str, Any]:
    """The manifest's `explore_index` field for `body`: checksum, size, lists, probe and the recall@10
    the build measured on its calibration shoppers."""
    index = decode_explore_index(body, num_items)
    return {
        "sha256": sha256_hex(body),
        "size_bytes": len(body),
        "lists": index.lists,
        "probe": index.probe,
        "calibration_recall": round(float(calibration_recall), 4),
    }


def read_explore_index_bytes(s3: Any, bucket: str, prefix: str, manifest: Mapping[str, Any]) -> bytes | None:
    key = explore_index_key(prefix, str(manifest.get("version")))
    return _entry_bytes(s3, bucket, key, manifest, "explore_index")


def load_explore_index(s3: Any, bucket: str, prefix: str, manifest: Mapping[str, Any]) -> ExploreIndex | None:
    """A version's explore index, verified (sha256, size, every item of the vocabulary once), or None when
    the version has none. A missing artifact the manifest names is `NotFound`."""
    body = read_explore_index_bytes(s3, bucket, prefix, manifest)
    if body is None:
        return None
    version = str(manifest.get("version"))
    return decode_explore_index(body, len(manifest["items"]), f"model {version!r}'s {EXPLORE_INDEX_NAME}")


# ---------------------------------------------------------------------------------------------------
# Explore scan: `explore_scan.tflite` (docs/ranking-1m.md), a LiteRT model checked and run once by
# `LiteRTExploreScan` against the manifest's vocabulary and the model's query width.


def explore_scan_entry(body: bytes, num_items: int, calibration_recall: float) -> dict[str, Any]:
    """The manifest's `explore_scan` field for `body`: checksum, size, candidates per request and the
    recall@10 the build measured on its calibration shoppers."""
    scan = LiteRTExploreScan(body, num_items)
    return {
        "sha256": sha256_hex(body),
        "size_bytes": len(body),
        "candidates": scan.size,
        "calibration_recall": round(float(calibration_recall), 4),
    }


def load_explore_scan(
    s3: Any, bucket: str, prefix: str, manifest: Mapping[str, Any], query_dim: int
) -> LiteRTExploreScan | None:
    """A version's explore scan, verified (sha256, size, signatures, one run) for a model whose query is
    `query_dim` wide, or None when the version has none. A missing artifact the manifest names is
    `NotFound`; one that does not load or run is a `ModelIntegrityError`."""
    key = explore_scan_key(prefix, str(manifest.get("version")))
    body = _entry_bytes(s3, bucket, key, manifest, "explore_scan")
    if body is None:
        return None
    scan = LiteRTExploreScan(body, len(manifest["items"]), query_dim)
    if scan.size != manifest["explore_scan"].get("candidates"):
        raise ModelIntegrityError(
            f"model {manifest.get('version')!r}'s {EXPLORE_SCAN_NAME} does not match its manifest"
        )
    return scan
