# labctl freeze: what a built image holds, as JSON: uv in labctl images (its venv), pip
# in any other Python image. Runs under /bin/sh in a throw-away container (no network).
if [ -n "${VIRTUAL_ENV:-}" ] && command -v uv >/dev/null 2>&1; then
    exec uv pip list --format json
fi
exec python3 -m pip list --format=json --disable-pip-version-check
