"""Every shared library that ships to Lambda loads there: GLIBC/GLIBCXX versions against the runtime's.

The layer is built by its own Makefile (which runs the same check and fails the build), for both
architectures; the retrain image's packages are installed the way its Dockerfile does, without Docker.
Downloads go through pip's cache (~/.cache/pip); the installed image trees are kept under
~/.cache/nextpick/abi, keyed by the requirements they came from.
"""

from __future__ import annotations

import hashlib
import importlib.util
import shutil
import subprocess
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from cfnlint.decode import decode

from tests.artifacts.requirements import REPO, TRAIN_REQUIREMENTS, write_for_machine

LAYER_DIR = REPO / "layers" / "runtime"
CACHE = Path.home() / ".cache" / "nextpick" / "abi"
MACHINE = {"x86_64": "x86_64", "arm64": "aarch64"}
PLATFORM_TAGS = ("manylinux2014", "manylinux_2_27", "manylinux_2_28")
# LiteRT's aarch64 libraries, which need GLIBCXX_3.4.30 (docs/deploy.md, "ABI check").
LITERT_ARM64_FAILURES = {
    "python/ai_edge_litert/libLiteRt.so",
    "python/ai_edge_litert/libpywrap_litert_common.so",
}


def _load_checker() -> ModuleType:
    """layers/runtime/abi_check.py is a script beside the layer's Makefile, not a package."""
    spec = importlib.util.spec_from_file_location("abi_check", LAYER_DIR / "abi_check.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


abi_check = _load_checker()


def _build_layer(architecture: str, artifacts: Path) -> subprocess.CompletedProcess[str]:
    command = ["make", "-s", "-C", str(LAYER_DIR), "build-RuntimeLayer", f"ARCHITECTURE={architecture}"]
    command += [f"ARTIFACTS_DIR={artifacts}", f"PIP={sys.executable} -m pip"]
    return subprocess.run(command, capture_output=True, text=True, timeout=900, check=False)


@pytest.fixture(scope="module")
def x86_64_layer(tmp_path_factory: pytest.TempPathFactory) -> tuple[subprocess.CompletedProcess[str], Path]:
    artifacts = tmp_path_factory.mktemp("layer-x86_64")
    return _build_layer("x86_64", artifacts), artifacts


@pytest.fixture(scope="module")
def arm64_layer(tmp_path_factory: pytest.TempPathFactory) -> tuple[subprocess.CompletedProcess[str], Path]:
    artifacts = tmp_path_factory.mktemp("layer-arm64")
    return _build_layer("arm64", artifacts), artifacts


def _paths(verdicts: list[Any]) -> set[str]:
    return {verdict.path for verdict in verdicts}


@pytest.mark.slow
def test_x86_64_layer_builds_and_every_library_loads_on_lambda(
    x86_64_layer: tuple[subprocess.CompletedProcess[str], Path],
) -> None:
    build, artifacts = x86_64_layer
    assert build.returncode == 0, build.stderr[-3000:]
    assert "0 would not load on Lambda (x86_64)" in build.stderr  # the build ran the check
    verdicts = abi_check.check([artifacts], "x86_64")
    assert len(verdicts) > 30, "the check found too few ELF files to have read the layer"
    assert "python/ai_edge_litert/libLiteRt.so" in _paths(verdicts)
    assert any(path.startswith("python/numpy/_core/_multiarray_umath") for path in _paths(verdicts))
    assert [verdict.problems for verdict in verdicts if not verdict.ok] == []
    glibcxx = {verdict.required("GLIBCXX") for verdict in verdicts if verdict.path.endswith("libLiteRt.so")}
    assert glibcxx == {"GLIBCXX_3.4.22"}


@pytest.mark.slow
def test_arm64_layer_build_stops_on_litert_needing_a_newer_libstdcxx(
    arm64_layer: tuple[subprocess.CompletedProcess[str], Path],
) -> None:
    """The reason the template's default Architecture is x86_64. If a LiteRT release fixes its aarch64
    build, this fails: switch the default (and docs/deploy.md) to arm64."""
    build, artifacts = arm64_layer
    assert build.returncode != 0
    assert "GLIBCXX_3.4.30 from libstdc++.so.6" in build.stderr
    assert not list(artifacts.rglob("*.pyc")), "the build went on past the failed check"
    verdicts = abi_check.check([artifacts], "arm64")
    assert {verdict.path for verdict in verdicts if not verdict.ok} == LITERT_ARM64_FAILURES
    assert all(verdict.needed.get("GLIBC", ()) <= abi_check.BASELINE["GLIBC"] for verdict in verdicts)


@pytest.mark.slow
def test_checker_rejects_the_wrong_architecture(
    x86_64_layer: tuple[subprocess.CompletedProcess[str], Path],
) -> None:
    _, artifacts = x86_64_layer
    verdicts = abi_check.check([artifacts / "python" / "numpy"], "arm64")
    assert verdicts and all("built for EM_X86_64, not arm64" in verdict.problems for verdict in verdicts)


def _image_site_packages(machine: str) -> Path:
    """training/requirements.txt installed for Python 3.12 on Linux `machine`, as the Dockerfile's pip
    would (markers decided for that machine), kept in ~/.cache between runs."""
    digest = hashlib.sha256(TRAIN_REQUIREMENTS.read_bytes()).hexdigest()[:16]
    site = CACHE / f"image-{machine}-{digest}"
    if (site / ".complete").exists():
        return site
    shutil.rmtree(site, ignore_errors=True)
    site.mkdir(parents=True)
    requirements = write_for_machine(TRAIN_REQUIREMENTS, machine, site.with_suffix(".txt"))
    command = [
        sys.executable,
        "-m",
        "pip",
        "install",
        "--quiet",
        "--no-compile",
        "--disable-pip-version-check",
    ]
    command += ["--require-hashes", "--no-deps", "--only-binary=:all:", "--implementation", "cp"]
    command += ["--python-version", "3.12", *(f"--platform={tag}_{machine}" for tag in PLATFORM_TAGS)]
    command += ["-r", str(requirements), "-t", str(site)]
    run = subprocess.run(command, capture_output=True, text=True, timeout=1800, check=False)
    assert run.returncode == 0, run.stderr[-3000:]
    (site / ".complete").touch()
    return site


@pytest.mark.slow
@pytest.mark.parametrize("architecture", ["x86_64", "arm64"])
def test_retrain_image_packages_load_on_lambda(architecture: str) -> None:
    """The image's base is the same Amazon Linux 2023 runtime, so the same baseline applies."""
    site = _image_site_packages(MACHINE[architecture])
    verdicts = abi_check.check([site], architecture)
    assert any(path.startswith("tensorflow/") for path in _paths(verdicts))
    failures = {verdict.path: verdict.problems for verdict in verdicts if not verdict.ok}
    if architecture == "arm64":
        # The same LiteRT wheel as the layer's (serving's runner scores candidates in training).
        assert {path.removeprefix("python/") for path in LITERT_ARM64_FAILURES} <= set(failures)
        failures = {
            path: problems for path, problems in failures.items() if not path.startswith("ai_edge_litert/")
        }
    assert failures == {}


def test_every_function_and_the_layer_take_the_architecture_parameter() -> None:
    template, errors = decode(str(REPO / "template.yaml"))
    assert not errors and template is not None
    parameter = template["Parameters"]["Architecture"]
    assert parameter["Default"] == "x86_64" and set(parameter["AllowedValues"]) == set(abi_check.MACHINES)
    architecture = [{"Ref": "Architecture"}]
    assert template["Globals"]["Function"]["Architectures"] == architecture
    resources = template["Resources"]
    functions = [
        resource for resource in resources.values() if resource["Type"] == "AWS::Serverless::Function"
    ]
    assert functions and all("Architectures" not in function["Properties"] for function in functions)
    assert resources["RuntimeLayer"]["Properties"]["CompatibleArchitectures"] == architecture
    # The layer's Makefile builds for the same default when sam build does not say (it cannot).
    assert "ARCHITECTURE ?= x86_64" in (LAYER_DIR / "Makefile").read_text()


# std::condition_variable::wait got a new symbol version in GCC 12's libstdc++ (GLIBCXX_3.4.30): what
# LiteRT's aarch64 build needs and Amazon Linux 2023's GCC 11 libstdc++ lacks.
NEEDS_GLIBCXX_3_4_30 = """
#include <condition_variable>
#include <mutex>
std::mutex m;
std::condition_variable cv;
extern "C" void wait_once() { std::unique_lock<std::mutex> lock(m); cv.wait(lock); }
"""


def test_a_libstdcxx_shipped_in_the_layer_is_checked_instead_of_the_runtimes(tmp_path: Path) -> None:
    """What arm64 would take: a newer libstdc++ in the layer's lib/ (on LD_LIBRARY_PATH in Lambda)
    satisfies GLIBCXX_3.4.30, but only if that libstdc++ itself needs no glibc newer than 2.34."""
    compiler = shutil.which("g++")
    if compiler is None:
        pytest.skip("no g++ to build a library that needs GLIBCXX_3.4.30")
    (tmp_path / "python").mkdir()
    source, library = tmp_path / "needs.cpp", tmp_path / "python" / "libneeds.so"
    source.write_text(NEEDS_GLIBCXX_3_4_30)
    subprocess.run([compiler, "-shared", "-fPIC", "-O1", "-o", str(library), str(source)], check=True)
    alone = abi_check.check([tmp_path], "x86_64")
    if alone[0].needed.get("GLIBCXX", ()) < (3, 4, 30):
        pytest.skip("this g++ is older than GCC 12: its libstdc++ has no GLIBCXX_3.4.30")
    assert alone[0].problems == [
        "GLIBCXX_3.4.30 from libstdc++.so.6; the runtime has GLIBCXX up to GLIBCXX_3.4.29"
    ]

    (tmp_path / "lib").mkdir()
    runtime = subprocess.run([compiler, "-print-file-name=libstdc++.so.6"], capture_output=True, text=True)
    shutil.copy(Path(runtime.stdout.strip()).resolve(), tmp_path / "lib" / "libstdc++.so.6")
    shipped = {verdict.path: verdict for verdict in abi_check.check([tmp_path], "x86_64")}
    assert shipped["python/libneeds.so"].ok  # resolved against the shipped library's version definitions
    assert "GLIBCXX" not in shipped["python/libneeds.so"].needed
    # The shipped libstdc++ is held to the runtime's glibc like any other file (Debian 12's needs 2.36).
    libstdcxx = shipped["lib/libstdc++.so.6"]
    assert libstdcxx.ok == (libstdcxx.needed["GLIBC"] <= abi_check.BASELINE["GLIBC"])
