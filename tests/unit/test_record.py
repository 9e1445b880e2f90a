"""base.record.Record against typing.NamedTuple: the same class, built without compiling at import.

Each check runs on a Record class and on the NamedTuple it stands for, and
asserts they behave alike; then what Record is for: no compile at class
creation, and one on the first instantiation only.
"""

from __future__ import annotations

import builtins
import copy
import json
import pickle
from typing import NamedTuple

import pytest

from runc_ckpt.base.record import Record


class PlainNT(NamedTuple):
    """A doc."""

    name: str
    size: int | None = None
    tags: tuple[str, ...] = ()

    def twice(self) -> str:
        return self.name * 2

    @property
    def count(self) -> int:
        return len(self.tags)


class PlainRec(Record):
    """A doc."""

    name: str
    size: int | None = None
    tags: tuple[str, ...] = ()

    def twice(self) -> str:
        return self.name * 2

    @property
    def count(self) -> int:
        return len(self.tags)


class OneField(Record):
    only: str


BOTH = [PlainNT, PlainRec]


def _shape(value: object) -> str:
    """repr with the class name taken out: the two classes differ only in their names."""
    return repr(value).replace("PlainNT", "X").replace("PlainRec", "X")


@pytest.mark.parametrize("cls", BOTH, ids=["NamedTuple", "Record"])
def test_values_fields_and_helpers(cls: type) -> None:
    v = cls("a", tags=("t",))
    assert tuple(v) == ("a", None, ("t",)) and v == ("a", None, ("t",)) and hash(v) == hash(("a", None, ("t",)))
    assert isinstance(v, tuple) and len(v) == 3 and v[0] == "a" and v.size is None
    assert cls._fields == ("name", "size", "tags") and cls.__match_args__ == cls._fields
    assert cls._field_defaults == {"size": None, "tags": ()}
    assert v._asdict() == {"name": "a", "size": None, "tags": ("t",)}
    assert v._replace(size=3) == ("a", 3, ("t",)) and type(v._replace(size=3)) is cls
    assert cls._make(["b", 1, ()]) == ("b", 1, ()) and type(cls._make(["b", 1, ()])) is cls
    assert v.twice() == "aa" and v.count == 1 and cls.__doc__ == "A doc."
    assert _shape(v) == "X(name='a', size=None, tags=('t',))"
    assert json.dumps(v) == '["a", null, ["t"]]'
    assert copy.copy(v) == v and copy.deepcopy(v) == v and pickle.loads(pickle.dumps(v)) == v
    assert type(pickle.loads(pickle.dumps(v))) is cls
    match v:
        case cls(name, size):
            assert (name, size) == ("a", None)
        case _:
            pytest.fail("no match")


@pytest.mark.parametrize("cls", BOTH, ids=["NamedTuple", "Record"])
def test_the_same_refusals(cls: type) -> None:
    v = cls("a")
    with pytest.raises(AttributeError, match="can't set attribute"):
        v.name = "b"
    with pytest.raises(TypeError, match="missing 1 required positional argument: 'name'"):
        cls()
    with pytest.raises(TypeError, match="takes from 2 to 4 positional arguments but 5 were given"):
        cls("a", 1, (), 4)
    with pytest.raises(TypeError, match="unexpected keyword argument 'other'"):
        cls("a", other=1)
    with pytest.raises(ValueError, match=r"Got unexpected field names: \['other'\]"):
        v._replace(other=1)
    with pytest.raises(TypeError, match="Expected 3 arguments, got 2"):
        cls._make(["a", 1])


def test_class_definitions_are_refused_as_namedtuple_refuses_them() -> None:
    with pytest.raises(TypeError, match="Non-default namedtuple field late cannot follow default field early"):
        class Bad(Record):
            early: int = 0
            late: str
    with pytest.raises(ValueError, match="cannot start with an underscore"):
        class Hidden(Record):
            _x: int


def test_one_field_is_a_one_tuple() -> None:
    assert OneField("x") == ("x",) and OneField(only="y").only == "y"


def test_no_compile_until_the_first_value(monkeypatch: pytest.MonkeyPatch) -> None:
    """What Record is for: defining the class compiles nothing; the first value installs its __new__, made from
    one compiled template per number of fields, so another class of that size compiles nothing."""
    calls = []
    real_eval, real_compile = builtins.eval, builtins.compile

    def counting_eval(*args: object) -> object:
        calls.append(args[0])
        return real_eval(*args)

    def refuse(*args: object, **kwargs: object) -> object:
        raise AssertionError("compiled at class creation")

    monkeypatch.setattr(builtins, "compile", refuse)
    monkeypatch.setattr(builtins, "eval", counting_eval)

    class Fresh(Record):
        a: str
        b: tuple[str, ...] = ()

    class Twin(Record):
        c: int
        d: int = 0

    assert calls == []
    monkeypatch.setattr(builtins, "compile", real_compile)
    assert Fresh("x") == ("x", ()) and Fresh("y", ("z",)).b == ("z",)
    assert len(calls) <= 1 and "__new__" in vars(Fresh)
    compiled = len(calls)
    assert Twin(d=2, c=1) == (1, 2) and Twin(3).d == 0      # its own names, the same template
    assert len(calls) == compiled
    assert Twin.__new__.__qualname__ == "test_no_compile_until_the_first_value.<locals>.Twin.__new__"
