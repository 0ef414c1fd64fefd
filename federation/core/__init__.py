"""The pure core: spec models, weights, step planning, analysis verdicts and ``decide()``.

Nothing here does I/O or reads the clock; adapters and the hub call in, never the reverse.
"""
