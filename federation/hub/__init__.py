"""The hub: runs rollouts — observe, ``core.decide``, execute — with state kept on disk."""
