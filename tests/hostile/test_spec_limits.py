"""Hostile spec files through the installed ``fedctl validate``: every one ends at once with one
line ``FILE: field: message``, exit 2, no traceback, in bounded time and memory (peak RSS of the
child alone, tests/peakrss.py)."""

from __future__ import annotations

import copy
import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from federation import specfiles
from federation.core import plan
from federation.core import spec as specs
from federation.core.errors import SpecError
from federation.core.spec import BASIS_POINTS
from tests.cli import installed
from tests.peakrss import Measured

ROOT = Path(__file__).resolve().parents[2]
CANARY = (ROOT / "clusters/canaries/frontend.yaml").read_text()
RSS_LIMIT_KIB = 400 * 1024  # the interpreter with pydantic and ruamel is ~60 MiB; a bomb was 3 GB


def validate_rss(path: str | Path, timeout: float = 300) -> tuple[int, str, int, float]:
    """Exit code, stderr, peak RSS (KiB, of the child alone: tests/peakrss.py) and wall time of the
    installed ``fedctl validate``. ``timeout`` only guards against a hang (an unbounded read never
    ends); speed is measured in docs/limits.md and benchmarks, never asserted here (a loaded machine
    is slow)."""
    t0 = time.monotonic()
    tmp = Path(os.environ.get("TMPDIR", "/tmp"))
    errf = tmp / f"fed-hostile-{os.getpid()}.err"
    with open(os.devnull, "wb") as null, open(errf, "wb") as err:
        run = Measured([installed(), "validate", str(path)], tmp / f"fed-hostile-{os.getpid()}.rss",
                       stdout=null, stderr=err, cwd=ROOT)
        try:
            code = run.wait(timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"fedctl validate {path} still running after {timeout}s") from None
    text = errf.read_text()
    errf.unlink()
    rss = run.peak_kib()
    run.rss_file.unlink()
    return code, text, rss, time.monotonic() - t0


def one_line(code: int, err: str, path: str | Path) -> str:
    assert code == 2, err
    assert "Traceback" not in err
    lines = err.strip().splitlines()
    assert len(lines) == 1, lines
    assert lines[0].startswith(f"{path}: "), lines[0]
    return lines[0]


def test_dev_zero_ends_at_once_with_one_line():
    code, err, rss, took = validate_rss("/dev/zero")
    line = one_line(code, err, "/dev/zero")
    assert "larger than 1024 KiB" in line
    assert rss < RSS_LIMIT_KIB, (rss, took)


def test_a_file_over_one_mib_is_not_parsed(tmp_path: Path):
    big = tmp_path / "big.yaml"
    big.write_text(CANARY + "\n# " + "x" * (1024 * 1024) + "\n")
    line = one_line(*validate_rss(big)[:2], big)
    assert line.endswith("file is larger than 1024 KiB (the limit for spec files)")


def bomb(levels: int = 9) -> str:
    lines = ['a0: &a0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    for i in range(1, levels):
        lines.append(f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 9) + "]")
    return "\n".join(lines) + "\n"


@pytest.mark.parametrize("where", ["top", "metric-template-variables"])
def test_alias_bomb_is_refused_while_composing(tmp_path: Path, where: str):
    f = tmp_path / "bomb.yaml"
    text = CANARY + "\n" + bomb() if where == "top" else "---\n" + bomb() + "---\n" + CANARY
    f.write_text(text)
    assert len(text) < 4096  # a few hundred bytes of aliases: 9**9 nodes when expanded
    code, err, rss, took = validate_rss(f)
    line = one_line(code, err, f)
    assert "more than 100000 YAML nodes (aliases counted as expanded)" in line
    assert rss < RSS_LIMIT_KIB, (rss, took)


def test_benign_aliases_still_load(tmp_path: Path):
    text = "a: &x {k: 1}\nb: *x\nc: [*x, *x]\n"
    assert specfiles.parse_documents(text, "f") == [{"a": {"k": 1}, "b": {"k": 1}, "c": [{"k": 1}, {"k": 1}]}]


