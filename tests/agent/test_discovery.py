"""Engine discovery against real processes on real loopback sockets."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

from agent.discovery import DEFAULT_PATTERNS, DiscoverySettings, discover_engines
from agent.inventory import Engine
from agent.platform.linux import LinuxPlatform
from tests.agent.conftest import EngineLauncher, free_port

SETTINGS = DiscoverySettings(probe_timeout=1.0, sensitive_patterns=DEFAULT_PATTERNS)


def engine_for(pid: int) -> Engine | None:
    return next((e for e in discover_engines(LinuxPlatform(), SETTINGS) if e.pid == pid), None)


def test_ollama_named_process_with_ollama_api_is_confirmed(launch_engine: EngineLauncher) -> None:
    """An ``ollama`` process answering the Ollama API is a confirmed engine with version and models."""
    port = free_port()
    process = launch_engine("ollama", port)
    engine = engine_for(process.pid)
    assert engine is not None
    assert (engine.kind, engine.confirmed, engine.confidence) == ("ollama", True, "high")
    assert engine.version == "0.9.9-test"
    assert engine.models_installed == ("llama3.2:1b", "qwen2:0.5b")
    assert engine.models_loaded == ("llama3.2:1b",)


def test_loopback_listener_is_not_exposed(launch_engine: EngineLauncher) -> None:
    """A listener bound to 127.0.0.1 is reported as loopback-only."""
    port = free_port()
    process = launch_engine("ollama", port)
    engine = engine_for(process.pid)
    assert engine is not None
    assert [(e.address, e.port, e.exposed) for e in engine.listen] == [("127.0.0.1", port, False)]


def test_wildcard_listener_is_exposed_and_probed_over_loopback(launch_engine: EngineLauncher) -> None:
    """A listener bound to every address is exposed, and its probe through loopback still confirms it."""
    port = free_port("0.0.0.0")
    process = launch_engine("ollama", port, "--bind", "0.0.0.0")
    engine = engine_for(process.pid)
    assert engine is not None
    assert engine.confirmed
    assert [(e.address, e.exposed) for e in engine.listen] == [("0.0.0.0", True)]


def test_a_renamed_ollama_is_found_by_its_behaviour(launch_engine: EngineLauncher) -> None:
    """A process no signature names whose own port answers the Ollama API is a confirmed Ollama."""
    process = launch_engine("inventory-svc", free_port())
    engine = engine_for(process.pid)
    assert engine is not None
    assert (engine.kind, engine.confirmed, engine.version) == ("ollama", True, "0.9.9-test")
    assert engine.evidence[-1].startswith("identified by behaviour")


def test_a_freebind_listener_on_a_foreign_address_is_not_probed_off_the_host(launch_engine: EngineLauncher) -> None:
    """An engine listening on an address this host does not have (IP_FREEBIND) is never probed there."""
    process = launch_engine("ollama", free_port(), "--bind", "192.0.2.10", "--freebind")
    engine = engine_for(process.pid)
    assert engine is not None and not engine.confirmed
    assert any("Cannot assign requested address" in item for item in engine.evidence), engine.evidence


def test_a_renamed_ollama_binary_is_known_by_its_executable(tmp_path: Path) -> None:
    """A process whose executable holds Ollama's module path is an Ollama engine, whatever the file is called."""
    binary = tmp_path / "worker-7"
    binary.write_bytes(Path(shutil.which("sleep") or "/bin/sleep").read_bytes() + b"github.com/ollama/ollama/server")
    binary.chmod(0o755)
    process = subprocess.Popen([str(binary), "60"])
    try:
        engine = engine_for(process.pid)
    finally:
        process.kill()
        process.wait()
    assert engine is not None and (engine.kind, engine.confirmed) == ("ollama", False)
    assert engine.evidence[0] == "executable of ollama matched process 'worker-7'"


def test_vllm_reports_its_version(launch_engine: EngineLauncher) -> None:
    """A `vllm` process is confirmed by its OpenAI API and its version comes from /version."""
    process = launch_engine("vllm", free_port(), "--mode", "vllm")
    engine = engine_for(process.pid)
    assert engine is not None
    assert (engine.kind, engine.confirmed, engine.version, engine.models_loaded) == (
        "vllm", True, "0.6.6-test", ("Qwen/Qwen2.5-0.5B",)
    )


def test_an_unnamed_process_answering_no_engine_api_is_no_engine(launch_engine: EngineLauncher) -> None:
    """A listening process that answers none of the engine APIs is not reported."""
    process = launch_engine("inventory-svc", free_port(), "--mode", "other")
    assert engine_for(process.pid) is None


