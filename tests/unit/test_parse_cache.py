"""Spec files are parsed once per content: discovery re-reads every file every few seconds."""

from __future__ import annotations

from pathlib import Path

import pytest

from federation import specfiles
from federation.core.errors import SpecError

CANARY = (Path(__file__).resolve().parents[2] / "clusters/canaries/frontend.yaml").read_text()


@pytest.fixture
def parses(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    monkeypatch.setattr(specfiles, "PARSED", specfiles._Parsed())
    seen: list[str] = []
    real = specfiles._parse_documents

    def counting(text: str, filename: str) -> list[object]:
        seen.append(filename)
        return real(text, filename)

    monkeypatch.setattr(specfiles, "_parse_documents", counting)
    return seen


def test_the_same_text_is_parsed_once_and_each_caller_gets_its_own_copy(parses: list[str]):
    first = specfiles.load_text(CANARY, "canaries/frontend.yaml")
    docs = specfiles.parse_documents(CANARY, "canaries/frontend.yaml")
    docs[0]["spec"]["service"]["name"] = "changed-by-a-caller"
    again = specfiles.load_text(CANARY, "canaries/frontend.yaml")
    assert parses == ["canaries/frontend.yaml"]
    assert again[0].model_dump() == first[0].model_dump()
    assert again[0] is not first[0]
    specfiles.load_text(CANARY + "\n# edited\n", "canaries/frontend.yaml")  # new content: parsed again
    specfiles.load_text(CANARY, "canaries/other.yaml")  # problems name the file: its own entry
    assert parses == ["canaries/frontend.yaml"] * 2 + ["canaries/other.yaml"]


def test_a_refused_text_is_refused_again_without_parsing_it_again(parses: list[str]):
    bad = "a: " + "[" * 100 + "]" * 100 + "\n"
    for _ in range(3):
        with pytest.raises(SpecError, match="nested deeper than 64 levels") as info:
            specfiles.parse_documents(bad, "canaries/deep.yaml")
        assert info.value.__traceback__ is not None and len(str(info.value)) < 300
    assert parses == ["canaries/deep.yaml"]


def test_the_cache_is_bounded(parses: list[str], monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setattr(specfiles._Parsed, "MAX_ENTRIES", 3)
    for i in range(5):
        specfiles.parse_documents(f"a: {i}\n", f"f{i}.yaml")
    assert len(specfiles.PARSED.entries) == 3
    specfiles.parse_documents("a: 0\n", "f0.yaml")  # evicted: parsed again
    assert parses.count("f0.yaml") == 2
