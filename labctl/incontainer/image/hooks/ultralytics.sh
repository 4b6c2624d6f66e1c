# Point Ultralytics' datasets, weights and runs at the lab's shared folders, once:
# an existing settings.json is the learner's and is left alone.
[ -n "${YOLO_CONFIG_DIR:-}" ] || exit 0
[ -n "${LAB_ULTRALYTICS:-}" ] || exit 0
[ -e "$YOLO_CONFIG_DIR/Ultralytics/settings.json" ] && exit 0
python -c 'import importlib.util, sys; sys.exit(importlib.util.find_spec("ultralytics") is None)' || exit 0
mkdir -p "$LAB_ULTRALYTICS/datasets" "$LAB_ULTRALYTICS/weights" "$LAB_ULTRALYTICS/runs"
YOLO_OFFLINE=1 python - <<'PY'
import os
from ultralytics import settings
root = os.environ["LAB_ULTRALYTICS"]
settings.update(datasets_dir=f"{root}/datasets", weights_dir=f"{root}/weights", runs_dir=f"{root}/runs")
PY
