"""Reproducible labs: lock files (pure), resolving and freezing on the engine, diffs."""
