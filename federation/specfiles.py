"""Reading spec files: YAML (ruamel.yaml, the one owner of it) into the core's models.

Every problem becomes a ``Problem(file, field.path, message)``; unknown fields get a "did you mean"
hint. Also the YAML writer used where the project renders manifests, and the round-trip editor the
GitOps room uses to change values without disturbing comments and formatting.
Callers: ``cli`` (validate, plan, render), ``hub`` and ``gitops`` (specs in repos), ``demo``.
"""

from __future__ import annotations

import copy
import difflib
import hashlib
import io
import re
import threading
import types
import typing
from collections import OrderedDict
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pydantic
from ruamel.yaml import YAML
from ruamel.yaml.composer import Composer
from ruamel.yaml.error import MarkedYAMLError, YAMLError
from ruamel.yaml.events import AliasEvent

from federation.core import spec as specs
from federation.core.errors import Problem, SpecError

KINDS: dict[str, type[specs.Model]] = {"Fleet": specs.Fleet, "FederatedCanary": specs.FederatedCanary,
                                       "ZoneRelease": specs.ZoneRelease}

# Limits on every YAML text read (spec files, ZoneReleases, MetricTemplates): a file larger than
# MAX_FILE_BYTES is not read; a document nested deeper than MAX_DEPTH or whose nodes — aliases
# counted as the size of what they name, i.e. as expanded — exceed MAX_NODES is refused while it is
# composed, before anything is built from it. See docs/limits.md.
MAX_FILE_BYTES = 1024 * 1024
MAX_DEPTH = 64
MAX_NODES = 100_000


class _Refused(Exception):
    """A limit was crossed while composing; ``str()`` is the one-line reason."""


class _BoundedComposer(Composer):
    """ruamel's composer, counting nodes as they would be expanded and the nesting depth."""

    _expanded = 0
    _nesting = 0
    _sizes: dict[Any, int]

    def _count(self, n: int) -> None:
        self._expanded += n
        if self._expanded > MAX_NODES:
            mark = self.parser.peek_event().start_mark
            raise _Refused(f"more than {MAX_NODES} YAML nodes (aliases counted as expanded) at line {mark.line + 1}; "
                           "an alias bomb?")

    def compose_node(self, parent: Any, index: Any) -> Any:
        if not hasattr(self, "_sizes"):
            self._sizes = {}
        event = self.parser.peek_event()
        if isinstance(event, AliasEvent):
            self._count(self._sizes.get(event.anchor, 1))
            return super().compose_node(parent, index)
        before = self._expanded
        self._count(1)
        self._nesting += 1
        if self._nesting > MAX_DEPTH:
            raise _Refused(f"nested deeper than {MAX_DEPTH} levels at line {event.start_mark.line + 1}")
        try:
            node = super().compose_node(parent, index)
        finally:
            self._nesting -= 1
        if event.anchor is not None:
            self._sizes[event.anchor] = self._expanded - before
        return node


def _safe_yaml() -> YAML:
    y = YAML(typ="safe", pure=True)
    y.Composer = _BoundedComposer
    return y


def _too_large() -> str:
    return f"file is larger than {MAX_FILE_BYTES // 1024} KiB (the limit for spec files)"


def dump(docs: Iterable[Any]) -> str:
    """Plain YAML text for rendered manifests (several documents separated by ---)."""
    y = YAML(typ="safe", pure=True)
    y.default_flow_style = False
    y.sort_base_mapping_type_on_output = False  # type: ignore[assignment]
    out = io.StringIO()
    y.dump_all(list(docs), out)
    return out.getvalue()


class _Parsed:
    """The last parses, keyed by (file name, SHA-256 of the text): discovery reads every spec file
    of every repo every few seconds and most never change, while parsing one near the node bound
    costs seconds of CPU (pure-Python YAML). Bounded in entries and in text held; a hit returns a
    deep copy (callers may edit what they get) or raises the same SpecError again."""

    MAX_ENTRIES = 512
    MAX_BYTES = 64 * 1024 * 1024

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.entries: OrderedDict[tuple[str, str], tuple[int, list[Any] | SpecError]] = OrderedDict()
        self.size = 0

    def get(self, key: tuple[str, str]) -> list[Any] | SpecError | None:
        with self.lock:
            hit = self.entries.get(key)
            if hit is None:
                return None
            self.entries.move_to_end(key)
            return hit[1] if isinstance(hit[1], SpecError) else copy.deepcopy(hit[1])

    def put(self, key: tuple[str, str], size: int, value: list[Any] | SpecError) -> None:
        with self.lock:
            if key in self.entries or size > self.MAX_BYTES // 8:
                return
            self.entries[key] = (size, copy.deepcopy(value) if isinstance(value, list) else value)
            self.size += size
            while len(self.entries) > self.MAX_ENTRIES or self.size > self.MAX_BYTES:
                _, (old, _) = self.entries.popitem(last=False)
                self.size -= old


