"""Query template variables as Flagger resolves them, and their checking. Pure.

Flagger renders a MetricTemplate query with Go's text/template and these functions: ``name``
(the canary's name), ``namespace``, ``target`` (the workload under test), ``service``, ``ingress``,
``interval`` (the metric's interval as written) and ``variables`` (the metric's
``templateVariables``, read as ``{{ variables.NAME }}``). Go's trim markers (``{{- x -}}``) and
comments (``{{/* ... */}}``) behave as in Go. We add ``version`` and ``zone`` (a federated
rollout's canary version and the zone being queried).

Where Flagger prints ``<no value>`` for a missing variable and sends the query anyway, we refuse:
an unknown variable, or any other template action, is a spec error naming the metric.
Callers: ``core.spec`` (inline queries), ``gitops.meshrepo`` (templates against the canaries
that name them), ``metrics.templates`` (rendering, with each provider's escaping).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass

FLAGGER = ("name", "namespace", "target", "service", "ingress", "interval")
OURS = ("version", "zone")
BUILTINS = FLAGGER + OURS
KNOWN = ", ".join(BUILTINS) + ", variables.NAME"

_ACTION = re.compile(r"\{\{(.*?)\}\}", re.S)
_IDENT = r"[A-Za-z_][A-Za-z0-9_]*"
_BUILTIN = re.compile(rf"^({_IDENT})$")
_VARIABLE = re.compile(rf"^variables\.({_IDENT})$")


class TemplateError(ValueError):
    """A query that cannot be rendered; ``str()`` names the metric and the variable."""


@dataclass(frozen=True)
class Ref:
    """One ``{{ ... }}`` action of a query: a built-in, a templateVariables entry, or a comment."""

    start: int
    end: int
    text: str
    builtin: str | None = None
    variable: str | None = None
    trim_left: bool = False
    trim_right: bool = False


def _refs(query: str, metric: str) -> Iterator[Ref]:
    for m in _ACTION.finditer(query):
        inner = m.group(1)
        trim_left = inner.startswith("- ") or inner.startswith("-\n") or inner == "-"
        trim_right = inner.endswith(" -") or inner.endswith("\n-")
        body = inner[2 if trim_left else 0: len(inner) - (2 if trim_right else 0)].strip()
        if body.startswith("/*") and body.endswith("*/"):
            yield Ref(m.start(), m.end(), m.group(0), trim_left=trim_left, trim_right=trim_right)
            continue
        v = _VARIABLE.match(body)
        if v:
            yield Ref(m.start(), m.end(), m.group(0), variable=v.group(1), trim_left=trim_left, trim_right=trim_right)
            continue
        b = _BUILTIN.match(body)
        if b and b.group(1) in BUILTINS:
            yield Ref(m.start(), m.end(), m.group(0), builtin=b.group(1), trim_left=trim_left, trim_right=trim_right)
            continue
        raise TemplateError(f"metric {metric!r}: {m.group(0).strip()} is not a template variable (known: {KNOWN})")


def check(query: str, metric: str, variables: Mapping[str, str] | None) -> None:
    """Raise ``TemplateError`` when ``query`` uses a variable that is neither built in nor among
    the metric's ``templateVariables``."""
    given = variables or {}
    for ref in _refs(query, metric):
        if ref.variable is not None and ref.variable not in given:
            have = ", ".join(sorted(given)) or "none"
            raise TemplateError(f"metric {metric!r}: the query uses {{{{ variables.{ref.variable} }}}} but "
                                f"templateVariables has no {ref.variable!r} (has: {have})")


def render(query: str, metric: str, builtins: Mapping[str, str], variables: Mapping[str, str] | None,
           escape: Callable[[str], str]) -> str:
    """``query`` with every variable replaced by ``escape(value)``; ``TemplateError`` when one is
    unknown. ``escape`` is the backend's: a value can never break out of its quotes."""
    check(query, metric, variables)
    given = variables or {}
    out: list[str] = []
    pos = 0
    skip_space = False
    for ref in _refs(query, metric):
        text = query[pos:ref.start]
        if skip_space:
            text = text.lstrip()
        if ref.trim_left:
            text = text.rstrip()
        out.append(text)
        if ref.builtin is not None:
            out.append(escape(builtins[ref.builtin]))
        elif ref.variable is not None:
            out.append(escape(given[ref.variable]))
        pos = ref.end
        skip_space = ref.trim_right
    tail = query[pos:]
    out.append(tail.lstrip() if skip_space else tail)
    return "".join(out)
