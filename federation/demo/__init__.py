"""The local demo fleet: zones simulated on this machine with real Git, Envoy, Prometheus, SSH and hey."""