PARSED = _Parsed()


def parse_documents(text: str, filename: str) -> list[Any]:
    """Every YAML document in ``text``, within the limits above; SpecError naming the file otherwise."""
    key = (filename, hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest())
    hit = PARSED.get(key)
    if isinstance(hit, SpecError):
        raise SpecError(list(hit.problems)) from None  # a new one: a raised exception keeps its traceback
    if hit is not None:
        return hit
    try:
        docs = _parse_documents(text, filename)
    except SpecError as exc:
        PARSED.put(key, len(text), exc)
        raise
    PARSED.put(key, len(text), docs)
    return docs


def _parse_documents(text: str, filename: str) -> list[Any]:
    if len(text) > MAX_FILE_BYTES or len(text.encode("utf-8", "surrogatepass")) > MAX_FILE_BYTES:
        raise SpecError([Problem(filename, "", _too_large())])
    if "\x00" in text:
        raise SpecError([Problem(filename, "", "contains a NUL byte: not a YAML text file")])
    try:
        return [d for d in _safe_yaml().load_all(text) if d is not None]
    except _Refused as exc:
        raise SpecError([Problem(filename, "", f"refused: {exc}")]) from None
    except RecursionError:
        raise SpecError([Problem(filename, "", f"refused: nested too deeply (limit {MAX_DEPTH} levels)")]) from None
    except MarkedYAMLError as exc:
        mark = exc.problem_mark
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark is not None else "?"
        raise SpecError([Problem(filename, "", f"invalid YAML at {where}: {exc.problem}")]) from None
    except YAMLError as exc:
        raise SpecError([Problem(filename, "", f"invalid YAML: {exc}")]) from None


def read_text(path: str | Path) -> str:
    """A spec file's text, reading at most MAX_FILE_BYTES + 1 bytes (``/dev/zero`` ends at once)."""
    try:
        with open(path, "rb") as f:
            raw = f.read(MAX_FILE_BYTES + 1)
    except FileNotFoundError:
        raise SpecError([Problem(str(path), "", "no such file")]) from None
    except IsADirectoryError:
        raise SpecError([Problem(str(path), "", "is a directory, not a spec file")]) from None
    except OSError as exc:
        raise SpecError([Problem(str(path), "", f"cannot read: {exc.strerror or exc}")]) from None
    if len(raw) > MAX_FILE_BYTES:
        raise SpecError([Problem(str(path), "", _too_large())])
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise SpecError([Problem(str(path), "", f"not UTF-8 text (byte {exc.start})")]) from None


def read_documents(path: str | Path) -> list[Any]:
    return parse_documents(read_text(path), str(path))


# ----------------------------------------------------------------------------- error paths


