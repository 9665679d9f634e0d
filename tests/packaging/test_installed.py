"""The package as an operator gets it: a wheel built from a clean copy, installed (not editable), run elsewhere.

`make install` installs the checkout editable, which hides every packaging mistake from the rest of
the suite; these tests build the wheel from the tracked files only, install it into a fresh
virtualenv (tests/packaging/installed.py) and run it from a directory outside the source tree.
"""

from __future__ import annotations

import configparser
import json
import signal
import subprocess
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from tests.faults.helpers import until
from tests.packaging.installed import PACKAGE_ROOTS, REPO, Installed, build_wheel, copy_tree, install, tracked_files

# Each entry point and the arguments that make it stop on a settings error. A `python -m` module is
# named as such; a console script by its name from [project.scripts].
SETTINGS_ERRORS: dict[str, tuple[str, ...]] = {
    "-m services.assets": (),
    "-m services.ingest": (),
    "-m services.ledger": (),
    "-m services.sealer": (),
    "-m services.console": (),
    "-m services.ingest.worker": (),
    "-m services.ledger.outbox.check": (),
    "-m services.kit.certs": ("pki", "--ingest-san", "not a name"),
    "-m services.kit.devstack": ("up", "--state-dir", "/dev/null/state"),
    "-m services.kit.moto_endpoint": (),
    "-m services.tlog.cli": ("checkpoint", "/nonexistent/checkpoint", "--key", "/nonexistent/key"),
    "-m agent.cli": ("--config", "/nonexistent/agent.toml", "run"),
    "-m lz": ("assets", "list"),
    "-m lz.cli": ("assets", "list"),
    "-m lz.demo": ("--hosts", "0"),
    "lz": ("assets", "list"),
    "lz-agent": ("--config", "/nonexistent/agent.toml", "run"),
    "lz-verify": ("checkpoint", "/nonexistent/checkpoint", "--key", "/nonexistent/key"),
}


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One wheel from the tracked files, built once for the whole module."""
    root = tmp_path_factory.mktemp("packaging")
    copy_tree(((path, path) for path in tracked_files()), root / "clone")
    return build_wheel(root / "clone", root / "dist")


@pytest.fixture(scope="module")
def installed(wheel: Path) -> Installed:
    """The wheel with its runtime dependencies and the embedded extra (what the local stack needs)."""
    return install(wheel, wheel.parent.parent / "venv")


@pytest.fixture(scope="module")
def runtime_only(wheel: Path) -> Installed:
    """The wheel with its runtime dependencies only, as in the production image."""
    return install(wheel, wheel.parent.parent / "runtime" / "venv", extras=())


def _entry_points(installed: Installed) -> set[str]:
    """Every console script and every installed module that runs as `python -m`."""
    found: set[str] = set()
    for package in PACKAGE_ROOTS.values():
        for path in (installed.site_packages / package).rglob("*.py"):
            module = ".".join(path.relative_to(installed.site_packages).with_suffix("").parts)
            if path.name == "__main__.py":
                found.add(f"-m {module.removesuffix('.__main__')}")
            elif 'if __name__ == "__main__"' in path.read_text():
                found.add(f"-m {module}")
    (dist_info,) = installed.site_packages.glob("lifecyclezero-*.dist-info")
    scripts = configparser.ConfigParser()
    scripts.read(dist_info / "entry_points.txt")
    return found | {f"{name}" for name in scripts["console_scripts"]}


def _argv(installed: Installed, entry: str) -> list[str | Path]:
    if entry.startswith("-m "):
        return [installed.python, "-m", entry.removeprefix("-m ")]
    return [installed.script(entry)]


def test_every_entry_point_has_a_settings_error_case(installed: Installed) -> None:
    """The table of settings errors names exactly the entry points the installed package has."""
    assert _entry_points(installed) == set(SETTINGS_ERRORS)


@pytest.mark.parametrize("entry", sorted(SETTINGS_ERRORS))
@pytest.mark.parametrize("variant", ["installed", "runtime_only"])
def test_entry_point_stops_on_its_settings_error_with_one_line(request: pytest.FixtureRequest, variant: str,
                                                               entry: str) -> None:
    """Each entry point of the installed package, with or without the embedded extra, starts and reports bad
    settings (or the missing extra) as one line, exit 2."""
    installed: Installed = request.getfixturevalue(variant)
    result = installed.run(*_argv(installed, entry), *SETTINGS_ERRORS[entry])
    assert result.returncode == 2, result.stdout + result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert "Traceback" not in result.stderr + result.stdout


def _source_packages() -> list[str]:
    names = []
    for source, target in PACKAGE_ROOTS.items():
        for init in sorted((REPO / source).rglob("__init__.py")):
            relative = init.parent.relative_to(REPO / source)
            names.append(".".join((target, *relative.parts)))
    return names


def test_every_package_of_the_checkout_imports_from_the_installed_copy(installed: Installed) -> None:
    """Each package of the source tree is in the wheel and imports from the virtualenv, not the checkout."""
    packages = _source_packages()
    script = ("import importlib, json, sys; "
              "print(json.dumps({n: importlib.import_module(n).__file__ for n in sys.argv[1:]}))")
    result = installed.run(installed.python, "-c", script, *packages)
    assert result.returncode == 0, result.stderr
    locations = json.loads(result.stdout)
    outside = {name: where for name, where in locations.items() if not where.startswith(str(installed.site_packages))}
    assert not outside, outside


def test_every_data_file_of_the_packages_is_installed(installed: Installed) -> None:
    """Each tracked non-Python file inside a package (policies, protos, stubs) is installed beside its code."""
    expected = []
    for path in tracked_files():
        for source, target in PACKAGE_ROOTS.items():
            if path.startswith(f"{source}/") and not path.endswith((".py", ".md")):
                expected.append(target + path.removeprefix(source))
    assert "services/ingest/policy/default.yaml" in expected
    missing = [path for path in expected if not (installed.site_packages / path).is_file()]
    assert not missing, missing


def test_the_installed_risk_worker_finds_its_default_policy(installed: Installed) -> None:
    """The installed risk worker loads the default policy shipped in the wheel."""
    script = ("from services.ingest import rules; "
              "print(len(rules.PolicyBook(rules.DEFAULT_POLICY_FILE, None).default.rules))")
    result = installed.run(installed.python, "-c", script)
    assert result.returncode == 0, result.stderr
    assert int(result.stdout) > 0


@pytest.fixture
def stack_from_installed(installed: Installed, tmp_path: Path) -> Iterator[Path]:
    """`make up`'s command run from the installed package on free ports; the state file's path."""
    state_dir = tmp_path / "state"
    proc = subprocess.Popen([str(installed.python), "-m", "services.kit.devstack", "up", "--any-ports",
                             "--state-dir", str(state_dir)], cwd=installed.workdir, env=installed.env(),
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        until(lambda: (state_dir / "stack.json").exists() or proc.poll() is not None, 120, "the stack's state file")
        assert proc.poll() is None, proc.communicate()[0]
        yield state_dir / "stack.json"
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(60)


def _health(address: str, service: str) -> int:
    with grpc.insecure_channel(address) as channel:
        reply = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(service=service), timeout=5)
    return int(reply.status)


@pytest.mark.slow
def test_the_local_stack_serves_from_the_installed_package(stack_from_installed: Path) -> None:
    """`python -m services.kit.devstack up` from the installed package brings every service to SERVING (and
    lists ingest's internal port, which serves only DeliverCommand(s) and RevokeAgent, and the console, whose
    sign-in page needs the templates the package carries)."""
    endpoints = json.loads(stack_from_installed.read_text())["endpoints"]
    with urllib.request.urlopen(endpoints["console"] + "/signin", timeout=10) as page:
        assert 'name="token"' in page.read().decode()
    services = endpoints.keys() - {"ingest-internal", "console", "ingest_replicas"}
    assert endpoints["ingest_replicas"] == endpoints["ingest"]  # one replica unless asked for more
    assert services == {"ledger", "sealer", "assets", "ingest"} and "ingest-internal" in endpoints
    assert {name: _health(endpoints[name], "") for name in services} == dict.fromkeys(
        services, health_pb2.HealthCheckResponse.SERVING)


@pytest.mark.slow
def test_the_demo_passes_from_the_installed_package(installed: Installed) -> None:
    """`make demo`'s flow (`python -m lz.demo`) passes every step when run from the installed package."""
    report = installed.workdir / "demo-report.json"
    result = installed.run(installed.python, "-m", "lz.demo", "--hosts", "10", "--json-report", report, timeout=280)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    assert json.loads(report.read_text())["ok"] is True


def test_the_embedded_endpoint_names_its_extra_when_it_is_missing(runtime_only: Installed) -> None:
    """Without the embedded extra, `python -m services.kit.moto_endpoint` says which extra to install."""
    result = runtime_only.run(runtime_only.python, "-m", "services.kit.moto_endpoint", "127.0.0.1", "1")
    assert result.returncode == 2
    assert "lifecyclezero[embedded]" in result.stderr
