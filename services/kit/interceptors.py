"""The server interceptor every service runs: authentication, roles, tracing and error mapping.

Servicers stay thin: they raise domain errors and this interceptor turns them into gRPC status
codes with `google.rpc.Status` details (ErrorInfo always, BadRequest for field violations), so no
servicer sets a code by hand and no internal exception text reaches a caller.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from typing import Any

import grpc
from google.protobuf import any_pb2
from google.rpc import code_pb2, error_details_pb2, status_pb2
from opentelemetry import trace

from services.kit import auth, telemetry
from services.kit.authenticator import Authenticator
from services.kit.errors import (
    Aborted,
    AlreadyExists,
    DomainError,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    PermissionDenied,
    ResourceExhausted,
    Unauthenticated,
    Unavailable,
    Unimplemented,
)

log = logging.getLogger(__name__)

ERROR_DOMAIN = "lifecyclezero.dev"
_OPEN_PREFIXES = ("/grpc.health.v1.Health/", "/grpc.reflection.")

_CODES: dict[type[DomainError], grpc.StatusCode] = {
    InvalidArgument: grpc.StatusCode.INVALID_ARGUMENT,
    NotFound: grpc.StatusCode.NOT_FOUND,
    AlreadyExists: grpc.StatusCode.ALREADY_EXISTS,
    FailedPrecondition: grpc.StatusCode.FAILED_PRECONDITION,
    Aborted: grpc.StatusCode.ABORTED,
    PermissionDenied: grpc.StatusCode.PERMISSION_DENIED,
    Unauthenticated: grpc.StatusCode.UNAUTHENTICATED,
    ResourceExhausted: grpc.StatusCode.RESOURCE_EXHAUSTED,
    Unavailable: grpc.StatusCode.UNAVAILABLE,
    Unimplemented: grpc.StatusCode.UNIMPLEMENTED,
}


def error_class_for(code: grpc.StatusCode) -> type[DomainError] | None:
    """The domain error a status code stands for, for a service that relays another service's answer."""
    return next((cls for cls, mapped in _CODES.items() if mapped == code), None)


def status_for(error: DomainError) -> tuple[grpc.StatusCode, status_pb2.Status]:
    """The gRPC code and AIP-193 `google.rpc.Status` for a domain error."""
    code = next((c for cls, c in _CODES.items() if isinstance(error, cls)), grpc.StatusCode.UNKNOWN)
    info = error_details_pb2.ErrorInfo(reason=error.reason, domain=ERROR_DOMAIN, metadata=error.metadata)
    details = [_pack(info)]
    if isinstance(error, InvalidArgument) and error.violations:
        bad = error_details_pb2.BadRequest(
            field_violations=[
                error_details_pb2.BadRequest.FieldViolation(field=v.field, description=v.description)
                for v in error.violations
            ]
        )
        details.append(_pack(bad))
    status = status_pb2.Status(code=code.value[0], message=error.message, details=details)
    return code, status


def _pack(message: Any) -> any_pb2.Any:
    packed = any_pb2.Any()
    packed.Pack(message)
    return packed


async def abort_with(context: grpc.aio.ServicerContext[Any, Any], error: DomainError) -> None:
    code, status = status_for(error)
    details = (("grpc-status-details-bin", status.SerializeToString()),)
    await context.abort(code, error.message, trailing_metadata=details)


_INTERNAL = status_pb2.Status(code=code_pb2.INTERNAL, message="internal error")


class ServiceInterceptor(grpc.aio.ServerInterceptor):  # type: ignore[misc]
    """Authenticates each call, checks the method's allowed roles, traces it and maps its errors.

    `policy` maps full method names to the roles allowed to call them; `auth.PUBLIC` means the
    method authenticates in-band. A method missing from the policy is refused: a new RPC is closed
    until someone decides who may call it. `callers` names, per method, the services whose own
    service token may call it; a service principal calling any other method is refused.
    """

    def __init__(
        self,
        policy: Mapping[str, frozenset[auth.Role]],
        authenticator: Authenticator | None,
        max_call_seconds: float = 60.0,
        callers: Mapping[str, frozenset[str]] | None = None,
    ) -> None:
        self._policy = policy
        self._authenticator = authenticator
        self._max_call_seconds = max_call_seconds
        self._callers = callers or {}

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        handler = await continuation(details)
        method: str = details.method
        if handler is None or method.startswith(_OPEN_PREFIXES):
            return handler
        metadata = tuple(details.invocation_metadata or ())
        allowed = self._policy.get(method)
        call = _Call(method, metadata, allowed, self._authenticator, self._max_call_seconds,
                     services=self._callers.get(method, frozenset()))
        decode = _tolerant(handler.request_deserializer)
        if handler.unary_unary:
            return grpc.unary_unary_rpc_method_handler(
                call.unary(handler.unary_unary), decode, handler.response_serializer
            )
        if handler.unary_stream:
            return grpc.unary_stream_rpc_method_handler(
                call.streaming(handler.unary_stream), decode, handler.response_serializer
            )
        if handler.stream_unary:
            return grpc.stream_unary_rpc_method_handler(
                call.unary(handler.stream_unary), decode, handler.response_serializer
            )
        return grpc.stream_stream_rpc_method_handler(
            call.streaming(handler.stream_stream), decode, handler.response_serializer
        )


