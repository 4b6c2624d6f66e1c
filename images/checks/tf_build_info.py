"""What the TensorFlow wheel itself says it was built with (tf.sysconfig.get_build_info):
the CUDA, cuDNN and GPU code labctl's compat data (tables/tf_wheels.yaml) holds for it."""

import json

import tensorflow as tf

info = tf.sysconfig.get_build_info()
out = {"tensorflow": tf.__version__, "cuda": info.get("cuda_version"),
       "cudnn": info.get("cudnn_version"),
       "archs": info.get("cuda_compute_capabilities"), "is_cuda_build": info.get("is_cuda_build")}
print("LABCTL_TF_BUILD " + json.dumps(out))
assert out["is_cuda_build"], out
print("GPUs:", tf.config.list_physical_devices("GPU"))
