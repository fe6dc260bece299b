"""Everything that imports Ray lives in this package; the rest of raytaskaff runs without it."""
