"""config.pbtxt of every backend and the repository layout match reviewed golden files, and Triton's schema parses them.

Regenerate after an intended change, then review the diff:

    KESTREL_UPDATE_GOLDEN=1 .venv/bin/pytest tests/unit/test_serving_repository_golden.py
"""

from __future__ import annotations

from pathlib import Path

import pytest
from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2

from kestrel.serving import config, pbtxt, repository
from kestrel.serving.backends import fused, postprocess, preprocess, runtime
from tests.unit import golden_support as golden

GOLDEN = Path(__file__).parent / "golden" / "engine"
NAMES = {0: "circle", 1: "square", 2: "triangle", 3: "cross"}
BATCHING = config.Batching(max_batch=8, enabled=True, preferred=(8,), queue_delay_us=2500)
PRE = preprocess.Preprocessing(imgsz=320)
POST = postprocess.Postprocessing()


def info(fmt: str, precision: str = "fp32") -> config.ModelInfo:
    return config.ModelInfo("shapes", NAMES, 32, 320, "detect", fmt, precision)


def check_golden(name: str, text: str) -> None:
    golden.check(GOLDEN / name, text)


def parse(text: str) -> model_config_pb2.ModelConfig:
    return text_format.Parse(text, model_config_pb2.ModelConfig())


CASES = {
    "onnx-fp32": (info("onnx"), config.Instances(count=2)),
    "onnx-int8": (info("onnx", "int8"), config.Instances(count=2)),
    "openvino-int8": (info("openvino", "int8"), config.Instances(count=1, threads=2)),
    "torchscript-fp32": (info("torchscript"), config.Instances(count=1)),
    "tensorrt-fp16": (info("tensorrt", "fp16"), config.Instances(count=1, gpu=True)),
    "python-onnx-fp32": (info("onnx"), config.Instances(count=1, runtime="python")),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_engine_config(case: str) -> None:
    model, instances = CASES[case]
    text = pbtxt.render(config.engine(model, BATCHING, instances))
    check_golden(f"{case}.config.pbtxt", text)
    parsed = parse(text)
    assert parsed.max_batch_size == 8
    assert list(parsed.input[0].dims) == [3, 320, 320]
    assert list(parsed.output[0].dims) == [8, 2100]  # 4 box + 4 classes, 40² + 20² + 10² anchors


def test_native_backends_and_the_python_runtime() -> None:
    assert parse(pbtxt.render(config.engine(info("onnx"), BATCHING, config.Instances()))).platform == (
        "onnxruntime_onnx"
    )
    assert parse(pbtxt.render(config.engine(info("openvino"), BATCHING, config.Instances()))).backend == "openvino"
    assert parse(pbtxt.render(config.engine(info("tensorrt"), BATCHING, config.Instances(gpu=True)))).platform == (
        "tensorrt_plan"
    )
    runtime = parse(pbtxt.render(config.engine(info("onnx"), BATCHING, config.Instances(runtime="python"))))
    assert runtime.backend == "python"
    assert runtime.parameters["engine_file"].string_value == "model.onnx"


def test_openvino_pins_the_validated_precision() -> None:
    parsed = parse(pbtxt.render(config.engine(info("openvino", "int8"), BATCHING, config.Instances())))
    assert parsed.parameters["INFERENCE_PRECISION_HINT"].string_value == "f32"


def test_ensemble_preprocess_and_postprocess_configs() -> None:
    model = info("onnx")
    texts = {
        "ensemble.config.pbtxt": pbtxt.render(config.ensemble(model, BATCHING)),
        "preprocess.config.pbtxt": pbtxt.render(config.preprocess_model(model, PRE, BATCHING, 2)),
        "postprocess.config.pbtxt": pbtxt.render(config.postprocess_model(model, POST, BATCHING, 2)),
    }
    for name, text in texts.items():
        check_golden(name, text)
    ensemble = parse(texts["ensemble.config.pbtxt"])
    steps = [step.model_name for step in ensemble.ensemble_scheduling.step]
    assert steps == ["shapes-preprocess", "shapes-engine", "shapes-postprocess"]
    pre = parse(texts["preprocess.config.pbtxt"])
    assert preprocess.Preprocessing.from_json(pre.parameters["preprocessing"].string_value) == PRE


def test_the_python_runtime_is_one_model_with_the_ensembles_tensors() -> None:
    model = info("onnx")
    instances = config.Instances(count=2, runtime="python", threads=1)
    text = pbtxt.render(config.fused(model, PRE, POST, BATCHING, instances))
    check_golden("fused.config.pbtxt", text)
    fused, ensemble = parse(text), parse(pbtxt.render(config.ensemble(model, BATCHING)))
    # Clients (kestrel infer, the smoke check, the readiness probe) cannot tell the two apart.
    assert (fused.name, fused.max_batch_size) == (ensemble.name, ensemble.max_batch_size) == ("shapes", 8)
    assert [(t.name, t.data_type, list(t.dims)) for t in fused.input] == [
        (t.name, t.data_type, list(t.dims)) for t in ensemble.input
    ]
    assert fused.output == ensemble.output
    assert all(fused.parameters[key] == value for key, value in ensemble.parameters.items())
    # Images of different sizes share a dynamic batch; the whole pipeline warms up before the model is ready.
    assert fused.backend == "python" and fused.input[0].allow_ragged_batch
    assert list(fused.dynamic_batching.preferred_batch_size) == [8]
    assert [(group.count, group.kind) for group in fused.instance_group] == [
        (2, model_config_pb2.ModelInstanceGroup.KIND_CPU)
    ]
    assert list(fused.model_warmup[0].inputs["IMAGE"].dims) == [320, 320, 3]
    params = {key: value.string_value for key, value in fused.parameters.items()}
    assert preprocess.Preprocessing.from_json(params["preprocessing"]) == PRE
    assert postprocess.Postprocessing.from_json(params["postprocessing"]) == POST
    assert (params["engine_file"], params["inference_precision"], params["threads"]) == ("model.onnx", "fp32", "1")


def test_the_python_runtime_without_batching_or_warmup() -> None:
    unbatched = config.Batching(max_batch=4, enabled=False)
    instances = config.Instances(runtime="python", warmup=False)
    parsed = parse(pbtxt.render(config.fused(info("openvino"), PRE, POST, unbatched, instances)))
    assert parsed.max_batch_size == 4 and not parsed.HasField("dynamic_batching") and not parsed.model_warmup
    assert parsed.parameters["engine_file"].string_value == "model.xml"
    assert "threads" not in parsed.parameters  # the engine's own default


def test_repository_layout(tmp_path: Path) -> None:
    engine_file = tmp_path / "model.onnx"
    engine_file.write_bytes(b"onnx")
    ov_dir = tmp_path / "ov"
    ov_dir.mkdir()
    (ov_dir / "model.xml").write_text("<xml/>")
    (ov_dir / "model.bin").write_bytes(b"bin")
    layouts = {
        "onnx-native": repository.layout(
            info("onnx"), engine_file, pre=PRE, post=POST, batching=BATCHING, instances=config.Instances(), dynamic=True
        ),
        "openvino-python": repository.layout(
            info("openvino"),
            ov_dir,
            pre=PRE,
            post=POST,
            batching=BATCHING,
            instances=config.Instances(runtime="python"),
            dynamic=True,
        ),
        "onnx-python": repository.layout(
            info("onnx"),
            engine_file,
            pre=PRE,
            post=POST,
            batching=BATCHING,
            instances=config.Instances(runtime="python"),
            dynamic=True,
        ),
        "onnx-static-batch": repository.layout(
            info("onnx"),
            engine_file,
            pre=PRE,
            post=POST,
            batching=BATCHING,
            instances=config.Instances(),
            dynamic=False,
        ),
    }
    text = "".join(f"[{name}]\n" + "".join(f"{p}\n" for p in layout.paths()) for name, layout in layouts.items())
    check_golden("layout.txt", text)
    written = repository.write(layouts["onnx-native"], tmp_path / "repo")
    assert (tmp_path / "repo" / "shapes-engine" / "1" / "model.onnx").read_bytes() == b"onnx"
    # The Python-backend models are this package's own modules: what was validated is what is served.
    assert (tmp_path / "repo" / "shapes-preprocess" / "1" / "model.py").read_text() == Path(
        preprocess.__file__
    ).read_text()
    assert len(written) == len(layouts["onnx-native"].files)
    repository.write(layouts["onnx-python"], tmp_path / "python")
    version = tmp_path / "python" / "shapes" / "1"
    assert (version / "model.py").read_text() == Path(fused.__file__).read_text()
    for module in (preprocess, runtime, postprocess):
        assert (version / Path(str(module.__file__)).name).read_text() == Path(str(module.__file__)).read_text()


def test_ultralytics_tensorrt_header_is_stripped(tmp_path: Path) -> None:
    metadata = b'{"stride": 32}'
    engine = tmp_path / "model.engine"
    engine.write_bytes(len(metadata).to_bytes(4, "little") + metadata + b"PLANBYTES")
    layout = repository.layout(
        info("tensorrt"), engine, pre=PRE, post=POST, batching=BATCHING, instances=config.Instances(), dynamic=False
    )
    repository.write(layout, tmp_path / "repo")
    assert (tmp_path / "repo" / "shapes-engine" / "1" / "model.plan").read_bytes() == b"PLANBYTES"


def test_batching_follows_the_profile() -> None:
    worth_it = config.choose_batching(8, p50_ms_batch1=20.0, throughput_batch1=50.0, throughput_max=120.0)
    assert worth_it.preferred == (8,)
    assert worth_it.queue_delay_us == 5000  # a quarter of one batch-1 inference
    not_worth_it = config.choose_batching(8, p50_ms_batch1=20.0, throughput_batch1=50.0, throughput_max=55.0)
    assert (not_worth_it.preferred, not_worth_it.queue_delay_us) == ((), 0)
    assert not config.choose_batching(1, 20.0, 50.0, None).enabled


def test_a_static_batch_engine_is_not_batched_by_triton() -> None:
    static = config.ModelInfo("shapes", NAMES, 32, 320, "detect", "onnx", "fp32", static_batch=4)
    text = pbtxt.render(config.engine(static, BATCHING, config.Instances()))
    check_golden("onnx-static-batch4.config.pbtxt", text)
    parsed = parse(text)
    assert parsed.max_batch_size == 0
    assert list(parsed.input[0].dims) == [4, 3, 320, 320]
    assert not parsed.HasField("dynamic_batching")
