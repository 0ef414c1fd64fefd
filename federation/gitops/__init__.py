"""GitOps: zone and mesh repos as the source of truth; every weight change a commit (``repo``),
and the audit trail read back (``history``)."""
