"""How `lz` answers: rich tables for people, JSON (proto field names) for scripts, progress on stderr."""

from __future__ import annotations

import base64
import datetime as dt
import json
import os
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, nullcontext
from typing import Any

from google.protobuf import json_format
from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.message import Message
from google.protobuf.timestamp_pb2 import Timestamp
from lifecyclezero.v1 import common_pb2
from rich.console import Console
from rich.markup import escape
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    SpinnerColumn,
    TextColumn,
    TimeElapsedColumn,
    TransferSpeedColumn,
)
from rich.table import Table

from services.kit.text import json_escaped, printable

_STATUS_STYLES: dict[int, str] = {
    common_pb2.ASSET_STATUS_ACTIVE: "green",
    common_pb2.ASSET_STATUS_ISOLATION_PENDING: "yellow",
    common_pb2.ASSET_STATUS_ISOLATED: "bold red",
    common_pb2.ASSET_STATUS_RELEASE_PENDING: "yellow",
    common_pb2.ASSET_STATUS_ISOLATION_FAILED: "bold magenta",
}
_SEVERITY_STYLES: dict[int, str] = {
    common_pb2.SEVERITY_INFO: "dim",
    common_pb2.SEVERITY_WARNING: "yellow",
    common_pb2.SEVERITY_CRITICAL: "bold red",
}


def to_dict(message: Message) -> dict[str, Any]:
    """A message as JSON-ready data: proto field names, every field present, enums by proto name.

    64-bit integers come out as JSON numbers, not the proto3 JSON mapping's strings, so scripts can
    compare `sealed_through` or `first_bad_seq` without converting (sequence numbers stay far below 2^53).
    """
    data = json_format.MessageToDict(
        message, preserving_proto_field_name=True, always_print_fields_with_no_presence=True
    )
    return _int64_as_numbers(message.DESCRIPTOR, data)


_INT64_TYPES = {
    FieldDescriptor.TYPE_INT64, FieldDescriptor.TYPE_UINT64, FieldDescriptor.TYPE_SINT64,
    FieldDescriptor.TYPE_FIXED64, FieldDescriptor.TYPE_SFIXED64,
}


def _int64_as_numbers(descriptor: Any, data: dict[str, Any]) -> dict[str, Any]:
    for field in descriptor.fields:
        if field.name not in data:
            continue
        value = data[field.name]
        if field.type in _INT64_TYPES:
            data[field.name] = [int(v) for v in value] if isinstance(value, list) else int(value)
        elif field.type == FieldDescriptor.TYPE_MESSAGE and field.message_type.full_name.startswith("lifecyclezero."):
            if isinstance(value, list):
                data[field.name] = [_int64_as_numbers(field.message_type, v) for v in value]
            elif isinstance(value, dict):
                data[field.name] = _int64_as_numbers(field.message_type, value)
    return data


def _prefix(enum_name: str) -> str:
    """`AssetStatus` -> `ASSET_STATUS_` (the style guide's value prefix)."""
    out = "".join(f"_{c}" if c.isupper() and i else c for i, c in enumerate(enum_name)).upper()
    return out + "_"


def enum_short(enum_type: Any, value: int) -> str:
    """An enum value's short lower-case name: ASSET_STATUS_ISOLATED -> `isolated`."""
    try:
        name: str = enum_type.Name(value)
    except ValueError:
        return str(value)
    prefix = _prefix(enum_type.DESCRIPTOR.name)
    return name.removeprefix(prefix).lower()


def enum_value(enum_type: Any, text: str) -> int:
    """Parse `isolated`, `isolation-pending` or `ASSET_STATUS_ISOLATED`; ValueError when unknown."""
    name = text.strip().upper().replace("-", "_")
    prefix = _prefix(enum_type.DESCRIPTOR.name)
    for candidate in (name, prefix + name):
        if candidate in enum_type.DESCRIPTOR.values_by_name and not candidate.endswith("_UNSPECIFIED"):
            return int(enum_type.Value(candidate))
    raise ValueError(text)


def enum_choices(enum_type: Any) -> list[str]:
    return [enum_short(enum_type, v) for v in enum_type.values() if v != 0]


