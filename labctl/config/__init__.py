"""Configuration: the lab folder (labctl.yaml, volumes.yaml) and its image specs, read
from YAML and validated, so that no value reaches a Dockerfile or a container unchecked."""
