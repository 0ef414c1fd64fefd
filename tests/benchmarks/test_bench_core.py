"""Benchmark: 1,000 rollouts driven to the end by the pure core on one process — decisions per
second, CPU per rollout, and memory held per rollout (status + spec + observations)."""

from __future__ import annotations

import resource
import time
import tracemalloc

from federation.core.decide import decide
from federation.core.state import Phase, RolloutStatus
from tests.unit.builders import canary, observe


def test_1000_rollouts():
    specs = [canary({"stepWeight": 5 + i % 20, "maxWeight": 50 + i % 50, "threshold": 3},
                    canary={"version": f"v{i + 2}", "zones": ["eks", "onprem", "edge"][: 1 + i % 3]}) for i in range(1000)]
    statuses = [RolloutStatus() for _ in specs]
    decisions = 0
    cpu0, wall0 = time.process_time(), time.perf_counter()
    now = 0.0
    for _ in range(200):
        now += 61.0
        active = False
        for i, spec in enumerate(specs):
            st = statuses[i]
            if st.phase in (Phase.SUCCEEDED, Phase.FAILED):
                continue
            active = True
            statuses[i] = decide(st, observe(spec, st), now).status
            decisions += 1
        if not active:
            break
    cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
    stored = [s.for_storage() for s in statuses]
    tracemalloc.start()
    held = tracemalloc.get_traced_memory()[0]
    rebuilt = [RolloutStatus.from_storage(d) for d in stored]
    mem = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()
    assert rebuilt == statuses
    assert all(s.phase is Phase.SUCCEEDED for s in statuses)
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(f"\n[bench core] 1000 rollouts to Succeeded: {decisions} decisions in {wall:.2f} s "
          f"({decisions / wall:,.0f} decisions/s incl. building observations); CPU {cpu / 1000 * 1000:.2f} ms per rollout; "
          f"status memory {(mem - held) / 1000 / 1024:.1f} KiB per rollout (tracemalloc); process max RSS {rss / 1024:.0f} MiB")
