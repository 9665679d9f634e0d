"""Turn processes, sockets and probes into :class:`agent.inventory.Engine` records.

A port alone is never a detection. A process is an engine when a signature
names it (confirmed only when one of the signature's probes answers on one of
its own listening sockets), or by behaviour: a process no signature names
whose own listening socket answers one of the engine-specific APIs (Ollama's
``/api/version``, llama.cpp's ``/props``, ...) is that engine, whatever its
binary is called. A process that did not answer like an engine is remembered
(by pid, executable and ports) and not probed again while it stays the same.
Helper processes (Ollama's runners, Electron helpers, a PyInstaller launcher's
child) are folded into the engine they descend from: their open files and
connections are the engine's, and they are not counted as engines of their own.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import os
import threading
import time
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass

from agent.discovery.identity import engine_of_executable
from agent.discovery.probes import ProbeResult, probe
from agent.discovery.sensitive import sensitive_files
from agent.discovery.signatures import SIGNATURES, Signature, match
from agent.inventory import CONFIRMED, UNCONFIRMED, Connection, Endpoint, Engine
from agent.platform import Handles, Platform, ProcessInfo, SocketInfo
from agent.threads import map_with_deadline

# Files under these prefixes belong to the OS, not to the user's data. Not /opt: companies keep
# application secrets there (the engine's own install directory is skipped separately).
_SYSTEM_PREFIXES = (
    "/usr/",
    "/lib/",
    "/lib64/",
    "/snap/",
    "/nix/",
    "/proc/",
    "/sys/",
    "/dev/",
    "/run/",
)
_MAX_PROBED_PORTS = 8
# Probes whose answer names one engine; the weak ones (any OpenAI-compatible server, any HTTP) are not enough.
_BEHAVIOUR_PROBES = (("ollama", "ollama"), ("llamacpp", "llama.cpp"), ("lmstudio", "lmstudio"),
                     ("kobold", "koboldcpp"), ("tgi", "tgi"))
_BEHAVIOUR_SIGNATURES = tuple(Signature(kind, probes=(family,)) for family, kind in _BEHAVIOUR_PROBES)
_HELPER_DEPTH = 4
_MAX_REMEMBERED = 4096
_not_engines: OrderedDict[tuple[int, str, frozenset[int]], None] = OrderedDict()
_not_engines_lock = threading.Lock()


@dataclass(frozen=True)
class DiscoverySettings:
    """Knobs for one discovery pass.

    ``probe_timeout`` bounds one probe (all its requests, connect and reads included);
    ``engine_deadline`` bounds every probe of one engine together.
    """

    probe_timeout: float = 2.0
    engine_deadline: float = 5.0
    sensitive_patterns: tuple[str, ...] = ()
    signatures: tuple[Signature, ...] = SIGNATURES
    workers: int = 8


@dataclass(frozen=True)
class _Candidate:
    process: ProcessInfo
    signature: Signature
    handles: Handles
    listening: tuple[SocketInfo, ...]
    established: tuple[SocketInfo, ...]
    probeable: bool
    found_by: str = "signature"


def discover_engines(platform: Platform, settings: DiscoverySettings) -> list[Engine]:
    """Every engine process on the host, confirmed or not, sorted by kind then pid."""
    processes = platform.processes()
    matched: list[_Candidate] = []
    unmatched: list[ProcessInfo] = []
    for process in processes:
        signature = match(process, platform, settings.signatures)
        if signature is not None:
            matched.append(_candidate(process, signature, platform))
        elif (signature := _by_executable(process, settings)) is not None:
            matched.append(dataclasses.replace(_candidate(process, signature, platform), found_by="executable of"))
        else:
            unmatched.append(process)
    candidates = _dedupe(_fold_helpers(matched, {p.pid: p for p in processes}))
    candidates += _by_behaviour(unmatched, platform, settings)
    engines = map_with_deadline(
        lambda c: _engine(c, settings),
        candidates,
        # Every engine's probes stop at its own deadline; the margin covers the reads of /proc around them.
        settings.engine_deadline * (1 + len(candidates) // max(1, settings.workers)) + 1.0,
        lambda c: _unprobed(c, "probes did not finish in time"),
        workers=settings.workers,
    )
    return sorted((e for e in engines if e is not None), key=lambda e: (e.kind, e.pid))


def _candidate(process: ProcessInfo, signature: Signature, platform: Platform) -> _Candidate:
    handles = platform.handles(process.pid)
    own = [s for s in platform.tcp_sockets(process.pid) if s.inode in handles.sockets]
    listening = tuple(s for s in own if s.listening)
    listen_ports = {s.local_port for s in listening}
    established = tuple(
        s
        for s in own
        if not s.listening and not _is_loopback(s.remote_address) and s.local_port not in listen_ports
    )
    return _Candidate(
        process, signature, handles, listening, established, platform.shares_network(process.pid)
    )


def _by_executable(process: ProcessInfo, settings: DiscoverySettings) -> Signature | None:
    """The signature of the engine the process's executable is, whatever the file is called."""
    kind = engine_of_executable(process.exe)
    return next((s for s in settings.signatures if s.kind == kind), None) if kind else None


