"""Every ELF file of a Lambda artifact must load on the Lambda python3.12 runtime.

A wheel's platform tag is a promise about the glibc it needs, not a proof: ai-edge-litert's aarch64 wheel
is tagged manylinux_2_27 yet its libraries need GLIBCXX_3.4.30. So this reads what each shared library
actually asks the dynamic linker for (the GLIBC_* and GLIBCXX_* entries of its .gnu.version_r section)
and compares that with what the runtime's Amazon Linux 2023 provides:

* glibc 2.34 on every AL2023 release (https://docs.aws.amazon.com/linux/al2023/ug/core-glibc.html;
  aws/aws-lambda-builders#752 set 2.34 as the python3.12 and python3.13 runtimes' glibc).
* libstdc++ with GLIBCXX up to 3.4.29 (GCC 11's) on AL2023 releases up to 2023.6.20250317; later
  releases ship GCC 14's libstdc++ (3.4.33): amazonlinux/container-images#132 ("GLIBCXX_3.4.30 not
  found" after the GCC core runtimes were updated, April 2025), docker-library/official-images#20028
  (libstdc++-14.2.1 in 2023.9.20250929). Lambda does not say which release a function runs on, so a
  layer must load on the oldest: 3.4.29.

A requirement on a library the artifact ships itself (a wheel's vendored `.libs/`, or a newer libstdc++
put in the layer's `lib/`) is checked against that library's own version definitions instead.

Run by layers/runtime/Makefile on every layer build (non-zero exit on any violation) and by
tests/artifacts/test_abi.py; `python abi_check.py --table DIR` prints the file -> versions -> verdict table.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

try:
    from elftools.elf.dynamic import DynamicSection
    from elftools.elf.elffile import ELFFile
    from elftools.elf.gnuversions import GNUVerDefSection, GNUVerNeedSection
except ImportError:  # pragma: no cover - the message is the point
    sys.exit("abi_check.py needs pyelftools: run it (and sam build) with the dev virtualenv's Python")

# The newest symbol version of each family that the Lambda python3.12 runtime provides (sources above).
BASELINE: dict[str, tuple[int, ...]] = {"GLIBC": (2, 34), "GLIBCXX": (3, 4, 29)}
# The template's Architecture values and the ELF machine each one runs.
MACHINES = {"x86_64": "EM_X86_64", "arm64": "EM_AARCH64"}
ELF_MAGIC = b"\x7fELF"


def parse_version(name: str) -> tuple[str, tuple[int, ...]] | None:
    """'GLIBCXX_3.4.30' -> ('GLIBCXX', (3, 4, 30)); None for families not checked or private versions."""
    family, _, number = name.partition("_")
    if family not in BASELINE:
        return None
    try:
        return family, tuple(int(part) for part in number.split("."))
    except ValueError:
        return family, (sys.maxsize,)  # GLIBC_PRIVATE: no release promises it, so no baseline has it


def format_version(family: str, version: tuple[int, ...] | None) -> str:
    return "" if version is None else f"{family}_{'.'.join(map(str, version))}"


@dataclass(frozen=True)
class ElfFile:
    path: Path
    machine: str
    soname: str | None
    # (library file name, version name) pairs from .gnu.version_r.
    needs: tuple[tuple[str, str], ...]
    # Version names this file defines (.gnu.version_d), for libraries the artifact ships.
    defines: frozenset[str]


def read_elf(path: Path) -> ElfFile | None:
    """The versions an ELF file needs and defines; None when the file is not ELF."""
    with path.open("rb") as stream:
        if stream.read(4) != ELF_MAGIC:
            return None
        stream.seek(0)
        elf = ELFFile(stream)
        needs: list[tuple[str, str]] = []
        defines: set[str] = set()
        soname = None
        for section in elf.iter_sections():
            if isinstance(section, GNUVerNeedSection):
                for verneed, vernaux in section.iter_versions():
                    needs.extend((str(verneed.name), str(aux.name)) for aux in vernaux)
            elif isinstance(section, GNUVerDefSection):
                for _verdef, verdaux in section.iter_versions():
                    defines.update(aux.name for aux in verdaux)
            elif isinstance(section, DynamicSection):
                # pyelftools sets `soname` on DT_SONAME tags only, which its annotations do not say.
                sonames = (str(tag.soname) for tag in section.iter_tags("DT_SONAME"))  # type: ignore[attr-defined]
                soname = next(sonames, soname)
        return ElfFile(path, elf["e_machine"], soname, tuple(needs), frozenset(defines))


def elf_files(roots: Iterable[Path]) -> Iterator[ElfFile]:
    for root in roots:
        for path in sorted(root.rglob("*")):
            if path.is_file() and not path.is_symlink():
                found = read_elf(path)
                if found is not None:
                    yield found


@dataclass
class Verdict:
    path: str
    # The newest version of each family this file needs from the system (not from a shipped library).
    needed: dict[str, tuple[int, ...]] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    def required(self, family: str) -> str:
        return format_version(family, self.needed.get(family))


def check(roots: Iterable[Path], architecture: str) -> list[Verdict]:
    """One verdict per ELF file under `roots`, paths relative to the root each was found in."""
    roots = list(roots)
    files = list(elf_files(roots))
    shipped = {found.soname or found.path.name: found.defines for found in files}
    shipped.update({found.path.name: found.defines for found in files})
    verdicts = []
    for found in files:
        root = next(root for root in roots if found.path.is_relative_to(root))
        verdict = Verdict(str(found.path.relative_to(root)))
        if found.machine != MACHINES[architecture]:
            verdict.problems.append(f"built for {found.machine}, not {architecture}")
        for library, name in found.needs:
            parsed = parse_version(name)
            if library in shipped:
                if name not in shipped[library]:
                    verdict.problems.append(f"{name} from the shipped {library}, which does not define it")
                continue
            if parsed is None:
                continue
            family, version = parsed
            verdict.needed[family] = max(version, verdict.needed.get(family, version))
            if version > BASELINE[family]:
                verdict.problems.append(
                    f"{name} from {library}; the runtime has {family} up to "
                    f"{format_version(family, BASELINE[family])}"
                )
        verdicts.append(verdict)
    return verdicts


def table(verdicts: Iterable[Verdict]) -> str:
    """Markdown: file -> newest GLIBC and GLIBCXX it needs from the runtime -> verdict."""
    lines = ["| file | GLIBC | GLIBCXX | verdict |", "|---|---|---|---|"]
    for verdict in verdicts:
        outcome = "loads" if verdict.ok else "**fails**: " + "; ".join(sorted(set(verdict.problems)))
        glibc, glibcxx = verdict.required("GLIBC") or "-", verdict.required("GLIBCXX") or "-"
        lines.append(f"| `{verdict.path}` | {glibc} | {glibcxx} | {outcome} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("roots", nargs="+", type=Path, help="folders to scan (a built layer, site-packages)")
    parser.add_argument("--architecture", choices=sorted(MACHINES), default="x86_64")
    parser.add_argument("--table", action="store_true", help="print the table of every ELF file")
    args = parser.parse_args(argv)
    verdicts = check(args.roots, args.architecture)
    if not verdicts:
        print(f"abi_check: no ELF file under {', '.join(map(str, args.roots))}", file=sys.stderr)
        return 1
    if args.table:
        print(table(verdicts))
    failed = [verdict for verdict in verdicts if not verdict.ok]
    for verdict in failed:
        print(f"abi_check: {verdict.path}: {'; '.join(verdict.problems)}", file=sys.stderr)
    print(
        f"abi_check: {len(verdicts)} ELF files, {len(failed)} would not load on Lambda ({args.architecture})",
        file=sys.stderr,
    )
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
