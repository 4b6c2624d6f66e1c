"""Running labs: the pure run plan, starting and stopping containers, `labctl check`."""
