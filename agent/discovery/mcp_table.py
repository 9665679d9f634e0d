"""What well-known MCP servers can do, as data: one row per server.

A row names the server by the npm or PyPI package, the binary or the container
image that runs it, or the host of its remote URL, and says which capabilities
it hands a model and where its file-system roots are on its command line.
Adding a server means adding a row here (and a case to the table's test).
Servers no row names are reported with the capability ``unknown``.
"""

from __future__ import annotations

import fnmatch
import os
import re
from dataclasses import dataclass

FILESYSTEM, SHELL, BROWSER, GIT, DATABASE, CLOUD, FETCH, UNKNOWN = (
    "filesystem", "shell", "browser", "git", "database", "cloud", "fetch", "unknown",
)

# Where a server's roots are: every positional argument after the package, or the value of an option.
POSITIONAL = "positional"


@dataclass(frozen=True)
class McpKind:
    """One well-known MCP server."""

    name: str
    capabilities: tuple[str, ...]
    packages: tuple[str, ...] = ()
    binaries: tuple[str, ...] = ()
    images: tuple[str, ...] = ()
    url_hosts: tuple[str, ...] = ()
    roots: str = ""


MCP_KINDS: tuple[McpKind, ...] = (
    McpKind("filesystem", (FILESYSTEM,), packages=("@modelcontextprotocol/server-filesystem",),
            binaries=("mcp-server-filesystem",), images=("mcp/filesystem",), roots=POSITIONAL),
    McpKind("desktop-commander", (FILESYSTEM, SHELL), packages=("@wonderwhy-er/desktop-commander",),
            binaries=("desktop-commander",)),
    McpKind("shell", (SHELL,),
            packages=("mcp-server-commands", "mcp-shell-server", "@mkusaka/mcp-shell-server", "shell-mcp-server",
                      "iterm-mcp", "mcp-server-shell", "@kevinwatt/shell-mcp"),
            binaries=("mcp-shell-server", "mcp-server-commands", "mcp-shell")),
    McpKind("goose-developer", (SHELL, FILESYSTEM), binaries=("goose-builtin:developer",)),
    McpKind("kubernetes", (CLOUD, SHELL), packages=("mcp-server-kubernetes",), binaries=("kubectl-mcp",)),
    McpKind("playwright", (BROWSER,), packages=("@playwright/mcp",), binaries=("mcp-server-playwright",),
            images=("mcr.microsoft.com/playwright/mcp",)),
    McpKind("puppeteer", (BROWSER,), packages=("@modelcontextprotocol/server-puppeteer", "puppeteer-mcp-server"),
            images=("mcp/puppeteer",)),
    McpKind("chrome-devtools", (BROWSER,), packages=("chrome-devtools-mcp",)),
    McpKind("browsermcp", (BROWSER,), packages=("@browsermcp/mcp",)),
    McpKind("browserbase", (BROWSER, CLOUD), packages=("@browserbasehq/mcp-server-browserbase", "@browserbasehq/mcp")),
    McpKind("github", (GIT, CLOUD), packages=("@modelcontextprotocol/server-github",),
            binaries=("github-mcp-server",), images=("ghcr.io/github/github-mcp-server", "mcp/github"),
            url_hosts=("api.githubcopilot.com",)),
    McpKind("gitlab", (GIT, CLOUD), packages=("@modelcontextprotocol/server-gitlab",), images=("mcp/gitlab",)),
    McpKind("git", (GIT, FILESYSTEM), packages=("mcp-server-git",), binaries=("mcp-server-git",),
            images=("mcp/git",), roots="--repository"),
    McpKind("postgres", (DATABASE,), packages=("@modelcontextprotocol/server-postgres", "postgres-mcp"),
            images=("mcp/postgres", "crystaldba/postgres-mcp")),
    McpKind("sqlite", (DATABASE, FILESYSTEM), packages=("mcp-server-sqlite", "@modelcontextprotocol/server-sqlite"),
            binaries=("mcp-server-sqlite",), images=("mcp/sqlite",), roots="--db-path"),
    McpKind("mysql", (DATABASE,), packages=("@benborla29/mcp-server-mysql", "mcp-server-mysql")),
    McpKind("mongodb", (DATABASE,), packages=("mongodb-mcp-server",)),
    McpKind("redis", (DATABASE,), packages=("@modelcontextprotocol/server-redis",), images=("mcp/redis",)),
    McpKind("supabase", (DATABASE, CLOUD), packages=("@supabase/mcp-server-supabase",),
            url_hosts=("mcp.supabase.com",)),
    McpKind("aws", (CLOUD,), packages=("awslabs.*", "@modelcontextprotocol/server-aws-kb-retrieval")),
    McpKind("azure", (CLOUD,), packages=("@azure/mcp",)),
    McpKind("cloudflare", (CLOUD,), packages=("@cloudflare/mcp-server-cloudflare",),
            url_hosts=("*.mcp.cloudflare.com",)),
    McpKind("slack", (CLOUD,), packages=("@modelcontextprotocol/server-slack",), images=("mcp/slack",)),
    McpKind("gdrive", (CLOUD,), packages=("@modelcontextprotocol/server-gdrive",)),
    McpKind("notion", (CLOUD,), packages=("@notionhq/notion-mcp-server",), url_hosts=("mcp.notion.com",)),
    McpKind("sentry", (CLOUD,), packages=("@sentry/mcp-server",), url_hosts=("mcp.sentry.dev",)),
    McpKind("stripe", (CLOUD,), packages=("@stripe/mcp",), url_hosts=("mcp.stripe.com",)),
    McpKind("linear", (CLOUD,), url_hosts=("mcp.linear.app",)),
    McpKind("atlassian", (CLOUD,), url_hosts=("mcp.atlassian.com",)),
    McpKind("fetch", (FETCH,), packages=("mcp-server-fetch", "@modelcontextprotocol/server-fetch",
                                         "@kazuph/mcp-fetch", "fetcher-mcp"),
            binaries=("mcp-server-fetch",), images=("mcp/fetch",)),
    McpKind("brave-search", (FETCH,), packages=("@modelcontextprotocol/server-brave-search",
                                                "@brave/brave-search-mcp-server"), images=("mcp/brave-search",)),
    McpKind("web-search", (FETCH,), packages=("tavily-mcp", "exa-mcp-server", "firecrawl-mcp"),
            url_hosts=("mcp.tavily.com", "mcp.exa.ai")),
)

