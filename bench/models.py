"""Real-architecture models at benchmark catalog sizes, cached outside the repository.

Speed does not depend on what the weights are, only on their shapes, so a benchmark model is the
training code's own `TrainedModel` with `init_weights`' random initialisation, exported by
`export_tflite` exactly as a retrain would. Exporting needs TensorFlow, which serving never loads:
it runs in a child process (`python -m bench.models 1000 10000 ...`) so no benchmark process ever
has TensorFlow in memory. The weights are regenerated from the same seed when numpy needs them.
"""

from __future__ import annotations

import argparse
import ast
import functools
import hashlib
import inspect
import json
import os
import subprocess
import sys
import textwrap
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from nextpick.adapters import model_registry as registry
from nextpick_training import model as model_lib

DEFAULT_CACHE_DIR = Path.home() / ".cache" / "nextpick" / "bench"
SEED = 0
# Artifacts of older code are removed once they are this old: never while a concurrent run may use them.
STALE_AFTER_SECONDS = 24 * 3600


def hyperparameters() -> model_lib.Hyperparameters:
    """The production defaults (embedding 64, 4 decays, hidden 256): the architecture that is served."""
    return model_lib.Hyperparameters(seed=SEED)


def _code_of(source: str) -> bytes:
    """The code's syntax tree: reformatting or re-commenting it does not make a new artifact."""
    return ast.dump(ast.parse(textwrap.dedent(source))).encode()


@functools.cache
def _code_fingerprint() -> str:
    """Changes whenever the artifact could: the model and export code (as syntax trees, so reformatting
    does not count) and the hyperparameters. Computed once per process, so one run uses one set of
    artifacts even if the code changes meanwhile."""
    from nextpick_training import export

    digest = hashlib.sha256()
    from nextpick_training.model import graph, reference

    for module in (reference, graph, export):
        digest.update(_code_of(inspect.getsource(module)))
    digest.update(json.dumps(hyperparameters().as_dict(), sort_keys=True).encode())
    return digest.hexdigest()[:10]


def model_path(num_items: int, cache_dir: Path = DEFAULT_CACHE_DIR) -> Path:
    return cache_dir / f"random-{num_items}-{_code_fingerprint()}.tflite"


def weights(num_items: int) -> dict[str, np.ndarray]:
    """The exact weights baked into the cached model of this size (same seed, same initialiser)."""
    return model_lib.init_weights(num_items, hyperparameters(), np.random.default_rng(SEED))


def item_ids(num_items: int) -> list[str | None]:
    return [None, *(f"item-{index}" for index in range(1, num_items))]


def manifest(num_items: int, model_bytes: bytes) -> dict[str, Any]:
    """A manifest per docs/model-contract.md for a cached model."""
    hp = hyperparameters()
    return registry.build_manifest(
        version=f"bench-{num_items}-{registry.sha256_hex(model_bytes)[:8]}",
        created_at=datetime.now(UTC),
        tflite_bytes=model_bytes,
        state_dim=hp.state_dim(),
        items=item_ids(num_items),
        training_window={},
        hyperparameters=hp.as_dict(),
        metrics={},
    )


def ensure_models(sizes: tuple[int, ...], cache_dir: Path = DEFAULT_CACHE_DIR) -> dict[int, float]:
    """Export the sizes missing from the cache (one child process for all); returns export seconds
    per size built now (empty when everything was cached)."""
    missing = [size for size in sizes if not model_path(size, cache_dir).is_file()]
    if not missing:
        return {}
    # The paths are decided here, so the child writes exactly what this process will look for.
    command = [
        sys.executable,
        "-m",
        "bench.models",
        *(f"{size}={model_path(size, cache_dir)}" for size in missing),
    ]
    result = subprocess.run(
        command, check=True, capture_output=True, text=True, cwd=Path(__file__).parent.parent
    )
    return {int(size): float(seconds) for size, seconds in json.loads(result.stdout.splitlines()[-1]).items()}


def load(num_items: int, cache_dir: Path = DEFAULT_CACHE_DIR) -> tuple[bytes, dict[str, Any]]:
    model_bytes = model_path(num_items, cache_dir).read_bytes()
    return model_bytes, manifest(num_items, model_bytes)


def _export(num_items: int, target: Path) -> float:
    from nextpick_training.export import export_tflite

    started = time.perf_counter()
    trained = model_lib.TrainedModel(
        hyperparameters(), num_items, weights(num_items), model_lib.ItemTokens.none(num_items)
    )
    model_bytes = export_tflite(trained)
    target.parent.mkdir(parents=True, exist_ok=True)
    # Write then rename: a concurrent or interrupted run never sees half a model.
    partial = target.with_suffix(f".{os.getpid()}.partial")
    partial.write_bytes(model_bytes)
    partial.replace(target)
    # Artifacts of older code are dead weight (256 MB at 1M items) once no run can still be using them.
    for stale in target.parent.glob(f"random-{num_items}-*.tflite"):
        if stale != target and time.time() - stale.stat().st_mtime > STALE_AFTER_SECONDS:
            stale.unlink(missing_ok=True)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description="Export random-weight benchmark models.")
    parser.add_argument(
        "models", nargs="+", help="SIZE=PATH: catalog size (index 0 included) and .tflite path"
    )
    args = parser.parse_args()
    seconds = {}
    for spec in args.models:
        size, _, path = spec.partition("=")
        seconds[int(size)] = _export(int(size), Path(path))
    # Last line of stdout, read by ensure_models (TensorFlow logs go to stderr).
    print(json.dumps(seconds))


if __name__ == "__main__":
    main()
