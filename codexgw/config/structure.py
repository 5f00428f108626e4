# -*- test-case-name: tests.test_config -*-
"""
Structuring raw YAML data into the schema's classes with a cattrs
C{Converter} whose hooks collect L{Problem}s instead of raising at the first:
a value that is wrong is reported (at its dotted key) and its default kept, so
that every mistake in a file is found in one pass.

The hooks dispatch on the schema's types (C{str}, C{float}, C{tuple[str,
...]}, attrs classes, mappings and lists of them); what a type does not say
(a minimum, the choices, what an empty value means) comes from the field's
L{Key}. C{${NAME}} and C{${NAME:-default}} in strings read the environment.
"""

from __future__ import annotations

import difflib
import functools
import re
import types
import typing
from collections.abc import Callable, Mapping
from typing import Any

import attrs
import cattrs

from codexgw.config.meta import PLAIN, Key, blocks, fileName, keyFields, keyOf, sectionKeys
from codexgw.config.problems import Problem, describe
from codexgw.config.schema import ProfileBlocks


class _Invalid:
    def __repr__(self) -> str:
        return "INVALID"


INVALID: Any = _Invalid()
"""What a hook returns for a value it reported: the field keeps its default."""

SectionCheck = Callable[["Structurer", dict[str, Any]], None]
"""
A check of one structured section as a whole (a key that depends on
another): it reads and may amend the field values before the class is made.
"""

_ENV_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")
_PROFILE_CHOICES = {
    "url_layout": ("openai", "azure"),
    "max_tokens_field": ("max_tokens", "max_completion_tokens"),
    "image_detail_original": ("low", "high", "auto"),
}
_EMPTY_VALUES: dict[Any, Any] = {str: "", tuple: (), Mapping: {}}


def optional(t: Any) -> Any:
    """C{X} for C{X | None}; any other type unchanged."""
    if typing.get_origin(t) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(t) if a is not type(None)]
        if len(args) == 1:
            return args[0]
    return t


def isStrings(t: Any) -> bool:
    return typing.get_origin(t) is tuple and typing.get_args(t) == (str, ...)


def isStringMap(t: Any) -> bool:
    return typing.get_origin(t) is Mapping and typing.get_args(t) == (str, str)


def isSectionList(t: Any) -> bool:
    args = typing.get_args(t)
    return (
        typing.get_origin(t) is tuple and len(args) == 2 and args[1] is ... and attrs.has(args[0])
    )


def isNamedSections(t: Any) -> bool:
    args = typing.get_args(t)
    return typing.get_origin(t) is Mapping and len(args) == 2 and attrs.has(args[1])


