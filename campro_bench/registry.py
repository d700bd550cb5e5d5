"""One generic registry for every kind of plugin.

A registry maps names to objects (usually factories: classes or functions). Entries come from
three places, all loaded lazily so that ``campro-bench list`` stays cheap:

* built-in modules of campro-bench, imported on first access;
* ``@REGISTRY.register("name")`` decorators in any imported module;
* third-party packages exposing an entry point in the registry's group, e.g.::

      [project.entry-points."campro_bench.protectors"]
      my-protector = "my_package.module:MyProtector"

An unknown name raises :class:`~campro_bench.errors.UnknownNameError` whose one-line message
lists the known names. A name registered twice by different code is an error (a plugin cannot
silently replace a built-in, nor two built-ins share a name); :meth:`Registry.add` with
``replace=True`` is the explicit way to re-register (a rescanned models folder). A registered
class gets its registry name as its ``name`` attribute, so the name is written once, in the
decorator; a class that writes a different ``name`` itself is refused.
"""

from __future__ import annotations

import fnmatch
import importlib
from dataclasses import dataclass, field
from importlib.metadata import EntryPoint, entry_points
from typing import Any, Callable, Generic, Iterator, TypeVar

from .errors import CamproError, UnknownNameError

T = TypeVar("T")


@dataclass
class RegistryEntry(Generic[T]):
    """One registered object with where it came from and its declared metadata."""

    name: str
    origin: str
    metadata: dict[str, Any] = field(default_factory=dict)
    _obj: T | None = None
    _loader: Callable[[], T] | None = None

    def load(self) -> T:
        """Return the object, importing it first if the entry is lazy."""
        if self._obj is None:
            assert self._loader is not None
            try:
                self._obj = self._loader()
            except CamproError:
                raise
            except Exception as exc:  # a broken plugin must say which plugin it is
                raise CamproError(f"cannot load '{self.name}' from {self.origin}: {exc}") from exc
        return self._obj

    @property
    def loaded(self) -> bool:
        return self._obj is not None


def _import_string(target: str) -> Any:
    module_name, _, attr = target.partition(":")
    module = importlib.import_module(module_name)
    obj: Any = module
    for part in attr.split(".") if attr else []:
        obj = getattr(obj, part)
    return obj