def _fold_helpers(candidates: list[_Candidate], by_pid: dict[int, ProcessInfo]) -> list[_Candidate]:
    """Candidates whose ancestor is a candidate of the same kind are helpers: their files and connections
    go to that ancestor, and they are not reported on their own."""
    by_candidate = {c.process.pid: c for c in candidates}
    roots: dict[int, _Candidate] = {}
    helpers: list[tuple[int, _Candidate]] = []
    for candidate in candidates:
        ancestor = _engine_ancestor(candidate, by_candidate, by_pid)
        if ancestor is None:
            roots[candidate.process.pid] = candidate
        else:
            helpers.append((ancestor, candidate))
    for root_pid, helper in helpers:
        root = roots.get(root_pid)
        if root is None:
            continue
        files = tuple(sorted({*root.handles.files, *helper.handles.files}))
        roots[root_pid] = dataclasses.replace(
            root,
            handles=Handles(files=files, sockets=root.handles.sockets),
            established=(*root.established, *helper.established),
        )
    return list(roots.values())


def _engine_ancestor(
    candidate: _Candidate, candidates: dict[int, _Candidate], by_pid: dict[int, ProcessInfo]
) -> int | None:
    """The pid of the nearest ancestor that is a candidate of the same kind and itself no helper, or None."""
    found: int | None = None
    parent = candidate.process.ppid
    for _ in range(_HELPER_DEPTH):
        if parent <= 1 or parent not in by_pid:
            break
        other = candidates.get(parent)
        if other is not None and other.signature.kind == candidate.signature.kind:
            found = parent
        parent = by_pid[parent].ppid
    return found


def _by_behaviour(processes: list[ProcessInfo], platform: Platform, settings: DiscoverySettings) -> list[_Candidate]:
    """Processes no signature names that listen on TCP here and were not already found to be no engine."""
    listening = {s.inode for s in platform.tcp_sockets(os.getpid()) if s.listening}
    found: list[_Candidate] = []
    for process in processes:
        if process.pid == os.getpid():
            continue
        handles = platform.handles(process.pid)
        if not handles.sockets & listening:
            continue
        candidate = _candidate(process, _BEHAVIOUR_SIGNATURES[0], platform)
        if not candidate.listening or not candidate.probeable or _known_not_engine(candidate):
            continue
        found.append(candidate)
    return found


def _verdict_key(candidate: _Candidate) -> tuple[int, str, frozenset[int]]:
    return candidate.process.pid, candidate.process.exe, frozenset(s.local_port for s in candidate.listening)


def _known_not_engine(candidate: _Candidate) -> bool:
    with _not_engines_lock:
        return _verdict_key(candidate) in _not_engines


def _remember_not_engine(candidate: _Candidate) -> None:
    with _not_engines_lock:
        _not_engines[_verdict_key(candidate)] = None
        while len(_not_engines) > _MAX_REMEMBERED:
            _not_engines.popitem(last=False)


def _dedupe(candidates: list[_Candidate]) -> list[_Candidate]:
    """Worker processes inherit their parent's listening socket; report the socket's lowest pid once."""
    seen: set[int] = set()
    kept: list[_Candidate] = []
    for candidate in sorted(candidates, key=lambda c: c.process.pid):
        inodes = {s.inode for s in candidate.listening}
        if inodes and inodes <= seen:
            continue
        seen |= inodes
        kept.append(candidate)
    return kept


def _endpoints(candidate: _Candidate) -> tuple[Endpoint, ...]:
    return tuple(
        sorted(
            {
                Endpoint(s.local_address, s.local_port, not _is_loopback(s.local_address))
                for s in candidate.listening
            },
            key=lambda e: (e.port, e.address),
        )
    )


