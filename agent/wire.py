"""The agent's :class:`Inventory` as the wire message, total and bounded.

Every value in an inventory came from a file or a process a user controls.
Encoding never raises: text is made valid UTF-8 and cut to length, numbers
outside their field's range are dropped with a flag on the record, and a
record that still cannot be encoded is replaced by a stub naming the error.
The encoded inventory is kept under a byte budget below ingest's heartbeat
limit: engines go first (they are what an operator acts on), then models in
path order, and what did not fit is counted in ``engines_omitted`` /
``models_omitted`` with the reason in ``omitted_reason``.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import TypeVar

from lifecyclezero.v1 import common_pb2

from agent import bounds
from agent.agent_wire import add_agents
from agent.inventory import Engine, Inventory, Model

# Ingest refuses a heartbeat over 128 KiB (LZ_MAX_HEARTBEAT_BYTES); the rest of a heartbeat is < 200 bytes.
MAX_INVENTORY_BYTES = 112 * 1024
_MAX_EVIDENCE = 16

_Item = TypeVar("_Item")
_Message = TypeVar("_Message", common_pb2.Engine, common_pb2.Model)


def inventory_proto(inventory: Inventory, budget: int = MAX_INVENTORY_BYTES) -> common_pb2.Inventory:
    """The wire message for ``inventory``, at most ``budget`` bytes serialized; never raises."""
    message = common_pb2.Inventory(
        hostname=bounds.text(inventory.hostname, 255),
        os=bounds.text(inventory.os, 255),
        errors=bounds.texts(inventory.errors, 64),
    )
    with contextlib.suppress(ValueError, TypeError, OverflowError):
        message.collect_time.FromDatetime(datetime.fromisoformat(inventory.collected_at))
    # Agents and MCP servers come first: discovery already keeps them within their own share of the budget.
    add_agents(message, inventory)
    engines = [_encoded(engine_proto, e, _engine_stub) for e in _items(inventory.engines)]
    models = [_encoded(model_proto, m, _model_stub) for m in _items(inventory.models)]
    room = budget - message.ByteSize() - 64  # the omission counters and reason
    kept_engines = _fitting(engines, room)
    room -= sum(_entry_size(e) for e in engines[:kept_engines])
    kept_models = _fitting(models, room)
    message.engines.extend(engines[:kept_engines])
    message.models.extend(models[:kept_models])
    message.engines_omitted = len(engines) - kept_engines
    message.models_omitted = len(models) - kept_models
    if message.engines_omitted or message.models_omitted:
        message.omitted_reason = (
            f"heartbeat size limit: {message.engines_omitted} of {len(engines)} engines and "
            f"{message.models_omitted} of {len(models)} models left out to stay under {budget} bytes"
        )
    return message


def engine_proto(engine: Engine) -> common_pb2.Engine:
    """One engine record; numbers out of range are dropped and named in ``probe_errors``."""
    errors: list[str] = []
    pid = _kept(bounds.PID, engine.pid, errors)
    listen = []
    for endpoint in list(engine.listen)[: bounds.MAX_LIST]:
        port = _kept(bounds.PORT, endpoint.port, errors)
        listen.append(
            common_pb2.Endpoint(address=bounds.text(endpoint.address, 64), port=port, exposed=bool(endpoint.exposed))
        )
    outbound = [
        common_pb2.OutboundConnection(
            remote_address=bounds.text(c.remote_address, 64), remote_port=_kept(bounds.PORT, c.remote_port, errors)
        )
        for c in list(engine.outbound)[: bounds.MAX_LIST]
    ]
    probe_errors = [] if engine.confirmed else [e for e in bounds.texts(engine.evidence) if e.startswith("probe ")]
    return common_pb2.Engine(
        kind=bounds.text(engine.kind, 64),
        pid=pid,
        executable=bounds.text(engine.exe),
        user=bounds.text(engine.user, 255),
        version=bounds.text(engine.version, 255),
        listen=listen,
        confirmed=bool(engine.confirmed),
        loaded_models=bounds.texts(engine.models_loaded),
        open_sensitive_files=bounds.texts(engine.open_sensitive_files),
        outbound=outbound,
        auth_required=bool(engine.auth_required),
        installed_models=bounds.texts(engine.models_installed),
        probe_errors=[*errors, *probe_errors][:_MAX_EVIDENCE],
    )


def model_proto(model: Model) -> common_pb2.Model:
    """One model record; numbers out of range are dropped and named in ``errors``."""
    errors = bounds.texts(model.errors, _MAX_EVIDENCE)
    return common_pb2.Model(
        name=bounds.text(model.name, 1024),
        format=bounds.text(model.format, 64),
        path=bounds.text(model.path),
        digest=bounds.text(model.digest, 80),
        size_bytes=_kept(bounds.SIZE_BYTES, model.size_bytes, errors),
        architecture=bounds.text(model.architecture, 255),
        quantization=bounds.text(model.quantization, 255),
        parameter_count=_kept(bounds.PARAMETER_COUNT, model.parameter_count, errors),
        context_length=_kept(bounds.CONTEXT_LENGTH, model.context_length, errors),
        source=bounds.text(model.source, 64),
        errors=errors[: _MAX_EVIDENCE * 2],
    )


def _kept(allowed: bounds.Range, value: object, errors: list[str]) -> int:
    kept, error = allowed.check(value)
    if error is not None:
        errors.append(error)
    return kept or 0


def _items(values: Sequence[_Item]) -> list[_Item]:
    try:
        return list(values)
    except TypeError:
        return []


def _encoded(encode: Callable[[_Item], _Message], item: _Item, stub: Callable[[_Item, str], _Message]) -> _Message:
    """``encode(item)``, or a stub that still names the record when encoding it failed."""
    try:
        return encode(item)
    except Exception as exc:
        return stub(item, f"record not encodable: {type(exc).__name__}: {bounds.text(exc, 200)}")


def _engine_stub(engine: object, error: str) -> common_pb2.Engine:
    return common_pb2.Engine(kind=bounds.text(getattr(engine, "kind", ""), 64), probe_errors=[error])


def _model_stub(model: object, error: str) -> common_pb2.Model:
    return common_pb2.Model(path=bounds.text(getattr(model, "path", "")), errors=[error])


def _entry_size(item: common_pb2.Engine | common_pb2.Model) -> int:
    size = item.ByteSize()
    return 1 + _varint_size(size) + size


def _varint_size(value: int) -> int:
    return max(1, (value.bit_length() + 6) // 7)


def _fitting(items: Sequence[common_pb2.Engine | common_pb2.Model], room: int) -> int:
    """How many of ``items``, from the first, fit in ``room`` bytes."""
    used = 0
    for count, item in enumerate(items):
        used += _entry_size(item)
        if used > room:
            return count
    return len(items)
