import pytest

from tests.wire import JaegerUDPSink


@pytest.fixture
def sink():
    s = JaegerUDPSink()
    yield s
    s.close()


@pytest.fixture
def real_jaeger(tmp_path):
    """A real Jaeger v2 of its own for one test (tests/integration/_jaeger.py)."""
    from tests.integration._jaeger import running_jaeger

    with running_jaeger(tmp_path) as jaeger:
        yield jaeger


@pytest.fixture(scope="module")
def real_jaeger_module(tmp_path_factory):
    """One real Jaeger v2 shared by a module's tests (each test uses its own trace ids)."""
    from tests.integration._jaeger import running_jaeger

    with running_jaeger(tmp_path_factory.mktemp("jaeger")) as jaeger:
        yield jaeger


# --- isolation: every TracingManager a test creates is the test's, and is closed with it -------------
#
# TracingManager.__init__ is wrapped once for the session: a manager created while a test runs
# (in its body or a function-scoped fixture) is owned by that test; one created by a module or
# session fixture (or at import) belongs to that fixture, which closes it. After each test its
# managers are closed, and the default manager, OpenTelemetry's global tracer provider, logger
# filters and the log record factory are put back as they were. What a test left behind besides
# its managers (a global provider it did not ask for with the ``global_provider`` fixture, a
# logger filter, the record factory, the export thread of a processor no one shut down)
# fails the test under CI (``CI`` set) and is a warning locally; it is cleaned up either way.

import functools  # noqa: E402
import logging  # noqa: E402
import threading  # noqa: E402
import time  # noqa: E402
import warnings  # noqa: E402
import weakref  # noqa: E402

from opentelemetry import trace as _otel_trace  # noqa: E402

from aiecs_tracing.core import log_correlation as _log_correlation  # noqa: E402
from aiecs_tracing.core import manager as _manager_module  # noqa: E402
from tests.services import in_ci  # noqa: E402

_fixture_scopes: list[str] = []  # scopes of the fixtures being set up right now (innermost last)
_owned: list[_manager_module.TracingManager] | None = None  # the running test's managers
_shared: weakref.WeakSet[_manager_module.TracingManager] = weakref.WeakSet()  # module/session fixtures'


def _owning(init):
    @functools.wraps(init)
    def __init__(self, *args, **kwargs):
        init(self, *args, **kwargs)
        if _owned is not None and all(scope == "function" for scope in _fixture_scopes):
            _owned.append(self)
        else:
            _shared.add(self)

    __init__.__wrapped_by_tests__ = True
    return __init__


if not getattr(_manager_module.TracingManager.__init__, "__wrapped_by_tests__", False):
    _manager_module.TracingManager.__init__ = _owning(_manager_module.TracingManager.__init__)


@pytest.hookimpl(hookwrapper=True)
def pytest_fixture_setup(fixturedef, request):
    _fixture_scopes.append(fixturedef.scope)
    try:
        yield
    finally:
        _fixture_scopes.pop()


def _loggers() -> list[logging.Logger]:
    others = [lg for lg in logging.Logger.manager.loggerDict.values() if isinstance(lg, logging.Logger)]
    return [logging.getLogger(), *others]


def _process_wide(log_filter: object) -> bool:
    """The library's own once-per-process filters (the OTLP exporter's logger, see exporters/factory.py)."""
    from aiecs_tracing.core.exporters.factory import _ThroughGuard

    return isinstance(log_filter, _ThroughGuard)


def _global_provider() -> tuple[object, bool]:
    return _otel_trace._TRACER_PROVIDER, _otel_trace._TRACER_PROVIDER_SET_ONCE._done


def _set_global_provider(state: tuple[object, bool]) -> None:
    _otel_trace._TRACER_PROVIDER, _otel_trace._TRACER_PROVIDER_SET_ONCE._done = state


def _export_threads() -> set[threading.Thread]:
    """Export threads of processors not shut down: a processor that is still open, a leak.

    A shut-down processor's thread may outlive it on purpose: an export hung on a backend that
    never answers is left behind as a daemon once the shutdown deadline is over (processor.py).
    """
    threads = set()
    for thread in threading.enumerate():
        processor = getattr(getattr(thread, "_target", None), "__self__", None)
        if thread.name == "aiecs-tracing-export" and thread.is_alive() and not getattr(processor, "_shutdown", False):
            threads.add(thread)
    return threads


@pytest.fixture
def global_provider():
    """For a test that makes a manager OpenTelemetry's global provider: it starts unset (and is restored)."""
    _set_global_provider((None, False))
    yield


@pytest.fixture(autouse=True)
def tracing_isolation(request):
    """Owns the managers the test creates (closed at its end); restores process-wide tracing state."""
    global _owned
    default = _manager_module.get_tracing_manager()
    provider = _global_provider()
    filters = {lg: list(lg.filters) for lg in _loggers()}
    factory = (logging.getLogRecordFactory(), _log_correlation.installed_factory)
    threads = _export_threads()
    _owned = owned = []
    try:
        yield owned
    finally:
        _owned = None
    problems = []
    if _global_provider() != provider and "global_provider" not in request.fixturenames:
        problems.append(f"set OpenTelemetry's global tracer provider ({_global_provider()[0]!r})")
    for lg in _loggers():
        added = [f for f in lg.filters if f not in filters.get(lg, [])]
        kept = [f for f in added if _process_wide(f)]
        if len(kept) < len(added):
            problems.append(f"left filter(s) {[f for f in added if f not in kept]} on logger {lg.name!r}")
        lg.filters[:] = filters.get(lg, []) + kept
    if (logging.getLogRecordFactory(), _log_correlation.installed_factory) != factory:
        problems.append("replaced the log record factory")
        logging.setLogRecordFactory(factory[0])
        _log_correlation.installed_factory = factory[1]
    for manager in owned:
        try:
            manager.close_tracer(timeout=1.0)
        except Exception as exc:  # noqa: BLE001 - reported, the clean-up goes on
            problems.append(f"{manager!r}.close_tracer() raised {exc!r}")
    _manager_module.set_tracing_manager(default)
    _set_global_provider(provider)
    shared = {m.processor._thread for m in list(_shared) if m.processor is not None}
    deadline = time.monotonic() + 2.0
    while True:
        left = _export_threads() - threads - shared
        if not left or time.monotonic() > deadline:
            break
        time.sleep(0.02)
    if left:
        problems.append(f"left {len(left)} export thread(s) of processors never shut down")
    if problems:
        message = f"{request.node.nodeid} leaks process-wide state: " + "; ".join(problems)
        if in_ci():
            pytest.fail(message, pytrace=False)
        warnings.warn(message, stacklevel=1)
