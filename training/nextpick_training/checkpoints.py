"""Where training checkpoints live: a local directory or an S3 prefix (the only code here touching S3).

A checkpoint is a set of files (`model.resume` writes them: the TensorFlow checkpoint of the variables,
optimizer, weight averages and noise generator, plus the loop's own state) stored as

    <store>/epoch-000003/<file>...
    <store>/epoch-000003/manifest.json    {"epoch": 3, "files": {name: sha256}}, written LAST

so a preemption in the middle of a save never leaves a checkpoint that is taken: `restore` takes the
newest epoch whose manifest exists AND whose every file matches its sha256 (SageMaker uploads
/opt/ml/checkpoints file by file in no promised order, so the manifest alone is not enough), and falls
back to the one before otherwise. The two newest complete checkpoints are kept.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import tempfile
from pathlib import Path
from typing import Any, Protocol

MANIFEST = "manifest.json"
KEEP = 2
_EPOCH_DIR = re.compile(r"^epoch-(\d{6})$")


class CheckpointStore(Protocol):
    """Saves a checkpoint's files under an epoch and brings the newest complete one back."""

    def save(self, epoch: int, files: Path) -> None:
        """Store every file of the directory `files` as the checkpoint of `epoch`."""
        ...

    def restore(self, target: Path) -> int | None:
        """Copy the newest complete checkpoint's files into `target`; its epoch, or None if there is none."""
        ...


def epoch_name(epoch: int) -> str:
    return f"epoch-{epoch:06d}"


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def manifest_of(epoch: int, files: Path) -> dict[str, Any]:
    return {
        "epoch": epoch,
        "files": {p.name: _sha256(p.read_bytes()) for p in sorted(files.iterdir()) if p.is_file()},
    }


def _complete(manifest: Any, read: Any) -> dict[str, bytes] | None:
    """The checkpoint's files if every one is there with its sha256, else None."""
    if not isinstance(manifest, dict) or not isinstance(manifest.get("files"), dict):
        return None
    files: dict[str, bytes] = {}
    for name, digest in manifest["files"].items():
        body = read(name)
        if body is None or _sha256(body) != digest:
            return None
        files[name] = body
    return files


class LocalCheckpointStore:
    """A directory (SageMaker's /opt/ml/checkpoints, which it syncs to S3; tests; a laptop)."""

    def __init__(self, directory: Path | str) -> None:
        self.directory = Path(directory)

    def __repr__(self) -> str:
        return f"LocalCheckpointStore({str(self.directory)!r})"

    def _epochs(self) -> list[int]:
        if not self.directory.is_dir():
            return []
        found = (_EPOCH_DIR.match(p.name) for p in self.directory.iterdir() if p.is_dir())
        return sorted((int(m.group(1)) for m in found if m), reverse=True)

    def save(self, epoch: int, files: Path) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        final = self.directory / epoch_name(epoch)
        staging = Path(tempfile.mkdtemp(prefix=f".{epoch_name(epoch)}-", dir=self.directory))
        for path in files.iterdir():
            if path.is_file():
                shutil.copyfile(path, staging / path.name)
        (staging / MANIFEST).write_text(json.dumps(manifest_of(epoch, files)))
        if final.exists():
            shutil.rmtree(final)
        os.replace(staging, final)
        for old in self._epochs()[KEEP:]:
            shutil.rmtree(self.directory / epoch_name(old), ignore_errors=True)

    def restore(self, target: Path) -> int | None:
        for epoch in self._epochs():
            folder = self.directory / epoch_name(epoch)

            def read(name: str, folder: Path = folder) -> bytes | None:
                path = folder / name
                return path.read_bytes() if path.is_file() else None

            try:
                manifest = json.loads(read(MANIFEST) or b"null")
            except ValueError:
                continue
            files = _complete(manifest, read)
            if files is not None:
                _write_all(target, files)
                return epoch
        return None


class S3CheckpointStore:
    """An S3 prefix (the run folder's checkpoints/: the Lambda and Batch engines write there directly)."""

    def __init__(self, s3: Any, bucket: str, prefix: str) -> None:
        self.s3, self.bucket = s3, bucket
        self.prefix = prefix if prefix.endswith("/") else prefix + "/"

    def __repr__(self) -> str:
        return f"S3CheckpointStore('s3://{self.bucket}/{self.prefix}')"

    def _epochs(self) -> list[int]:
        epochs: set[int] = set()
        paginator = self.s3.get_paginator("list_objects_v2")
        for page in paginator.paginate(Bucket=self.bucket, Prefix=self.prefix):
            for entry in page.get("Contents", ()):
                parts = entry["Key"][len(self.prefix) :].split("/")
                match = _EPOCH_DIR.match(parts[0])
                if match and parts[-1] == MANIFEST:
                    epochs.add(int(match.group(1)))
        return sorted(epochs, reverse=True)

    def _get(self, key: str) -> bytes | None:
        from botocore.exceptions import ClientError

        try:
            body: bytes = self.s3.get_object(Bucket=self.bucket, Key=key)["Body"].read()
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("NoSuchKey", "404", "NotFound"):
                return None
            raise
        return body

    def save(self, epoch: int, files: Path) -> None:
        base = f"{self.prefix}{epoch_name(epoch)}/"
        for path in sorted(files.iterdir()):
            if path.is_file():
                self.s3.put_object(Bucket=self.bucket, Key=base + path.name, Body=path.read_bytes())
        manifest = json.dumps(manifest_of(epoch, files)).encode()
        self.s3.put_object(Bucket=self.bucket, Key=base + MANIFEST, Body=manifest)
        for old in self._epochs()[KEEP:]:
            self._delete(f"{self.prefix}{epoch_name(old)}/")

    def _delete(self, prefix: str) -> None:
        paginator = self.s3.get_paginator("list_objects_v2")
        for page in paginator.paginate(Bucket=self.bucket, Prefix=prefix):
            for entry in page.get("Contents", ()):
                self.s3.delete_object(Bucket=self.bucket, Key=entry["Key"])

    def restore(self, target: Path) -> int | None:
        for epoch in self._epochs():
            base = f"{self.prefix}{epoch_name(epoch)}/"
            try:
                manifest = json.loads(self._get(base + MANIFEST) or b"null")
            except ValueError:
                continue
            files = _complete(manifest, lambda name, base=base: self._get(base + name))
            if files is not None:
                _write_all(target, files)
                return epoch
        return None


def _write_all(target: Path, files: dict[str, bytes]) -> None:
    target.mkdir(parents=True, exist_ok=True)
    for name, body in files.items():
        (target / name).write_bytes(body)


def store_for(location: str, s3: Any = None) -> CheckpointStore:
    """`s3://bucket/prefix` or a local directory."""
    if location.startswith("s3://"):
        bucket, _, prefix = location[len("s3://") :].partition("/")
        if not bucket:
            raise ValueError(f"checkpoints: {location!r} names no bucket")
        if s3 is None:
            import boto3

            s3 = boto3.client("s3")
        return S3CheckpointStore(s3, bucket, prefix)
    return LocalCheckpointStore(location)