def _field_path(loc: tuple[int | str, ...]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif not str(part).isprintable() or not str(part):  # a newline in a key must not break the one line
            out += f"[{str(part)!r}]"
        else:
            out += ("." if out else "") + str(part)
    return out


def _prefixed(prefix: str, loc: tuple[int | str, ...]) -> str:
    path = _field_path(loc)
    if not prefix:
        return path
    return prefix + ("" if path.startswith("[") or not path else ".") + path


def _aliases(model: type[pydantic.BaseModel]) -> list[str]:
    return [f.alias or name for name, f in model.model_fields.items()]


def _is_model(tp: Any) -> bool:
    return isinstance(tp, type) and issubclass(tp, pydantic.BaseModel)


def _strip_optional(tp: Any) -> Any:
    args = [a for a in typing.get_args(tp) if a is not type(None)]
    if typing.get_origin(tp) in (typing.Union, types.UnionType) and len(args) == 1:
        return args[0]
    return tp


def _element(tp: Any) -> Any:
    """The element type of list[X] or dict[K, X]."""
    args = typing.get_args(tp)
    return _strip_optional(args[-1]) if args else None


def _model_at(root: type[pydantic.BaseModel], loc: tuple[int | str, ...]) -> type[pydantic.BaseModel] | None:
    """The model class reached by walking ``loc`` (aliases, list indexes, dict keys) from ``root``."""
    current: Any = root
    for part in loc:
        if _is_model(current):
            field = next((f for n, f in current.model_fields.items() if (f.alias or n) == part), None)
            if field is None:
                return None
            current = _strip_optional(field.annotation)
        else:
            current = _element(current)  # a list index or dict key: step into the element type
    return current if _is_model(current) else None


def _problems(filename: str, prefix: str, model: type[pydantic.BaseModel],
              exc: pydantic.ValidationError) -> list[Problem]:
    out: list[Problem] = []
    guessed: set[str] = set()  # "missing" paths explained by a misspelt key beside them
    for err in exc.errors(include_url=False):
        loc = tuple(err["loc"])
        # Tagged-union and function-validator noise: keep the user's own field names only.
        loc = tuple(p for p in loc if not (isinstance(p, str) and ("[" in p or p.startswith("function-"))))
        path = _prefixed(prefix, loc)
        kind = err["type"]
        msg = str(err["msg"])
        if kind == "extra_forbidden":
            parent = _model_at(model, loc[:-1])
            known = _aliases(parent) if parent is not None else []
            guess = difflib.get_close_matches(str(loc[-1]), known, n=1, cutoff=0.6)
            msg = "unknown field" + (f" (did you mean {guess[0]!r}?)" if guess else
                                      (f"; known fields: {', '.join(known)}" if known else ""))
            if guess:
                guessed.add(_prefixed(prefix, (*loc[:-1], guess[0])))
        elif kind == "missing":
            msg = "required field is missing"
        elif msg.startswith("Value error, "):
            msg = msg[len("Value error, "):]
        elif kind == "literal_error":
            msg = f"{msg} (got {err.get('input')!r})"
        out.append(Problem(filename, path, msg))
    return [p for p in out if not (p.message == "required field is missing" and p.field in guessed)]


def check(model: type[pydantic.BaseModel], data: Any, filename: str, prefix: str = "") -> list[Problem]:
    """Every problem of ``data`` as ``model`` (fields under ``prefix``); empty when valid."""
    try:
        model.model_validate(data)
    except pydantic.ValidationError as exc:
        return _problems(filename, prefix, model, exc)
    return []


def parse(doc: Any, filename: str, index: int = 0) -> specs.Model:
    """One YAML document into a Fleet or FederatedCanary; SpecError with every problem found."""
    prefix = f"[document {index + 1}] " if index else ""
    if not isinstance(doc, dict):
        raise SpecError([Problem(filename, prefix.strip(), f"expected a mapping, got {type(doc).__name__}")])
    kind = doc.get("kind")
    api = doc.get("apiVersion")
    if isinstance(api, str) and api.startswith("flagger.app/") and kind == "Canary":
        return parse_flagger_analysis(doc, filename)
    if kind == "MetricTemplate":
        try:
            return specs.MetricTemplate.model_validate(doc)
        except pydantic.ValidationError as exc:
            raise SpecError(_problems(filename, prefix, specs.MetricTemplate, exc)) from None
    if not isinstance(kind, str) or kind not in KINDS:  # a list or a mapping is no kind (and unhashable)
        hint = difflib.get_close_matches(kind, list(KINDS), n=1) if isinstance(kind, str) else []
        raise SpecError([Problem(filename, "kind", f"unknown kind {kind!r}"
                                 + (f" (did you mean {hint[0]!r}?)" if hint else f"; expected one of {', '.join(KINDS)}"))])
    if api != specs.API_VERSION:
        raise SpecError([Problem(filename, "apiVersion", f"expected {specs.API_VERSION!r}, got {api!r}")])
    model = KINDS[kind]
    try:
        return model.model_validate(doc)
    except pydantic.ValidationError as exc:
        raise SpecError(_problems(filename, "", model, exc)) from None


def parse_flagger_analysis(doc: dict[str, Any], filename: str) -> specs.Model:
    """A Flagger Canary: its ``spec.analysis`` must validate unchanged as our Analysis."""
    analysis = (doc.get("spec") or {}).get("analysis")
    if analysis is None:
        raise SpecError([Problem(filename, "spec.analysis", "required field is missing")])
    try:
        return specs.Analysis.model_validate(analysis)
    except pydantic.ValidationError as exc:
        raise SpecError(_problems(filename, "spec.analysis", specs.Analysis, exc)) from None


def load(path: str | Path) -> list[specs.Model]:
    """Every document in a file, validated; all problems of all documents in one SpecError."""
    return load_text(read_text(path), str(path))


def load_text(text: str, path: str) -> list[specs.Model]:
    """Every document in ``text`` (read from ``path``, the name problems carry), validated."""
    docs = parse_documents(text, path)
    if not docs:
        raise SpecError([Problem(str(path), "", "no YAML documents in file")])
    problems: list[Problem] = []
    out: list[specs.Model] = []
    for i, doc in enumerate(docs):
        try:
            out.append(parse(doc, str(path), i))
        except SpecError as exc:
            problems.extend(exc.problems)
    if problems:
        raise SpecError(problems)
    return out


def metric_templates(files: Iterable[tuple[str, str]]) -> dict[str, specs.MetricTemplate | str]:
    """MetricTemplates in (path, text) files, by name; an invalid one maps to its problem line
    (``path: field: message``), which a metric naming it reports. Other kinds are skipped."""
    out: dict[str, specs.MetricTemplate | str] = {}
    for path, text in files:
        try:
            docs = parse_documents(text, path)
        except SpecError:
            continue
        for i, doc in enumerate(docs):
            if not (isinstance(doc, dict) and doc.get("kind") == "MetricTemplate"):
                continue
            name = str((doc.get("metadata") or {}).get("name") or "")
            try:
                parsed = parse(doc, path, i)
            except SpecError as exc:
                if name:
                    out[name] = "; ".join(str(p) for p in exc.problems)
                continue
            assert isinstance(parsed, specs.MetricTemplate)
            out[parsed.metadata.name] = parsed
    return out


def template_queries(templates: typing.Mapping[str, specs.MetricTemplate | str]) -> dict[str, str]:
    return {n: t.spec.query for n, t in templates.items() if isinstance(t, specs.MetricTemplate)}


T = typing.TypeVar("T", bound=specs.Model)


def load_one(path: str | Path, kind: type[T]) -> T:
    found = [d for d in load(path) if isinstance(d, kind)]
    if len(found) != 1:
        name = kind.__name__
        raise SpecError([Problem(str(path), "kind", f"expected exactly one {name}, found {len(found)}")])
    return found[0]


def load_canary(path: str | Path, fleet: specs.Fleet | None = None) -> specs.FederatedCanary:
    canary = load_one(path, specs.FederatedCanary)
    if fleet is not None:
        problems = [Problem(str(path), f, m) for f, m in specs.check_against_fleet(canary, fleet)]
        if problems:
            raise SpecError(problems)
    return canary


# ----------------------------------------------------------------------------- round-trip edits


def round_trip_yaml() -> YAML:
    y = YAML()  # round-trip: keeps comments, key order, quoting and flow style
    y.Composer = _BoundedComposer
    y.preserve_quotes = True
    y.width = 4096
    return y


def edit(text: str, changes: dict[tuple[str | int, ...], Any]) -> str:
    """Set values at key paths in ``text`` (one YAML document), keeping everything else as written."""
    y = round_trip_yaml()
    data = y.load(text)
    for path, value in changes.items():
        node = data
        for key in path[:-1]:
            node = node[key]
        node[path[-1]] = value
    out = io.StringIO()
    y.dump(data, out)
    return out.getvalue()


def replace_mapping(text: str, path: tuple[str | int, ...], values: dict[str, Any]) -> str:
    """Make the mapping at ``path`` hold exactly ``values``, keeping its comments and the keys' order.

    Keys already present keep their position and any comment beside them; new keys go at the end;
    keys not in ``values`` are removed. An empty flow mapping (``{}``) becomes a block mapping.
    """
    y = round_trip_yaml()
    data = y.load(text)
    node = data
    for key in path[:-1]:
        node = node[key]
    current = node.get(path[-1])
    if current is None or not hasattr(current, "keys"):
        from ruamel.yaml.comments import CommentedMap

        current = CommentedMap()
        node[path[-1]] = current
    if hasattr(current, "fa") and not values:
        current.fa.set_flow_style()
    elif hasattr(current, "fa"):
        current.fa.set_block_style()
    for k in [k for k in current if k not in values]:
        del current[k]
    for k, v in values.items():
        current[k] = v
    out = io.StringIO()
    y.dump(data, out)
    return out.getvalue()


def ensure_listed(text: str, key: str, item: str) -> str:
    """``item`` in the top-level list ``key`` of ``text`` (added at its end when missing), everything
    else as written; the text unchanged when it is there already."""
    y = round_trip_yaml()
    if re.search(rf"^{re.escape(key)}:\s*\n {{2}}- ", text, re.MULTILINE):
        y.indent(mapping=2, sequence=4, offset=2)  # the list is written indented: keep it so
    data = y.load(text)
    if data is None or not hasattr(data, "keys"):
        from ruamel.yaml.comments import CommentedMap

        data = CommentedMap()
    current = data.get(key)
    if current is not None and item in current:
        return text
    if current is None:
        data[key] = [item]
    else:
        current.append(item)
    out = io.StringIO()
    y.dump(data, out)
    return out.getvalue()
