"""Temporary homes planted with the agent-configuration fixtures, with credentials generated per run."""

from __future__ import annotations

import secrets
import shutil
import string
from dataclasses import asdict, dataclass
from pathlib import Path

from agent.discovery.agents import AgentFindings, AgentSettings, discover_agents
from agent.platform import current_platform

FIXTURES = Path(__file__).with_name("fixtures") / "agents"


def _alnum(length: int) -> str:
    return "".join(secrets.choice(string.ascii_letters + string.digits) for _ in range(length))


@dataclass(frozen=True)
class Credentials:
    """Credential values planted in fixtures; a test greps for them wherever they must not appear."""

    github_token: str
    api_token: str
    openai_key: str
    db_password: str

    @classmethod
    def generate(cls) -> Credentials:
        return cls(
            github_token="ghp_" + _alnum(36),
            api_token=_alnum(40),
            openai_key="sk-proj-" + _alnum(40),
            db_password=_alnum(20),
        )

    def values(self) -> list[str]:
        return list(asdict(self).values())


def plant(kind: str, home: Path, credentials: Credentials) -> None:
    """Copy the fixture home of agent ``kind`` into ``home``, filling in the placeholders."""
    source = FIXTURES / kind / "home"
    for path in source.rglob("*"):
        target = home / path.relative_to(source)
        if path.is_dir():
            target.mkdir(parents=True, exist_ok=True)
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        text = path.read_text()
        for placeholder, value in (("{{HOME}}", str(home)), ("{{GITHUB_TOKEN}}", credentials.github_token),
                                   ("{{API_TOKEN}}", credentials.api_token), ("{{OPENAI_KEY}}", credentials.openai_key),
                                   ("{{DB_PASSWORD}}", credentials.db_password)):
            text = text.replace(placeholder, value)
        target.write_text(text)
        shutil.copymode(path, target)


def scan(*homes: Path, salt: str = "test-salt") -> AgentFindings:
    """Agent discovery over exactly ``homes`` (not the host's password database)."""
    settings = AgentSettings(homes=tuple(str(h) for h in homes), password_db=False, fingerprint_salt=salt)
    return discover_agents(current_platform(), settings)
