"""The integrations' contract: one public interface into core, one way to install.

- Every module under ``aiecs_tracing/integrations/`` imports from core only
  ``core.instrumentation`` (and ``core.manager``'s ``TracingManager``/``get_tracing_manager``),
  imports no ``_name`` from core, and touches no core-private attribute (``tracing._start``,
  ``span._otel``, ``tracing._attach``...), nor OpenTelemetry itself.
- Every integration has ``install_<framework>_tracing(target, tracing=None, **options)`` and
  ``uninstall_<framework>_tracing(target)`` (old names are the same functions), idempotent,
  kept as one marker attribute on the target; a missing framework is an ``ImportError`` naming
  the extra, raised at install time (never at import); a too-old one another; the minimum
  versions are pyproject's.
- A broad ``except Exception`` in an integration either reports through the guard
  (``report_error``), re-raises, or says on its line that it is ``not a guard``.
"""

from __future__ import annotations

import ast
import inspect
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

import aiecs_tracing
from aiecs_tracing.integrations import _contract

PACKAGE = Path(aiecs_tracing.__file__).resolve().parent
CORE = PACKAGE / "core"
INTEGRATIONS = sorted((PACKAGE / "integrations").glob("*.py"))
PUBLIC_CORE_MODULES = {"instrumentation", "manager"}
FROM_MANAGER = {"TracingManager", "get_tracing_manager"}
#: (module, framework in the function names, module that provides it, an old name -> new name)
FRAMEWORKS = {
    "asgi": ("asgi", None, {}),
    "fastapi": ("fastapi", "fastapi", {"instrument_fastapi": "install", "uninstrument_fastapi": "uninstall"}),
    "httpx": (
        "httpx",
        "httpx",
        {"instrument_httpx_client": "install", "uninstrument_httpx_client": "uninstall"},
    ),
    "celery": ("celery", "celery", {}),
    "socketio": ("socketio", "socketio", {"instrument_socketio": "install", "uninstrument_socketio": "uninstall"}),
    "websocket": (
        "websocket",
        "websockets",
        {"instrument_websocket_manager": "install", "uninstrument_websocket_manager": "uninstall"},
    ),
}


def _core_private_names() -> set[str]:
    """``_names`` of core: module-level ones, and every class's methods and attributes."""
    names: set[str] = set()
    for path in CORE.rglob("*.py"):
        if path.name == "instrumentation.py":
            continue
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                name = node.name
            elif isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Store):
                name = node.attr
            elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
                name = node.id
            elif isinstance(node, ast.Constant) and isinstance(node.value, str) and node.value.isidentifier():
                name = node.value  # __slots__ entries
            else:
                continue
            if name.startswith("_") and not name.startswith("__"):
                names.add(name)
    return names


CORE_PRIVATE = _core_private_names()


def _is_core_module(module: str | None, level: int) -> str | None:
    """The core submodule an import names (``""`` for core itself), else None."""
    if module is None:
        return None
    if level == 0:
        prefix = "aiecs_tracing.core"
        if module == prefix or module.startswith(prefix + "."):
            return module[len(prefix) + 1 :]
        return None
    if level == 2 and (module == "core" or module.startswith("core.")):
        return module[5:]
    return None


def _violations(path: Path) -> list[str]:
    source = path.read_text()
    tree = ast.parse(source)
    found: list[str] = []
    where = path.name
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            sub = _is_core_module(node.module, node.level)
            if node.module and node.module.split(".")[0] == "opentelemetry":
                found.append(f"{where}:{node.lineno} imports OpenTelemetry ({node.module}); use core.instrumentation")
            if sub is None:
                continue
            if sub not in PUBLIC_CORE_MODULES:
                found.append(f"{where}:{node.lineno} imports core.{sub or '*'}; only core.instrumentation is public")
            for alias in node.names:
                if alias.name.startswith("_"):
                    found.append(f"{where}:{node.lineno} imports the private {alias.name} from core")
                if sub == "manager" and alias.name not in FROM_MANAGER:
                    found.append(f"{where}:{node.lineno} imports {alias.name} from core.manager")
        elif isinstance(node, ast.Import):
            for alias in node.names:
                sub = _is_core_module(alias.name, 0)
                if sub is not None and sub not in PUBLIC_CORE_MODULES:
                    found.append(f"{where}:{node.lineno} imports {alias.name}")
                if alias.name.split(".")[0] == "opentelemetry":
                    found.append(f"{where}:{node.lineno} imports {alias.name}; use core.instrumentation")
        elif isinstance(node, ast.Attribute) and node.attr in CORE_PRIVATE:
            owner = node.value
            if isinstance(owner, ast.Name) and owner.id in ("self", "cls"):
                continue  # the integration's own attribute of the same name
            found.append(f"{where}:{node.lineno} uses the core-private .{node.attr}")
    return found


@pytest.mark.parametrize("path", INTEGRATIONS, ids=lambda p: p.name)
def test_integrations_use_only_the_public_instrumentation_interface(path: Path) -> None:
    assert _violations(path) == []


