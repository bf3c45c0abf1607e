"""Registry: the one list of names of a kind of part (timm's register_model / list_models).

    BACKBONES = Registry("backbone")

    @BACKBONES.register("tiny")
    def tiny_backbone(): ...

The config's choices, the CLI's help and the builders read the same registry, so a part
registered anywhere (a study, a user's module named in a preset's `imports`) is valid
everywhere at once.
"""
from __future__ import annotations

from typing import Generic, TypeVar

T = TypeVar("T")


class Registry(dict, Generic[T]):
    """name -> builder, in registration order."""

    def __init__(self, kind: str) -> None:
        super().__init__()
        self.kind = kind

    def register(self, name: str, builder: T | None = None):
        """Add `builder` under `name` (or decorate one); a name is registered once."""
        def add(obj: T) -> T:
            if name in self:
                raise ValueError(f"{self.kind} {name!r} is registered already (by {self[name]!r})")
            self[name] = obj
            return obj
        return add(builder) if builder is not None else add

    def get(self, name: str) -> T:                  # type: ignore[override]
        """The builder of `name`; an unknown name is one line listing the registered ones."""
        if name not in self:
            raise ValueError(f"unknown {self.kind} {name!r}: registered are {', '.join(self)}")
        return self[name]

    def names(self) -> list[str]:
        return list(self)

