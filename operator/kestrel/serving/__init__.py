"""Triton specifics, pure: the model repository's layout and every config.pbtxt (spec and measurements in, text out).

backends/ holds the Python-backend models (preprocess, postprocess, the ONNX Runtime/OpenVINO runtime); they are
copied verbatim into repositories, and the engine imports the same code to validate, so both always agree.
"""
