"""What every integration does the same way: find its framework, install once, undo.

Each integration offers ``install_<framework>_tracing(target, tracing=None, **options)`` and
``uninstall_<framework>_tracing(target)`` (older names stay as aliases), built on:

- :func:`require_framework`: the framework is imported when an install is asked for, not
  when the integration module is imported; a missing one is one ``ImportError`` naming the
  extra to install, one older than :data:`MINIMUM_VERSIONS` another.
- :func:`install_once` / :func:`uninstall_installed`: the installation object is kept in one
  marker attribute on the target (``_aiecs_tracing_<framework>``); a second install returns it
  (re-pointed at the ``tracing`` given, if any), uninstall pops it and calls its
  ``uninstall()``; both are idempotent.
"""

from __future__ import annotations

import importlib
import re
from collections.abc import Callable
from importlib import metadata
from typing import Any, TypeVar

__all__ = [
    "MINIMUM_VERSIONS",
    "Installation",
    "require_framework",
    "install_once",
    "uninstall_installed",
    "installation_of",
]

#: framework -> (module to import, distribution, extra, minimum version). Keep in step with
#: ``[project.optional-dependencies]`` in pyproject.toml (tests/test_integration_contract.py checks).
MINIMUM_VERSIONS: dict[str, tuple[str, str, str, str]] = {
    "fastapi": ("fastapi", "fastapi", "fastapi", "0.100"),
    "starlette": ("starlette", "starlette", "fastapi", "0.27"),
    "httpx": ("httpx", "httpx", "httpx", "0.24"),
    "celery": ("celery", "celery", "celery", "5.3"),
    "socketio": ("socketio", "python-socketio", "socketio", "5.13"),
    "websockets": ("websockets", "websockets", "websockets", "15"),
}

_checked: dict[tuple[str, str], Any] = {}
T = TypeVar("T", bound="Installation")


def _version_tuple(text: str) -> tuple[int, ...]:
    parts = []
    for part in text.split("."):
        match = re.match(r"\d+", part)
        if match is None:
            break
        parts.append(int(match.group()))
    return tuple(parts)


def require_framework(framework: str) -> Any:
    """Import ``framework`` (a key of :data:`MINIMUM_VERSIONS`) and check its version; return the module.

    Raises ``ImportError`` naming the extra (``pip install 'aiecs-tracing[celery]'``) when it
    is missing or older than the supported minimum.
    """
    module_name, dist, extra, minimum = MINIMUM_VERSIONS[framework]
    key = (framework, minimum)
    module = _checked.get(key)
    if module is not None:
        return module
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ImportError(
            f"aiecs-tracing's {framework} integration needs {dist}: pip install 'aiecs-tracing[{extra}]'"
        ) from exc
    try:
        version = metadata.version(dist)
    except metadata.PackageNotFoundError:
        version = str(getattr(module, "__version__", "") or "")
    if version and _version_tuple(version) < _version_tuple(minimum):
        raise ImportError(
            f"aiecs-tracing's {framework} integration needs {dist} >= {minimum}, found {version}: "
            f"pip install -U 'aiecs-tracing[{extra}]'"
        )
    _checked[key] = module
    return module


class Installation:
    """One integration installed on one target; :func:`install_once` keeps it on the target."""

    tracing: Any = None

    def retarget(self, tracing: Any) -> None:
        """A second install named a manager: use that one from now on."""
        self.tracing = tracing

    def uninstall(self) -> None:  # pragma: no cover - every integration overrides it
        raise NotImplementedError


def _marker(framework: str) -> str:
    return f"_aiecs_tracing_{framework}"


def installation_of(target: Any, framework: str) -> Any:
    """The installation of ``framework`` on ``target``, or ``None``."""
    try:
        return vars(target).get(_marker(framework))
    except TypeError:  # no __dict__: nothing can be installed on it
        return None


def install_once(target: Any, framework: str, tracing: Any, build: Callable[[], T]) -> T:
    """``build()`` the installation and mark ``target`` with it, unless one is there already."""
    existing: T | None = installation_of(target, framework)  # what build() made, installed before
    if existing is not None:
        if tracing is not None:
            existing.retarget(tracing)
        return existing
    installation = build()
    setattr(target, _marker(framework), installation)
    return installation


def uninstall_installed(target: Any, framework: str) -> Any:
    """Pop ``target``'s installation of ``framework`` and undo it; ``None`` if there was none."""
    try:
        installation = vars(target).pop(_marker(framework), None)
    except TypeError:
        return None
    if installation is not None:
        installation.uninstall()
    return installation
