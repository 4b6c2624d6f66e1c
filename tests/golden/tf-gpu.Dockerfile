# Rendered by labctl 0.1.0 from images/tf-gpu.yaml. Do not edit: edit the spec.
# Layers follow change frequency: system, Python + uv, torch, labctl's runtime files, lab
# apt packages, lab Python packages (pip, then pip_nodeps), extras, prepare scripts, then
# the spec's env, workdir, ports and command. Changing a later layer never reinstalls an
# earlier one; an extras change reruns its own COPY and RUN (which ends with the
# dependency check), prepare, the metadata and the labels labctl adds.
FROM debian:bookworm

SHELL ["/bin/bash", "-o", "pipefail", "-c"]
ENV DEBIAN_FRONTEND=noninteractive \
    LANG=C.UTF-8 \
    LC_ALL=C.UTF-8 \
    PYTHONUNBUFFERED=1 \
    SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt \
    PIP_CERT=/etc/ssl/certs/ca-certificates.crt \
    REQUESTS_CA_BUNDLE=/etc/ssl/certs/ca-certificates.crt \
    PIP_NO_CACHE_DIR=1 \
    UV_NO_CACHE=1 \
    UV_LINK_MODE=hardlink \
    UV_PYTHON_DOWNLOADS=never \
    VIRTUAL_ENV=/opt/venv \
    PATH=/opt/venv/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin

# labctl-key: base
ARG LABCTL_APT_MIRROR=""
RUN if [ -n "$LABCTL_APT_MIRROR" ]; then \
        sed -i -E "s#https?://deb.debian.org/debian#${LABCTL_APT_MIRROR}#g" /etc/apt/sources.list.d/*.sources /etc/apt/sources.list 2>/dev/null || true; \
    fi \
 && apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates python3 tini util-linux \
 && rm -rf /var/lib/apt/lists/* /var/cache/apt/archives/*.deb /var/cache/apt/*.bin


# labctl-key: python
# uv is one static binary, taken from its wheel on the index by a script that needs only
# the standard library (no pip, no tools venv). /opt/venv is seeded so that `pip` works.
COPY labctl/system/ /opt/labctl/system/
ARG LABCTL_INDEX_URL="" LABCTL_EXTRA_INDEX_URLS=""
ENV UV_INDEX_URL=${LABCTL_INDEX_URL:-https://pypi.org/simple} \
    UV_EXTRA_INDEX_URL=${LABCTL_EXTRA_INDEX_URLS}
RUN have="$(python3 -c 'import sys; print("%d.%d" % sys.version_info[:2])')" \
 && if [ "$have" != "3.11" ]; then \
        echo "labctl: the spec asks for Python 3.11 but debian:bookworm has Python $have;" \
             "set 'python: \"$have\"' in the spec or choose a base image with Python 3.11" >&2; \
        exit 1; \
    fi \
 && python3 /opt/labctl/system/fetch_uv.py "0.13.9" /usr/local/bin/uv "$UV_INDEX_URL" \
 && uv venv --quiet --system-site-packages --seed /opt/venv \
 && if old="$(getent passwd 1000 | cut -d: -f1)" && [ -n "$old" ]; then userdel --remove "$old"; fi \
 && useradd --create-home --uid 1000 --user-group --shell /bin/bash lab

# labctl-key: fonts
# The CJK font of every lab's matplotlib (labctl's matplotlibrc lists it first).
RUN apt-get update \
 && apt-get install -y --no-install-recommends fonts-wqy-microhei \
 && rm -rf /var/lib/apt/lists/* /var/cache/apt/archives/*.deb /var/cache/apt/*.bin

# labctl-key: runtime
# labctl's own files (hooks, the dependency check, the offline hint and
# book shims) come before the lab's packages, so a package change never reruns them.
# `pip install` in a running lab installs for the learner (PIP_USER: ~/.local).
COPY labctl/image/ /opt/labctl/lib/
RUN ln -s /opt/labctl/lib/labctl.pth "$(python -c 'import sysconfig; print(sysconfig.get_path("purelib"))')/labctl.pth" \
 && install -d -o lab -g lab /home/lab/.ipython /home/lab/.ipython/profile_default /home/lab/.ipython/profile_default/startup \
 && install -o lab -g lab -m 0644 /opt/labctl/lib/ipython_startup.py /home/lab/.ipython/profile_default/startup/00-labctl.py \
 && install -D -m 0644 /opt/labctl/lib/jupyter_server_config.json /opt/venv/etc/jupyter/jupyter_server_config.json \
 && install -D -m 0644 /opt/labctl/lib/jupyterlab_overrides.json /opt/venv/share/jupyter/lab/settings/overrides.json \
 && mkdir -p /workspace \
 && chown lab:lab /workspace
ENV MATPLOTLIBRC=/opt/labctl/lib/matplotlibrc \
    PIP_USER=1

# labctl-key: pip
# The lab's packages, then (same layer) those installed without their dependencies.
COPY labctl/requirements-lab.txt labctl/requirements-nodeps.txt labctl/lock-pip.txt labctl/lock-pip_nodeps.txt /opt/labctl/
RUN uv pip install -c /opt/labctl/lock-pip.txt -r /opt/labctl/requirements-lab.txt \
 && uv pip install --no-deps -c /opt/labctl/lock-pip_nodeps.txt -r /opt/labctl/requirements-nodeps.txt \
 && python /opt/labctl/lib/warm.py

# labctl-key: extras
# Always there, empty when the spec has no extras: its RUN ends with the dependency check,
# so adding the first extra package changes no earlier layer.
COPY labctl/requirements-extras.txt /opt/labctl/
RUN python /opt/labctl/lib/pip_check.py

# labctl-key: env
# The spec's runtime settings last: they never reach an install, and changing them reruns
# none.
COPY labctl/compat.json /opt/labctl/
COPY labctl/image/entrypoint.sh /usr/local/bin/labctl-entrypoint
ENTRYPOINT ["/usr/bin/tini", "--", "/usr/local/bin/labctl-entrypoint"]
ENV LABCTL_WORKSPACE=/workspace \
    TF_CPP_MIN_LOG_LEVEL="1"

WORKDIR /workspace
EXPOSE 8888
CMD ["jupyter", "lab", "--ip=0.0.0.0", "--port=8888", "--no-browser", "--allow-root", "--ServerApp.root_dir=/workspace"]
