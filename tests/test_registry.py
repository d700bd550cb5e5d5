from __future__ import annotations

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
