"""What can go wrong in `lz`, and how each failure becomes one line on stderr and an exit code.

Exit codes: 0 success; 1 the operation's answer is negative (verification failed, not found, the
asset is not in a state that allows it); 2 usage, configuration or connection problems (bad flags,
malformed files, unreachable service, rejected token, missing permission, invalid argument,
an RPC the server does not implement yet).
"""

from __future__ import annotations

from typing import Any

import grpc
from google.rpc import error_details_pb2, status_pb2
from grpc_status import rpc_status

from services.kit.text import printable

EXIT_OK = 0
EXIT_NEGATIVE = 1
EXIT_ERROR = 2

# The codes that are the operation's (negative) answer rather than a problem with the call itself.
_NEGATIVE_CODES = frozenset(
    {
        grpc.StatusCode.NOT_FOUND,
        grpc.StatusCode.ALREADY_EXISTS,
        grpc.StatusCode.FAILED_PRECONDITION,
        grpc.StatusCode.ABORTED,
        grpc.StatusCode.OUT_OF_RANGE,
    }
)


class CliError(Exception):
    """A failure reported as `lz: error: <message>` with `exit_code`."""

    def __init__(self, message: str, exit_code: int = EXIT_ERROR) -> None:
        super().__init__(message)
        self.message = one_line(message)
        self.exit_code = exit_code


class UsageError(CliError):
    """Bad flags, missing settings or malformed files (exit 2)."""

    def __init__(self, message: str) -> None:
        super().__init__(message, EXIT_ERROR)


class NegativeAnswer(CliError):
    """The service answered, and the answer is no (exit 1)."""

    def __init__(self, message: str) -> None:
        super().__init__(message, EXIT_NEGATIVE)


def one_line(text: str) -> str:
    """Collapse whitespace so an error never spans lines, and show (not obey) what a terminal would act on."""
    return printable(" ".join(text.split()))


def exit_code_for(code: grpc.StatusCode) -> int:
    return EXIT_NEGATIVE if code in _NEGATIVE_CODES else EXIT_ERROR


def rich_status(error: grpc.RpcError) -> status_pb2.Status | None:
    """The `google.rpc.Status` in the call's `grpc-status-details-bin` trailer, if it has a valid one."""
    if not isinstance(error, grpc.Call):
        return None
    try:
        status: status_pb2.Status | None = rpc_status.from_call(error)
    except (ValueError, TypeError, AttributeError):
        return None
    except Exception:  # a corrupt trailer must not turn into a traceback
        return None
    return status


def field_violations(status: status_pb2.Status | None) -> list[tuple[str, str]]:
    """(field, description) pairs of any `google.rpc.BadRequest` detail."""
    if status is None:
        return []
    found: list[tuple[str, str]] = []
    for detail in status.details:
        if detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
            bad = error_details_pb2.BadRequest()
            if detail.Unpack(bad):
                found.extend((v.field, v.description) for v in bad.field_violations)
    return found


def _code_and_details(error: grpc.RpcError) -> tuple[grpc.StatusCode, str]:
    call: Any = error
    try:
        code = call.code()
        details = call.details() or ""
    except Exception:
        return grpc.StatusCode.UNKNOWN, str(error)
    if not isinstance(code, grpc.StatusCode):
        code = grpc.StatusCode.UNKNOWN
    return code, str(details)


def from_rpc_error(error: grpc.RpcError, *, service: str, address: str, method: str, timeout: float | None) -> CliError:
    """Turn a failed call into one clear line with the right exit code."""
    code, details = _code_and_details(error)
    status = rich_status(error)
    violations = field_violations(status)
    text = details.strip() or code.name.lower().replace("_", " ")
    if code is grpc.StatusCode.UNAVAILABLE:
        message = f"cannot reach the {service} service at {address}: {text}"
    elif code is grpc.StatusCode.DEADLINE_EXCEEDED:
        limit = f" within {timeout:g}s" if timeout else ""
        message = f"the {service} service at {address} did not answer {method}{limit} (try --timeout)"
    elif code is grpc.StatusCode.UNAUTHENTICATED:
        message = f"the {service} service rejected the credentials: {text} (check --token, LZ_TOKEN or `lz login`)"
    elif code is grpc.StatusCode.PERMISSION_DENIED:
        message = f"permission denied by the {service} service: {text}"
    elif code is grpc.StatusCode.UNIMPLEMENTED:
        message = f"the {service} service at {address} does not implement {method} yet"
    elif code is grpc.StatusCode.INVALID_ARGUMENT:
        if violations:
            listed = "; ".join(f"{name}: {desc}" for name, desc in violations)
            message = f"invalid argument: {listed}"
        else:
            message = f"invalid argument: {text}"
    elif code is grpc.StatusCode.NOT_FOUND:
        message = f"not found: {text}"
    elif code is grpc.StatusCode.ALREADY_EXISTS:
        message = f"already exists: {text}"
    elif code is grpc.StatusCode.FAILED_PRECONDITION:
        message = f"refused: {text}"
    elif code is grpc.StatusCode.INTERNAL:
        message = f"the {service} service failed while handling {method}: {text}"
    else:
        message = f"{method} failed ({code.name}): {text}"
    return CliError(message, exit_code_for(code))
