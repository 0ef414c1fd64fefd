"""federation: progressive delivery of one service across Kubernetes clusters and VMs.

Rooms (see docs/architecture.md): ``core`` (pure model and decisions), one package per outside
system (``gitops``, ``routers``, ``metrics``, ``runtimes``, ``notify``), ``hub`` (the service that
runs the loop), ``cli`` (``fedctl``) and ``demo`` (the local fleet).
"""

from importlib import metadata as _metadata

try:
    # The installed distribution's version (pyproject.toml), so the image, the wheel and
    # `fedctl --version` cannot disagree.
    __version__ = _metadata.version("federation")
except _metadata.PackageNotFoundError:  # a source tree on sys.path, never installed
    __version__ = "0+unknown"
