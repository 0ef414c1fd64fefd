"""Routers: weights of (zone, version) subsets into what each mesh applies. Pure renderers.

``routers.render(provider, ...)`` picks the renderer; each module renders one mesh's manifests.
"""
