"""A manager's export pipeline: resource, provider with its sampler, bounded processor, exporter."""

from __future__ import annotations

from typing import Any, NamedTuple

from opentelemetry.sdk.resources import Resource

from .config import TracingConfig
from .exporters.factory import build_exporter
from .light import EngineProvider
from .processor import BoundedBatchProcessor
from .resources import local_hostname
from .sampling import sampler_for


class Pipeline(NamedTuple):
    provider: EngineProvider
    processor: BoundedBatchProcessor | None  # None: nothing to export to (exporter "none")
    exporter: Any
    endpoint: str  # what get_tracer_info() shows: the exporter's address or class


def build_pipeline(cfg: TracingConfig, custom_exporter: Any = None) -> Pipeline:
    """The pipeline ``cfg`` asks for; ``custom_exporter`` (any OpenTelemetry SpanExporter) wins. Raises."""
    attributes: dict[str, Any] = {**cfg.resource_attributes, **cfg.process_tags}
    attributes["service.name"] = cfg.service_name
    attributes.setdefault("host.name", local_hostname())
    # shutdown_on_exit=False: the SDK's own exit hook would spend its 5 s default in the flush
    # and again in the join, per manager; ours (core/lifecycle.py) shares one deadline.
    provider = EngineProvider(resource=Resource.create(attributes), sampler=sampler_for(cfg), shutdown_on_exit=False)
    if custom_exporter is not None:
        exporter, endpoint = custom_exporter, type(custom_exporter).__name__
    else:
        exporter, endpoint = build_exporter(cfg)
    processor = None
    if exporter is not None:
        processor = BoundedBatchProcessor(
            exporter,
            max_queue_size=cfg.max_queue_size,
            max_export_batch_size=cfg.max_export_batch_size,
            schedule_delay_millis=cfg.schedule_delay_millis,
            shutdown_timeout=cfg.shutdown_timeout,
        )
        provider.add_span_processor(processor)
    return Pipeline(provider, processor, exporter, endpoint)
