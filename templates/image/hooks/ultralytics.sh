# Point Ultralytics' datasets, weights and runs at the lab's shared folders, once:
# an existing settings.json is the learner's and is left alone.
[ -n "${YOLO_CONFIG_DIR:-}" ] || exit 0
[ -n "${LABCTL_YOLO_ROOT:-}" ] || exit 0
[ -e "$YOLO_CONFIG_DIR/Ultralytics/settings.json" ] && exit 0
python -c 'import importlib.util, sys; sys.exit(importlib.util.find_spec("ultralytics") is None)' || exit 0
mkdir -p "$LABCTL_YOLO_ROOT/datasets" "$LABCTL_YOLO_ROOT/weights" "$LABCTL_YOLO_ROOT/runs"
YOLO_OFFLINE=1 python - <<'PY'
import os
from ultralytics import settings
root = os.environ["LABCTL_YOLO_ROOT"]
settings.update(datasets_dir=f"{root}/datasets", weights_dir=f"{root}/weights", runs_dir=f"{root}/runs")
PY