def _unprobed(candidate: _Candidate, why: str) -> Engine | None:
    """The engine as its process and sockets show it, unconfirmed, when probing it failed or ran late."""
    if candidate.signature in _BEHAVIOUR_SIGNATURES:
        return None  # not known to be an engine at all; tried again next scan
    process = candidate.process
    return Engine(
        kind=candidate.signature.kind,
        pid=process.pid,
        exe=process.exe,
        user=process.user,
        version=None,
        listen=_endpoints(candidate),
        confirmed=False,
        confidence=UNCONFIRMED,
        evidence=(f"{candidate.found_by} {candidate.signature.kind} matched process {process.name!r}",
                  f"probe: {why}"),
    )


def _engine(candidate: _Candidate, settings: DiscoverySettings) -> Engine | None:
    if candidate.signature in _BEHAVIOUR_SIGNATURES:
        return _engine_by_behaviour(candidate, settings)
    endpoints = _endpoints(candidate)
    result, evidence = _confirm(candidate, endpoints, settings)
    return _record(candidate, endpoints, result, evidence, settings)


def _engine_by_behaviour(candidate: _Candidate, settings: DiscoverySettings) -> Engine | None:
    """The engine whose API the process answers, or None (remembered) when it answers none of them."""
    endpoints = _endpoints(candidate)
    for signature in _BEHAVIOUR_SIGNATURES:
        result, evidence = _confirm(dataclasses.replace(candidate, signature=signature), endpoints, settings)
        if result is not None:
            named = dataclasses.replace(candidate, signature=signature)
            return _record(named, endpoints, result, [f"identified by behaviour, not by name: {evidence[-1]}"],
                           settings)
    _remember_not_engine(candidate)
    return None


def _record(
    candidate: _Candidate,
    endpoints: tuple[Endpoint, ...],
    result: ProbeResult | None,
    evidence: list[str],
    settings: DiscoverySettings,
) -> Engine:
    process = candidate.process
    return Engine(
        kind=candidate.signature.kind,
        pid=process.pid,
        exe=process.exe,
        user=process.user,
        version=result.version if result else None,
        listen=endpoints,
        confirmed=result is not None,
        confidence=CONFIRMED if result else UNCONFIRMED,
        models_loaded=result.models_loaded if result else (),
        models_installed=result.models_installed if result else (),
        open_sensitive_files=sensitive_files(
            _user_files(candidate), settings.sensitive_patterns, process.user
        ),
        outbound=tuple(
            sorted(
                {
                    Connection(s.local_address, s.local_port, s.remote_address, s.remote_port)
                    for s in candidate.established
                },
                key=lambda c: (c.remote_address, c.remote_port, c.local_port),
            )
        ),
        auth_required=result.auth_required if result else False,
        evidence=(f"{candidate.found_by} {candidate.signature.kind} matched process {process.name!r}", *evidence),
    )


def _confirm(
    candidate: _Candidate, endpoints: Sequence[Endpoint], settings: DiscoverySettings
) -> tuple[ProbeResult | None, list[str]]:
    """The first probe that confirms the engine on one of its ports, with the evidence gathered on the way."""
    if not endpoints:
        return None, ["no listening TCP socket"]
    if not candidate.probeable:
        return None, ["listens in another network namespace; not probed"]
    evidence: list[str] = []
    engine_deadline = time.monotonic() + settings.engine_deadline
    for endpoint in list(endpoints)[:_MAX_PROBED_PORTS]:
        host = _probe_host(endpoint.address)
        for family in candidate.signature.probes:
            if time.monotonic() >= engine_deadline:
                evidence.append(f"probe: the engine's {settings.engine_deadline:g}s probe deadline passed")
                return None, evidence
            deadline = min(engine_deadline, time.monotonic() + settings.probe_timeout)
            result = probe(family, host, endpoint.port, deadline)
            evidence.append(f"probe {family} on port {endpoint.port}: {result.evidence}")
            if result.confirmed:
                return result, evidence
    return None, evidence


def _probe_host(address: str) -> str:
    """Wildcard binds are probed through loopback; a specific address is the host's own and stays on-host."""
    if address == "0.0.0.0":
        return "127.0.0.1"
    if address == "::":
        return "::1"
    return address


def _user_files(candidate: _Candidate) -> list[str]:
    install_dir = os.path.dirname(candidate.process.exe) + "/" if candidate.process.exe else None
    return [
        path
        for path in candidate.handles.files
        if not path.startswith(_SYSTEM_PREFIXES) and not (install_dir and path.startswith(install_dir))
    ]


def _is_loopback(address: str) -> bool:
    try:
        return ipaddress.ip_address(address).is_loopback
    except ValueError:
        return False
