"""Settings for the whole suite.

Hypothesis: no per-example deadline and no too-slow health check. The suite runs on loaded
machines (CI beside `make bench`); a wall-clock limit per example fails there for nothing the
property is about (test_steps' round trip failed with DeadlineExceeded under load). Speed is
measured in benchmarks, never asserted here.
"""

from __future__ import annotations

from hypothesis import HealthCheck, settings

settings.register_profile("federation", deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("federation")
