"""OpenTelemetry traces and metrics, and W3C trace-context propagation over gRPC metadata.

With an OTLP endpoint configured, spans and metrics are exported there; with LZ_OTEL_CONSOLE they
go to stderr; otherwise the API's no-op implementations are used and cost next to nothing.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import grpc
from opentelemetry import metrics, propagate, trace
from opentelemetry.propagators.textmap import Getter

from services.kit.settings import ServerSettings


def configure(service: str, settings: ServerSettings) -> None:
    """Install tracer and meter providers for this process when telemetry is configured."""
    if not (settings.otlp_endpoint or settings.otel_console):
        return
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import ConsoleMetricExporter, PeriodicExportingMetricReader
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter

    resource = Resource.create({"service.name": f"lifecyclezero-{service}"})
    tracer_provider = TracerProvider(resource=resource)
    metric_exporter: Any
    if settings.otlp_endpoint:
        from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import OTLPMetricExporter
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter

        tracer_provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=settings.otlp_endpoint)))
        metric_exporter = OTLPMetricExporter(endpoint=settings.otlp_endpoint)
    else:
        tracer_provider.add_span_processor(BatchSpanProcessor(ConsoleSpanExporter()))
        metric_exporter = ConsoleMetricExporter()
    trace.set_tracer_provider(tracer_provider)
    metrics.set_meter_provider(
        MeterProvider(resource=resource, metric_readers=[PeriodicExportingMetricReader(metric_exporter)])
    )


class _MetadataGetter(Getter[Sequence[tuple[str, Any]]]):
    def get(self, carrier: Sequence[tuple[str, Any]], key: str) -> list[str] | None:
        found = [v.decode() if isinstance(v, bytes) else str(v) for k, v in carrier if k == key]
        return found or None

    def keys(self, carrier: Sequence[tuple[str, Any]]) -> list[str]:
        return [k for k, _ in carrier]


def extract(metadata: Sequence[tuple[str, Any]] | None) -> Any:
    """The remote trace context carried in a call's metadata."""
    return propagate.extract(metadata or (), getter=_MetadataGetter())


def inject(metadata: Iterable[tuple[str, str]] | None) -> list[tuple[str, str]]:
    """Metadata with the current trace context added, for an outgoing call."""
    carrier: dict[str, str] = {}
    propagate.inject(carrier)
    return [*(metadata or ()), *carrier.items()]


tracer = trace.get_tracer("lifecyclezero")
meter = metrics.get_meter("lifecyclezero")
rpc_duration = meter.create_histogram("rpc.server.duration", unit="ms", description="Server-side RPC latency")
rpc_count = meter.create_counter("rpc.server.calls", description="Server RPCs by method and status code")


def status_name(code: grpc.StatusCode) -> str:
    return str(code.name)
