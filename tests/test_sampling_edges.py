"""sampling.py at its edges: which root sampler each type builds, and what it reports.

Written against the mutants ``make mutate`` left alive; each pins a sampling decision
(whether a new trace is recorded) or what ``get_tracer_info()`` shows about it.
"""

from __future__ import annotations

from opentelemetry.sdk.trace.sampling import Decision, ParentBased

from aiecs_tracing.core.sampling import (
    RateLimitingSampler,
    build_sampler,
    close_sampler,
    describe_sampler,
    sampling_info,
)

ROOT_TRACE_ID = 0x4BF92F3577B34DA6A3CE929D0E0E4736


def root_decision(sampler_type: str, param: float) -> Decision:
    return build_sampler(sampler_type, param).should_sample(None, ROOT_TRACE_ID, "root").decision


def test_each_local_type_decides_a_new_trace_through_a_parent_based_sampler():
    assert root_decision("const", 1) is Decision.RECORD_AND_SAMPLE
    assert root_decision("const", 0) is Decision.DROP
    assert root_decision("probabilistic", 1.0) is Decision.RECORD_AND_SAMPLE
    assert root_decision("probabilistic", 0.0) is Decision.DROP
    assert root_decision("ratelimiting", 0) is Decision.DROP
    assert root_decision("not-validated", 0) is Decision.RECORD_AND_SAMPLE  # the safe fallback samples
    sampler = build_sampler("ratelimiting", 2)
    assert isinstance(sampler, ParentBased) and "RateLimitingSampler{2.0}" in sampler.get_description()


def test_descriptions_and_the_local_samplers_lack_of_remote_state():
    assert describe_sampler("probabilistic", 0.25) == "probabilistic:0.25 (parent-based)"
    assert describe_sampler("const", 1.0) == "const:1 (parent-based)"
    assert RateLimitingSampler(0.5).get_description() == "RateLimitingSampler{0.5}"
    local = build_sampler("const", 1)
    assert sampling_info(local) is None
    close_sampler(local)  # nothing to stop, and no error
