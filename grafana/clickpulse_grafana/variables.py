"""What happens to a panel's SQL in the browser, before the plugin's backend sees it.

The ClickHouse plugin v4.20 (src/data/CHDatasource.ts, applyTemplateVariables) first expands
`$__conditionalAll(condition, $var)` on the raw text (applyConditionalAll), then lets Grafana
interpolate the variables (templateSrv.replace with the plugin's own default format). In
Grafana 11.6 dashboards are scenes, so the interpolation is @grafana/scenes' sceneInterpolator
(variables/interpolation/sceneInterpolator.ts) with its formatRegistry.ts."""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

from clickpulse_grafana.time_range import TimeRange

ALL = "$__all"
Value = Sequence[str] | str


@dataclass(frozen=True)
class Variables:
    """Each template variable's current value: a list for a multi-value variable (its
    selection; ALL for "All"), a string for a single-value one (a textbox). `options` holds a
    query variable's options, which is what "All" stands for outside `$__conditionalAll`."""

    values: Mapping[str, Value] = field(default_factory=dict)
    options: Mapping[str, Sequence[str]] = field(default_factory=dict)
    # The variables the dashboard defines; Grafana leaves a reference to any other as it is.
    declared: frozenset[str] = frozenset({"service", "endpoint", "region", "trace_id"})

    def defines(self, name: str) -> bool:
        return name in self.declared or name in self.values or name in self.options

    def current(self, name: str) -> Value:
        """The dashboards' query variables start at "All" (panel_model.query_variable)."""
        return self.values.get(name, [ALL])

    def value(self, name: str) -> Value:
        """What the interpolator formats: scenes' MultiValueVariable.getValue() gives the
        options' values for "All" when the variable has no custom all value."""
        current = self.current(name)
        if isinstance(current, str):
            return current
        if ALL in current:
            if name not in self.options:
                raise ValueError(
                    f"${name} is 'All' outside $__conditionalAll: Grafana would put all of its "
                    "options there; pass them as Variables(options=...)"
                )
            return list(self.options[name])
        return list(current)


# @grafana/scenes variables/constants.ts VARIABLE_REGEX: $var, [[var:fmt]], ${var.path:fmt}.
_VARIABLE = re.compile(
    r"\$(\w+)|\[\[(\w+?)(?::(\w+))?\]\]|\$\{(\w+)(?:\.([^:^\}]+))?(?::([^\}]+))?\}"
)


def _quote_each(quote: str, escape: Callable[[str], str]) -> Callable[[Value], str]:
    def formatter(value: Value) -> str:
        items = [value] if isinstance(value, str) else value
        return ",".join(quote + escape(item) + quote for item in items)

    return formatter


def _joined(separator: str) -> Callable[[Value], str]:
    return lambda value: value if isinstance(value, str) else separator.join(value)


def _plugin_default(value: Value) -> str:
    """CHDatasource.format, the plugin's default: a list becomes 'a','b' with nothing escaped,
    a single value is left as it is."""
    return value if isinstance(value, str) else "'" + "','".join(value) + "'"


# formatRegistry.ts of @grafana/scenes 6.x. sqlstring doubles single quotes and puts a
# backslash before double quotes (SQL_ESCAPE_MAP), and leaves backslashes alone: `a\b` stays
# `'a\b'`, which ClickHouse reads as "a", backspace.
FORMATS: dict[str, Callable[[Value], str]] = {
    "sqlstring": _quote_each("'", lambda v: v.replace("'", "''").replace('"', '\\"')),
    "singlequote": _quote_each("'", lambda v: v.replace("'", "\\'")),
    "doublequote": _quote_each('"', lambda v: v.replace('"', '\\"')),
    "csv": _joined(","),
    "pipe": _joined("|"),
    "raw": _joined(","),
    "json": lambda v: v if isinstance(v, str) else json.dumps(list(v), separators=(",", ":")),
}


def _builtin(name: str, time_range: TimeRange) -> str | None:
    """Grafana's own variables that a query may use (scenes macros/timeMacros.ts and the
    __interval scoped vars of SceneQueryRunner)."""
    return {
        "__interval": time_range.interval_text,
        "__interval_ms": str(time_range.interval_ms),
        "__from": str(time_range.from_ms),
        "__to": str(time_range.to_ms),
    }.get(name)


