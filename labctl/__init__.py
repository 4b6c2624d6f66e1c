"""labctl: build and run Docker learning labs for deep learning."""

__version__ = "0.1.0"
