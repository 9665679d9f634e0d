"""Declarative signatures that say which processes are AI engines.

A signature never detects anything on its own: it names the candidates and the
probes that must agree before an engine is reported as confirmed. Adding an
engine means adding a :class:`Signature` here, not code elsewhere.
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from dataclasses import dataclass

from agent.platform import Platform, ProcessInfo

_PYTHON_NAME = re.compile(r"^python(\d+(\.\d+)?)?$")
_SCRIPT_SNIFF_BYTES = 64 * 1024


@dataclass(frozen=True)
class Signature:
    """How to recognise one engine kind.

    ``names`` match the process name, executable or argv[0] basename
    (case-insensitive, exact, or as a prefix when ending in ``*``);
    ``cmdline`` patterns match the joined command line; ``script`` patterns match
    the first bytes of a Python script or ``-c`` program and only apply to
    Python interpreters. ``exclude`` rejects helpers (e.g. Ollama's runners)
    that would otherwise double-count one engine.
    """

    kind: str
    probes: tuple[str, ...]
    names: tuple[str, ...] = ()
    cmdline: tuple[str, ...] = ()
    script: tuple[str, ...] = ()
    exclude: tuple[str, ...] = ()


SIGNATURES: tuple[Signature, ...] = (
    # Ollama's model runners (`ollama runner ...`) are children of the server and folded into it.
    Signature("ollama", probes=("ollama",), names=("ollama", "ollama.exe")),
    Signature(
        "llama.cpp",
        probes=("llamacpp", "openai"),
        names=("llama-server", "llama-cpp-server", "llama.cpp", "*.llamafile", "llamafile"),
        cmdline=(r"-m\s+llama_cpp\.server\b",),
    ),
    Signature(
        "lmstudio",
        probes=("lmstudio", "openai"),
        names=("lm studio", "lm-studio", "lmstudio", "lm-studio*"),
        cmdline=(r"/LM[ -]?Studio[^/]*/", r"\.lmstudio/"),
    ),
    Signature(
        "vllm",
        probes=("vllm",),
        names=("vllm",),
        cmdline=(r"\bvllm(\.entrypoints\.\S+|\s+serve)\b",),
    ),
    Signature("localai", probes=("openai",), names=("local-ai", "localai")),
    Signature("gpt4all", probes=("openai",), names=("gpt4all",), cmdline=(r"/gpt4all/",)),
    Signature("jan", probes=("openai",), names=("jan", "cortex", "cortex-server"), cmdline=(r"/jan/",)),
    Signature("koboldcpp", probes=("kobold", "openai"), names=("koboldcpp*",), cmdline=(r"koboldcpp\.py\b",)),
    Signature(
        "text-generation-webui",
        probes=("openai", "gradio"),
        cmdline=(r"text-generation-webui", r"oobabooga", r"\bserver\.py\b.*--(api|listen|model)\b"),
        # As its one-click installer starts it: `installer_files/env/bin/python server.py`, no flags.
        script=(r"^\s*from modules import [^\n]*\bshared\b", r"^\s*import modules\.extensions\b"),
    ),
    Signature(
        "tgi",
        probes=("tgi", "openai"),
        names=("text-generation-launcher", "text-generation-server"),
        cmdline=(r"\btext_generation_server\b",),
    ),
    Signature("sglang", probes=("openai",), cmdline=(r"\bsglang\.launch_server\b",)),
    Signature(
        "transformers",
        probes=("openai", "http"),
        cmdline=(
            r"transformers\s+(serve|chat)\b",
            r"\bpipeline\(",
        ),
        script=(
            r"^\s*(from|import)\s+transformers\b.*?\bpipeline\(",
            r"\bAutoModelForCausalLM\b.*?\b(serve|uvicorn|Flask|HTTPServer)",
        ),
    ),
)


def match(
    process: ProcessInfo, platform: Platform, signatures: Sequence[Signature] = SIGNATURES
) -> Signature | None:
    """The first signature ``process`` matches, or None."""
    names = _names(process)
    joined = " ".join(process.cmdline)
    python = _is_python(process)
    script = _script_text(process, platform) if python else ""
    for signature in signatures:
        if any(re.search(pattern, joined) for pattern in signature.exclude):
            continue
        if _names_match(signature.names, names) or any(re.search(p, joined) for p in signature.cmdline):
            return signature
        if script and any(re.search(p, script, re.MULTILINE | re.DOTALL) for p in signature.script):
            return signature
    return None


def _names(process: ProcessInfo) -> set[str]:
    names = {process.name.lower(), os.path.basename(process.exe).lower()}
    if process.cmdline:
        names.add(os.path.basename(process.cmdline[0]).lower())
    script = _script_path(process)
    if script:
        names.add(os.path.basename(script).lower())
    names.discard("")
    return names


def _names_match(patterns: tuple[str, ...], names: set[str]) -> bool:
    for pattern in patterns:
        if pattern.startswith("*"):
            if any(n.endswith(pattern[1:]) for n in names):
                return True
        elif pattern.endswith("*"):
            if any(n.startswith(pattern[:-1]) for n in names):
                return True
        elif pattern in names:
            return True
    return False


def _is_python(process: ProcessInfo) -> bool:
    candidates = [os.path.basename(process.exe), process.name]
    if process.cmdline:
        candidates.append(os.path.basename(process.cmdline[0]))
    return any(_PYTHON_NAME.match(c) for c in candidates if c)


def _script_path(process: ProcessInfo) -> str | None:
    """The script a Python interpreter runs (the first non-option argument), if any."""
    if not _is_python(process):
        return None
    args = list(process.cmdline[1:])
    while args:
        arg = args.pop(0)
        if arg in ("-m", "-c"):
            return None
        if arg in ("-W", "-X", "-Q"):
            if args:
                args.pop(0)
            continue
        if arg.startswith("-"):
            continue
        return arg
    return None


def _script_text(process: ProcessInfo, platform: Platform) -> str:
    if "-c" in process.cmdline[1:]:
        index = process.cmdline.index("-c", 1)
        return process.cmdline[index + 1] if index + 1 < len(process.cmdline) else ""
    script = _script_path(process)
    if not script:
        return ""
    path = script if os.path.isabs(script) else os.path.join(process.cwd, script)
    return platform.read_text(path, _SCRIPT_SNIFF_BYTES)
