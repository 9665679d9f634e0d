"""The `lz` commands, one module per concept; each registers its subcommands with `register()`."""

from __future__ import annotations

import argparse
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TypeAlias

from lz.connection import Client, Options, Settings, resolve
from lz.output import Output

Subparsers: TypeAlias = "argparse._SubParsersAction[argparse.ArgumentParser]"


@dataclass
class Context:
    """What a command runs with: the output and, on first use, the resolved settings and client."""

    out: Output
    options: Options
    _settings: Settings | None = field(default=None, init=False)
    _client: Client | None = field(default=None, init=False)

    @property
    def settings(self) -> Settings:
        if self._settings is None:
            self._settings = resolve(self.options)
        return self._settings

    @property
    def client(self) -> Client:
        if self._client is None:
            self._client = Client(self.settings)
        return self._client

    def close(self) -> None:
        if self._client is not None:
            self._client.close()


Handler = Callable[[Context, argparse.Namespace], int]


def request_id() -> str:
    """A fresh id for a mutating request, so a retried call is applied once."""
    return str(uuid.uuid4())


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r} must be at least 1")
    return value