class Registry(Generic[T]):
    """Named objects of one kind (protectors, face recognisers, datasets, ...).

    Args:
        kind: human name of what is registered, used in messages ("protector").
        group: entry-point group that third-party packages register under.
        builtins: modules of campro-bench imported on first access; importing them runs their
            ``@register`` decorators.
    """

    def __init__(self, kind: str, group: str, builtins: tuple[str, ...] = ()) -> None:
        self.kind = kind
        self.group = group
        self._builtins = builtins
        self._entries: dict[str, RegistryEntry[T]] = {}
        self._aliases: dict[str, str] = {}
        self._builtins_loaded = False
        self._plugins_loaded = False

    # registration -----------------------------------------------------------------------
    def register(
        self, name: str | None = None, *, aliases: tuple[str, ...] = (), **metadata: Any
    ) -> Callable[[T], T]:
        """Decorator: register the decorated object under ``name`` (default: its __name__)."""

        def decorator(obj: T) -> T:
            key = name or getattr(obj, "__name__", None)
            if not key:
                raise ValueError("a registered object needs a name")
            module = getattr(obj, "__module__", "?")
            qualname = getattr(obj, "__qualname__", repr(obj))
            if isinstance(obj, type):
                written = obj.__dict__.get("name")
                if isinstance(written, str) and written != key:
                    raise CamproError(f"{self.kind} {module}:{qualname} is registered as '{key}' but names itself "
                                      f"'{written}'; leave the name to the registry")
                obj.name = key  # type: ignore[attr-defined]
            self.add(key, obj, origin=f"{module}:{qualname}", aliases=aliases, **metadata)
            return obj

        return decorator

    def add(
        self,
        name: str,
        obj: T,
        *,
        origin: str = "",
        aliases: tuple[str, ...] = (),
        replace: bool = False,
        **metadata: Any,
    ) -> None:
        """Register ``obj`` eagerly; a name already registered from elsewhere is an error unless ``replace``."""
        origin = origin or repr(obj)
        self._check_free(name, origin, replace)
        self._entries[name] = RegistryEntry(name, origin, dict(metadata), _obj=obj)
        for alias in aliases:
            self._aliases[alias] = name

    def add_lazy(self, name: str, target: str, **metadata: Any) -> None:
        """Register ``"module:attribute"``, imported only when the entry is first used."""
        self._check_free(name, target, replace=False)
        self._entries[name] = RegistryEntry(
            name, target, dict(metadata), _loader=lambda: _import_string(target)
        )

    def _check_free(self, name: str, origin: str, replace: bool) -> None:
        """Refuse a second registration of ``name`` (the same origin again, e.g. a re-import, is allowed)."""
        existing = self._entries.get(name)
        if existing is not None and not replace and existing.origin != origin:
            raise CamproError(f"{self.kind} '{name}' is registered twice: by {existing.origin} and by {origin}")

    def remove(self, name: str) -> None:
        """Forget an entry (used by tests that register temporary objects)."""
        self._entries.pop(name, None)
        for alias in [a for a, n in self._aliases.items() if n == name]:
            del self._aliases[alias]

    # discovery --------------------------------------------------------------------------
    def _load_builtins(self) -> None:
        if self._builtins_loaded:
            return
        self._builtins_loaded = True
        for module in self._builtins:
            importlib.import_module(module)

    def _load_plugins(self) -> None:
        if self._plugins_loaded:
            return
        self._plugins_loaded = True
        for ep in entry_points(group=self.group):
            if ep.name in self._entries:
                continue  # built-ins win over plugins of the same name

            def loader(ep: EntryPoint = ep) -> Any:
                return ep.load()

            dist = getattr(ep, "dist", None)
            where = f"{ep.value} (plugin {dist.name})" if dist is not None else ep.value
            self._entries[ep.name] = RegistryEntry(ep.name, where, {"plugin": True}, _loader=loader)

    def _ensure_loaded(self) -> None:
        self._load_builtins()
        self._load_plugins()

    def reload_plugins(self) -> None:
        """Look for entry points again (after installing a plugin in the same process)."""
        self._plugins_loaded = False
        self._load_plugins()

    # building ---------------------------------------------------------------------------
    def build(self, spec: str | dict[str, Any], base: type | None = None, **context: Any) -> Any:
        """The one way to build a registered object: ``REGISTRY.build("lowres:factor=16", Protector)``.

        ``spec`` is ``name`` or ``name:key=value,...`` (or ``{"name": ..., **options}``); options
        are converted to the factory's annotated types and unknown ones are refused; ``context``
        keywords (``models_dir=...``, ``device=...``) go to the factory unchanged. See
        :func:`campro_bench.specs.build_from_spec`.
        """
        from .specs import build_from_spec

        return build_from_spec(self, spec, base, self.kind, **context)

    # lookup -----------------------------------------------------------------------------
    def entry(self, name: str) -> RegistryEntry[T]:
        """The entry for ``name`` (or an alias of it); unknown names list the known ones."""
        self._ensure_loaded()
        key = self._aliases.get(name, name)
        if key not in self._entries:
            known = ", ".join(self.names()) or "(none)"
            raise UnknownNameError(f"unknown {self.kind} '{name}'; known {self.kind}s: {known}")
        return self._entries[key]

    def get(self, name: str) -> T:
        """The registered object for ``name``, loading it if needed."""
        return self.entry(name).load()

    def origin(self, name: str) -> str:
        """Where ``name`` was defined (module:object or entry-point target)."""
        return self.entry(name).origin

    def names(self, pattern: str = "*") -> list[str]:
        """Sorted registered names matching a shell-style pattern."""
        self._ensure_loaded()
        return sorted(n for n in self._entries if fnmatch.fnmatch(n, pattern))

    def entries(self, pattern: str = "*") -> list[RegistryEntry[T]]:
        return [self._entries[n] for n in self.names(pattern)]

    def __contains__(self, name: object) -> bool:
        self._ensure_loaded()
        return isinstance(name, str) and (name in self._entries or name in self._aliases)

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __len__(self) -> int:
        return len(self.names())

    def __repr__(self) -> str:
        return f"Registry({self.kind!r}, group={self.group!r})"
