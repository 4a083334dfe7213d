"""Import time of the API handler as Lambda gets it: Python 3.12 (the runtime's), run with `-S` (no
site-packages), with only the function code, the runtime layer and boto3 (which the runtime ships)
importable — with the `.pyc` files the build now ships, and with the same trees stripped of them
(what every cold start paid before, `/opt` and `/var/task` being read-only).

The layer is built by `layers/runtime/Makefile` for this machine's CPU (the real one is arm64), as
`tests/integration/test_template.py::lambda_runtime` does, and cached under ~/.cache/nextpick/bench
(keyed by the Makefile, the requirements and the CPU); the function code is built by
`functions/Makefile` from the working tree on every run."""

from __future__ import annotations

import hashlib
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from bench.common import REPO_ROOT

CACHE_DIR = Path.home() / ".cache" / "nextpick" / "bench"
HANDLER_MODULE = "nextpick.handlers.api"
BUILD_TIMEOUT_S = 900
# Runs in the Lambda-like child: the code paths first, then the import, timed from inside.
CHILD = """
import sys, time
sys.path[:0] = sys.argv[1].split(":")
started, started_cpu = time.perf_counter(), time.process_time()
import nextpick.handlers.api
print(time.perf_counter() - started, time.process_time() - started_cpu)
"""


@dataclass(frozen=True)
class LambdaImport:
    python: str
    layer_cached: bool
    layer_bytes: int
    layer_pyc_files: int
    # Medians over the repeats, in seconds: wall time, and CPU time of the child.
    with_bytecode_s: float
    with_bytecode_cpu_s: float
    without_bytecode_s: float
    without_bytecode_cpu_s: float
    repeats: int


def python_312() -> str | None:
    """A real Python 3.12 interpreter (a version manager's shim may refuse to run outside its setting)."""
    pyenv_root = Path(os.environ.get("PYENV_ROOT", Path.home() / ".pyenv"))
    candidates = [
        shutil.which("python3.12"),
        *sorted(map(str, pyenv_root.glob("versions/3.12*/bin/python3.12"))),
    ]
    probe = "import sys; assert sys.version_info[:2] == (3, 12); print(sys.executable)"
    for candidate in candidates:
        if candidate is None:
            continue
        run = subprocess.run([candidate, "-c", probe], capture_output=True, text=True, check=False)
        if run.returncode == 0:
            return run.stdout.strip()
    return None


def _platforms() -> str:
    machine = platform.machine()
    return " ".join(
        f"--platform {tag}_{machine}" for tag in ("manylinux2014", "manylinux_2_27", "manylinux_2_28")
    )


def runtime_dir() -> Path:
    """Where the layer for this machine is cached: a new folder whenever its recipe changes."""
    recipe = hashlib.sha256()
    for path in (
        REPO_ROOT / "layers" / "runtime" / "Makefile",
        REPO_ROOT / "layers" / "runtime" / "requirements.txt",
    ):
        recipe.update(path.read_bytes())
    recipe.update(platform.machine().encode())
    return CACHE_DIR / f"lambda-runtime-{recipe.hexdigest()[:10]}"


def _run(command: list[str], timeout: float) -> None:
    run = subprocess.run(command, capture_output=True, text=True, timeout=timeout, check=False)
    if run.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed:\n{run.stderr[-3000:]}")


def build_runtime(python: str) -> Path:
    """The runtime layer (with its bytecode) and boto3 for this CPU, built once into the cache."""
    root = runtime_dir()
    if (root / "done").exists():
        return root
    shutil.rmtree(root, ignore_errors=True)
    pip = f"{sys.executable} -m pip"
    layer = [
        *("make", "-s", "-C", str(REPO_ROOT / "layers" / "runtime"), "build-RuntimeLayer"),
        *(
            f"ARTIFACTS_DIR={root / 'layer'}",
            f"PIP={pip}",
            f"PLATFORMS={_platforms()}",
            f"PYTHON312={python}",
        ),
    ]
    runtime = [
        *(sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check"),
        *("--only-binary=:all:", "--python-version", "3.12", *_platforms().split()),
        *("-t", str(root / "runtime"), "boto3"),
    ]
    _run(layer, BUILD_TIMEOUT_S)
    _run(runtime, BUILD_TIMEOUT_S)
    # The runtime's own boto3 comes compiled with the runtime: compile ours alike.
    _run([python, "-m", "compileall", "-q", "-j", "0", str(root / "runtime")], BUILD_TIMEOUT_S)
    (root / "done").write_text("ok\n")
    return root


def _without_bytecode(source: Path, target: Path) -> Path:
    """A hard-linked copy of `source` without any `.pyc` (cheap: no file content is copied)."""
    shutil.copytree(
        source, target, copy_function=os.link, ignore=shutil.ignore_patterns("__pycache__", "*.pyc")
    )
    return target


def _time_import(python: str, paths: list[Path]) -> tuple[float, float]:
    env = {
        "PATH": os.environ.get("PATH", ""),
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_REGION": "us-east-1",
        "LAMBDA_TASK_ROOT": str(paths[0]),
        # Read-only /opt and /var/task in Lambda: nothing compiled at import may be kept.
        "PYTHONDONTWRITEBYTECODE": "1",
    }
    run = subprocess.run(
        [python, "-S", "-c", CHILD, ":".join(str(path) for path in paths)],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )
    if run.returncode != 0:
        raise RuntimeError(f"importing {HANDLER_MODULE} failed:\n{run.stderr[-3000:]}")
    wall, cpu = run.stdout.split()
    return float(wall), float(cpu)


def measure(repeats: int, *, build: bool) -> LambdaImport | str:
    """The measurement, or why it was skipped (no Python 3.12; no cached layer and `build` is off)."""
    python = python_312()
    if python is None:
        return "no Python 3.12 (the Lambda runtime's version) on this machine"
    cached = (runtime_dir() / "done").exists()
    if not cached and not build:
        return (
            f"no layer built for this machine yet in `{runtime_dir()}` and building one takes minutes: "
            "run the full `python -m bench` once"
        )
    root = build_runtime(python)
    layer = root / "layer" / "python"
    with tempfile.TemporaryDirectory(prefix="nextpick-lambda-") as tmp:
        folder = Path(tmp)
        _run(
            [
                *("make", "-s", "-C", str(REPO_ROOT / "functions"), "build-ApiFunction"),
                f"ARTIFACTS_DIR={folder / 'function'}",
                f"PYTHON312={python}",
            ],
            300,
        )
        compiled = [folder / "function", layer, root / "runtime"]
        bare = [
            _without_bytecode(folder / "function", folder / "function-nopyc"),
            _without_bytecode(layer, folder / "layer-nopyc"),
            root / "runtime",
        ]
        _time_import(python, compiled)  # page cache warm for both: the files are the same inodes
        with_runs, without_runs = [], []
        for _ in range(repeats):
            with_runs.append(_time_import(python, compiled))
            without_runs.append(_time_import(python, bare))
    files = [path for path in layer.rglob("*") if path.is_file()]
    return LambdaImport(
        python=python,
        layer_cached=cached,
        layer_bytes=sum(path.stat().st_size for path in files),
        layer_pyc_files=sum(1 for path in files if path.suffix == ".pyc"),
        with_bytecode_s=statistics.median(wall for wall, _ in with_runs),
        with_bytecode_cpu_s=statistics.median(cpu for _, cpu in with_runs),
        without_bytecode_s=statistics.median(wall for wall, _ in without_runs),
        without_bytecode_cpu_s=statistics.median(cpu for _, cpu in without_runs),
        repeats=repeats,
    )
