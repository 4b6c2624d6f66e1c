#!/bin/bash
# YOLOv5's check_font() downloads Arial.ttf into its config folder ($YOLOV5_CONFIG_DIR)
# when it is not there; offline that fails. Put DejaVu there under those names.
set -euo pipefail
dir=/opt/labctl/yolov5
mkdir -p "$dir"
ln -sf /usr/share/fonts/truetype/dejavu/DejaVuSans.ttf "$dir/Arial.ttf"
ln -sf /usr/share/fonts/truetype/dejavu/DejaVuSans.ttf "$dir/Arial.Unicode.ttf"
