"""Triton Python-backend models. Each module is self-contained (numpy, OpenCV, the runtime) because it is copied
into the model repository as `model.py` and runs inside Triton, where this package is not installed."""
