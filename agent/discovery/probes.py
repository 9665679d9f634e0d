"""HTTP probes that confirm what a signature suspects.

Probes only speak to the engine's own listening port on this host, under one
total deadline per engine (connect, send and every read count against it, so a
server that drips a byte at a time is cut off like a silent one) and a response
size cap, so a hung or hostile local server cannot stall or bloat a scan. Each
probe's socket is bound to the address it targets before connecting: the
kernel then only connects when that address is this host's own, so a listener
bound to a foreign address (``IP_FREEBIND``) cannot steer a probe off the host.
An answer of 401/403 on an engine's API path still identifies the engine: it
wants a key, which is itself worth reporting.
"""

from __future__ import annotations

import http.client
import io
import json
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

_MAX_BODY = 512 * 1024
_MAX_HEAD = 64 * 1024
_AUTH_STATUSES = (401, 403)


@dataclass(frozen=True)
class ProbeResult:
    """What a probe learned; ``confirmed`` is False when the port did not answer like the engine."""

    confirmed: bool
    evidence: str
    version: str | None = None
    models_installed: tuple[str, ...] = ()
    models_loaded: tuple[str, ...] = ()
    auth_required: bool = False


@dataclass(frozen=True)
class _Reply:
    status: int
    body: bytes

    def json(self) -> Any:
        try:
            return json.loads(self.body)
        except ValueError:
            return None


class _Client:
    """Tiny GET-only HTTP/1.0 client bound to one host:port, with a deadline shared by all its requests."""

    def __init__(self, host: str, port: int, deadline: float) -> None:
        self.host = host
        self.port = port
        self.deadline = deadline
        self.errors: list[str] = []

    def get(self, path: str) -> _Reply | None:
        try:
            raw = self._exchange(path)
            response = http.client.HTTPResponse(_Replayed(raw))  # type: ignore[arg-type]
            response.begin()
            return _Reply(response.status, response.read(_MAX_BODY))
        except (OSError, http.client.HTTPException, ValueError) as exc:
            self.errors.append(f"GET {path}: {type(exc).__name__}: {exc}"[:200])
            return None

    def _remaining(self) -> float:
        left = self.deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError("probe deadline passed")
        return left

    def _exchange(self, path: str) -> bytes:
        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        with socket.socket(family, socket.SOCK_STREAM) as sock:
            sock.bind((self.host, 0))
            sock.settimeout(self._remaining())
            sock.connect((self.host, self.port))
            request = (
                f"GET {path} HTTP/1.0\r\nHost: {self.host}:{self.port}\r\n"
                "Accept: application/json\r\nUser-Agent: lz-agent\r\nConnection: close\r\n\r\n"
            )
            sock.sendall(request.encode("ascii"))
            chunks: list[bytes] = []
            size = 0
            while size < _MAX_HEAD + _MAX_BODY:
                sock.settimeout(self._remaining())
                chunk = sock.recv(65536)
                if not chunk:
                    break
                chunks.append(chunk)
                size += len(chunk)
            return b"".join(chunks)


class _Replayed:
    """The bytes of a finished exchange, shaped like the socket ``http.client.HTTPResponse`` reads from."""

    def __init__(self, data: bytes) -> None:
        self.data = data

    def makefile(self, mode: str, *args: Any, **kwargs: Any) -> io.BytesIO:
        return io.BytesIO(self.data)


def probe(family: str, host: str, port: int, deadline: float) -> ProbeResult:
    """Run the probe ``family`` against ``host:port``, giving up at ``deadline`` (``time.monotonic()``)."""
    handler = _PROBES.get(family)
    if handler is None:
        return ProbeResult(False, f"unknown probe {family}")
    client = _Client(host, port, deadline)
    result = handler(client)
    if result.confirmed or not client.errors:
        return result
    return ProbeResult(False, f"{result.evidence} ({'; '.join(client.errors[:3])})")


def _names(items: Any, *keys: str) -> tuple[str, ...]:
    """String fields of a list of dicts, first key that is present wins."""
    if not isinstance(items, list):
        return ()
    found: list[str] = []
    for item in items:
        if isinstance(item, dict):
            for key in keys:
                value = item.get(key)
                if isinstance(value, str) and value:
                    found.append(value)
                    break
    return tuple(sorted(set(found)))


def _auth(reply: _Reply | None, where: str) -> ProbeResult | None:
    if reply is not None and reply.status in _AUTH_STATUSES:
        return ProbeResult(True, f"{where} answered {reply.status} (key required)", auth_required=True)
    return None


def _ollama(client: _Client) -> ProbeResult:
    reply = client.get("/api/version")
    auth = _auth(reply, "/api/version")
    if auth is not None:
        return auth
    body = reply.json() if reply is not None and reply.status == 200 else None
    if not (isinstance(body, dict) and isinstance(body.get("version"), str)):
        return ProbeResult(False, "/api/version did not answer like Ollama")
    tags = client.get("/api/tags")
    running = client.get("/api/ps")
    tags_body = tags.json() if tags is not None and tags.status == 200 else None
    running_body = running.json() if running is not None and running.status == 200 else None
    return ProbeResult(
        True,
        "/api/version answered like Ollama",
        version=body["version"],
        models_installed=_names(
            tags_body.get("models") if isinstance(tags_body, dict) else None, "name", "model"
        ),
        models_loaded=_names(
            running_body.get("models") if isinstance(running_body, dict) else None, "name", "model"
        ),
    )


