"""MovieLens-100K for the quality benchmark.

The data set ships inside the ``recbole`` wheel on PyPI, which is the only network source this
project's environment can reach. We download the wheel (never install it: recbole pulls in torch)
and read the ``.inter`` file straight out of the zip. Everything is cached outside the repository.
"""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

RECBOLE_VERSION = "1.2.1"
INTER_PATH = "recbole/dataset_example/ml-100k/ml-100k.inter"
DEFAULT_CACHE_DIR = Path.home() / ".cache" / "nextpick"

Rating = tuple[int, int, float, int]
"""(user id, item id, rating 1..5, unix timestamp), ids as in the original data set."""


def _wheel_path(cache_dir: Path) -> Path:
    wheels = sorted(cache_dir.glob(f"recbole-{RECBOLE_VERSION}-*.whl"))
    if wheels:
        return wheels[0]
    cache_dir.mkdir(parents=True, exist_ok=True)
    command = [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps"]
    subprocess.run([*command, f"recbole=={RECBOLE_VERSION}", "-d", str(cache_dir)], check=True)
    wheels = sorted(cache_dir.glob(f"recbole-{RECBOLE_VERSION}-*.whl"))
    if not wheels:
        raise FileNotFoundError(f"pip download did not leave a recbole wheel in {cache_dir}")
    return wheels[0]


def parse_inter(text: str) -> list[Rating]:
    """Parse RecBole's atomic ``.inter`` format (tab separated, one header line)."""
    rows: list[Rating] = []
    lines = text.splitlines()
    for line in lines[1:]:
        if not line.strip():
            continue
        user, item, rating, timestamp = line.split("\t")[:4]
        rows.append((int(user), int(item), float(rating), int(float(timestamp))))
    return rows


def load_ml100k(cache_dir: str | Path = DEFAULT_CACHE_DIR) -> list[Rating]:
    """All 100,000 ratings of MovieLens-100K, in file order."""
    cache = Path(cache_dir).expanduser()
    with zipfile.ZipFile(_wheel_path(cache)) as wheel:
        text = wheel.read(INTER_PATH).decode("utf-8")
    return parse_inter(text)
