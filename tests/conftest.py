import pytest

from tests.wire import JaegerUDPSink


@pytest.fixture
def sink():
    s = JaegerUDPSink()
    yield s
    s.close()