def _openai_models(client: _Client) -> tuple[_Reply | None, tuple[str, ...] | None]:
    """``/v1/models`` and its model ids, or None when the answer is not OpenAI-shaped."""
    reply = client.get("/v1/models")
    body = reply.json() if reply is not None and reply.status == 200 else None
    if isinstance(body, dict) and isinstance(body.get("data"), list):
        return reply, _names(body["data"], "id")
    return reply, None


def _openai(client: _Client) -> ProbeResult:
    reply, models = _openai_models(client)
    auth = _auth(reply, "/v1/models")
    if auth is not None:
        return auth
    if models is None:
        return ProbeResult(False, "/v1/models did not answer like an OpenAI-compatible server")
    return ProbeResult(True, "/v1/models answered OpenAI-compatible", models_loaded=models)


def _vllm(client: _Client) -> ProbeResult:
    """The OpenAI-compatible answer plus vLLM's own ``/version``."""
    result = _openai(client)
    if not result.confirmed or result.auth_required:
        return result
    reply = client.get("/version")
    body = reply.json() if reply is not None and reply.status == 200 else None
    version = body.get("version") if isinstance(body, dict) else None
    if not isinstance(version, str):
        return result
    return ProbeResult(True, "/v1/models and /version answered like vLLM", version=version,
                       models_loaded=result.models_loaded)


def _llamacpp(client: _Client) -> ProbeResult:
    props = client.get("/props")
    auth = _auth(props, "/props")
    if auth is not None:
        return auth
    body = props.json() if props is not None and props.status == 200 else None
    if isinstance(body, dict) and ("default_generation_settings" in body or "total_slots" in body):
        _, models = _openai_models(client)
        build = body.get("build_info")
        return ProbeResult(
            True,
            "/props answered like llama.cpp server",
            version=build if isinstance(build, str) else None,
            models_loaded=models or (),
        )
    health = client.get("/health")
    health_body = health.json() if health is not None else None
    if isinstance(health_body, dict) and ("status" in health_body or "error" in health_body):
        _, models = _openai_models(client)
        if models is not None:
            return ProbeResult(
                True, "/health and /v1/models answered like llama.cpp server", models_loaded=models
            )
    return ProbeResult(False, "/props and /health did not answer like llama.cpp server")


def _lmstudio(client: _Client) -> ProbeResult:
    reply = client.get("/api/v0/models")
    auth = _auth(reply, "/api/v0/models")
    if auth is not None:
        return auth
    body = reply.json() if reply is not None and reply.status == 200 else None
    if isinstance(body, dict) and isinstance(body.get("data"), list):
        entries = [m for m in body["data"] if isinstance(m, dict)]
        loaded = [m for m in entries if m.get("state") == "loaded"]
        return ProbeResult(
            True,
            "/api/v0/models answered like LM Studio",
            models_installed=_names(entries, "id"),
            models_loaded=_names(loaded, "id"),
        )
    return ProbeResult(False, "/api/v0/models did not answer like LM Studio")


def _kobold(client: _Client) -> ProbeResult:
    reply = client.get("/api/extra/version")
    body = reply.json() if reply is not None and reply.status == 200 else None
    if isinstance(body, dict) and str(body.get("result", "")).lower() == "koboldcpp":
        version = body.get("version")
        model = client.get("/api/v1/model")
        model_body = model.json() if model is not None and model.status == 200 else None
        loaded = model_body.get("result") if isinstance(model_body, dict) else None
        return ProbeResult(
            True,
            "/api/extra/version answered like KoboldCpp",
            version=version if isinstance(version, str) else None,
            models_loaded=(loaded,) if isinstance(loaded, str) and loaded else (),
        )
    return ProbeResult(False, "/api/extra/version did not answer like KoboldCpp")


def _tgi(client: _Client) -> ProbeResult:
    reply = client.get("/info")
    auth = _auth(reply, "/info")
    if auth is not None:
        return auth
    body = reply.json() if reply is not None and reply.status == 200 else None
    if isinstance(body, dict) and isinstance(body.get("model_id"), str):
        version = body.get("version")
        return ProbeResult(
            True,
            "/info answered like text-generation-inference",
            version=version if isinstance(version, str) else None,
            models_loaded=(body["model_id"],),
        )
    return ProbeResult(False, "/info did not answer like text-generation-inference")


def _gradio(client: _Client) -> ProbeResult:
    reply = client.get("/")
    if reply is not None and reply.status == 200 and b"gradio" in reply.body.lower():
        return ProbeResult(True, "/ served a Gradio app")
    return ProbeResult(False, "/ did not serve a Gradio app")


def _http(client: _Client) -> ProbeResult:
    """Weakest confirmation: the process signature already named the engine, the port speaks HTTP."""
    reply = client.get("/")
    if reply is not None:
        return ProbeResult(True, f"/ answered HTTP {reply.status}")
    return ProbeResult(False, "/ did not answer HTTP")


_PROBES: dict[str, Callable[[_Client], ProbeResult]] = {
    "ollama": _ollama,
    "openai": _openai,
    "vllm": _vllm,
    "llamacpp": _llamacpp,
    "lmstudio": _lmstudio,
    "kobold": _kobold,
    "tgi": _tgi,
    "gradio": _gradio,
    "http": _http,
}
