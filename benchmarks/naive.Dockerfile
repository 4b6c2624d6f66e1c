# The naive way: one RUN that pip-installs everything (what most lab Dockerfiles do).
# Used by bench_build.py as the baseline; {packages} is filled in by the script.
FROM {base}
RUN apt-get update && apt-get install -y python3 python3-venv python3-pip ca-certificates
COPY ca.crt /usr/local/share/ca-certificates/extra.crt
COPY wheels/ /wheels/
RUN update-ca-certificates
ENV PIP_CERT=/etc/ssl/certs/ca-certificates.crt
RUN python3 -m venv /opt/venv && /opt/venv/bin/pip install --find-links /wheels {packages} && /opt/venv/bin/pip install --no-deps {nodeps}
