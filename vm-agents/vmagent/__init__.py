"""fed-agent: runs on a VM, converges it to the desired state the hub pushes over SSH.

Imports nothing from federation; its core needs only the Python 3.9+ standard library.
"""

__version__ = "0.1.0"
PROTOCOL_VERSION = 1
