"""The Ledger page: seal status, the verifier key, "verify now", the export bundle and the auditor's commands."""

from __future__ import annotations

import tempfile
import zipfile
from collections.abc import AsyncIterator
from pathlib import PurePosixPath
from typing import IO

from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from services.console.sessions import Session
from services.console.views import Console, checked_form, signed_in
from services.kit.errors import InvalidArgument

# A bundle is spooled in memory up to this size, then on disk, before it is sent.
BUNDLE_SPOOL_BYTES = 16 * 1024 * 1024
BUNDLE_READ_BYTES = 256 * 1024


@signed_in
async def ledger_page(request: Request, console: Console, session: Session) -> Response:
    return await _render(console, request, session.token, verification=None)


@signed_in
async def verify(request: Request, console: Console, session: Session) -> Response:
    """Run the since-checkpoint check (or, asked for, the full walk) and show its answer on the page."""
    form = await checked_form(request, session)
    full = str(form.get("mode", "")) == "full"
    verification = await console.client.verify_ledger(session.token, full)
    return await _render(console, request, session.token, verification=verification)


async def _render(console: Console, request: Request, token: str, verification: object) -> Response:
    seal = await console.client.seal_status(token)
    return console.render(request, "ledger.html", seal=seal, verification=verification)


@signed_in
async def bundle_download(request: Request, console: Console, session: Session) -> Response:
    """The whole ledger's verification bundle as one zip (`lz-verify bundle` checks the unpacked folder)."""
    spool = tempfile.SpooledTemporaryFile(max_size=BUNDLE_SPOOL_BYTES)  # noqa: SIM115 - closed by the stream
    with zipfile.ZipFile(spool, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        writer: IO[bytes] | None = None
        async for chunk in console.client.export_bundle(session.token):
            if writer is None:
                writer = archive.open(f"bundle/{_relative(chunk.path)}", "w")
            writer.write(chunk.chunk)
            if chunk.last_chunk:
                writer.close()
                writer = None
        if writer is not None:
            writer.close()
    spool.seek(0)
    return StreamingResponse(_read(spool), media_type="application/zip", headers={
        "content-disposition": f'attachment; filename="{session.tenant}-bundle.zip"', "cache-control": "no-store"})


def _relative(path: str) -> str:
    parts = PurePosixPath(path).parts
    if not parts or path.startswith("/") or any(part in ("..", ".") for part in parts):
        raise InvalidArgument.field("path", f"the ledger sent a bundle path outside the bundle: {path!r}")
    return str(PurePosixPath(*parts))


async def _read(spool: IO[bytes]) -> AsyncIterator[bytes]:
    try:
        while block := spool.read(BUNDLE_READ_BYTES):
            yield block
    finally:
        spool.close()