class _Unparseable:
    """Stands in for a request whose bytes are not the method's request message.

    Reading any field of it raises INVALID_ARGUMENT, so a streaming servicer meets the error at the
    first message it looks at, with no wrapper around every message of every healthy stream.
    """

    def __getattr__(self, name: str) -> Any:
        raise _unparseable_request()


_UNPARSEABLE = _Unparseable()


def _tolerant(deserialize: Callable[[bytes], Any] | None) -> Callable[[bytes], Any] | None:
    """A deserializer that marks bytes it cannot parse instead of letting gRPC answer UNKNOWN/INTERNAL."""
    if deserialize is None:
        return None

    def decode(data: bytes) -> Any:
        try:
            return deserialize(data)
        except Exception:  # any parse failure means the caller sent a malformed request
            return _UNPARSEABLE

    return decode


def _unparseable_request() -> InvalidArgument:
    return InvalidArgument("the request does not parse as this method's request message", reason="MALFORMED_REQUEST")



class _Call:
    def __init__(
        self,
        method: str,
        metadata: tuple[tuple[str, Any], ...],
        allowed: frozenset[auth.Role] | None,
        authenticator: Authenticator | None,
        max_call_seconds: float,
        *,
        services: frozenset[str],
    ) -> None:
        self.method = method
        self.services = services
        self.metadata = metadata
        self.allowed = allowed
        self.authenticator = authenticator
        self.max_call_seconds = max_call_seconds

    async def _principal(self, peer: str) -> auth.Principal | None:
        if self.allowed is None:
            raise PermissionDenied(f"{self.method} is not open to any caller")
        if self.allowed == auth.PUBLIC:
            return None
        if self.authenticator is None:
            raise Unauthenticated("this server has no authenticator")
        principal = await self.authenticator.authenticate(self.metadata, peer)
        if principal.role not in self.allowed:
            raise PermissionDenied(f"role {principal.role.value} may not call {self.method.rsplit('/', 1)[-1]}")
        if principal.role is auth.Role.SERVICE and principal.service not in self.services:
            raise PermissionDenied(f"service {principal.service} may not call {self.method.rsplit('/', 1)[-1]}")
        return principal

    def unary(self, behavior: Callable[..., Awaitable[Any]]) -> Callable[..., Awaitable[Any]]:
        async def wrapper(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
            started = time.perf_counter()
            code = grpc.StatusCode.OK
            with telemetry.tracer.start_as_current_span(
                self.method, context=telemetry.extract(self.metadata), kind=trace.SpanKind.SERVER
            ) as span:
                try:
                    if request is _UNPARSEABLE:
                        raise _unparseable_request()
                    token = auth.bind_principal(await self._principal(context.peer()))
                    try:
                        return await asyncio.wait_for(behavior(request, context), self.max_call_seconds)
                    finally:
                        auth.unbind_principal(token)
                except DomainError as error:
                    code = status_for(error)[0]
                    await abort_with(context, error)
                except TimeoutError:
                    code = grpc.StatusCode.DEADLINE_EXCEEDED
                    await context.abort(code, "the call took too long on the server")
                except grpc.aio.AbortError:
                    code = context.code() or grpc.StatusCode.UNKNOWN
                    raise
                except NotImplementedError:
                    code = grpc.StatusCode.UNIMPLEMENTED
                    await context.abort(code, f"{self.method} is not implemented yet")
                except Exception:
                    code = grpc.StatusCode.INTERNAL
                    log.exception("unhandled error in %s", self.method)
                    span.set_status(trace.Status(trace.StatusCode.ERROR))
                    await context.abort(
                        code, "internal error",
                        trailing_metadata=(("grpc-status-details-bin", _INTERNAL.SerializeToString()),),
                    )
                finally:
                    self._record(code, started)

        return wrapper

    def streaming(self, behavior: Callable[..., AsyncIterator[Any]]) -> Callable[..., AsyncIterator[Any]]:
        async def wrapper(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> AsyncIterator[Any]:
            started = time.perf_counter()
            code = grpc.StatusCode.OK
            try:
                if request is _UNPARSEABLE:
                    raise _unparseable_request()
                # Each RPC runs in its own task, so the binding dies with it; a stream that the client
                # cancels is finalised from another context, where resetting the variable would fail.
                auth.bind_principal(await self._principal(context.peer()))
                async for response in behavior(request, context):
                    yield response
            except DomainError as error:
                code = status_for(error)[0]
                await abort_with(context, error)
            except grpc.aio.AbortError:
                code = context.code() or grpc.StatusCode.UNKNOWN
                raise
            except asyncio.CancelledError:
                code = grpc.StatusCode.CANCELLED
                raise
            except NotImplementedError:
                code = grpc.StatusCode.UNIMPLEMENTED
                await context.abort(code, f"{self.method} is not implemented yet")
            except Exception:
                code = grpc.StatusCode.INTERNAL
                log.exception("unhandled error in %s", self.method)
                await context.abort(code, "internal error")
            finally:
                self._record(code, started)

        return wrapper

    def _record(self, code: grpc.StatusCode, started: float) -> None:
        attributes = {"rpc.method": self.method, "rpc.grpc.status_code": telemetry.status_name(code)}
        telemetry.rpc_count.add(1, attributes)
        telemetry.rpc_duration.record((time.perf_counter() - started) * 1000, attributes)
