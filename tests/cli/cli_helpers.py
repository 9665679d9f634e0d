"""Helpers for running `lz` as a subprocess, isolated from the developer's config, environment and cwd."""

from __future__ import annotations

import json
import os
import secrets
import socket
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.faults.helpers import until

REPO = Path(__file__).resolve().parents[2]


@dataclass
class Result:
    code: int
    out: str
    err: str

    def json(self) -> Any:
        assert self.code == 0 or self.out, f"no JSON: exit {self.code}, stderr {self.err!r}"
        return json.loads(self.out)

    def assert_one_line_error(self, code: int = 2) -> str:
        """The run failed with `code` and exactly one `lz: error:` line, never a traceback."""
        assert self.code == code, f"exit {self.code} (wanted {code}); stdout {self.out!r}; stderr {self.err!r}"
        assert "Traceback" not in self.err
        lines = [line for line in self.err.splitlines() if line.strip()]
        assert len(lines) == 1, self.err
        assert lines[0].startswith("lz: error: "), self.err
        return lines[0]


@dataclass
class Lz:
    """`lz` in its own working directory, HOME and environment (no inherited LZ_* settings)."""

    cwd: Path
    env: dict[str, str] = field(default_factory=dict)

    def __call__(self, *args: str, token: str | None = None, stdin: str | None = None,
                 env: dict[str, str] | None = None, timeout: float = 120) -> Result:
        run_env = dict(self.env)
        if token is not None:
            run_env["LZ_TOKEN"] = token
        run_env.update(env or {})
        proc = subprocess.run(
            [sys.executable, "-m", "lz.cli", *args], cwd=self.cwd, env=run_env, input=stdin,
            capture_output=True, text=True, timeout=timeout,
        )
        assert "Traceback" not in proc.stderr, proc.stderr
        return Result(proc.returncode, proc.stdout, proc.stderr)

    def with_env(self, **extra: str) -> Lz:
        return Lz(self.cwd, {**self.env, **extra})

    @property
    def config_path(self) -> Path:
        return Path(self.env["HOME"]) / ".config" / "lz" / "config.toml"


def clean_env(home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LZ_") and k not in ("XDG_CONFIG_HOME",)}
    env["HOME"] = str(home)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), env.get("PYTHONPATH", "")) if p)
    env.pop("COLUMNS", None)
    return env


def closed_port() -> str:
    """A loopback address nothing listens on."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"127.0.0.1:{port}"


def isolate_chained(cli: Lz, asset_id: str, reason: str = "cli test") -> None:
    """`lz isolate` one asset, then wait until `lz custody` lists its request (the sequencer chains it
    moments after the answer)."""
    result = cli("isolate", asset_id, "--reason", reason)
    assert result.code == 0, result.err

    def requested() -> bool:
        events = cli("custody", asset_id, "--json").json()["events"]
        return any(e["action"] == "asset.isolate.requested" for e in events)

    until(requested, 30, f"the custody event of isolating {asset_id}")


def new_asset(cli: Lz, **fields: str) -> str:
    """Register an asset through `lz assets create` and return its id."""
    asset_id = f"ws-{secrets.token_hex(4)}"
    args = ["assets", "create", asset_id]
    fields.setdefault("hostname", f"host-{asset_id}")
    for name, value in fields.items():
        args += [f"--{name}", value]
    result = cli(*args)
    assert result.code == 0, result.err
    return asset_id
