"""Domain errors: what went wrong, in the domain's words.

Domain code raises these and never touches gRPC; the error interceptor turns each into a status code
with `google.rpc.Status` details (AIP-193), so no servicer sets a code by hand.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class FieldViolation:
    """One bad field of a request, as `google.rpc.BadRequest` reports it."""

    field: str
    description: str


class DomainError(Exception):
    """Base of the errors a caller can act on. `reason` is a stable UPPER_SNAKE identifier."""

    reason = "ERROR"

    def __init__(self, message: str, *, reason: str | None = None, metadata: dict[str, str] | None = None):
        super().__init__(message)
        self.message = message
        if reason is not None:
            self.reason = reason
        self.metadata = dict(metadata or {})


class InvalidArgument(DomainError):
    """The request itself is wrong; retrying it unchanged cannot succeed."""

    reason = "INVALID_ARGUMENT"

    def __init__(self, message: str, *, violations: list[FieldViolation] | None = None, **kw: object):
        super().__init__(message, **kw)  # type: ignore[arg-type]
        self.violations = list(violations or [])

    @classmethod
    def field(cls, name: str, description: str) -> InvalidArgument:
        """The common case: one named field is wrong."""
        return cls(f"{name}: {description}", violations=[FieldViolation(name, description)])


class NotFound(DomainError):
    reason = "NOT_FOUND"


class AlreadyExists(DomainError):
    reason = "ALREADY_EXISTS"


class FailedPrecondition(DomainError):
    """The system is not in a state that allows the operation (for example an illegal transition)."""

    reason = "FAILED_PRECONDITION"


class Aborted(DomainError):
    """A concurrent change won; the caller may retry the whole operation."""

    reason = "ABORTED"


class PermissionDenied(DomainError):
    reason = "PERMISSION_DENIED"


class Unauthenticated(DomainError):
    reason = "UNAUTHENTICATED"


class ResourceExhausted(DomainError):
    reason = "RESOURCE_EXHAUSTED"


class Unavailable(DomainError):
    """A dependency (DynamoDB, S3, SQS, another service) did not answer; retry later."""

    reason = "UNAVAILABLE"


class Unimplemented(DomainError):
    reason = "UNIMPLEMENTED"


@dataclass(frozen=True)
class ConfigProblem:
    """One bad or missing setting."""

    name: str
    problem: str
    examples: list[str] = field(default_factory=list)


class ConfigError(Exception):
    """Settings that a process cannot start with; reported as one line and exit code 2."""
