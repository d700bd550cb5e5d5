from __future__ import annotations

import inspect

import pytest

from campro_bench.errors import CamproError, UnknownNameError
from campro_bench.registries import ALL, PROTECTORS
from campro_bench.registry import Registry


def test_decorator_registration_and_lookup() -> None:
    reg: Registry[object] = Registry("widget", "campro_bench.tests.widgets")

    @reg.register("alpha", description="first")
    class Alpha:
        pass

    @reg.register(aliases=("b",))
    def beta() -> int:
        return 2

    assert reg.names() == ["alpha", "beta"]
    assert reg.get("alpha") is Alpha
    assert reg.get("b") is beta
    assert reg.entry("alpha").metadata["description"] == "first"
    assert "test_registry" in reg.origin("alpha")
    assert "b" in reg and "gamma" not in reg
    assert reg.names("a*") == ["alpha"]


def test_unknown_name_lists_known_names_in_one_line() -> None:
    reg: Registry[object] = Registry("widget", "campro_bench.tests.widgets")
    reg.add("one", 1)
    reg.add("two", 2)
    with pytest.raises(UnknownNameError) as info:
        reg.get("three")
    message = str(info.value)
    assert message == "unknown widget 'three'; known widgets: one, two"
    assert "\n" not in message


def test_lazy_entries_load_on_first_use() -> None:
    reg: Registry[object] = Registry("widget", "campro_bench.tests.widgets")
    reg.add_lazy("join", "os.path:join")
    entry = reg.entry("join")
    assert not entry.loaded
    import os.path

    assert reg.get("join") is os.path.join
    assert entry.loaded


def test_broken_lazy_entry_names_its_origin() -> None:
    reg: Registry[object] = Registry("widget", "campro_bench.tests.widgets")
    reg.add_lazy("broken", "campro_bench_no_such_module:thing")
    with pytest.raises(CamproError, match="campro_bench_no_such_module:thing"):
        reg.get("broken")


def test_builtin_registries_have_entry_point_groups() -> None:
    for kind, registry in ALL.items():
        assert registry.group.startswith("campro_bench."), kind
    assert {"raw", "invert", "lowres", "defocus", "campro-isp"} <= set(PROTECTORS.names())


def test_duplicate_registration_is_an_error_and_the_registry_names_classes() -> None:
    from campro_bench.errors import CamproError
    from campro_bench.registry import Registry

    reg: Registry = Registry("gadget", "campro_bench.test_gadgets")

    @reg.register("one")
    class One:
        pass

    assert One.name == "one"  # the name is written once, in the decorator
    with pytest.raises(CamproError, match="gadget 'one' is registered twice: by .*One and by .*Other"):
        @reg.register("one")
        class Other:
            pass
    with pytest.raises(CamproError, match="registered as 'two' but names itself 'deux'"):
        @reg.register("two")
        class Two:
            name = "deux"
    reg.add("one", object(), origin="rescan", replace=True)  # the explicit way to replace
    assert reg.origin("one") == "rescan"


def test_every_registry_is_listed() -> None:
    import campro_bench.registries as registries
    from campro_bench.registry import Registry

    defined = {id(v) for v in vars(registries).values() if isinstance(v, Registry)}
    assert defined == {id(r) for r in registries.ALL.values()}


def test_every_numeric_option_declares_a_range_that_holds_its_default() -> None:
    """The numeric rule needs its data: each int/float option of a built-in factory (one with a
    default; those without are context the caller passes) declares its range beside it."""
    from campro_bench.specs import check_number, declared_range, factory_options, is_numeric

    checked = 0
    for kind, registry in ALL.items():
        if kind == "experiments":
            continue
        for entry in registry.entries():
            if entry.metadata.get("plugin"):
                continue
            for name, (annotation, default) in factory_options(entry.load()).items():
                if not is_numeric(annotation) or default is inspect.Parameter.empty:
                    continue
                checked += 1
                assert declared_range(annotation), f"{kind} '{entry.name}' option {name} declares no range"
                assert default is None or check_number(default, annotation) is None, (kind, entry.name, name)
    assert checked >= 30
