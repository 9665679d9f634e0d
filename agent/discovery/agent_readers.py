"""How each agent's configuration format declares MCP servers, model endpoints and credentials.

A reader takes a parsed document (anything: it came from a user's file) and
returns what it found in a :class:`ConfigFacts`. Readers are named in the
agent table (``agent/discovery/agent_table.py``) by the keys of
:data:`READERS`; a shape they do not expect is skipped, never an error.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from typing import Any

MAX_SERVERS_PER_FILE = 200
MAX_ARGS = 64
MAX_TEXT = 4096


@dataclass(frozen=True)
class RawServer:
    """One MCP server entry as a configuration file spells it (values still unredacted)."""

    name: str
    command: str = ""
    args: tuple[str, ...] = ()
    env: dict[str, str] = field(default_factory=dict)
    url: str = ""
    headers: dict[str, str] = field(default_factory=dict)
    transport: str = ""
    enabled: bool = True
    cwd: str = ""
    project: str = ""


@dataclass
class ConfigFacts:
    """What one file says: its MCP servers, the model endpoints it names and values that may be credentials."""

    servers: list[RawServer] = field(default_factory=list)
    endpoints: list[str] = field(default_factory=list)
    values: list[tuple[str, str]] = field(default_factory=list)
    # Server entries beyond MAX_SERVERS_PER_FILE, not read.
    skipped: int = 0

    def entries(self, value: Any) -> Iterator[tuple[str, dict[str, Any]]]:
        """Server entries of ``value`` (see `_entries`), counting those over the limit in ``skipped``."""
        if isinstance(value, dict | list):
            self.skipped += max(0, len(value) - MAX_SERVERS_PER_FILE)
        return _entries(value)


def _text(value: Any) -> str:
    return value[:MAX_TEXT] if isinstance(value, str) else ""


def _texts(value: Any) -> tuple[str, ...]:
    if not isinstance(value, list):
        return ()
    scalars = (v for v in value[:MAX_ARGS] if isinstance(v, str | int | float) and not isinstance(v, bool))
    return tuple(_text(str(v)) for v in scalars)


def _mapping(value: Any) -> dict[str, str]:
    if not isinstance(value, dict):
        return {}
    return {str(k)[:MAX_TEXT]: _text(v) for k, v in list(value.items())[:MAX_ARGS] if isinstance(v, str)}


def _entries(value: Any) -> Iterator[tuple[str, dict[str, Any]]]:
    """(name, entry) pairs of a name-to-entry mapping, or of a list of entries with a ``name``."""
    if isinstance(value, dict):
        items = [(str(k), v) for k, v in value.items()]
    elif isinstance(value, list):
        items = [(str(v.get("name", f"#{i}")), v) for i, v in enumerate(value) if isinstance(v, dict)]
    else:
        return
    for name, entry in items[:MAX_SERVERS_PER_FILE]:
        if isinstance(entry, dict):
            yield name[:MAX_TEXT], entry


def _get(document: Any, *path: str) -> Any:
    for key in path:
        if not isinstance(document, dict):
            return None
        document = document.get(key)
    return document


def _standard(name: str, entry: dict[str, Any], project: str = "") -> RawServer:
    """The ``mcpServers`` entry shape most agents share (Claude, Cursor, Windsurf, Cline, Gemini, VS Code)."""
    url = _text(entry.get("url")) or _text(entry.get("serverUrl")) or _text(entry.get("httpUrl"))
    transport = _text(entry.get("type")) or _text(entry.get("transport"))
    disabled = entry.get("disabled") is True or entry.get("enabled") is False
    return RawServer(
        name=name,
        command=_text(entry.get("command")),
        args=_texts(entry.get("args")),
        env=_mapping(entry.get("env")),
        url=url,
        headers=_mapping(entry.get("headers")),
        transport=transport,
        enabled=not disabled,
        cwd=_text(entry.get("cwd")),
        project=project,
    )


def read_mcp_servers(document: Any) -> ConfigFacts:
    """``{"mcpServers": {name: {command, args, env | url, headers}}}``."""
    facts = ConfigFacts()
    facts.servers = [_standard(n, e) for n, e in facts.entries(_get(document, "mcpServers"))]
    return facts


def read_claude_json(document: Any) -> ConfigFacts:
    """``~/.claude.json``: user-scope ``mcpServers`` and ``projects.<path>.mcpServers``."""
    facts = read_mcp_servers(document)
    projects = _get(document, "projects")
    if isinstance(projects, dict):
        for path, project in list(projects.items())[:MAX_SERVERS_PER_FILE]:
            for name, entry in facts.entries(_get(project, "mcpServers")):
                facts.servers.append(_standard(name, entry, project=str(path)[:MAX_TEXT]))
    return facts


def read_claude_settings(document: Any) -> ConfigFacts:
    """``~/.claude/settings.json``: ``env`` may point Claude Code at another endpoint and hold its key."""
    env = _mapping(_get(document, "env"))
    endpoints = [env[k] for k in ("ANTHROPIC_BASE_URL", "ANTHROPIC_BEDROCK_BASE_URL", "ANTHROPIC_VERTEX_BASE_URL")
                 if env.get(k)]
    return ConfigFacts(endpoints=endpoints, values=list(env.items()))


def read_vscode_mcp(document: Any) -> ConfigFacts:
    """``.vscode/mcp.json`` and the user ``mcp.json``: ``{"servers": {...}}``."""
    facts = ConfigFacts()
    facts.servers = [_standard(n, e) for n, e in facts.entries(_get(document, "servers"))]
    return facts


def read_vscode_settings(document: Any) -> ConfigFacts:
    """User ``settings.json``: ``{"mcp": {"servers": {...}}}``."""
    facts = ConfigFacts()
    facts.servers = [_standard(n, e) for n, e in facts.entries(_get(document, "mcp", "servers"))]
    return facts


def read_codex(document: Any) -> ConfigFacts:
    """``~/.codex/config.toml``: ``[mcp_servers.<name>]`` and ``[model_providers.<id>] base_url``."""
    facts = ConfigFacts()
    for name, entry in facts.entries(_get(document, "mcp_servers")):
        server = _standard(name, entry)
        headers = {**server.headers, **_mapping(entry.get("http_headers"))}
        facts.servers.append(replace(server, headers=headers))
    for _, provider in _entries(_get(document, "model_providers")):
        if _text(provider.get("base_url")):
            facts.endpoints.append(_text(provider.get("base_url")))
        facts.values.extend(_mapping(provider.get("http_headers")).items())
    return facts


def read_continue_yaml(document: Any) -> ConfigFacts:
    """``~/.continue/config.yaml``: ``mcpServers`` list and ``models[].apiBase``/``apiKey``."""
    facts = ConfigFacts()
    facts.servers = [_standard(n, e) for n, e in facts.entries(_get(document, "mcpServers"))]
    _continue_models(document, facts)
    return facts


def read_continue_json(document: Any) -> ConfigFacts:
    """``~/.continue/config.json``: ``experimental.modelContextProtocolServers[].transport``."""
    facts = ConfigFacts()
    for name, entry in facts.entries(_get(document, "experimental", "modelContextProtocolServers")):
        transport = entry.get("transport")
        if isinstance(transport, dict):
            facts.servers.append(_standard(name, transport))
    _continue_models(document, facts)
    return facts


def _continue_models(document: Any, facts: ConfigFacts) -> None:
    for name, model in _entries(_get(document, "models")):
        if _text(model.get("apiBase")):
            facts.endpoints.append(_text(model.get("apiBase")))
        if _text(model.get("apiKey")):
            facts.values.append((f"models.{name}.apiKey", _text(model.get("apiKey"))))


def read_goose(document: Any) -> ConfigFacts:
    """``~/.config/goose/config.yaml``: ``extensions.<name>`` with ``type``, ``cmd``, ``args``, ``envs``, ``uri``."""
    facts = ConfigFacts()
    for name, entry in facts.entries(_get(document, "extensions")):
        kind = _text(entry.get("type"))
        builtin = kind in ("builtin", "platform")
        facts.servers.append(RawServer(
            name=name,
            command=f"goose-builtin:{_text(entry.get('name')) or name}" if builtin else _text(entry.get("cmd")),
            args=_texts(entry.get("args")),
            env=_mapping(entry.get("envs")),
            url=_text(entry.get("uri")),
            headers=_mapping(entry.get("headers")),
            transport="builtin" if builtin else kind,
            enabled=entry.get("enabled") is not False,
        ))
    if isinstance(document, dict):
        for key in ("OLLAMA_HOST", "OPENAI_HOST", "ANTHROPIC_HOST", "AZURE_OPENAI_ENDPOINT", "OPENAI_BASE_PATH"):
            if _text(document.get(key)):
                facts.endpoints.append(_text(document.get(key)))
        facts.values.extend((k, v) for k, v in _mapping(document).items() if k.isupper())
    return facts


def read_zed(document: Any) -> ConfigFacts:
    """Zed ``settings.json``: ``context_servers.<name>`` (``command`` as a string or ``{path, args, env}``)."""
    facts = ConfigFacts()
    for name, entry in facts.entries(_get(document, "context_servers")):
        command = entry.get("command")
        if isinstance(command, dict):
            nested = {"command": command.get("path"), "args": command.get("args"), "env": command.get("env")}
            facts.servers.append(_standard(name, {**entry, **nested}))
        else:
            facts.servers.append(_standard(name, entry))
    for _, provider in _entries(_get(document, "language_models")):
        if _text(provider.get("api_url")):
            facts.endpoints.append(_text(provider.get("api_url")))
    return facts


def read_opencode(document: Any) -> ConfigFacts:
    """``opencode.json``: ``mcp.<name>`` ``{type: local, command: [...], environment}`` or ``{type: remote, url}``."""
    facts = ConfigFacts()
    for name, entry in facts.entries(_get(document, "mcp")):
        argv = _texts(entry.get("command"))
        facts.servers.append(RawServer(
            name=name,
            command=argv[0] if argv else "",
            args=argv[1:],
            env=_mapping(entry.get("environment")),
            url=_text(entry.get("url")),
            headers=_mapping(entry.get("headers")),
            transport="stdio" if _text(entry.get("type")) == "local" else _text(entry.get("type")),
            enabled=entry.get("enabled") is not False,
        ))
    for provider_id, provider in _entries(_get(document, "provider")):
        options = provider.get("options")
        if isinstance(options, dict):
            if _text(options.get("baseURL")):
                facts.endpoints.append(_text(options.get("baseURL")))
            if _text(options.get("apiKey")):
                facts.values.append((f"provider.{provider_id}.apiKey", _text(options.get("apiKey"))))
    return facts


def read_aider(document: Any) -> ConfigFacts:
    """``.aider.conf.yml``: ``openai-api-base`` and the ``*-api-key`` settings (aider has no MCP client)."""
    facts = ConfigFacts()
    if not isinstance(document, dict):
        return facts
    if _text(document.get("openai-api-base")):
        facts.endpoints.append(_text(document.get("openai-api-base")))
    facts.values.extend((k, v) for k, v in _mapping(document).items() if k.endswith("api-key"))
    for item in _texts(document.get("api-key")):
        provider, _, key = item.partition("=")
        facts.values.append((f"api-key.{provider}", key))
    return facts


READERS: dict[str, Callable[[Any], ConfigFacts]] = {
    "mcpServers": read_mcp_servers,
    "claude-json": read_claude_json,
    "claude-settings": read_claude_settings,
    "vscode-mcp": read_vscode_mcp,
    "vscode-settings": read_vscode_settings,
    "codex": read_codex,
    "continue-yaml": read_continue_yaml,
    "continue-json": read_continue_json,
    "goose": read_goose,
    "zed": read_zed,
    "opencode": read_opencode,
    "aider": read_aider,
}
