"""Reading the requirement files exported from uv.lock (`make requirements`)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from packaging.markers import Marker

REPO = Path(__file__).resolve().parents[2]
LAYER_REQUIREMENTS = REPO / "layers" / "runtime" / "requirements.txt"
TRAIN_REQUIREMENTS = REPO / "training" / "requirements.txt"


@dataclass(frozen=True)
class Pin:
    name: str
    version: str
    marker: Marker | None
    hashes: tuple[str, ...]

    def applies(self, machine: str | None = None) -> bool:
        """Whether pip installs it on this machine, or on Linux `machine` (x86_64, aarch64) if given."""
        if self.marker is None:
            return True
        overrides = {} if machine is None else {"platform_machine": machine, "sys_platform": "linux"}
        return self.marker.evaluate(overrides)

    def line(self) -> str:
        """The requirement for pip without its marker, for a target the marker was evaluated for."""
        return f"{self.name}=={self.version} " + " ".join(f"--hash={digest}" for digest in self.hashes)


def read_pins(path: Path) -> list[Pin]:
    """Each requirement of a hash-pinned file; ValueError on one that is not `name==version` with hashes."""
    text = re.sub(r"\\\n", " ", path.read_text())
    pins = []
    for line in text.splitlines():
        line = line.split(" #", 1)[0].strip()
        if not line or line.startswith("#"):
            continue
        requirement, *hashes = (part.strip() for part in line.split("--hash="))
        match = re.fullmatch(r"([A-Za-z0-9._-]+)==([^\s;]+)\s*(?:;\s*(.+))?", requirement)
        if match is None or not hashes:
            raise ValueError(f"{path.name}: not pinned with hashes: {line[:120]}")
        name, version, marker = match.groups()
        pins.append(Pin(name.lower(), version, Marker(marker) if marker else None, tuple(hashes)))
    return pins


def write_for_machine(source: Path, machine: str, target: Path) -> Path:
    """`source` with the markers evaluated for Linux on `machine`: pip evaluates markers on the machine it
    runs on even with --platform, so a cross-architecture install needs them decided beforehand."""
    pins = [pin for pin in read_pins(source) if pin.applies(machine)]
    target.write_text("".join(pin.line() + "\n" for pin in pins))
    return target
