"""Name -> object registries, the Dassl way (datasets, trainers, backbones, evaluators)."""

from __future__ import annotations

from typing import Any, Callable, Iterable

from sarfewshot.errors import UnknownNameError


class Registry:
    """A case-insensitive map from names (and aliases) to classes or factories.

    Registering a name twice is an error unless ``force=True``; looking up an unknown name raises
    :class:`UnknownNameError` listing what is available.

    Example:
        >>> DATASETS = Registry("dataset")
        >>> @DATASETS.register("mstar_soc", aliases=("mstar",))
        ... class MSTAR: ...
        >>> DATASETS.get("MSTAR") is MSTAR
        True
    """

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._objects: dict[str, Any] = {}
        self._aliases: dict[str, str] = {}

    def register(
        self,
        name: str | None = None,
        *,
        aliases: Iterable[str] = (),
        force: bool = False,
    ) -> Callable[[Any], Any]:
        """Decorator registering an object under ``name`` (default: its ``__name__``)."""

        def deco(obj: Any) -> Any:
            canonical = name or obj.__name__
            self._add(canonical, obj, aliases, force)
            return obj

        return deco

    def _add(self, name: str, obj: Any, aliases: Iterable[str], force: bool) -> None:
        keys = [name, *aliases]
        if not force:
            taken = [k for k in keys if k.lower() in self._aliases]
            if taken:
                raise KeyError(f"{self.kind} name(s) {taken} already registered")
        self._objects[name] = obj
        for key in keys:
            self._aliases[key.lower()] = name

    def canonical(self, name: str) -> str:
        """Return the canonical name for ``name`` or an alias of it."""
        try:
            return self._aliases[name.lower()]
        except KeyError:
            raise UnknownNameError(
                f"unknown {self.kind} {name!r}; available: {', '.join(self.list()) or '(none)'}"
            ) from None

    def get(self, name: str) -> Any:
        """Return the object registered under ``name`` (or an alias)."""
        return self._objects[self.canonical(name)]

    def list(self) -> list[str]:
        """Canonical names, sorted."""
        return sorted(self._objects)

    def aliases(self, name: str) -> list[str]:
        """Every key (aliases included, lower-cased) that resolves to ``name``."""
        canonical = self.canonical(name)
        return sorted(k for k, v in self._aliases.items() if v == canonical)

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and name.lower() in self._aliases

    def __len__(self) -> int:
        return len(self._objects)

    def __repr__(self) -> str:
        return f"Registry({self.kind!r}, {self.list()})"