@pytest.mark.parametrize("style", ["flow", "block"])
def test_deep_nesting_is_one_line_not_a_recursion_error(tmp_path: Path, style: str):
    f = tmp_path / "deep.yaml"
    if style == "flow":
        f.write_text("a: " + "[" * 500 + "]" * 500 + "\n")
    else:
        f.write_text("a:" + "".join("\n" + "  " * i + "k:" for i in range(1, 500)) + " 1\n")
    code, err, rss, took = validate_rss(f)
    assert "nested deeper than 64 levels" in one_line(code, err, f)
    assert rss < RSS_LIMIT_KIB, (rss, took)


def test_sixty_four_levels_are_fine():
    text = "a: " + "[" * 63 + "]" * 63
    assert specfiles.parse_documents(text, "f")


def test_many_metrics_are_one_line(tmp_path: Path):
    extra = "".join(f"      - name: m{i}\n        query: up\n        thresholdRange: {{min: 1}}\n" for i in range(101))
    text = CANARY.replace("    metrics:\n", "    metrics:\n" + extra, 1)
    assert text != CANARY
    f = tmp_path / "many.yaml"
    f.write_text(text)
    line = one_line(*validate_rss(f)[:2], f)
    assert "spec.analysis.metrics: List should have at most 100 items" in line


def test_stepweight_rounding_to_zero_bp_never_reaches_plan(tmp_path: Path):
    """The issue's first example: a step below 1 bp made plan and the hub loop forever."""
    f = tmp_path / "tiny.yaml"
    f.write_text(CANARY.replace("stepWeight: 10", "stepWeight: 0.00000001"))
    assert "stepWeight: 0.00000001" in f.read_text()
    p = subprocess.run([installed(), "plan", str(f), "--fleet", "clusters/fleet.yaml"], capture_output=True, text=True,
                       cwd=ROOT, timeout=60)
    assert p.returncode == 2 and "Traceback" not in p.stderr
    assert "stepWeight must be at least 0.01 (one basis point)" in p.stderr


@settings(max_examples=300, deadline=2000, suppress_health_check=[HealthCheck.too_slow])
@given(st.text(alphabet=st.sampled_from(list("[]{}&*!|>-:?,'\"\n #ab01.\t")), max_size=400))
def test_fuzzed_yaml_gives_a_spec_error_or_documents(text: str):
    try:
        docs = specfiles.parse_documents(text, "fuzz.yaml")
    except SpecError as exc:
        assert len(exc.problems) == 1 and exc.problems[0].file == "fuzz.yaml"
        return
    for i, d in enumerate(docs):
        try:
            specfiles.parse(d, "fuzz.yaml", i)
        except SpecError as exc:
            assert all(p.file == "fuzz.yaml" for p in exc.problems)


# ----------------------------------------------------------------------------- structure-aware fuzzing

FLEET = (ROOT / "clusters/fleet.yaml").read_text()
_CANARY_DOC = specfiles.parse_documents(CANARY, "frontend.yaml")[0]
_FLEET_DOC = specfiles.parse_documents(FLEET, "fleet.yaml")[0]
_FLEET_MODEL = specfiles.parse(_FLEET_DOC, "fleet.yaml")

# Values a hand-written spec gets wrong: types, signs, magnitudes, durations, names, NaN and infinity.
_odd = (st.none() | st.booleans() | st.integers(-(10**30), 10**30) | st.floats(allow_nan=True, allow_infinity=True)
        | st.sampled_from(["", "0", "-1", "1e400", "10m", "-5s", "99999999h", "1.5.5", "nan", "inf", "100%",
                           "a" * 300, "v1\nv2", "../x", "eks", "vms", "request-success-rate", "{{ .x }}"])
        | st.text(max_size=30))
_values = st.recursive(_odd, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner,
                                                                                          max_size=4), max_leaves=12)