def test_an_ollama_run_from_a_ci_runner_directory_is_found(launch_engine: EngineLauncher) -> None:
    """`runner` in an Ollama's command line (a CI runner's work directory) does not hide it."""
    process = launch_engine("ollama", free_port(), "--label", "/home/ci/actions-runner/_work/models")
    engine = engine_for(process.pid)
    assert engine is not None and (engine.kind, engine.confirmed) == ("ollama", True)


def test_a_helper_process_is_folded_into_its_engine(launch_engine: EngineLauncher, tmp_path: Path) -> None:
    """A child of the same engine (a runner, a launcher's child) is not an engine; what it holds is the parent's."""
    secret = tmp_path / "project" / ".env"
    secret.parent.mkdir()
    secret.write_text("KEY=1")
    process = launch_engine("ollama", free_port(), "--helper-holding", str(secret))
    (helper,) = map(int, Path(f"/proc/{process.pid}/task/{process.pid}/children").read_text().split())
    engines = [e for e in discover_engines(LinuxPlatform(), SETTINGS) if e.pid in (process.pid, helper)]
    assert [(e.pid, e.open_sensitive_files) for e in engines] == [(process.pid, (str(secret),))]


def test_text_generation_webui_as_its_installer_starts_it_is_found(launch_engine: EngineLauncher) -> None:
    """`python server.py` without flags, as the one-click installer runs it, is text-generation-webui."""
    header = "try:\n    from modules import shared, ui\nexcept ImportError:\n    pass\n"
    process = launch_engine("server.py", free_port(), "--mode", "other", prefix=(sys.executable,), header=header)
    engine = engine_for(process.pid)
    assert engine is not None and engine.kind == "text-generation-webui"


def test_ollama_named_process_answering_otherwise_is_unconfirmed(launch_engine: EngineLauncher) -> None:
    """An ``ollama`` process whose port does not speak the Ollama API is unconfirmed, low confidence."""
    process = launch_engine("ollama", free_port(), "--mode", "other")
    engine = engine_for(process.pid)
    assert engine is not None
    assert (engine.confirmed, engine.confidence, engine.version) == (False, "low", None)
    assert any("did not answer like Ollama" in item for item in engine.evidence)


def test_engine_wanting_a_key_is_confirmed_as_auth_required(launch_engine: EngineLauncher) -> None:
    """A 401 from the engine's API path identifies the engine and notes that it wants a key."""
    process = launch_engine("ollama", free_port(), "--mode", "auth")
    engine = engine_for(process.pid)
    assert engine is not None
    assert (engine.confirmed, engine.auth_required) == (True, True)


def test_sensitive_files_held_open_are_reported(launch_engine: EngineLauncher, tmp_path: Path) -> None:
    """An engine holding a ``.env`` and an ``id_rsa`` open has both reported, and nothing harmless."""
    project = tmp_path / "project"
    project.mkdir()
    secrets = [project / ".env", project / "id_rsa", project / "notes.txt"]
    for path in secrets:
        path.write_text("x")
    hold = [arg for path in secrets for arg in ("--hold", str(path))]
    process = launch_engine("ollama", free_port(), *hold)
    engine = engine_for(process.pid)
    assert engine is not None
    assert engine.open_sensitive_files == (str(project / ".env"), str(project / "id_rsa"))


def test_python_script_serving_transformers_pipeline_is_matched(tmp_path: Path) -> None:
    """A Python process whose script builds a transformers ``pipeline(`` matches as a transformers engine."""
    script = tmp_path / "serve_model.py"
    script.write_text(
        "from transformers import pipeline\nimport time\nchat = pipeline\n# pipeline('x')\ntime.sleep(60)\n"
    )
    process = subprocess.Popen([sys.executable, str(script)])
    try:
        engine = engine_for(process.pid)
        assert engine is not None
        assert (engine.kind, engine.confirmed) == ("transformers", False)
    finally:
        process.kill()
        process.wait()


def test_scan_json_reports_the_engine(launch_engine: EngineLauncher, tmp_path: Path) -> None:
    """``lz-agent scan --json`` prints an inventory with the running engine and a digest."""
    process = launch_engine("ollama", free_port())
    done = subprocess.run(
        [sys.executable, "-m", "agent.cli", "scan", "--json"],
        capture_output=True,
        text=True,
        timeout=60,
        env={
            "PATH": "/usr/bin:/bin",
            "HOME": str(tmp_path),
            "LZ_AGENT_MODELS_HOMES": str(tmp_path),
            "LZ_AGENT_STATE_DIR": str(tmp_path / "state"),
            "PYTHONPATH": str(Path.cwd()),
        },
        check=False,
    )
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["digest"].startswith("sha256:")
    assert any(e["pid"] == process.pid and e["confirmed"] for e in report["engines"])
