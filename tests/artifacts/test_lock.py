"""Builds are reproducible: one lock with hashes, every artifact installed from it, tests on what ships."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tomllib
from importlib import metadata
from pathlib import Path

import pytest

from tests.artifacts.requirements import LAYER_REQUIREMENTS, REPO, TRAIN_REQUIREMENTS, read_pins

DOCKERFILE = REPO / "training" / "Dockerfile"
# What the runtime ships itself, so the layer must not (a second botocore would shadow the runtime's).
RUNTIME_PACKAGES = {"boto3", "botocore", "s3transfer"}


def _locked() -> dict[str, str]:
    lock = tomllib.loads((REPO / "uv.lock").read_text())
    return {package["name"]: package["version"] for package in lock["package"]}


def _uv() -> str:
    """The uv of the dev extra, installed beside this interpreter (`make` installs it)."""
    uv = Path(sys.executable).with_name("uv")
    assert uv.is_file(), f"no uv beside {sys.executable}: run the tests through `make test`"
    return str(uv)


def _uv_env() -> dict[str, str]:
    # Never a download of a managed Python: lock and export with this interpreter.
    return {**os.environ, "UV_PYTHON_DOWNLOADS": "never", "UV_PYTHON": sys.executable}


def test_lock_is_up_to_date_with_pyproject() -> None:
    """`uv lock --check` fails when pyproject.toml changed and `make lock` was not run."""
    run = subprocess.run(
        [_uv(), "lock", "--check"], cwd=REPO, env=_uv_env(), capture_output=True, text=True, timeout=300
    )
    assert run.returncode == 0, run.stderr[-3000:]


def test_requirement_files_are_the_lock_exported(tmp_path: Path) -> None:
    """What the layer and the retrain image install is exactly uv.lock: regenerate with `make requirements`."""
    layer, train = tmp_path / "layer.txt", tmp_path / "train.txt"
    command = ["make", "-s", "-C", str(REPO), "requirements", f"UV={_uv()}"]
    command += [f"LAYER_REQUIREMENTS={layer}", f"TRAIN_REQUIREMENTS={train}"]
    run = subprocess.run(command, env=_uv_env(), capture_output=True, text=True, timeout=300, check=False)
    assert run.returncode == 0, run.stderr[-3000:]
    assert layer.read_text() == LAYER_REQUIREMENTS.read_text(), "stale: run `make requirements`"
    assert train.read_text() == TRAIN_REQUIREMENTS.read_text(), "stale: run `make requirements`"


def test_every_requirement_is_pinned_to_the_lock_with_hashes() -> None:
    locked = _locked()
    for path in (LAYER_REQUIREMENTS, TRAIN_REQUIREMENTS):
        pins = read_pins(path)  # raises on a line without == or without a hash
        assert pins, path
        assert all(locked[pin.name] == pin.version for pin in pins), path


def test_layer_ships_serving_dependencies_only() -> None:
    names = {pin.name for pin in read_pins(LAYER_REQUIREMENTS)}
    assert {"numpy", "ai-edge-litert", "pydantic", "pydantic-core", "aws-lambda-powertools"} <= names
    assert not names & {"tensorflow", "tensorflow-cpu", "keras", *RUNTIME_PACKAGES}


def test_layer_is_installed_with_require_hashes_and_nothing_else() -> None:
    makefile = (REPO / "layers" / "runtime" / "Makefile").read_text()
    install = next(line for line in makefile.splitlines() if "$(PIP) install" in line)
    assert "--require-hashes" in install and "--no-deps" in install


def test_tensorflow_is_pinned_exactly() -> None:
    extras = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    tensorflow = [spec for spec in extras["train"] if spec.startswith("tensorflow")]
    assert len(tensorflow) == 2 and all(
        re.match(r"tensorflow(-cpu)?==\d+\.\d+\.\d+;", spec) for spec in tensorflow
    )
    train = {pin.name: pin for pin in read_pins(TRAIN_REQUIREMENTS)}
    # Both builds are in the file: the x86_64 image takes tensorflow-cpu, the arm64 image tensorflow.
    assert train["tensorflow"].version == train["tensorflow-cpu"].version
    assert train["tensorflow"].applies("aarch64") and not train["tensorflow"].applies("x86_64")
    assert train["tensorflow-cpu"].applies("x86_64") and not train["tensorflow-cpu"].applies("aarch64")


def test_retrain_image_is_pinned_by_digest_and_installs_the_lock() -> None:
    lines = [line.strip() for line in DOCKERFILE.read_text().splitlines()]
    base = [line for line in lines if line.startswith("FROM ")]
    # The multi-arch index digest: docker picks the image of the function's Architecture from it.
    assert len(base) == 1 and re.fullmatch(
        r"FROM public\.ecr\.aws/lambda/python:3\.12@sha256:[0-9a-f]{64}", base[0]
    )
    text = DOCKERFILE.read_text()
    assert "--require-hashes -r /tmp/nextpick/training/requirements.txt" in text
    assert "--no-deps --no-build-isolation /tmp/nextpick" in text
    assert "[train]" not in text and "TENSORFLOW_SPEC" not in text


def test_uv_of_the_makefile_is_the_locked_one() -> None:
    makefile = (REPO / "Makefile").read_text()
    bootstrap = re.search(r"^UV_VERSION := (\S+)$", makefile, re.MULTILINE)
    assert bootstrap is not None and bootstrap.group(1) == _locked()["uv"]


def test_tests_run_on_the_python_and_the_versions_the_layer_ships() -> None:
    """The layer is built for Python 3.12 from the same lock, so what passes here is what Lambda imports."""
    assert sys.version_info[:2] == (3, 12), "the Lambda runtime is python3.12: run through `make test`"
    differing = {
        pin.name: (pin.version, _installed(pin.name))
        for pin in read_pins(LAYER_REQUIREMENTS)
        if pin.applies() and _installed(pin.name) != pin.version
    }
    assert not differing, f"(layer, this environment): {differing}; run `make test`, which syncs uv.lock"


def _installed(name: str) -> str | None:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


@pytest.mark.parametrize("path", [LAYER_REQUIREMENTS, TRAIN_REQUIREMENTS], ids=lambda path: path.parent.name)
def test_requirement_files_say_they_are_generated(path: Path) -> None:
    assert path.read_text().startswith("# Generated from uv.lock by `make lock`")
