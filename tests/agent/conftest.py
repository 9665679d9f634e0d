"""Fixtures for agent tests: real engine-like processes and free loopback ports."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

FAKE_ENGINE = Path(__file__).with_name("fake_engine.py")

# Runs a fake engine under a given name: (name, mode, extra args) -> process.
EngineLauncher = Callable[..., subprocess.Popen[str]]


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as probe:
        probe.bind((host, 0))
        return int(probe.getsockname()[1])


@pytest.fixture
def launch_engine(tmp_path: Path) -> Iterator[EngineLauncher]:
    """Start fake engines named as asked (the script is copied under that name and run by its shebang)."""
    started: list[subprocess.Popen[str]] = []

    def launch(
        name: str, port: int, *args: str, prefix: tuple[str, ...] = (), header: str = ""
    ) -> subprocess.Popen[str]:
        bin_dir = tmp_path / f"bin-{len(started)}"
        bin_dir.mkdir()
        script = bin_dir / name
        script.write_text(f"#!{sys.executable}\n{header}" + FAKE_ENGINE.read_text())
        script.chmod(0o755)
        process = subprocess.Popen(
            [*prefix, str(script), "--port", str(port), *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        started.append(process)
        assert process.stdout is not None
        line = process.stdout.readline()
        if line.strip() != "ready":
            raise RuntimeError(
                f"fake engine {name} did not start: {process.stderr.read() if process.stderr else ''}"
            )
        return process

    try:
        yield launch
    finally:
        for process in started:
            process.kill()
            process.wait(timeout=5)


def require_root_and_nft() -> None:
    """Skip (with the reason printed) unless the test can create namespaces and run nft."""
    if os.geteuid() != 0:
        pytest.skip("needs root for network namespaces and nftables")
    if shutil.which("nft") is None or shutil.which("ip") is None:
        pytest.skip("needs the nft and ip binaries")
