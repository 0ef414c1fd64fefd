"""Settings for the whole suite.

Hypothesis: no per-example deadline and no too-slow health check. The suite runs on loaded
machines (CI beside `make bench`); a wall-clock limit per example fails there for nothing the
property is about (test_steps' round trip failed with DeadlineExceeded under load). Speed is
measured in benchmarks, never asserted here.

The same examples on every run (``derandomize``): `make test` passes or fails for the code, not
for the draw. ``FEDERATION_HYPOTHESIS=explore`` draws new examples each run (what found the
decide() machine's over-strict retry invariant); a failure found that way becomes a fix and, where
useful, an explicit example.
"""

from __future__ import annotations

import os

from hypothesis import HealthCheck, settings

settings.register_profile("federation", deadline=None, suppress_health_check=[HealthCheck.too_slow],
                          derandomize=True, database=None)
settings.register_profile("explore", deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("explore" if os.environ.get("FEDERATION_HYPOTHESIS") == "explore" else "federation")
