#!/bin/sh
# `tritonserver` for kestrel-triton-cpu: the Triton that the nvidia-pytriton wheel ships, with what that build needs
# and a Triton pod does not pass. Kestrel's Triton container runs `tritonserver --model-repository=... ...`, the
# command line of NVIDIA's own image, whose backends sit in Triton's default /opt/tritonserver/backends; the wheel
# keeps its Python backend (with the stub for this image's Python copied in beside it) in its own folder, so that
# folder is passed here. Flags given later on the command line win, a pod's own --backend-directory included.
# Pinned memory is CUDA's: with none on a CPU node the pool only costs start-up time.
set -eu
wheel=/opt/kestrel/lib/python3.11/site-packages
# The wheel's binaries find their libraries by RPATH; the stub's Python extensions inherit this fallback.
export LD_LIBRARY_PATH="${LD_LIBRARY_PATH:+$LD_LIBRARY_PATH:}$wheel/nvidia_pytriton.libs"
exec "$wheel/pytriton/tritonserver/bin/tritonserver" \
  --backend-directory="$wheel/pytriton/tritonserver/backends" \
  --pinned-memory-pool-byte-size=0 \
  "$@"
