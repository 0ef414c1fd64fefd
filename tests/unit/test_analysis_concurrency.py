"""One zone's queries of a metric are asked at once (an analysis costs about its slowest query), and
their errors come out as asking them in turn did."""

from __future__ import annotations

import asyncio

import pytest

from federation.metrics import analysis
from federation.metrics.prometheus import NoData
from federation.metrics.templates import CountQueries


class Both:
    """Answers only once both queries are in flight: asked one after the other, it never answers."""

    def __init__(self, answers: dict[str, float | Exception]) -> None:
        self.answers = answers
        self.waiting = 0
        self.both = asyncio.Event()

    async def scalar(self, query: str, at: float | None = None) -> float:
        self.waiting += 1
        if self.waiting == 2:
            self.both.set()
        await self.both.wait()
        a = self.answers[query]
        if isinstance(a, Exception):
            raise a
        return a


def run(answers: dict[str, float | Exception]) -> tuple[float, float]:
    return asyncio.run(asyncio.wait_for(analysis._good_and_total(Both(answers), CountQueries("total", "good"), 0.0),
                                        timeout=5))  # type: ignore[arg-type]


def test_good_and_total_are_asked_at_once():
    assert run({"total": 100.0, "good": 99.0}) == (99.0, 100.0)


def test_good_counts_only_when_there_were_requests():
    assert run({"total": 0.0, "good": NoData("empty result")}) == (0.0, 0.0)
    with pytest.raises(NoData, match="empty result"):
        run({"total": 5.0, "good": NoData("empty result")})
    with pytest.raises(NoData, match="total down"):
        run({"total": NoData("total down"), "good": NoData("good down")})


def test_together_raises_the_first_error_in_order():
    async def ok() -> int:
        return 1

    async def bad(why: str) -> int:
        raise NoData(why)

    assert asyncio.run(analysis._together(ok(), ok())) == [1, 1]
    with pytest.raises(NoData, match="first"):
        asyncio.run(analysis._together(ok(), bad("first"), bad("second")))
