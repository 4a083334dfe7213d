"""When do two training runs of the same data and seed give different model bytes? (issue 14, docs/retrain.md)

    python -m bench.train_determinism            # every configuration below, each in a fresh process

Each configuration trains the same synthetic shop with the same seed in a fresh interpreter and prints
the sha256 of the exported .tflite: TensorFlow's intra-/inter-op thread pools (what a different vCPU
count changes when nothing pins them), oneDNN on or off (TF_ENABLE_ONEDNN_OPTS), and
`tf.config.experimental.enable_op_determinism()`.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys

import numpy as np

CONFIGURATIONS: list[dict[str, int | str | bool]] = [
    {"threads": 0, "onednn": "1", "op_determinism": False},  # TF's default: one thread per core
    {"threads": 0, "onednn": "1", "op_determinism": False},
    {"threads": 1, "onednn": "1", "op_determinism": False},
    {"threads": 2, "onednn": "1", "op_determinism": False},
    {"threads": 4, "onednn": "1", "op_determinism": False},
    {"threads": 1, "onednn": "0", "op_determinism": False},
    {"threads": 4, "onednn": "0", "op_determinism": False},
    {"threads": 1, "onednn": "1", "op_determinism": True},
    {"threads": 4, "onednn": "1", "op_determinism": True},
]


def shop(users: int = 300, per_user: int = 30, items: int = 500) -> list[list[tuple[int, int, float, float]]]:
    rng = np.random.default_rng(11)
    popularity = 1.0 / np.arange(1, items) ** 1.1
    popularity /= popularity.sum()
    return [
        [
            (
                int(rng.choice(np.arange(1, items), p=popularity)),
                int(rng.integers(0, 6)),
                1.0,
                1.79e9 + 600.0 * j,
            )
            for j in range(per_user)
        ]
        for _ in range(users)
    ]


def one(threads: int, op_determinism: bool) -> str:
    import tensorflow as tf

    if threads:
        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(threads)
    if op_determinism:
        tf.config.experimental.enable_op_determinism()
    from nextpick_training import model as model_lib
    from nextpick_training.export import export_tflite

    hp = model_lib.Hyperparameters(embedding_dim=32, hidden_dim=64, epochs=2, negatives=128, batch_size=128)
    return hashlib.sha256(export_tflite(model_lib.train(shop(), 500, hp))).hexdigest()


def main() -> int:
    if len(sys.argv) == 4 and sys.argv[1] == "--one":
        print(one(int(sys.argv[2]), sys.argv[3] == "1"))
        return 0
    rows = []
    for config in CONFIGURATIONS:
        env = {**os.environ, "TF_ENABLE_ONEDNN_OPTS": str(config["onednn"]), "TF_CPP_MIN_LOG_LEVEL": "2"}
        argv = [sys.executable, "-m", "bench.train_determinism", "--one", str(config["threads"])]
        done = subprocess.run(
            [*argv, "1" if config["op_determinism"] else "0"],
            env=env,
            capture_output=True,
            text=True,
            check=True,
        )
        rows.append({**config, "sha256": done.stdout.strip().splitlines()[-1][:16]})
        print(json.dumps(rows[-1]), flush=True)
    print(f"cpu_count={os.cpu_count()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
