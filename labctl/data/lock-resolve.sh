#!/bin/bash
# Runs inside the resolver container of `labctl lock` (the lab's first layers: its base,
# Python and uv). Inputs are read from /in (mounted read-only); results go to stdout, each
# after a "### labctl-lock:NAME" line, so nothing is written on the host.
#   spec-{torch,pip,extras,nodeps}.txt   the spec's requirements, by install layer
#   prefs.txt, prefs-nodeps.txt           the previous lock's pins (kept unless upgraded)
#   LABCTL_UPGRADE                        "" | ":all:" | "name name ..."
#   LABCTL_TORCH_INDEX                    the torch variant's index, when not the default
set -euo pipefail
export UV_CACHE_DIR=/tmp/uv-cache  # one cache for the compiles below, inside the container
unset UV_NO_CACHE
cd /in
out=/tmp/labctl-lock
mkdir -p "$out"

upgrade=()
case "${LABCTL_UPGRADE:-}" in
    "") ;;
    ":all:") upgrade=(--upgrade) ;;
    *) for p in $LABCTL_UPGRADE; do upgrade+=(--upgrade-package "$p"); done ;;
esac
extra=()
[ -n "${LABCTL_TORCH_INDEX:-}" ] && extra+=(--extra-index-url "$LABCTL_TORCH_INDEX")
[ -d /wheelhouse ] && extra+=(--find-links /wheelhouse)
compile() { uv pip compile --quiet --no-header "${extra[@]}" "$@"; }

srcs=()
for f in spec-torch.txt spec-pip.txt spec-extras.txt; do
    [ -f "$f" ] && srcs+=("$f")
done
if [ "${#srcs[@]}" -gt 0 ]; then
    # Everything with dependencies, resolved together: the environment the image ends with.
    [ -f prefs.txt ] && cp prefs.txt "$out/full.txt"
    compile --generate-hashes "${upgrade[@]}" "${srcs[@]}" -o "$out/full.txt"
    # What the torch layer and the pip layer install when held to that resolution.
    if [ -f spec-torch.txt ]; then
        compile --no-annotate spec-torch.txt -c "$out/full.txt" -o "$out/torch.txt"
    fi
    if [ -f spec-pip.txt ]; then
        layers=(spec-pip.txt)
        [ -f spec-torch.txt ] && layers=(spec-torch.txt spec-pip.txt)
        compile --no-annotate "${layers[@]}" -c "$out/full.txt" -o "$out/pip.txt"
    fi
fi
if [ -f spec-nodeps.txt ]; then
    [ -f prefs-nodeps.txt ] && cp prefs-nodeps.txt "$out/nodeps.txt"
    compile --generate-hashes --no-deps "${upgrade[@]}" spec-nodeps.txt -o "$out/nodeps.txt"
fi

for part in full torch pip nodeps; do
    if [ -f "$out/$part.txt" ]; then
        echo "### labctl-lock:$part"
        cat "$out/$part.txt"
    fi
done
echo "### labctl-lock:meta"
python3 -c 'import platform as p; l = p.libc_ver(); print("python: %s (%s, %s %s)" % (p.python_version(), p.machine(), l[0], l[1]))'
echo "resolver: $(uv --version | cut -d' ' -f1-2)"