def test_the_check_finds_private_uses(tmp_path: Path) -> None:
    bad = tmp_path / "bad.py"
    bad.write_text(
        "from ..core.light import start_light\n"
        "from ..core.instrumentation import _guard\n"
        "from ..core.manager import TracingManager, _WRAPPER_KEY\n"
        "from opentelemetry.trace import SpanKind\n"
        "import aiecs_tracing.core.span\n"
        "def f(tracing, span):\n"
        "    tracing._parent_context(None)\n"
        "    tracing._active\n"
        "    return span._otel, tracing._light_source\n"
    )
    text = "\n".join(_violations(bad))
    for expected in (
        "core.light",
        "private _guard",
        "private _WRAPPER_KEY",
        "OpenTelemetry",
        "aiecs_tracing.core.span",
        "._parent_context",
        "._active",
        "._otel",
        "._light_source",
    ):
        assert expected in text, (expected, text)


def _broad_handlers(path: Path) -> list[str]:
    lines = path.read_text().splitlines()
    bad = []
    for node in ast.walk(ast.parse("\n".join(lines))):
        if not isinstance(node, ast.ExceptHandler):
            continue
        caught = node.type
        if caught is not None and not (isinstance(caught, ast.Name) and caught.id in ("Exception", "BaseException")):
            continue
        if "not a guard" in lines[node.lineno - 1]:
            continue
        body = list(ast.walk(ast.Module(body=node.body, type_ignores=[])))
        reraises = any(isinstance(n, ast.Raise) for n in body)
        reports = any(
            isinstance(n, ast.Call) and getattr(n.func, "id", getattr(n.func, "attr", None)) == "report_error" for n in body
        )
        if not (reraises or reports):
            bad.append(f"{path.name}:{node.lineno}")
    return bad


@pytest.mark.parametrize("path", INTEGRATIONS, ids=lambda p: p.name)
def test_broad_excepts_report_through_the_guard(path: Path) -> None:
    assert _broad_handlers(path) == []


