"""Kestrel: a Kubernetes operator that serves YOLO models on Triton."""

__version__ = "0.1.0"
