"""Credentials out of what an MCP server entry reports: noted as :class:`SecretRef`, replaced in the text.

Every function here takes a value that may be a credential, appends a reference to ``secrets`` when it is
one, and answers the text to report with the credential replaced by :data:`REDACTED`.
"""

from __future__ import annotations

import re
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from agent.discovery.secrets import detect, fingerprint
from agent.inventory import SecretRef

REDACTED = "[redacted]"
_OPTION_VALUE = re.compile(r"^(--?[A-Za-z0-9_-]+=)(.*)$", re.DOTALL)


def note_secret(secrets: list[SecretRef], value: str, variable: str, salt: str) -> bool:
    """Whether `value` (held in `variable`) is a credential; if so, a reference to it is appended."""
    detector = detect(value, variable.split(":", 1)[-1])
    if detector is None:
        return False
    secrets.append(SecretRef(variable, detector, fingerprint(value, salt)))
    return True


def redact_arg(arg: str, index: int, args: tuple[str, ...], secrets: list[SecretRef], salt: str) -> str:
    """The argument as reported: URLs lose their credentials, a credential (or an option's value) is replaced."""
    if "://" in arg:
        return redact_url(arg, f"args[{index}]", secrets, salt)
    option = _OPTION_VALUE.match(arg)
    if option:
        name, value = option.group(1), option.group(2)
        return name + REDACTED if note_secret(secrets, value, name.strip("-="), salt) else arg
    previous = args[index - 1].lstrip("-") if index and args[index - 1].startswith("-") else ""
    return REDACTED if note_secret(secrets, arg, previous or f"args[{index}]", salt) else arg


def redact_url(url: str, variable: str, secrets: list[SecretRef], salt: str) -> str:
    """``url`` without user information, and with credential-like query values and path segments replaced."""
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
        port = parts.port
    except ValueError:
        return REDACTED if note_secret(secrets, url, variable, salt) else url
    if parts.password or (parts.username and detect(parts.username, "user")):
        credential = parts.password or parts.username or ""
        secrets.append(SecretRef(variable, "url-credentials", fingerprint(credential, salt)))
    netloc = (f"[{host}]" if ":" in host else host) + (f":{port}" if port else "")
    path = "/".join(
        REDACTED if note_secret(secrets, segment, f"{variable}:path", salt) else segment
        for segment in parts.path.split("/")
    )
    query = urlencode(
        [(k, REDACTED if note_secret(secrets, v, f"{variable}:{k}", salt) else v) for k, v in parse_qsl(parts.query)],
        safe="[]",
    )
    return urlunsplit((parts.scheme, netloc, path, query, ""))
