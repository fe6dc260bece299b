"""The data layer: synthetic Taskonomy-like scenes, the real-Taskonomy converter, shards, readers."""