class Structurer:
    """
    Walks one file's data, collecting problems instead of raising.

    @ivar problems: every problem found so far, in the order found.
    """

    def __init__(
        self,
        source: str,
        environ: Mapping[str, str],
        checks: Mapping[type, SectionCheck] | None = None,
    ) -> None:
        self.source = source
        self.environ = environ
        self.checks = checks or {}
        self.problems: list[Problem] = []
        self.positions: dict[str, list[int]] = {}
        """Where in its list (C{models[3]}) each item kept of a list of sections was."""
        self._where = [""]
        self._keys = [PLAIN]
        c = cattrs.Converter()
        c.register_structure_hook(str, lambda v, _: self.string(self.where, v))
        c.register_structure_hook(float, lambda v, _: self.number(self.where, v))
        c.register_structure_hook(int, lambda v, _: self.integer(self.where, v))
        c.register_structure_hook(bool, lambda v, _: self.boolean(self.where, v))
        c.register_structure_hook(ProfileBlocks, lambda v, _: self.profiles(v))
        c.register_structure_hook_func(isStrings, lambda v, _: self.strings(self.where, v))
        c.register_structure_hook_func(isStringMap, lambda v, _: self.stringMap(v))
        c.register_structure_hook_func(isSectionList, self.sectionList)
        c.register_structure_hook_func(isNamedSections, self.namedSections)
        c.register_structure_hook_factory(attrs.has, self._sectionHook)
        self.converter = c

    # -- where we are ------------------------------------------------------

    @property
    def where(self) -> str:
        """The dotted key of the value being structured."""
        return self._where[-1]

    @property
    def key(self) -> Key:
        """The L{Key} of the field being structured."""
        return self._keys[-1]

    def problem(self, key: str, message: str) -> None:
        self.problems.append(Problem(self.source, key, message))

    def structure(self, value: Any, t: Any, where: str, key: Key | None = None) -> Any:
        """C{value} as C{t}, reporting problems at C{where}; L{INVALID} if wrong."""
        self._where.append(where)
        self._keys.append(key or self.key)
        try:
            return self.converter.structure(value, t)
        finally:
            self._where.pop()
            self._keys.pop()

    # -- plain values ------------------------------------------------------

    def interpolate(self, key: str, value: str) -> str:
        def sub(m: re.Match[str]) -> str:
            name, default = m.group(1), m.group(2)
            value = self.environ.get(name)
            # As in the shell: ${VAR:-default} also replaces an empty value.
            if value and default is not None:
                return value
            if default is not None:
                return default
            if value is not None:
                return value
            self.problem(
                key,
                f"environment variable {name} is not set (write ${{{name}:-}} to make it optional)",
            )
            return ""

        return _ENV_REF.sub(sub, value)

    def string(self, key: str, value: Any) -> Any:
        if not isinstance(value, str):
            self.problem(key, f"expected a string, got {describe(value)}")
            return INVALID
        return self.interpolate(key, value)

    def number(self, key: str, value: Any) -> Any:
        if isinstance(value, str):
            value = self.interpolate(key, value)
            try:
                value = float(value)
            except ValueError:
                pass
        if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
            self.problem(key, f"expected a non-negative number of seconds, got {value!r}")
            return INVALID
        return float(value)

    def integer(self, key: str, value: Any) -> Any:
        """A whole number of at least the field's C{minimum} (1, or 0 where 0 is off)."""
        zero = self.key.minimum == 0
        if isinstance(value, str):
            value = self.interpolate(key, value)
            try:
                value = int(value)
            except ValueError:
                pass
        if isinstance(value, bool) or not isinstance(value, int) or value < (0 if zero else 1):
            expected = "a whole number (0 for none)" if zero else "a positive whole number"
            self.problem(key, f"expected {expected}, got {value!r}")
            return INVALID
        return value

    def boolean(self, key: str, value: Any) -> Any:
        if isinstance(value, str):
            value = {"true": True, "false": False}.get(self.interpolate(key, value).lower(), value)
        if not isinstance(value, bool):
            self.problem(key, f"expected true or false, got {value!r}")
            return INVALID
        return value

    def strings(self, key: str, value: Any) -> Any:
        """A list of strings; an item that is wrong or empty is left out."""
        if not isinstance(value, list):
            self.problem(key, f"expected a list of {self.key.noun}, got {describe(value)}")
            return INVALID
        out = []
        for i, item in enumerate(value):
            s = self.string(f"{key}[{i}]", item)
            if s is not INVALID and s:
                out.append(s)
        check = self.key.itemCheck
        for i, item in enumerate(out):
            message = check(item) if check is not None else None
            if message is not None:
                self.problem(f"{key}[{i}]", message)
        return tuple(out)

    def mapping(self, key: str, value: Any) -> Any:
        if not isinstance(value, dict):
            self.problem(key, f"expected a mapping, got {describe(value)}")
            return INVALID
        return value

    def stringMap(self, value: Any) -> Any:
        """Strings by name (headers); a value that is wrong is left out."""
        where = self.where
        if self.mapping(where, value) is INVALID:
            return INVALID
        out: dict[str, str] = {}
        for name, item in value.items():
            s = self.string(f"{where}.{name}", item)
            if s is not INVALID:
                out[str(name)] = s
        return out

    def unknown(self, data: Mapping[Any, Any], prefix: str, known: tuple[str, ...]) -> None:
        """Report every key of C{data} not in C{known}, with the nearest as a hint."""
        for name in data:
            if name not in known:
                close = difflib.get_close_matches(str(name), known, n=1)
                hint = f"did you mean {close[0]!r}? " if close else ""
                self.problem(
                    f"{prefix}{name}", f"unknown key ({hint}expected one of: {', '.join(known)})"
                )

    # -- sections ----------------------------------------------------------

    def _sectionHook(self, cls: type) -> Callable[[Any, Any], Any]:
        return lambda value, _: self.section(cls, value)

    def section(self, cls: type, data: Any, **extra: Any) -> Any:
        """An instance of the attrs class C{cls} (with C{extra} fields), or L{INVALID}."""
        later: list[Callable[[], None]] = []
        values = self.fields(cls, data, later)
        if values is INVALID:
            return INVALID
        values.update(extra)
        check = self.checks.get(cls)
        if check is not None:
            check(self, values)
        for run in later:
            run()
        return cls(**values)

    def fields(self, cls: type, data: Any, later: list[Callable[[], None]]) -> Any:
        """
        The field values of C{cls} that C{data} gives, structured; a field
        not given, or given wrong, is left out (so keeps its default), but a
        required one gets its type's empty value. The checks of the values
        (choices, C{check}) are added to C{later}, to run after the section's
        own check: a key's problems are reported in the order the keys are.
        """
        where = self.where
        prefix = f"{where}." if where else ""
        if self.mapping(where, data) is INVALID:
            return INVALID
        self.unknown(data, prefix, sectionKeys(cls))
        holders: dict[str | None, tuple[str, Mapping[str, Any]]] = {None: (prefix, data)}
        for block in blocks(cls):
            raw = data.get(block)
            sub = {} if raw is None else self.mapping(f"{prefix}{block}", raw)
            sub = {} if sub is INVALID else sub
            self.unknown(
                sub, f"{prefix}{block}.", tuple(fileName(f) for f in keyFields(cls, block))
            )
            holders[block] = (f"{prefix}{block}.", sub)
        values: dict[str, Any] = {}
        for f in attrs.fields(cls):
            k = keyOf(f)
            if k.derived:
                continue
            at, holder = holders[k.section]
            path = at + fileName(f)
            raw = holder.get(fileName(f))
            if raw is not None and not (k.falsyIsAbsent and not raw):
                value = self.value(f, k, raw, path)
                later.append(functools.partial(self.check, k, value, path))
                if value is not INVALID:
                    values[f.name] = value
            if k.required is not None and not values.get(f.name):
                self.problem(path, k.required)
            if f.default is attrs.NOTHING and f.name not in values:
                values[f.name] = _EMPTY_VALUES.get(typing.get_origin(f.type) or f.type)
        return values

    def value(self, f: attrs.Attribute[Any], k: Key, raw: Any, path: str) -> Any:
        """One field's value from C{raw}, checked as its L{Key} says."""
        t = optional(k.shape or f.type)
        value = self.structure(raw, t, path, k)
        if value is INVALID:
            return INVALID
        if k.emptyIsNone and not (raw if attrs.has(t) else value):
            return None
        return value

    def check(self, k: Key, value: Any, path: str) -> None:
        """What the L{Key} says of a structured value beyond its type."""
        if value is INVALID or value is None:
            return
        if k.choices and value not in k.choices:
            expected = k.expected or _either(k.choices)
            self.problem(path, f"expected {expected}, got {value!r}")
        elif k.check is not None:
            message = k.check(value)
            if message is not None:
                self.problem(path, message)

    def sectionList(self, value: Any, t: Any) -> Any:
        """A list of sections (C{models[]}); an item that is wrong is left out."""
        where, (cls, _) = self.where, typing.get_args(t)
        if not isinstance(value, list):
            self.problem(where, f"expected a list of {self.key.noun}, got {describe(value)}")
            return INVALID
        out, kept = [], []
        for i, item in enumerate(value):
            s = self.structure(item, cls, f"{where}[{i}]")
            if s is not INVALID:
                out.append(s)
                kept.append(i)
        self.positions[where] = kept
        return tuple(out)

    def namedSections(self, value: Any, t: Any) -> Any:
        """Sections by name (C{upstreams.<name>}), each told its name."""
        where, (_, cls) = self.where, typing.get_args(t)
        if self.mapping(where, value) is INVALID:
            return INVALID
        out = {}
        for name, raw in value.items():
            check = self.key.nameCheck
            message = check(str(name)) if check is not None else None
            if message is not None:
                self.problem(f"{where}.{name}", message)
                continue
            self._where.append(f"{where}.{name}")
            try:
                s = self.section(cls, raw, name=str(name))
            finally:
                self._where.pop()
            if s is not INVALID:
                out[str(name)] = s
        return out

    # -- provider profiles -------------------------------------------------

    def profiles(self, value: Any) -> Any:
        where = self.where
        if self.mapping(where, value) is INVALID:
            return INVALID
        return {str(name): self.profile(f"{where}.{name}", raw) for name, raw in value.items()}

    def profile(self, path: str, data: Any) -> dict[str, Any]:
        """
        One user profile's fields, each checked for its type (a quoted
        "false" is a string, and truthy) and interpolated, so that every
        mistake is reported at once; the inheritance is L{buildProfiles}'s.
        """
        if self.mapping(path, data) is INVALID:
            return {}
        self.unknown(data, path + ".", ProfileBlocks.keys())
        kinds = {f.name: str(f.type) for f in ProfileBlocks.fields(everything=True)}
        kinds["extends"] = "str"
        out: dict[str, Any] = {}
        for name, value in data.items():
            kind = kinds.get(name)
            where = f"{path}.{name}"
            if kind is None:
                continue
            if value is None and "None" in kind:
                out[name] = None
                continue
            checked: Any
            if kind == "bool":
                checked = self.boolean(where, value)
            elif kind.startswith("int"):
                checked = self.integer(where, value)
            elif kind.startswith("tuple"):
                checked = self.strings(where, value)
            elif kind.startswith("Mapping"):
                checked = self.mapping(where, value)
                if checked is not INVALID:
                    checked = {
                        str(k): v
                        for k, v in ((k, self.string(f"{where}.{k}", v)) for k, v in value.items())
                        if v is not INVALID
                    }
            else:
                checked = self.string(where, value)
                choices = _PROFILE_CHOICES.get(name)
                if checked is not INVALID and choices and checked not in choices:
                    self.problem(where, f"expected one of {', '.join(choices)}, got {checked!r}")
                    checked = INVALID
            if checked is not INVALID:
                out[name] = checked
        return out


def _either(choices: tuple[str, ...]) -> str:
    """C{a, b or c}."""
    return ", ".join(choices[:-1]) + " or " + choices[-1]
