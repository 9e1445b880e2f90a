"""Record: typing.NamedTuple's classes, made without its class-creation cost.

Our typed, frozen values (requests, plans, states) are NamedTuples, and a call
defines them as it imports: 27 before a tiny checkpoint forks runc, 48 in a
tiny restore. typing.NamedTuple spends ~150-300 µs on each (Config, 21 fields:
~2 ms): every field's annotation, a string under `from __future__ import
annotations`, is compiled into a ForwardRef, and collections.namedtuple
compiles a __new__ with eval. Together ~7-9 ms of a tiny checkpoint's ~50 ms
of start-up before runc, for values most of which the call never builds.

A Record subclass is the same class: a tuple subclass with _fields,
_field_defaults, __match_args__, _make, _replace, _asdict, __getnewargs__ and
NamedTuple's repr, one itemgetter property per field, and the body's methods.
Its annotations are only read as names, and its __new__ (the same lambda
namedtuple compiles, so building a value costs the same) is made on the
class's first instantiation, from one such lambda compiled per number of
fields with the class's field names put in. mypy sees typing.NamedTuple
itself (the TYPE_CHECKING branch), so type checking is unchanged;
tests/unit/test_record.py holds the two to the same behaviour.
"""

from __future__ import annotations

__all__ = ["Record"]

# typing.TYPE_CHECKING without importing typing, as in every module a call loads before it forks runc:
# typing costs ~2.5 ms to import (a tiny checkpoint's start-up is ~50 ms), and only annotations, which
# `from __future__ import annotations` leaves unevaluated, name its types there. mypy reads the flag the same.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any
    from typing import NamedTuple as Record
else:
    from types import CodeType, FunctionType

    try:
        from collections import _tuplegetter  # namedtuple's own C field descriptor
    except ImportError:                          # another Python: what namedtuple falls back to
        from operator import itemgetter

        def _tuplegetter(index: int, doc: str) -> Any:
            return property(itemgetter(index), doc=doc)

    # Names of the class body never copied over (besides those the record sets itself): NamedTuple refuses a
    # __new__ of its own, and _root marks Record itself.
    _OWN = frozenset({"__new__", "_root"})

    class _Base(tuple):
        """What every record shares; __new__ compiles the class's own __new__ on its first call."""

        __slots__ = ()

        def __new__(cls, *args: Any, **kwargs: Any) -> Any:
            return _compile_new(cls)(cls, *args, **kwargs)

        @classmethod
        def _make(cls, iterable: Any) -> Any:
            result = tuple.__new__(cls, iterable)
            if len(result) != len(cls._fields):
                raise TypeError(f"Expected {len(cls._fields)} arguments, got {len(result)}")
            return result

        def _replace(self, /, **kwds: Any) -> Any:
            result = self._make(map(kwds.pop, self._fields, self))
            if kwds:
                raise ValueError(f"Got unexpected field names: {list(kwds)!r}")
            return result

        def _asdict(self) -> dict[str, Any]:
            return dict(zip(self._fields, self))

        def __repr__(self) -> str:
            return f"{type(self).__name__}({', '.join(f'{n}={v!r}' for n, v in zip(self._fields, self))})"

        def __getnewargs__(self) -> tuple[Any, ...]:
            return tuple(self)

    # One compiled __new__ per number of fields: a class's own is this code with its field names put in
    # (code.replace), ~1 µs where compiling it (namedtuple's eval) costs ~50 µs, for each of the ~20
    # records a tiny checkpoint builds.
    _NEW_CODE: dict[int, CodeType] = {}

    def _new_code(arity: int) -> CodeType:
        code = _NEW_CODE.get(arity)
        if code is None:
            args = ", ".join(f"_{i}" for i in range(arity))
            source = f"lambda _cls, {args}: _tuple_new(_cls, ({args}{',' if arity == 1 else ''}))"
            code = _NEW_CODE[arity] = eval(source, {"__builtins__": {}}).__code__
        return code

    def _compile_new(cls: type) -> Any:
        """The class's __new__, as collections.namedtuple writes it, installed on the class for later calls."""
        fields = cls._fields
        # The names are the class statement's own annotations: identifiers, as namedtuple requires; the
        # template's bytecode reads its arguments by position, so renaming them changes only their names.
        code = _new_code(len(fields)).replace(co_varnames=("_cls", *fields), co_name="__new__",
                                              co_qualname=f"{cls.__qualname__}.__new__")
        new = FunctionType(code, {"_tuple_new": tuple.__new__, "__builtins__": {},
                                  "__name__": f"record_{cls.__name__}"},
                           "__new__", tuple(cls._field_defaults.values()) or None)
        new.__qualname__ = f"{cls.__qualname__}.__new__"
        cls.__new__ = new
        return new

    class _RecordMeta(type):
        """Turns `class X(Record): a: str; b: int = 0` into a _Base subclass, as NamedTupleMeta does."""

        def __new__(mcls, typename: str, bases: tuple[type, ...], ns: dict[str, Any]) -> Any:
            if ns.get("_root", False):
                return super().__new__(mcls, typename, bases, ns)
            fields = tuple(ns.get("__annotations__", {}))
            defaults = {}
            for name in fields:
                if name in ns:
                    defaults[name] = ns[name]
                elif defaults:
                    raise TypeError(f"Non-default namedtuple field {name} cannot follow default field"
                                    f"{'s' if len(defaults) > 1 else ''} {', '.join(defaults)}")
                if name.startswith("_"):
                    raise ValueError(f"Field names cannot start with an underscore: {name!r}")
            body: dict[str, Any] = {
                "__slots__": (), "__module__": ns.get("__module__"), "__qualname__": ns.get("__qualname__", typename),
                "__doc__": ns.get("__doc__") or f"{typename}({', '.join(fields)})",
                "__annotations__": ns.get("__annotations__", {}),
                "_fields": fields, "_field_defaults": defaults, "__match_args__": fields}
            for index, name in enumerate(fields):
                body[name] = _tuplegetter(index, f"Alias for field number {index}")
            for key, value in ns.items():
                if key not in _OWN and key not in body:
                    body[key] = value
            return type(typename, (_Base,), body)

    class Record(metaclass=_RecordMeta):
        """Subclass it as typing.NamedTuple: `class X(Record):` with annotated fields."""

        _root = True
