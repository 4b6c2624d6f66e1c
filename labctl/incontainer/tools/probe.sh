# doctor --image: runs under /bin/sh in a throw-away container of the image (no network).
# The glibc line from ldd, what the VS Code server needs (tar, bash, a HOME the lab user
# owns), then probe.py (given as $1) under the image's Python.
echo "LABCTL_LDD $(ldd --version 2>&1 | head -n 1)"
for tool in tar bash; do
    if command -v "$tool" >/dev/null 2>&1; then echo "LABCTL_TOOL $tool yes"; else echo "LABCTL_TOOL $tool no"; fi
done
home=$(getent passwd lab 2>/dev/null | cut -d: -f6)
if [ -n "$home" ] && [ -d "$home" ]; then
    echo "LABCTL_HOME $home $(stat -c %U "$home" 2>/dev/null)"
else
    echo "LABCTL_HOME - -"
fi
for p in python python3; do
    if command -v "$p" >/dev/null 2>&1; then exec "$p" -c "$1"; fi
done
echo "LABCTL_NOPYTHON"