# Launchers whose first positional argument is the package they run, with their options that take a value.
_LAUNCHERS: dict[str, frozenset[str]] = {
    "npx": frozenset({"-p", "--package", "-c", "--call"}),
    "bunx": frozenset({"-p", "--package"}),
    "pnpx": frozenset(),
    "uvx": frozenset({"--from", "--with", "--python", "-p", "--index-url"}),
    "pipx": frozenset({"--spec", "--python"}),
    "deno": frozenset({"--allow-read", "--allow-write", "--allow-net", "--config", "-c"}),
}
_LAUNCHER_VERBS = frozenset({"run", "exec", "dlx", "x"})
_DOCKER_VALUE_OPTIONS = frozenset({
    "-e", "--env", "-v", "--volume", "--mount", "--name", "--env-file", "-p", "--publish", "-w", "--workdir",
    "--network", "-u", "--user", "--entrypoint", "--platform", "-l", "--label", "--add-host",
})
_ENV_REFERENCE = re.compile(r"\$\{(?:env:)?([A-Za-z_][A-Za-z0-9_]*)\}|\$([A-Za-z_][A-Za-z0-9_]*)|%([A-Za-z_]+)%")


@dataclass(frozen=True)
class Launch:
    """What a stdio command line runs: the package (or binary or image) and the arguments that follow it."""

    package: str
    rest: tuple[str, ...]
    mounts: tuple[str, ...] = ()
    container: bool = False


def parse_launch(command: str, args: tuple[str, ...]) -> Launch:
    """The package a stdio server's command line runs, for npx/uvx/pipx/bunx/docker/node/python or a binary."""
    base = _basename(command)
    if base in ("pnpm", "yarn", "bun", "npm") and args and args[0] in _LAUNCHER_VERBS:
        return _after_package(args[1:], _LAUNCHERS["npx"])
    if base in _LAUNCHERS:
        rest = args[1:] if base in ("pipx", "deno") and args and args[0] in _LAUNCHER_VERBS else args
        launch = _after_package(rest, _LAUNCHERS[base])
        if base == "uvx" and "--from" in args:
            index = args.index("--from")
            if index + 1 < len(args):
                return Launch(_strip_version(args[index + 1]), launch.rest)
        return launch
    if base in ("docker", "podman", "nerdctl"):
        return _docker(args)
    if base.startswith(("node", "python", "deno", "bun")):
        if len(args) >= 2 and args[0] == "-m":
            return Launch(args[1], args[2:])
        script = next((a for a in args if not a.startswith("-")), "")
        rest = args[args.index(script) + 1:] if script else ()
        return Launch(_package_of_script(script) if script else base, tuple(rest))
    return Launch(base, args)


def classify(package: str, url_host: str = "") -> tuple[McpKind | None, tuple[str, ...]]:
    """The table row naming ``package`` (or ``url_host``) and its capabilities; ("unknown",) when none does."""
    name = package.lower()
    base = _basename(name)
    for kind in MCP_KINDS:
        if (
            any(_glob(p, name) for p in kind.packages)
            or base in kind.binaries
            or any(name == i or name.startswith(i + ":") for i in kind.images)
            or (url_host and any(glob_host(h, url_host.lower()) for h in kind.url_hosts))
        ):
            return kind, kind.capabilities
    return None, (UNKNOWN,)


