"""Per-instance wrapping: how integrations hook one framework object, never its class.

Wrappers are set as instance attributes, so only the object the user handed us is
affected (no global monkeypatching), and undoing restores exactly what the instance had,
leaving alone any attribute someone else replaced in the meantime.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any


def set_instance_wrappers(obj: Any, wrappers: Mapping[str, Callable[..., Any]]) -> dict[str, Any]:
    """Install ``wrappers`` on ``obj``; return what each attribute was on the instance (None: unset)."""
    instance = vars(obj)
    previous: dict[str, Any] = {}
    for name, wrapper in wrappers.items():
        previous[name] = instance.get(name)
        setattr(obj, name, wrapper)
    return previous


def restore_instance(obj: Any, wrappers: Mapping[str, Callable[..., Any]], previous: Mapping[str, Any]) -> None:
    """Undo :func:`set_instance_wrappers` for every attribute still holding our wrapper."""
    instance = vars(obj)
    for name, wrapper in wrappers.items():
        if instance.get(name) is wrapper:
            before = previous.get(name)
            if before is None:
                del instance[name]
            else:
                instance[name] = before
