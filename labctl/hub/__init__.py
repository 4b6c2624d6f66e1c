"""`labctl hub`: a JupyterHub with DockerSpawner for one Docker host (files.py: the
deployment's files, pure; deploy.py: images, network and the hub process)."""
