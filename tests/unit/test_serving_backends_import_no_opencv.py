"""What Triton loads runs without OpenCV: stock Triton images have none, and one `import cv2` in a copied file fails
every model's load there. The files are found by asking the repository writer what it copies, not by a list here."""

from __future__ import annotations

import ast
import hashlib
import subprocess
import sys
from pathlib import Path

import numpy as np

from kestrel.serving import config, repository
from kestrel.serving.backends import postprocess, preprocess

PRE = preprocess.Preprocessing(imgsz=320)
INFO = config.ModelInfo("shapes", {0: "a"}, 32, 320, "detect", "onnx", "fp32")
# Every runtime and batching the writer lays out differently: the native ensemble, the fused Python runtime, and a
# static-batch engine in the Python runtime.
LAYOUTS = {
    "native": (config.Instances(), True),
    "python": (config.Instances(runtime="python"), True),
    "python-static": (config.Instances(runtime="python"), False),
}


def layout(name: str, artifact: Path) -> repository.Repository:
    instances, dynamic = LAYOUTS[name]
    return repository.layout(
        INFO,
        artifact,
        pre=PRE,
        post=postprocess.Postprocessing(),
        batching=config.Batching(max_batch=4),
        instances=instances,
        dynamic=dynamic,
    )


def copied_python_files() -> set[Path]:
    copied = set()
    for name in LAYOUTS:
        for source in layout(name, Path("model.onnx")).files.values():
            if isinstance(source, Path) and source.suffix == ".py":
                copied.add(source)
    return copied


def opencv_imports(source: Path) -> list[str]:
    """Each `import cv2`, `from cv2 import ...` and import_module("cv2") / __import__("cv2"), with its line."""
    found = []
    for node in ast.walk(ast.parse(source.read_text(), filename=str(source))):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            names = [node.module or ""]
        elif isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant):
            names = [str(node.args[0].value)]
        else:
            continue
        found += [f"{source.name}:{node.lineno}: {name}" for name in names if name.split(".")[0] == "cv2"]
    return found


def test_no_file_the_repository_writer_copies_imports_opencv() -> None:
    copied = copied_python_files()
    assert Path(preprocess.__file__) in copied and Path(postprocess.__file__) in copied, copied
    assert [hit for source in sorted(copied) for hit in opencv_imports(source)] == []


def test_the_check_itself_sees_every_form_of_the_import(tmp_path: Path) -> None:
    probe = tmp_path / "probe.py"
    probe.write_text("import cv2\nfrom cv2 import resize\nimport importlib\nimportlib.import_module('cv2')\n")
    assert len(opencv_imports(probe)) == 3


# What Triton's Python backend meets in a stock image: `import cv2` raises ImportError (sys.modules[name] = None).
# The model file is loaded from its path, as the backend loads `model.py`, and registered first for its dataclass.
PROBE = """
import hashlib, importlib.util, sys
sys.modules["cv2"] = None
spec = importlib.util.spec_from_file_location("model", sys.argv[1])
model = importlib.util.module_from_spec(spec)
sys.modules["model"] = model
spec.loader.exec_module(model)
import numpy as np
image = np.random.default_rng(0).integers(0, 256, (173, 301, 3), dtype=np.uint8)
tensor, transform = model.to_tensor(image, model.Preprocessing.from_json(sys.argv[2]))
assert "cv2" not in {name.split(".")[0] for name, module in sys.modules.items() if module is not None}
print(hashlib.sha256(tensor.tobytes() + transform.tobytes()).hexdigest())
"""


def test_the_written_preprocess_model_runs_where_opencv_is_absent(tmp_path: Path) -> None:
    engine_file = tmp_path / "model.onnx"
    engine_file.write_bytes(b"onnx")
    repository.write(layout("native", engine_file), tmp_path / "repo")
    model_file = tmp_path / "repo" / "shapes-preprocess" / "1" / "model.py"
    assert model_file.read_bytes() == Path(preprocess.__file__).read_bytes()
    # -I: the fresh interpreter sees neither this checkout nor the installed package, only the written file.
    command = [sys.executable, "-I", "-c", PROBE, str(model_file), PRE.to_json()]
    done = subprocess.run(command, capture_output=True, text=True, check=False, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    image = np.random.default_rng(0).integers(0, 256, (173, 301, 3), dtype=np.uint8)
    tensor, transform = preprocess.to_tensor(image, PRE)
    assert done.stdout.strip() == hashlib.sha256(tensor.tobytes() + transform.tobytes()).hexdigest()
