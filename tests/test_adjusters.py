"""The collector's copy of Jaeger's clock-skew warnings, on hand-made traces.

The same rules are checked against a real Jaeger in tests/integration/test_real_jaeger.py;
these cases run without one and cover the branches a sample trace does not reach.
"""

from __future__ import annotations

import pytest

from aiecs_tracing.collector.adjusters import go_duration, span_warnings
from aiecs_tracing.collector.model import CHILD_OF, FOLLOWS_FROM, INT64, STRING, Process, SpanRecord

TRACE = "0" * 31 + "1"


@pytest.mark.parametrize(
    ("nanoseconds", "text"),
    [
        (0, "0s"),
        (1, "1ns"),
        (999, "999ns"),
        (1_000, "1µs"),
        (1_100, "1.1µs"),
        (1_070_226, "1.070226ms"),
        (2_200_000, "2.2ms"),
        (1_500_000_000, "1.5s"),
        (61_000_000_000, "1m1s"),
        (3_600_000_000_000, "1h0m0s"),
        (3_723_000_000_001, "1h2m3.000000001s"),
        (-1_500, "-1.5µs"),
    ],
)
def test_go_duration_matches_go(nanoseconds: int, text: str) -> None:
    assert go_duration(nanoseconds) == text


def span(span_id: str, parent: str | None, start: int, duration: int, process: Process, ref: str = CHILD_OF) -> SpanRecord:
    refs = [(ref, TRACE, parent)] if parent else []
    return SpanRecord(TRACE, span_id, parent or "", span_id, process, start, duration, references=refs)


HOST_A = Process("a", [("ip", STRING, "10.0.0.1")])
HOST_A_AS_INT = Process("a2", [("ip", INT64, 0x0A000001)])
HOST_B = Process("b", [("ip", STRING, "10.0.0.2")])
NO_IP = Process("otlp", [("host.name", STRING, "x")])


def test_missing_parent_and_duplicate_ids_warn() -> None:
    spans = [span("a1", None, 100, 50, HOST_A), span("a2", "ff", 110, 10, HOST_A), span("a1", None, 100, 50, HOST_A)]
    assert span_warnings(spans) == [
        None,
        ["invalid parent span IDs=ff; skipping clock skew adjustment"],
        ["duplicate span IDs; skipping clock skew adjustment"],
    ]


def test_skew_is_measured_across_hosts_only() -> None:
    root = span("r", None, 1_000, 100, HOST_A)
    same_host_early = span("s", "r", 990, 20, HOST_A_AS_INT)  # the int form of the same ip
    other_host_early = span("o", "r", 990, 20, HOST_B)  # 10 µs early: skew = 1000 + (100-20)/2 - 990 = 50 µs
    other_host_inside = span("i", "r", 1_010, 20, HOST_B)
    grandchild = span("g", "o", 995, 5, HOST_B)  # inherits its parent's skew (same host)
    no_ip_longer = span("n", "r", 900, 400, NO_IP)  # outlives its parent, starts 100 µs early
    no_ip_async = span("f", "r", 1_050, 400, NO_IP, ref=FOLLOWS_FROM)  # longer but starts inside: no skew
    warnings = span_warnings([root, same_host_early, other_host_early, other_host_inside, grandchild,
                              no_ip_longer, no_ip_async])  # fmt: skip
    disabled = "clock skew adjustment disabled; not applying calculated delta of "
    assert warnings == [None, None, [disabled + "50µs"], None, [disabled + "50µs"], [disabled + "100µs"], None]


def test_zero_duration_thrift_span_gets_jaegers_sanitizer_warning() -> None:
    thrift = Process("udp", [("opencensus.exporterversion", STRING, "Jaeger-Python-4.8.0")])
    start_us = 1_796_215_950_370_120  # 2026-12-02 12:52:30.37012 UTC
    zero = span("z", None, start_us, 0, thrift)
    otlp_zero = span("o", None, start_us, 0, NO_IP)  # sub-microsecond over OTLP: not zero ns there
    assert span_warnings([zero, otlp_zero]) == [
        ["Negative duration detected, sanitizing end timestamp. Original end timestamp: "
         "2026-12-02 12:52:30.37012 +0000 UTC, adjusted to: 2026-12-02 12:52:30.370120001 +0000 UTC"],
        None,
    ]  # fmt: skip
