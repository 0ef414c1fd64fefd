"""Runtimes: how each zone kind converges and reports readiness (VMs over SSH, Kubernetes via Flux),
plus the hub-managed Envoy edge."""
