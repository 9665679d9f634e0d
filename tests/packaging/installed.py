"""Build the project's wheel from a folder of files and install it, not editable, into a fresh virtualenv.

Tests must not need the internet, so the new virtualenv gets its third-party dependencies from the
development virtualenv, and only the declared ones: the distributions that the wheel's requirements
(with the `embedded` extra, which the local stack needs) reach, each linked into one directory that a
`.pth` line names. A module the package imports without declaring it is missing there, as it would be
in the image. The package under test itself comes only from the wheel: the linked directory holds no
project code, and the development virtualenv's editable finder is never activated.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tomllib
from collections.abc import Iterable
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

REPO = Path(__file__).resolve().parents[2]
# Where the checkout's packages land when installed (pyproject.toml maps protos/lifecyclezero).
PACKAGE_ROOTS = {"services": "services", "agent": "agent", "lz": "lz", "protos/lifecyclezero": "lifecyclezero"}


def declared_requirements(extras: Iterable[str] = ("embedded",)) -> list[str]:
    """The project's runtime requirements from pyproject.toml, plus those of `extras`."""
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    chosen = [req for extra in extras for req in project["optional-dependencies"][extra]]
    return [*project["dependencies"], *(req for req in chosen if canonicalize_name(Requirement(req).name)
                                         != canonicalize_name(project["name"]))]


def dependency_closure(requirements: Iterable[str]) -> list[metadata.Distribution]:
    """The installed distributions `requirements` reach, extras and environment markers followed."""
    found: dict[str, metadata.Distribution] = {}
    pending = [(Requirement(text), frozenset[str]()) for text in requirements]
    while pending:
        requirement, wanted_by = pending.pop()
        if requirement.marker and not any(requirement.marker.evaluate({"extra": extra})
                                          for extra in wanted_by | {""}):
            continue
        name = canonicalize_name(requirement.name)
        first_visit = name not in found
        found[name] = metadata.distribution(name)
        extras = frozenset(requirement.extras)
        if first_visit or extras:
            pending += [(Requirement(text), extras) for text in found[name].requires or []]
    return list(found.values())


def link_dependencies(distributions: Iterable[metadata.Distribution], into: Path) -> None:
    """Link every top-level module, package and metadata folder of `distributions` into `into`."""
    into.mkdir(parents=True, exist_ok=True)
    for distribution in distributions:
        for file in distribution.files or []:
            top = file.parts[0]
            source = Path(str(distribution.locate_file(top)))
            if top == ".." or top.endswith(".pth") or not source.exists() or (into / top).exists():
                continue
            (into / top).symlink_to(source)


def tracked_files() -> list[str]:
    """The paths a fresh clone has: every file git tracks."""
    out = subprocess.run(["git", "ls-files", "-z"], cwd=REPO, check=True, capture_output=True, timeout=60).stdout
    return [path for path in out.decode().split("\0") if path and (REPO / path).is_file()]


def copy_tree(pairs: Iterable[tuple[str, str]], dest: Path) -> None:
    """Copy each (source relative to the checkout, target relative to `dest`) file."""
    for source, target in pairs:
        (dest / target).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(REPO / source, dest / target)


def build_wheel(source: Path, out: Path) -> Path:
    """The wheel `pip wheel` builds from `source` with the development virtualenv's setuptools, offline."""
    out.mkdir(parents=True, exist_ok=True)
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation",
                    "--no-index", "--wheel-dir", str(out), str(source)],
                   check=True, capture_output=True, text=True, timeout=300)
    (wheel,) = out.glob("lifecyclezero-*.whl")
    return wheel


@dataclass(frozen=True)
class Installed:
    """A virtualenv with the wheel installed, and a working directory outside the source tree."""

    venv: Path
    site_packages: Path
    workdir: Path

    @property
    def python(self) -> Path:
        return self.venv / "bin" / "python"

    def script(self, name: str) -> Path:
        return self.venv / "bin" / name

    def env(self, **extra: str) -> dict[str, str]:
        """A clean environment: the virtualenv first on PATH, no PYTHONPATH, no LZ_ settings."""
        return {"PATH": f"{self.venv / 'bin'}:/usr/sbin:/usr/bin:/sbin:/bin", "HOME": str(self.workdir),
                "LANG": "C.UTF-8", **extra}

    def run(self, *argv: str | Path, timeout: float = 60, **extra: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([str(arg) for arg in argv], cwd=self.workdir, env=self.env(**extra),
                              capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL)


def install(wheel: Path, venv: Path, extras: Iterable[str] = ("embedded",)) -> Installed:
    """A fresh virtualenv at `venv` holding `wheel` (not editable) and the dependencies of it and `extras`."""
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120)
    python = venv / "bin" / "python"
    purelib = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                             check=True, capture_output=True, text=True, timeout=60).stdout.strip()
    site_packages = Path(purelib)
    dependencies = venv.parent / "dependencies"
    link_dependencies(dependency_closure(declared_requirements(extras)), dependencies)
    (site_packages / "lz-test-dependencies.pth").write_text(f"{dependencies}\n")
    subprocess.run([sys.executable, "-m", "pip", "--python", str(python), "install", "--quiet", "--no-deps",
                    "--no-index", str(wheel)], check=True, capture_output=True, text=True, timeout=300)
    workdir = venv.parent / "work"
    workdir.mkdir(exist_ok=True)
    assert not str(workdir.resolve()).startswith(str(REPO)), "the installed package must run outside the checkout"
    os.chmod(workdir, 0o700)
    return Installed(venv, site_packages, workdir)