def styled_status(value: int) -> str:
    name = enum_short(common_pb2.AssetStatus, value)
    return f"[{_STATUS_STYLES[value]}]{name}[/]" if value in _STATUS_STYLES else name


def styled_severity(value: int) -> str:
    name = enum_short(common_pb2.Severity, value)
    return f"[{_SEVERITY_STYLES[value]}]{name}[/]" if value in _SEVERITY_STYLES else name


def when(ts: Timestamp) -> str:
    """A timestamp for a table (UTC, seconds), or `-` when unset."""
    if ts.seconds == 0 and ts.nanos == 0:
        return "-"
    moment = dt.datetime.fromtimestamp(ts.seconds, dt.UTC)
    return moment.strftime("%Y-%m-%d %H:%M:%SZ")


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii") if data else "-"


class Output:
    """The two faces of every command: `emit_json` for `--json`, tables and lines otherwise.

    Everything rendered for people passes through `printable`: a hostname or an error text an agent
    sent can hold escape sequences (clear the screen, retitle the window, fake a status line), and a
    terminal must show them, not obey them. JSON stays exact (json.dumps escapes controls anyway).
    """

    def __init__(self, json_mode: bool) -> None:
        self.json_mode = json_mode
        width = None if sys.stdout.isatty() or "COLUMNS" in os.environ else 200
        self.console = Console(width=width, highlight=False, soft_wrap=False)
        self.err = Console(stderr=True, highlight=False)

    def emit_json(self, data: Any) -> None:
        sys.stdout.write(json_escaped(json.dumps(data, indent=2, ensure_ascii=False, default=str)) + "\n")
        sys.stdout.flush()

    def line(self, text: str = "", *, markup: bool = True) -> None:
        self.console.print(printable(text if markup else escape(text)), markup=True, soft_wrap=True)

    def plain(self, text: str) -> None:
        """Text as given (keys, tokens, notes): no markup, no wrapping, nothing a terminal would obey."""
        sys.stdout.write(printable(text) + "\n")
        sys.stdout.flush()

    def note(self, text: str) -> None:
        """A hint for people, on stderr so it never mixes into piped output."""
        self.err.print(printable(text), soft_wrap=True)

    def table(self, columns: Sequence[str], rows: Sequence[Sequence[str]], *, title: str | None = None,
              empty: str = "nothing to show", no_wrap: Sequence[str] = ()) -> None:
        if not rows:
            self.note(f"[dim]{escape(empty)}[/]")
            return
        table = Table(title=title, header_style="bold", show_edge=False, pad_edge=False)
        for column in columns:
            table.add_column(column, no_wrap=column in no_wrap, overflow="fold")
        for row in rows:
            table.add_row(*(printable(cell) for cell in row))
        self.console.print(table)

    def fields(self, pairs: Sequence[tuple[str, str]], *, title: str | None = None) -> None:
        """Key-value pairs, keys aligned (for `show` commands); values may carry markup."""
        if title:
            self.console.print(f"[bold]{escape(printable(title))}[/]")
        width = max((len(key) for key, _ in pairs), default=0)
        for key, value in pairs:
            self.console.print(f"[bold]{escape(key.ljust(width))}[/]  {printable(value)}", soft_wrap=True)

    def spinner(self, text: str) -> Any:
        """A spinner on stderr while something long runs (only on a terminal, never with --json)."""
        if self.json_mode or not self.err.is_terminal:
            return nullcontext()
        return self.err.status(text)

    @contextmanager
    def transfer(self, description: str, total: int | None = None) -> Iterator[Any]:
        """A byte-count progress bar on stderr; yields `advance(n)`."""
        progress = Progress(
            SpinnerColumn(),
            TextColumn("{task.description}"),
            BarColumn(),
            DownloadColumn(),
            TransferSpeedColumn(),
            TimeElapsedColumn(),
            console=self.err,
            transient=True,
            disable=self.json_mode or not self.err.is_terminal,
        )
        with progress:
            task = progress.add_task(description, total=total)

            def advance(count: int, *, description: str | None = None) -> None:
                if description is None:
                    progress.advance(task, count)
                else:
                    progress.update(task, advance=count, description=description)

            yield advance