def interpolate(sql: str, variables: Variables, time_range: TimeRange) -> str:
    """sceneInterpolator: every reference to a known variable is formatted; anything else (the
    plugin's `$__timeFilter`, `$__interval_s`, ...) is left for the backend."""

    def replace(match: re.Match[str]) -> str:
        name = match.group(1) or match.group(2) or match.group(4)
        fmt = match.group(3) or match.group(6)
        if match.group(5):
            raise ValueError(f"{match.group(0)}: field paths are not modelled here")
        builtin = _builtin(name, time_range)
        if builtin is not None:
            if fmt:
                raise ValueError(
                    f"{match.group(0)}: formats of Grafana's built-ins are not modelled"
                )
            return builtin
        if name.startswith("__"):
            return match.group(0)
        if not variables.defines(name):
            return match.group(0)
        value = variables.value(name)
        if fmt is None:
            return _plugin_default(value)
        formatter = FORMATS.get(fmt.split(":")[0])
        if formatter is None:
            raise ValueError(
                f"{match.group(0)}: format {fmt!r} is not modelled ({sorted(FORMATS)})"
            )
        return formatter(value)

    return _VARIABLE.sub(replace, sql)


_CONDITIONAL_ALL = "$__conditionalAll("
# CHDatasource.applyConditionalAll: the variable is the first ${name} or $name of the second
# argument; `${name:format}` matches neither, so such a condition is always kept.
_CONDITION_VARIABLE = re.compile(r"(?<=\$\{)\w+(?=\})|(?<=\$)\w+")


def _macro_args(text: str, open_paren: int) -> list[str]:
    """CHDatasource.getMacroArgs: splits on commas at depth one, counting every bracket, even
    inside quotes; arguments keep their spaces. No closing bracket: no arguments."""
    args: list[str] = []
    depth, last = 0, open_paren + 1
    for match in re.finditer(r"[(),]", text[open_paren:]):
        index = open_paren + match.start()
        token = match.group(0)
        depth += {"(": 1, ")": -1}.get(token, 0)
        if token == "," and depth == 1:
            args.append(text[last:index])
            last = index + 1
        if depth == 0:
            args.append(text[last:index])
            return args
    return []


def _js_replacement(replacement: str, before: str, matched: str, after: str) -> str:
    """String.prototype.replace with a string pattern reads `$$`, `$&`, `` $` `` and `$'` in
    the replacement (ECMAScript GetSubstitution); the plugin passes the condition there."""
    specials = {"$": "$", "&": matched, "`": before, "'": after}
    return re.sub(r"\$([$&`'])", lambda m: specials[m.group(1)], replacement)


def apply_conditional_all(sql: str, variables: Variables) -> str:
    """`$__conditionalAll(condition, $var)` becomes `1=1` when $var is "All" or empty, else the
    condition, innermost (last) call first. A call without exactly two arguments stops the
    plugin's loop and leaves it (and every call before it) in the SQL; ClickHouse then fails
    on it, so this raises instead."""
    index = sql.rfind(_CONDITIONAL_ALL)
    while index != -1:
        params = _macro_args(sql, index + len(_CONDITIONAL_ALL) - 1)
        if len(params) != 2:
            raise ValueError(
                f"$__conditionalAll at {index} needs two arguments, the plugin leaves it in "
                f"the SQL unexpanded: {sql[index : index + 60]!r}"
            )
        phrase = params[0]
        variable = _CONDITION_VARIABLE.search(params[1].strip())
        if variable and variables.defines(variable.group(0)):
            current = variables.current(variable.group(0))
            shown = current if isinstance(current, str) else ",".join(current)
            if shown in ("", ALL):
                phrase = "1=1"
        call = f"{_CONDITIONAL_ALL}{params[0]},{params[1]})"
        at = sql.index(call)
        before, after = sql[:at], sql[at + len(call) :]
        sql = before + _js_replacement(phrase, before, call, after) + after
        index = sql.rfind(_CONDITIONAL_ALL)
    return sql
