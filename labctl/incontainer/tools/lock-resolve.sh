#!/bin/bash
# Runs inside the resolver container of `labctl lock` (the lab's first layers: its base,
# Python and uv). Inputs are read from /in (mounted read-only); results go to stdout, each
# after a "### labctl-lock:NAME" line, so nothing is written on the host.
#   spec-{torch,pip,extras,nodeps}.txt   the spec's requirements, by install layer
#   prefs.txt, prefs-torch.txt, prefs-nodeps.txt  the previous lock's pins (kept unless upgraded)
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
if [ -f spec-torch.txt ]; then
    # The torch layer on its own, from the torch inputs alone: every spec with the same
    # torch gets the same pins, so their multi-GB torch layers are one layer on disk.
    [ -f prefs-torch.txt ] && cp prefs-torch.txt "$out/torchfull.txt"
    compile --generate-hashes "${upgrade[@]}" spec-torch.txt -o "$out/torchfull.txt"
fi
if [ "${#srcs[@]}" -gt 0 ]; then
    # Everything with dependencies, resolved together: the environment the image ends with
    # (a later layer may move a torch-layer package, e.g. numpy<2 for d2l).
    [ -f prefs.txt ] && cp prefs.txt "$out/full.txt"
    compile --generate-hashes "${upgrade[@]}" "${srcs[@]}" -o "$out/full.txt"
    # What the pip layer installs when held to that resolution.
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

for part in full torchfull pip nodeps; do
    if [ -f "$out/$part.txt" ]; then
        echo "### labctl-lock:$part"
        cat "$out/$part.txt"
    fi
done
echo "### labctl-lock:meta"
python3 -c 'import platform as p; l = p.libc_ver(); print("python: %s (%s, %s %s)" % (p.python_version(), p.machine(), l[0], l[1]))'
echo "resolver: $(uv --version | cut -d' ' -f1-2)"
