"""Images: a spec's layers, rendered into a build context and built on the engine (and
the base images labctl can make from a Debian mirror)."""
