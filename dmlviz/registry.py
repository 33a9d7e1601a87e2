"""What the registries of pluggable parts (losses, models, optimizers, schedules) share."""

from __future__ import annotations

from typing import TypeVar

T = TypeVar("T")


def add_once(registry: dict[str, T], kind: str, name: str, entry: T) -> None:
    """Put ``entry`` under ``name``: a second entry of one name is a mistake (two modules that chose the
    same name), not an override, so it is refused."""
    if name in registry:
        raise ValueError(f"{kind} {name!r} is registered twice")
    registry[name] = entry
