"""raytaskaff: how far to trust task-affinity scores, measured on a Ray cluster."""

__version__ = "0.1.0"
