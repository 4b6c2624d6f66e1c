"""Carrying labs to another machine: the bundle file (format) and save / load (transfer)."""
