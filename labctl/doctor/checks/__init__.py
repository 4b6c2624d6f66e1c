"""The doctor's checks, one module per area; importing this package registers them in
the order they are shown."""

from labctl.doctor.checks import containers, engine, gpu, image, lab, spec  # noqa: F401
