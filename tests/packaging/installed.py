"""Build the project's wheel from a folder of files and install it, not editable, into a fresh virtualenv.

Tests must not need the internet, so the new virtualenv gets the project's third-party dependencies
from the development virtualenv through one `.pth` line; the package under test itself comes only
from the wheel. The site-packages directory of the new virtualenv precedes that line on `sys.path`,
and the development virtualenv's editable finder is never activated there (a `.pth` file inside a
directory named by another `.pth` line is not processed), so an import of `services`, `agent`, `lz`
or `lifecyclezero` finds the installed copy or nothing.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
# Where the checkout's packages land when installed (pyproject.toml maps protos/lifecyclezero).
PACKAGE_ROOTS = {"services": "services", "agent": "agent", "lz": "lz", "protos/lifecyclezero": "lifecyclezero"}


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


def install(wheel: Path, venv: Path) -> Installed:
    """A fresh virtualenv at `venv` holding `wheel` (not editable) and the dependencies' path."""
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120)
    python = venv / "bin" / "python"
    purelib = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                             check=True, capture_output=True, text=True, timeout=60).stdout.strip()
    site_packages = Path(purelib)
    (site_packages / "lz-test-dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    subprocess.run([sys.executable, "-m", "pip", "--python", str(python), "install", "--quiet", "--no-deps",
                    "--no-index", str(wheel)], check=True, capture_output=True, text=True, timeout=300)
    workdir = venv.parent / "work"
    workdir.mkdir(exist_ok=True)
    assert not str(workdir.resolve()).startswith(str(REPO)), "the installed package must run outside the checkout"
    os.chmod(workdir, 0o700)
    return Installed(venv, site_packages, workdir)
