"""The vocabulary both OTLP decoders share (:mod:`.otlp` for protobuf, :mod:`.otlp_json`).

Kept below both so that neither decoder imports the other: what Jaeger calls a resource
without ``service.name``, the OTLP enum names, the rejection reason for bad ids, the
error and the result type.
"""

from __future__ import annotations

from . import model
from .packing import STATUS_ERROR, STATUS_OK, STATUS_UNSET

NO_SERVICE_NAME = "OTLPResourceNoServiceName"  # what Jaeger names a resource without service.name

KIND_BY_NAME = {
    "SPAN_KIND_UNSPECIFIED": model.KIND_UNSPECIFIED,
    "SPAN_KIND_INTERNAL": model.KIND_INTERNAL,
    "SPAN_KIND_SERVER": model.KIND_SERVER,
    "SPAN_KIND_CLIENT": model.KIND_CLIENT,
    "SPAN_KIND_PRODUCER": model.KIND_PRODUCER,
    "SPAN_KIND_CONSUMER": model.KIND_CONSUMER,
}
STATUS_BY_NAME = {"STATUS_CODE_UNSET": STATUS_UNSET, "STATUS_CODE_OK": STATUS_OK, "STATUS_CODE_ERROR": STATUS_ERROR}

INVALID_ID_REASON = "spans with an invalid trace or span id were rejected"
ZERO_TRACE_ID = "0" * 32  # all-zero ids are invalid in OTLP
ZERO_SPAN_ID = "0" * 16


class OtlpDecodeError(ValueError):
    """The payload is not a valid ExportTraceServiceRequest."""


DecodeResult = tuple[list[model.SpanRecord], int, str]
