"""federation: progressive delivery of one service across Kubernetes clusters and VMs.

Rooms (see docs/architecture.md): ``core`` (pure model and decisions), one package per outside
system (``gitops``, ``routers``, ``metrics``, ``runtimes``, ``notify``), ``hub`` (the service that
runs the loop), ``cli`` (``fedctl``) and ``demo`` (the local fleet).
"""

__version__ = "0.1.0"
