"""Read deploy/Dockerfile as the builder does: stages, ARG defaults, WORKDIR and what each COPY takes.

No container engine runs in CI, so the tests rebuild a stage's file system from the COPY lines
(Docker's rules: a directory source copies its contents into the destination, a file source goes
into a destination ending in `/` under its own name) and build the package from that folder.
"""

from __future__ import annotations

import posixpath
import re
import shlex
from dataclasses import dataclass, field
from pathlib import Path

from tests.packaging.installed import REPO, copy_tree

DOCKERFILE = REPO / "deploy" / "Dockerfile"


@dataclass(frozen=True)
class Copy:
    sources: tuple[str, ...]
    dest: str  # absolute, resolved against the stage's WORKDIR
    from_stage: str | None


@dataclass
class Stage:
    base: str
    name: str | None
    args: dict[str, str] = field(default_factory=dict)
    workdir: str = "/"
    instructions: list[tuple[str, str]] = field(default_factory=list)
    copies: list[Copy] = field(default_factory=list)


def instructions(text: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, rest) for each instruction, continuation lines joined and comments dropped."""
    logical: list[str] = []
    pending = ""
    for line in text.splitlines():
        if not pending and (not line.strip() or line.lstrip().startswith("#")):
            continue
        if line.rstrip().endswith("\\"):
            pending += line.rstrip()[:-1] + " "
            continue
        logical.append(pending + line)
        pending = ""
    return [(word.upper(), rest.strip()) for word, _, rest in (line.strip().partition(" ") for line in logical)]


def _expand(text: str, args: dict[str, str]) -> str:
    return re.sub(r"\$\{(\w+)\}|\$(\w+)", lambda m: args.get(m.group(1) or m.group(2), m.group(0)), text)


def parse(text: str) -> list[Stage]:
    global_args: dict[str, str] = {}
    stages: list[Stage] = []
    workdir = "/"
    for word, rest in instructions(text):
        if word == "ARG":
            name, _, default = rest.partition("=")
            (stages[-1].args if stages else global_args)[name] = _expand(default, global_args)
        elif word == "FROM":
            parts = _expand(rest, global_args).split()
            stages.append(Stage(parts[0], parts[2] if len(parts) == 3 and parts[1].upper() == "AS" else None))
            workdir = "/"
        elif word == "WORKDIR":
            workdir = posixpath.join(workdir, rest)
            stages[-1].workdir = workdir
        elif word == "COPY":
            words = shlex.split(rest)
            flags = {w.split("=", 1)[0]: w.split("=", 1)[1] for w in words if w.startswith("--") and "=" in w}
            paths = [w for w in words if not w.startswith("--")]
            dest = posixpath.join(workdir, paths[-1]) + ("/" if paths[-1].endswith("/") else "")
            stages[-1].copies.append(Copy(tuple(paths[:-1]), dest, flags.get("--from")))
        if stages and word != "FROM":
            stages[-1].instructions.append((word, rest))
    return stages


def stage(stages: list[Stage], name: str) -> Stage:
    (found,) = (s for s in stages if s.name == name)
    return found


def copied_files(copies: list[Copy], tracked: list[str]) -> dict[str, str]:
    """Absolute path in the image -> path in the checkout, for the COPY lines that read the build context."""
    placed: dict[str, str] = {}
    for copy in copies:
        if copy.from_stage is not None:
            continue
        for named in copy.sources:
            source = named.rstrip("/")
            matches = [path for path in tracked if path == source or path.startswith(f"{source}/")]
            assert matches, f"COPY {source}: not in the build context"
            for path in matches:
                if path == source:
                    directory = copy.dest.endswith("/") or len(copy.sources) > 1
                    target = posixpath.join(copy.dest, posixpath.basename(path)) if directory else copy.dest
                else:
                    target = posixpath.join(copy.dest, path.removeprefix(f"{source}/"))
                placed[posixpath.normpath(target)] = path
    return placed


def assemble(placed: dict[str, str], root: str, into: Path) -> None:
    """Write the files placed under the image directory `root` into `into`, as the stage sees them."""
    copy_tree(((source, target.removeprefix(f"{root}/")) for target, source in placed.items()
               if target.startswith(f"{root}/")), into)
