"""The demo's one real workstation: ``lz-agent`` (not simulated) over a home with a risky Cursor config.

The home's ``~/.cursor/mcp.json`` runs the file-system MCP server over the whole home with a GitHub token
in its environment, the way such configs are pasted from READMEs. The real agent enrolls, scans the home
and streams; the policy then raises ``mcp-secret-in-config`` (CRITICAL) and ``mcp-broad-filesystem``. The
token is generated per run so the demo can check that it appears in none of what the operator sees.
"""

from __future__ import annotations

import json
import secrets
import string
import subprocess
import sys
from pathlib import Path

from agent.enroll import load_identity

FILESYSTEM_PACKAGE = "@modelcontextprotocol/server-filesystem"
TOKEN_VARIABLE = "GITHUB_PERSONAL_ACCESS_TOKEN"  # noqa: S105 - the name of a variable, not its value
AGENT_CAP_SECONDS = 900


class DemoWorkstation:
    """A home planted with the risky config, and the real agent streaming it to the control plane."""

    def __init__(self, workdir: Path) -> None:
        self.root = workdir / "workstation"
        self.home = self.root / "home" / "alice"
        self.state = self.root / "state"
        self.config = self.root / "agent.toml"
        self.log = self.root / "agent.log"
        self.token = "ghp_" + "".join(secrets.choice(string.ascii_letters + string.digits) for _ in range(36))
        self.process: subprocess.Popen[bytes] | None = None

    def plant(self) -> Path:
        """Write the Cursor config (and the agent's own config); the path of the Cursor config."""
        cursor = self.home / ".cursor" / "mcp.json"
        cursor.parent.mkdir(parents=True)
        (self.home / "projects").mkdir()
        cursor.write_text(json.dumps({"mcpServers": {"files": {
            "command": "npx", "args": ["-y", FILESYSTEM_PACKAGE, str(self.home)],
            "env": {TOKEN_VARIABLE: self.token}}}}, indent=2))
        self.config.write_text(
            f'state_dir = "{self.state}"\n'
            f'[models]\nhomes = ["{self.home}"]\nroots = []\n'
            f'[agents]\nhomes = ["{self.home}"]\npassword_db = false\n'
            '[stream]\nheartbeat_interval = 2\nfirst_reconnect_jitter = 0\n'
        )
        return cursor

    def enroll(self, tenant: str, secret: str, ingest: str) -> str:
        """Enroll the agent; its asset id."""
        done = subprocess.run(
            [sys.executable, "-m", "agent.cli", "--config", str(self.config), "enroll", "--tenant", tenant,
             "--secret-file", "-", "--control-plane", ingest],
            input=secret + "\n", capture_output=True, text=True, timeout=60, check=False,
        )
        identity = load_identity(self.state)
        if done.returncode != 0 or identity is None:
            raise RuntimeError(f"lz-agent enroll failed: {(done.stderr or done.stdout).strip()[-300:]}")
        return identity.asset_id

    def start(self) -> None:
        with self.log.open("wb") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "agent.cli", "--config", str(self.config), "run",
                 "--duration", str(AGENT_CAP_SECONDS)],
                stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
            )

    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def stop(self) -> bool:
        """Stop the agent (SIGTERM, then SIGKILL); whether it stopped on SIGTERM."""
        if self.process is None or self.process.poll() is not None:
            return True
        self.process.terminate()
        try:
            self.process.wait(20)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
            return False
        return True

    def leaked_into(self, texts: dict[str, str]) -> list[str]:
        """Which of ``texts`` (and the agent's own log) contain the planted token."""
        everything = {**texts, "agent log": self.log.read_text(errors="replace") if self.log.exists() else ""}
        return [where for where, text in everything.items() if self.token in text]
