"""`labctl doctor`: an explicit list of small checks -> findings (ok / warn / fail / skip + fix)."""