def root_arguments(kind: McpKind | None, launch: Launch) -> list[str]:
    """The file-system roots a server was given on its command line (unresolved), per its table row."""
    if kind is None or not kind.roots or launch.container:
        # A container's arguments are paths inside it; what it reaches on the host is what is mounted.
        return list(launch.mounts)
    if kind.roots == POSITIONAL:
        return [a for a in launch.rest if not a.startswith("-")] + list(launch.mounts)
    found = []
    rest = list(launch.rest)
    for index, arg in enumerate(rest):
        if arg == kind.roots and index + 1 < len(rest):
            found.append(rest[index + 1])
        elif arg.startswith(kind.roots + "="):
            found.append(arg.split("=", 1)[1])
    return found + list(launch.mounts)


def resolve_root(raw: str, home: str, base_dir: str, env: dict[str, str]) -> str:
    """``raw`` as an absolute normalised path: ``~``, ``$VAR``/``${VAR}``/``%VAR%`` and relative paths resolved.

    Variables come from the server's own environment entries, then the user's home (HOME, USERPROFILE);
    an unknown variable stays as written, so the operator sees what the agent could not resolve.
    """
    known = {"HOME": home, "USERPROFILE": home, "workspaceFolder": base_dir, **env}

    def substitute(match: re.Match[str]) -> str:
        name = match.group(1) or match.group(2) or match.group(3)
        return known.get(name, match.group(0))

    text = _ENV_REFERENCE.sub(substitute, raw.removeprefix("file://"))
    if text == "~" or text.startswith("~/"):
        text = home + text[1:]
    if "$" in text or "%" in text or text.startswith("~"):
        return text
    if not os.path.isabs(text):
        text = os.path.join(base_dir, text)
    return os.path.normpath(text)


def _after_package(args: tuple[str, ...], value_options: frozenset[str]) -> Launch:
    index = 0
    while index < len(args):
        arg = args[index]
        if arg in value_options:
            index += 2
            continue
        if arg.startswith("-"):
            index += 1
            continue
        return Launch(_strip_version(arg), args[index + 1:])
    return Launch("", ())


def _docker(args: tuple[str, ...]) -> Launch:
    rest = list(args[1:]) if args and args[0] == "run" else list(args)
    mounts: list[str] = []
    index = 0
    while index < len(rest):
        arg = rest[index]
        if arg in _DOCKER_VALUE_OPTIONS:
            value = rest[index + 1] if index + 1 < len(rest) else ""
            mounts.extend(_mount_source(arg, value))
            index += 2
            continue
        if arg.startswith("-"):
            index += 1
            continue
        return Launch(arg, tuple(rest[index + 1:]), tuple(mounts), container=True)
    return Launch("", (), tuple(mounts), container=True)


def _mount_source(option: str, value: str) -> list[str]:
    """The host side of a bind mount: what a container's server can really reach on the host."""
    if option in ("-v", "--volume") and ":" in value and not value.startswith(":"):
        return [value.split(":", 1)[0]] if value.startswith(("/", "~", "$", ".")) else []
    if option == "--mount":
        parts = dict(p.split("=", 1) for p in value.split(",") if "=" in p)
        source = parts.get("src") or parts.get("source")
        return [source] if source and parts.get("type", "bind") == "bind" else []
    return []


def _package_of_script(script: str) -> str:
    """``.../node_modules/@scope/pkg/dist/index.js`` -> ``@scope/pkg``; otherwise the script's base name."""
    parts = script.replace("\\", "/").split("/")
    if "node_modules" in parts:
        index = len(parts) - 1 - parts[::-1].index("node_modules")
        tail = parts[index + 1:]
        if tail and tail[0].startswith("@") and len(tail) > 1:
            return f"{tail[0]}/{tail[1]}"
        if tail and tail[0] != ".bin":
            return tail[0]
        if len(tail) > 1:
            return tail[1]
    return _basename(script)


def _strip_version(spec: str) -> str:
    """``@scope/pkg@1.2`` -> ``@scope/pkg``; ``pkg==1.0`` -> ``pkg``."""
    if spec.startswith("@"):
        head, _, tail = spec[1:].partition("@")
        return "@" + head if tail or "@" in spec[1:] else spec
    return re.split(r"@|==|>=|<=|~=", spec, maxsplit=1)[0]


def _basename(path: str) -> str:
    base = path.replace("\\", "/").rsplit("/", 1)[-1].lower()
    return base.removesuffix(".exe").removesuffix(".cmd")


def glob_host(pattern: str, host: str) -> bool:
    """Whether ``host`` matches a host pattern (``*`` for any run of characters, e.g. ``*.openai.azure.com``)."""
    return fnmatch.fnmatchcase(host, pattern)


def _glob(pattern: str, text: str) -> bool:
    if pattern.startswith("*"):
        return text.endswith(pattern[1:])
    if pattern.endswith("*"):
        return text.startswith(pattern[:-1])
    return text == pattern
