"""A griffe extension for the API reference: gives every attrs class the ``__init__`` attrs generates, so
the ``:param name:`` lines of its docstring are matched against real parameters (a documented field that
does not exist fails the strict docs build, as it does for functions).

Loaded by mkdocs.yml (``extensions: [docs/_tools/griffe_attrs.py]``); not part of the site.
"""

from __future__ import annotations

from typing import Any

import griffe

_DECORATORS = {
    "attrs.frozen",
    "attrs.define",
    "attrs.mutable",
    "attr.s",
    "attr.attrs",
    "attr.frozen",
    "attr.define",
}
_FIELD_CALLS = {"attrs.field", "attr.ib", "attr.field"}


def _attrs_decorator(cls: griffe.Class) -> griffe.Expr | str | None:
    for decorator in cls.decorators:
        value = decorator.value
        target = value.function if isinstance(value, griffe.ExprCall) else value
        path = target.canonical_path if isinstance(target, griffe.Expr) else str(target)
        if path in _DECORATORS:
            return value
    return None


def _call_arguments(value: object) -> dict[str, Any]:
    if not isinstance(value, griffe.ExprCall):
        return {}
    return {
        argument.name: argument.value
        for argument in value.arguments
        if isinstance(argument, griffe.ExprKeyword)
    }


def _own_parameters(cls: griffe.Class) -> list[griffe.Parameter]:
    kw_only = str(_call_arguments(_attrs_decorator(cls)).get("kw_only")) == "True"
    parameters = []
    for member in cls.members.values():
        if member.is_alias or not member.is_attribute or member.annotation is None:
            continue
        if "class-attribute" in member.labels and "instance-attribute" not in member.labels:
            continue  # ClassVar
        value = member.value
        field: dict[str, Any] = {}
        if isinstance(value, griffe.ExprCall) and value.function.canonical_path in _FIELD_CALLS:
            field = _call_arguments(value)
        if str(field.get("init")) == "False":
            continue
        if "factory" in field:
            default: Any = griffe.ExprCall(function=field["factory"], arguments=[])
        else:
            default = field.get("default", None if field else value)
        name = str(field["alias"]).strip("'\"") if "alias" in field else member.name.lstrip("_")
        kind = (
            griffe.ParameterKind.keyword_only
            if kw_only or str(field.get("kw_only")) == "True"
            else griffe.ParameterKind.positional_or_keyword
        )
        parameters.append(griffe.Parameter(name, annotation=member.annotation, kind=kind, default=default))
    return parameters


def _set_init(cls: griffe.Class) -> None:
    if "__init__" in cls.members or _attrs_decorator(cls) is None:
        return
    try:
        ancestors = [parent for parent in reversed(cls.mro()) if _attrs_decorator(parent) is not None]
    except ValueError:
        ancestors = []
    by_name: dict[str, griffe.Parameter] = {}
    for owner in [*ancestors, cls]:
        for parameter in _own_parameters(owner):
            by_name[parameter.name] = parameter
    ordered = sorted(
        by_name.values(), key=lambda parameter: parameter.kind is griffe.ParameterKind.keyword_only
    )
    self_parameter = griffe.Parameter("self", kind=griffe.ParameterKind.positional_or_keyword)
    init = griffe.Function(
        "__init__",
        lineno=0,
        endlineno=0,
        parent=cls,
        parameters=griffe.Parameters(self_parameter, *ordered),
        returns="None",
    )
    cls.set_member("__init__", init)


def _walk(obj: griffe.Module | griffe.Class, seen: set[str]) -> None:
    if obj.path in seen:
        return
    seen.add(obj.path)
    if isinstance(obj, griffe.Class):
        _set_init(obj)
    for member in obj.members.values():
        if not member.is_alias and (member.is_module or member.is_class):
            _walk(member, seen)  # type: ignore[arg-type]


class AttrsInit(griffe.Extension):
    """Re-create the ``__init__`` of attrs classes during static analysis."""

    def on_package(self, *, pkg: griffe.Module, **kwargs: Any) -> None:
        _walk(pkg, set())
