import pytest

from adapters_kit import UserError
from adapters_kit.registry import Registry


def test_unknown_name_lists_valid_ones():
    r = Registry("thing")
    r.register("b")(1)
    r.register("a")(2)
    assert r.get("a") == 2 and r.names() == ["a", "b"]
    with pytest.raises(UserError, match=r"unknown thing 'c'; choose one of: a, b"):
        r.get("c")


def test_double_registration_is_a_bug():
    r = Registry("thing")
    r.register("a")(1)
    with pytest.raises(ValueError, match="registered twice"):
        r.register("a")(2)
