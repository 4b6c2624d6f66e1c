"""Datasets and weights: the catalogue, what the lab folders hold, downloads, imports, scans."""
