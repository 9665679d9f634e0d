"""deploy/Dockerfile builds: what its COPY lines take is enough for the package, and its dependencies are locked.

No container engine runs in CI; tests/packaging/dockerfile.py rebuilds the build stage's source folder
from the COPY lines, and these tests build and install the package from exactly that folder.
"""

from __future__ import annotations

import json
import re
import tomllib
import zipfile
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

from tests.packaging import dockerfile
from tests.packaging.installed import PACKAGE_ROOTS, REPO, Installed, build_wheel, copy_tree, install, tracked_files

PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())
LOCKS = {path.name: path for path in (REPO / "deploy").glob("requirements*.lock")}
_PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s;\\]+)")


@pytest.fixture(scope="module")
def stages() -> list[dockerfile.Stage]:
    return dockerfile.parse(dockerfile.DOCKERFILE.read_text())


@pytest.fixture(scope="module")
def context(stages: list[dockerfile.Stage], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The build stage's working directory holding exactly the files the COPY lines put there."""
    build = dockerfile.stage(stages, "build")
    into = tmp_path_factory.mktemp("docker") / "src"
    dockerfile.assemble(dockerfile.copied_files(build.copies, tracked_files()), build.workdir, into)
    return into


@pytest.fixture(scope="module")
def context_wheel(context: Path) -> Path:
    return build_wheel(context, context.parent / "dist")


def _names(wheel: Path) -> set[str]:
    with zipfile.ZipFile(wheel) as archive:
        return {name for name in archive.namelist() if ".dist-info/" not in name}


def test_the_copied_files_build_the_same_wheel_as_a_checkout(context_wheel: Path, tmp_path: Path) -> None:
    """The wheel built from the COPY'd files has every file of the wheel built from the whole checkout."""
    copy_tree(((path, path) for path in tracked_files()), tmp_path / "clone")
    assert _names(context_wheel) == _names(build_wheel(tmp_path / "clone", tmp_path / "dist"))


def test_the_package_installs_from_the_copied_files_and_imports(context_wheel: Path, tmp_path: Path) -> None:
    """Installed from the image's build folder, every service module and the default policy load."""
    installed: Installed = install(context_wheel, tmp_path / "venv")
    modules = ["services.ingest.worker", "services.assets", "services.ledger", "services.sealer", "services.ingest",
               "services.tlog.cli", "lz.cli", "agent.cli", "lifecyclezero.v1.ingest_pb2_grpc"]
    script = ("import importlib, json, sys; from services.ingest import rules; "
              "print(json.dumps([importlib.import_module(m).__file__ for m in sys.argv[1:]] "
              "+ [str(rules.DEFAULT_POLICY_FILE.is_file())]))")
    result = installed.run(installed.python, "-c", script, *modules)
    assert result.returncode == 0, result.stderr
    *files, policy_found = json.loads(result.stdout)
    assert all(path.startswith(str(installed.site_packages)) for path in files), files
    assert policy_found == "True"


def test_every_lock_file_the_build_reads_is_copied(stages: list[dockerfile.Stage], context: Path) -> None:
    """The default LOCK, the alternative the README builds with, and the build lock are in the build folder."""
    build = dockerfile.stage(stages, "build")
    assert (context / "deploy" / build.args["LOCK"]).is_file()
    for name in LOCKS:
        assert (context / "deploy" / name).is_file(), name


def test_every_base_image_is_pinned_by_digest(stages: list[dockerfile.Stage]) -> None:
    """Each FROM names its image by sha256 digest, so a rebuild gets the same base."""
    assert stages
    for found in stages:
        assert re.search(r"@sha256:[0-9a-f]{64}$", found.base), found.base


def test_the_final_stage_runs_as_non_root_with_no_build_tools(stages: list[dockerfile.Stage]) -> None:
    """The final stage takes only the built virtualenv, removes pip and setuptools, and runs as a non-root UID."""
    final = stages[-1]
    users = [rest for word, rest in final.instructions if word == "USER"]
    assert users and int(users[-1].split(":")[0]) != 0
    assert final.copies and all(copy.from_stage == "build" for copy in final.copies)
    runs = " ".join(rest for word, rest in final.instructions if word == "RUN")
    assert "pip uninstall --yes --quiet pip setuptools wheel" in runs
    build_runs = " ".join(rest for word, rest in dockerfile.stage(stages, "build").instructions if word == "RUN")
    assert "venv --without-pip /opt/lz" in build_runs


def _pins(lock: Path) -> dict[str, tuple[Version, int]]:
    """name -> (pinned version, number of hashes) of a `uv pip compile --generate-hashes` file."""
    pins: dict[str, tuple[Version, int]] = {}
    current = ""
    for line in lock.read_text().splitlines():
        match = _PIN.match(line)
        if match:
            current = canonicalize_name(match.group(1))
            version, hashes = Version(match.group(2)), pins.get(current, (Version("0"), 0))[1]
            pins[current] = (version, hashes)
        elif line.strip().startswith("--hash=sha256:") and current:
            pins[current] = (pins[current][0], pins[current][1] + 1)
    return pins


@pytest.mark.parametrize(("lock", "requirements"), [
    ("requirements.lock", PYPROJECT["project"]["dependencies"]),
    ("requirements-embedded.lock",
     PYPROJECT["project"]["dependencies"] + PYPROJECT["project"]["optional-dependencies"]["embedded"]),
    ("requirements-build.lock", PYPROJECT["build-system"]["requires"][:1]),
])
def test_lock_pins_every_requirement_within_its_range_with_hashes(lock: str, requirements: list[str]) -> None:
    """Each requirement is pinned to a version pyproject.toml allows, and every pin carries hashes."""
    pins = _pins(LOCKS[lock])
    for text in requirements:
        requirement = Requirement(text)
        name = canonicalize_name(requirement.name)
        assert name in pins, f"{lock} does not pin {name} (run `make lock`)"
        assert requirement.specifier.contains(pins[name][0], prereleases=True), (lock, text, pins[name])
    assert all(hashes for _, hashes in pins.values()), {name: pin for name, pin in pins.items() if not pin[1]}


def test_package_roots_cover_every_copied_package(stages: list[dockerfile.Stage]) -> None:
    """Each source folder the build stage copies is a package root of pyproject.toml, or its config."""
    sources = {source for copy in dockerfile.stage(stages, "build").copies for source in copy.sources}
    assert sources - {"pyproject.toml"} - {f"deploy/{name}" for name in LOCKS} == set(PACKAGE_ROOTS) - {
        "protos/lifecyclezero"} | {"protos"}
