"""`labctl doctor`: a registry of small checks -> findings (ok / warn / fail / skip + fix)."""
