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
