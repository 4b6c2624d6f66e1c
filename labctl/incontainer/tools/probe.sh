# doctor --image: runs under /bin/sh in a throw-away container of the image (no network).
# The glibc line from ldd, then probe.py (given as $1) under the image's Python.
echo "LABCTL_LDD $(ldd --version 2>&1 | head -n 1)"
for p in python python3; do
    if command -v "$p" >/dev/null 2>&1; then exec "$p" -c "$1"; fi
done
echo "LABCTL_NOPYTHON"
