"""Where AI agents keep their configuration and how their processes look, as data: one row per agent.

Paths are relative to a user's home, per OS family ("linux", "macos",
"windows"); ``project`` locations are looked for in every project folder found
under the home. ``reader`` names how the file declares MCP servers, endpoints
and credentials (:data:`agent.discovery.agent_readers.READERS`). Processes are
recognised with the engines' :class:`Signature` (no probes: an agent serves no
port to confirm). ``default_endpoint`` is where the agent sends prompts when no
file says otherwise. Adding an agent means adding a row here and a fixture of
its configuration format to ``tests/agent/fixtures/agents/``.
"""

from __future__ import annotations

from dataclasses import dataclass

from agent.discovery.configfiles import JSON, JSONC, TOML, YAML
from agent.discovery.signatures import Signature

USER, PROJECT = "user", "project"
# Electron and Chromium helpers carry --type=...; the main process does not, so an app counts once.
_HELPER = (r"--type=",)


@dataclass(frozen=True)
class Location:
    """One configuration file of an agent: where on each OS, its format and its reader."""

    linux: str
    macos: str
    windows: str
    fmt: str
    reader: str
    scope: str = USER

    def path(self, os_family: str) -> str:
        return {"linux": self.linux, "macos": self.macos, "windows": self.windows}.get(os_family, "")


def _everywhere(path: str, fmt: str, reader: str, scope: str = USER) -> Location:
    return Location(path, path, path, fmt, reader, scope)


def _per_os(folders: tuple[str, str, str], name: str, fmt: str, reader: str) -> Location:
    linux, macos, windows = folders
    return Location(f"{linux}/{name}", f"{macos}/{name}", f"{windows}/{name}", fmt, reader)


_VSCODE_USER = ("~/.config/Code/User", "~/Library/Application Support/Code/User", "~/AppData/Roaming/Code/User")
_CLINE = "globalStorage/saoudrizwan.claude-dev/settings/cline_mcp_settings.json"


@dataclass(frozen=True)
class AgentSpec:
    """One AI agent kind."""

    kind: str
    locations: tuple[Location, ...]
    process: Signature
    default_endpoint: str = ""