def _nodes(doc: Any, at: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    yield at
    if isinstance(doc, dict):
        for k, v in doc.items():
            yield from _nodes(v, (*at, k))
    elif isinstance(doc, list):
        for i, v in enumerate(doc):
            yield from _nodes(v, (*at, i))


@st.composite
def _mutated(draw: st.DrawFn, base: Any) -> Any:
    """``base`` with one to three fields replaced by odd values, deleted, or joined by an unknown key."""
    doc = copy.deepcopy(base)
    for _ in range(draw(st.integers(1, 3))):
        at = draw(st.sampled_from(list(_nodes(doc))))
        if not at:
            continue
        parent = doc
        for k in at[:-1]:
            parent = parent[k]
        how = draw(st.sampled_from(["replace", "replace", "delete", "unknown"]))
        if how == "replace":
            parent[at[-1]] = draw(_values)
        elif how == "delete":
            del parent[at[-1]]
        elif isinstance(parent[at[-1]], dict):
            parent[at[-1]][draw(st.text(min_size=1, max_size=12))] = draw(_values)
    return doc


def _clear(exc: SpecError, filename: str) -> None:
    assert exc.problems
    for p in exc.problems:
        assert p.file == filename and p.message and "\n" not in str(p) and "Traceback" not in p.message, p


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_mutated(_CANARY_DOC) | _mutated(_FLEET_DOC))
def test_fuzzed_spec_fields_give_clear_problems_or_a_spec_that_plans(doc: Any):
    """A valid canary or fleet with fields replaced, deleted or added: the loader answers with problems
    naming the file, one line each, or a spec the rest of the hub can use (checked against the fleet,
    planned) without an exception of any other kind."""
    try:
        model = specfiles.parse(doc, "fuzz.yaml")
    except SpecError as exc:
        _clear(exc, "fuzz.yaml")
        return
    if isinstance(model, specs.FederatedCanary):
        assert isinstance(_FLEET_MODEL, specs.Fleet)
        for field, message in specs.check_against_fleet(model, _FLEET_MODEL):
            assert isinstance(field, str) and message and "\n" not in message
        steps = plan.plan(model.spec, _FLEET_MODEL)
        assert steps and all(sum(s.weights.values()) == BASIS_POINTS for s in steps)
    # what loads survives the text round trip the CLI reads
    try:
        specfiles.load_text(specfiles.dump([doc]), "fuzz.yaml")
    except SpecError as exc:
        _clear(exc, "fuzz.yaml")


@pytest.mark.parametrize("kind", ["[]", "{a: 1}", "[Fleet]"])
def test_a_kind_that_is_a_list_or_a_mapping_is_one_line(tmp_path: Path, kind: str):
    """Found by the fuzzing above: ``kind: []`` raised TypeError (unhashable) out of the loader, a
    traceback from ``fedctl validate``."""
    f = tmp_path / "k.yaml"
    f.write_text(f"apiVersion: federation.io/v1alpha1\nkind: {kind}\nmetadata: {{name: x}}\n")
    with pytest.raises(SpecError) as exc:
        specfiles.load(f)
    assert str(exc.value) == f"{f}: kind: unknown kind {specfiles.parse_documents(f.read_text(), 'k')[0]['kind']!r}; " \
        "expected one of " + ", ".join(specfiles.KINDS)


def test_a_newline_in_an_unknown_key_stays_on_one_line(tmp_path: Path):
    """Found by the fuzzing above: the key was printed raw, so one problem took two lines (and could
    forge a second ``FILE: field: message`` line)."""
    f = tmp_path / "n.yaml"
    f.write_text(CANARY.replace("metadata:\n", 'metadata:\n  "x\\ny: forged": 1\n', 1))
    code, err, _, _ = validate_rss(f)
    line = one_line(code, err, f)
    assert line == f"{f}: metadata['x\\ny: forged']: unknown field; known fields: name, namespace, labels, annotations"