def test_integration_modules_import_without_their_frameworks() -> None:
    code = (
        "import sys\n"
        "for name in ('httpx', 'celery', 'socketio', 'websockets', 'fastapi', 'starlette'):\n"
        "    sys.modules[name] = None\n"
        "import aiecs_tracing.integrations.asgi, aiecs_tracing.integrations.fastapi\n"
        "import aiecs_tracing.integrations.httpx, aiecs_tracing.integrations.celery\n"
        "import aiecs_tracing.integrations.socketio, aiecs_tracing.integrations.websocket\n"
        "from aiecs_tracing.integrations.httpx import install_httpx_tracing\n"
        "try:\n"
        "    install_httpx_tracing(object())\n"
        "except ImportError as exc:\n"
        "    print(exc)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, cwd=PACKAGE.parent)
    assert out.returncode == 0, out.stderr
    assert "pip install 'aiecs-tracing[httpx]'" in out.stdout


def _module(name: str) -> Any:
    return __import__(f"aiecs_tracing.integrations.{name}", fromlist=["x"])


@pytest.mark.parametrize("name", sorted(FRAMEWORKS))
def test_one_verb_pair_with_old_names_as_aliases(name: str) -> None:
    module = _module(name)
    framework, _, aliases = FRAMEWORKS[name]
    install = getattr(module, f"install_{framework}_tracing")
    uninstall = getattr(module, f"uninstall_{framework}_tracing")
    assert install.__name__ in module.__all__ and uninstall.__name__ in module.__all__
    params = list(inspect.signature(install).parameters.values())
    assert params[1].name == "tracing" and params[1].default is None
    assert len(inspect.signature(uninstall).parameters) == 1
    for old, verb in aliases.items():
        assert getattr(module, old) is (install if verb == "install" else uninstall), old


@pytest.mark.parametrize("name", [n for n in sorted(FRAMEWORKS) if FRAMEWORKS[n][1]])
def test_missing_framework_is_one_import_error_naming_the_extra(name: str, monkeypatch) -> None:
    framework, key, _ = FRAMEWORKS[name]
    module_name, _dist, extra, _minimum = _contract.MINIMUM_VERSIONS[key]
    monkeypatch.setattr(_contract, "_checked", {})
    monkeypatch.setitem(sys.modules, module_name, None)
    with pytest.raises(ImportError, match=rf"pip install 'aiecs-tracing\[{extra}\]'"):
        getattr(_module(name), f"install_{framework}_tracing")(object())


@pytest.mark.parametrize("name", [n for n in sorted(FRAMEWORKS) if FRAMEWORKS[n][1]])
def test_too_old_framework_is_one_clear_error(name: str, monkeypatch) -> None:
    framework, key, _ = FRAMEWORKS[name]
    module_name, dist, extra, _minimum = _contract.MINIMUM_VERSIONS[key]
    monkeypatch.setattr(_contract, "_checked", {})
    monkeypatch.setitem(_contract.MINIMUM_VERSIONS, key, (module_name, dist, extra, "999.1"))
    with pytest.raises(ImportError, match=rf"needs {dist} >= 999.1, found .*aiecs-tracing\[{extra}\]"):
        getattr(_module(name), f"install_{framework}_tracing")(object())


def test_minimum_versions_are_pyprojects_extras() -> None:
    text = (PACKAGE.parent / "pyproject.toml").read_text()
    section = text.split("[project.optional-dependencies]", 1)[1].split("\n[", 1)[0]
    extras = {}
    for line in section.splitlines():  # one line per extra (tomllib needs Python 3.11)
        key, sep, value = line.partition(" = ")
        if sep and value.startswith("["):
            extras[key.strip()] = value
    for _module_name, dist, extra, minimum in _contract.MINIMUM_VERSIONS.values():
        assert f'"{dist}>={minimum}' in extras[extra], (dist, extra, extras.get(extra))  # then "," or '"'
        assert f'"{dist}>={minimum}"' in extras[extra] or f'"{dist}>={minimum},' in extras[extra]


# --- idempotent install / uninstall on real targets -------------------------------------------
class _WsManager:
    server = None

    async def _handle_client_connection(self, websocket: Any, *args: Any) -> None:
        return None

    async def broadcast_message(self, message: Any) -> None:
        return None


def _targets() -> dict[str, Any]:
    import celery
    import fastapi
    import httpx
    import socketio

    return {
        "fastapi": fastapi.FastAPI,
        "asgi": fastapi.FastAPI,
        "httpx": httpx.Client,
        "celery": lambda: celery.Celery("contract"),
        "socketio": lambda: socketio.AsyncServer(async_mode="asgi"),
        "websocket": _WsManager,
    }


@pytest.mark.parametrize("name", sorted(FRAMEWORKS))
def test_install_and_uninstall_are_idempotent_and_undo_everything(name: str) -> None:
    module = _module(name)
    framework = FRAMEWORKS[name][0]
    install = getattr(module, f"install_{framework}_tracing")
    uninstall = getattr(module, f"uninstall_{framework}_tracing")
    target = _targets()[name]()
    before = dict(vars(target))
    assert install(target) is target
    installed = {k: v for k, v in vars(target).items() if k not in before or before[k] is not v}
    markers = [k for k in vars(target) if k.startswith("_aiecs_tracing_")]
    assert len(markers) == 1, markers
    middleware = list(getattr(target, "user_middleware", ()))
    assert install(target) is target  # again: nothing new
    assert {k: v for k, v in vars(target).items() if k not in before or before[k] is not v} == installed
    assert list(getattr(target, "user_middleware", ())) == middleware
    assert uninstall(target) is target
    assert uninstall(target) is target
    assert not [k for k in vars(target) if k.startswith("_aiecs_tracing_")]
    if hasattr(target, "user_middleware"):
        assert target.user_middleware == []
    for key, value in before.items():
        if key != "middleware_stack":
            assert vars(target).get(key) is value, key
    for key in installed:
        assert key in before or key not in vars(target), key
    if name == "celery":
        from aiecs_tracing.integrations.celery import is_celery_tracing_installed

        assert not is_celery_tracing_installed(target)


def test_a_second_install_retargets_the_manager() -> None:
    import httpx

    from aiecs_tracing.integrations.httpx import install_httpx_tracing, uninstall_httpx_tracing

    first, second = object(), object()
    client = install_httpx_tracing(httpx.Client(), first)  # type: ignore[arg-type]
    install_httpx_tracing(client, second)  # type: ignore[arg-type]
    installation = _contract.installation_of(client, "httpx")
    assert installation.tracing is second
    wrapped = list(installation.wrapped)
    assert wrapped and all(t._tracer.tracing is second for t in wrapped)
    uninstall_httpx_tracing(client)
    assert client._transport not in wrapped and client._transport is wrapped[0].transport


def test_plain_asgi_app_is_wrapped_and_unwrapped() -> None:
    from aiecs_tracing.integrations.asgi import (
        TracingMiddleware,
        install_asgi_tracing,
        uninstall_asgi_tracing,
    )

    async def app(scope: Any, receive: Any, send: Any) -> None:
        return None

    wrapped = install_asgi_tracing(app)
    assert isinstance(wrapped, TracingMiddleware) and wrapped.app is app
    assert install_asgi_tracing(wrapped) is wrapped
    assert uninstall_asgi_tracing(wrapped) is app
    assert uninstall_asgi_tracing(app) is app


def test_websocket_tracers_share_attribute_names() -> None:
    from aiecs_tracing.core import instrumentation

    asgi_source = (PACKAGE / "integrations" / "asgi_websocket.py").read_text()  # the ASGI tracer's WebSocket half
    ws_source = (PACKAGE / "integrations" / "websocket.py").read_text()
    for name in ("WEBSOCKET_CLOSE_CODE", "WEBSOCKET_MESSAGES_RECEIVED", "WEBSOCKET_MESSAGES_SENT", "OPERATION_RECEIVE"):
        assert name in asgi_source and name in ws_source, name
    for old in ("websocket.close_code", "websocket.messages_received", "websocket.close_reason"):
        assert old not in asgi_source and old not in ws_source
    assert instrumentation.WEBSOCKET_CLOSE_CODE == "websocket.close.code"
    assert instrumentation.OPERATION_RECEIVE == "receive"
