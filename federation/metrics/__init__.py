"""Metrics: PromQL templates per mesh (``templates``), the Prometheus client (``prometheus``), and
correct cross-zone aggregation (``aggregate``), put together per analysis by ``analysis``."""