AGENTS: tuple[AgentSpec, ...] = (
    AgentSpec(
        "claude-desktop",
        (
            Location("~/.config/Claude/claude_desktop_config.json",
                     "~/Library/Application Support/Claude/claude_desktop_config.json",
                     "~/AppData/Roaming/Claude/claude_desktop_config.json", JSON, "mcpServers"),
        ),
        Signature("claude-desktop", probes=(), names=("claude-desktop",),
                  cmdline=(r"Claude\.app/Contents/MacOS/Claude", r"\\AnthropicClaude\\", r"/claude-desktop/"),
                  exclude=_HELPER),
        "https://api.anthropic.com",
    ),
    AgentSpec(
        "claude-code",
        (
            _everywhere("~/.claude.json", JSON, "claude-json"),
            _everywhere("~/.claude/settings.json", JSON, "claude-settings"),
            _everywhere(".mcp.json", JSON, "mcpServers", PROJECT),
            _everywhere(".claude/settings.json", JSON, "claude-settings", PROJECT),
        ),
        Signature("claude-code", probes=(), names=("claude",),
                  cmdline=(r"@anthropic-ai/claude-code/", r"/\.claude/local/claude\b")),
        "https://api.anthropic.com",
    ),
    AgentSpec(
        "cursor",
        (
            _everywhere("~/.cursor/mcp.json", JSON, "mcpServers"),
            _everywhere(".cursor/mcp.json", JSON, "mcpServers", PROJECT),
            Location(f"~/.config/Cursor/User/{_CLINE}", f"~/Library/Application Support/Cursor/User/{_CLINE}",
                     f"~/AppData/Roaming/Cursor/User/{_CLINE}", JSON, "mcpServers"),
        ),
        Signature("cursor", probes=(), names=("cursor",), cmdline=(r"Cursor\.app/Contents/MacOS/Cursor",),
                  exclude=_HELPER),
        "https://api2.cursor.sh",
    ),
    AgentSpec(
        "vscode",
        (
            _everywhere(".vscode/mcp.json", JSONC, "vscode-mcp", PROJECT),
            _per_os(_VSCODE_USER, "mcp.json", JSONC, "vscode-mcp"),
            _per_os(_VSCODE_USER, "settings.json", JSONC, "vscode-settings"),
        ),
        Signature("vscode", probes=(), names=("code",),
                  cmdline=(r"/usr/share/code/code\b", r"Visual Studio Code\.app/Contents/MacOS/Electron"),
                  exclude=_HELPER),
        "https://api.githubcopilot.com",
    ),
    AgentSpec(
        "cline",
        (_per_os(_VSCODE_USER, _CLINE, JSON, "mcpServers"),),
        Signature("cline", probes=(), names=("cline",)),
    ),
    AgentSpec(
        "windsurf",
        (_everywhere("~/.codeium/windsurf/mcp_config.json", JSON, "mcpServers"),),
        Signature("windsurf", probes=(), names=("windsurf",), cmdline=(r"Windsurf\.app/Contents/MacOS/",),
                  exclude=_HELPER),
        "https://server.codeium.com",
    ),
    AgentSpec(
        "codex",
        (_everywhere("~/.codex/config.toml", TOML, "codex"),),
        Signature("codex", probes=(), names=("codex",), cmdline=(r"@openai/codex/",)),
        "https://api.openai.com",
    ),
    AgentSpec(
        "gemini-cli",
        (
            _everywhere("~/.gemini/settings.json", JSON, "mcpServers"),
            _everywhere(".gemini/settings.json", JSON, "mcpServers", PROJECT),
        ),
        Signature("gemini-cli", probes=(), names=("gemini",), cmdline=(r"@google/gemini-cli/",)),
        "https://generativelanguage.googleapis.com",
    ),
    AgentSpec(
        "continue",
        (
            _everywhere("~/.continue/config.yaml", YAML, "continue-yaml"),
            _everywhere("~/.continue/config.json", JSON, "continue-json"),
        ),
        Signature("continue", probes=(), names=("cn",), cmdline=(r"@continuedev/cli/",)),
    ),
    AgentSpec(
        "goose",
        (Location("~/.config/goose/config.yaml", "~/.config/goose/config.yaml",
                  "~/AppData/Roaming/Block/goose/config/config.yaml", YAML, "goose"),),
        Signature("goose", probes=(), names=("goose", "goosed"), cmdline=(r"Goose\.app/Contents/MacOS/",),
                  exclude=_HELPER),
    ),
    AgentSpec(
        "zed",
        (Location("~/.config/zed/settings.json", "~/.config/zed/settings.json",
                  "~/AppData/Roaming/Zed/settings.json", JSONC, "zed"),
         _everywhere(".zed/settings.json", JSONC, "zed", PROJECT)),
        Signature("zed", probes=(), names=("zed", "zed-editor", "zeditor"), cmdline=(r"Zed\.app/Contents/MacOS/",)),
    ),
    AgentSpec(
        "opencode",
        (
            _everywhere("~/.config/opencode/opencode.json", JSONC, "opencode"),
            _everywhere("opencode.json", JSONC, "opencode", PROJECT),
        ),
        Signature("opencode", probes=(), names=("opencode",), cmdline=(r"opencode-ai/",)),
    ),
    AgentSpec(
        "aider",
        (
            _everywhere("~/.aider.conf.yml", YAML, "aider"),
            _everywhere(".aider.conf.yml", YAML, "aider", PROJECT),
        ),
        Signature("aider", probes=(), names=("aider",), cmdline=(r"\baider_chat\b", r"-m\s+aider\b")),
        "https://api.openai.com",
    ),
)

# API hosts of hosted model providers: an endpoint here is "cloud"; any other remote host is "self-hosted".
CLOUD_API_HOSTS: tuple[str, ...] = (
    "api.openai.com", "*.openai.azure.com", "*.cognitiveservices.azure.com", "api.anthropic.com",
    "generativelanguage.googleapis.com", "*-aiplatform.googleapis.com", "aiplatform.googleapis.com",
    "bedrock-runtime.*.amazonaws.com", "api.mistral.ai", "api.groq.com", "openrouter.ai", "api.together.xyz",
    "api.deepseek.com", "api.x.ai", "api.cohere.com", "api.cohere.ai", "api.perplexity.ai", "api.fireworks.ai",
    "api-inference.huggingface.co", "router.huggingface.co", "api2.cursor.sh", "server.codeium.com",
    "api.githubcopilot.com", "models.inference.ai.azure.com", "models.github.ai",
)
