"""GPUs: the machine's GPUs (probe), the engine's GPU access, and the compatibility rules
over the GPU / CUDA / driver / wheel tables."""
