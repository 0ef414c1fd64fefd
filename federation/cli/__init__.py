"""``fedctl``: the thin command line. One module per command group; rich lives in ``output``."""
