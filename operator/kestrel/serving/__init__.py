"""Triton specifics, pure: the model repository's layout and every config.pbtxt (spec and measurements in, text out).

Two modules are the operator's clients of served pods, bounded because pods run tenant code: smoke.py (one gRPC
inference) and pod_http.py (GETs of /metrics).

backends/ holds the Python-backend models (preprocess, postprocess, the ONNX Runtime/OpenVINO runtime); they are
copied verbatim into repositories, and the engine imports the same code to validate, so both always agree.
"""
