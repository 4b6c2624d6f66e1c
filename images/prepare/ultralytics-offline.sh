#!/bin/bash
# Ultralytics downloads Arial.ttf / Arial.Unicode.ttf on first plot; offline that fails.
# Its check_font() accepts any system font whose path contains the name, so install
# DejaVu under those names. (matplotlib builds its font list once, in the shared cache.)
set -euo pipefail
dir=/usr/share/fonts/truetype/labctl
mkdir -p "$dir"
ln -sf /usr/share/fonts/truetype/dejavu/DejaVuSans.ttf "$dir/Arial.ttf"
ln -sf /usr/share/fonts/truetype/dejavu/DejaVuSans.ttf "$dir/Arial.Unicode.ttf"
