"""`kestrel build`: spec in; verified source, gated engine, Triton repository, result.json and manifest.json out.

out/work/            scratch: the fetched checkpoint, every candidate's export
out/repository/      the Triton model repository of the winning engine (only when the gate passed), with the
                     build's probes beside its models (kestrel-probes.json, serving/probes.py)
out/result.json      the termination message (<= 4 KiB)
out/manifest.json    every repository file with size and sha256, spec hash, engine key, versions, all numbers
"""

from __future__ import annotations

import dataclasses
import importlib
import os
import shutil
import time
from pathlib import Path
from typing import Any

from kestrel.api import errors as api_errors
from kestrel.api import keys, status
from kestrel.api import result as api_result
from kestrel.api import spec as api
from kestrel.engine import (
    accuracy,
    candidate,
    dataset_archives,
    datasets,
    distill,
    errors,
    export,
    fetch,
    finetune,
    gate,
    held_out,
    offline,
    plan,
    probe_recording,
    progress,
    prune,
    report,
    runners,
)
from kestrel.serving import config, probes, repository
from kestrel.serving.backends import drift, postprocess, preprocess

_MAX_MESSAGE = 1024  # api.result.Gate.message
DATASETS = "datasets"  # under the build's work folder: remote dataset archives, unpacked once per digest
SERVING_POSTPROCESSING = postprocess.Postprocessing(conf=0.25, iou=0.7, max_det=300)


@dataclasses.dataclass(frozen=True)
class BuildOptions:
    fetch: fetch.FetchOptions = dataclasses.field(default_factory=fetch.FetchOptions)
    model_name: str = "model"
    threads: int = dataclasses.field(default_factory=lambda: os.cpu_count() or 1)
    gpu: bool | None = None  # None: detect
    # Tests only: serve with a different preprocessing than the source's, to prove the gate catches it.
    serving_preprocessing: preprocess.Preprocessing | None = None
    validation_limit: int | None = None
    iterations: int = 20


@dataclasses.dataclass(frozen=True)
class BuildResult:
    passed: bool
    result: api_result.BuildResult
    repository: Path | None
    result_file: Path
    manifest_file: Path


def build(spec: api.ModelDeploymentSpec, out: Path, options: BuildOptions | None = None) -> BuildResult:
    options = options or BuildOptions()
    started = time.monotonic()
    offline.configure()
    if spec.model.task != "detect":
        raise api_errors.SpecError("spec.model.task", "the serving pipeline supports detect models only for now")
    work = out / "work"
    work.mkdir(parents=True, exist_ok=True)
    source = spec.model.source
    fetched = fetch.fetch(source.uri, work / "source.pt", source.sha256, options.fetch)
    gpu = _gpu_present() if options.gpu is None else options.gpu
    names, stride = _checkpoint_info(fetched.path)
    imgsz = spec.model.imgsz
    settings = candidate.Settings(
        export=export.ExportSettings(
            imgsz=imgsz,
            batch=spec.engine.batch.max,
            dynamic=spec.engine.batch.dynamic,
            opset=spec.engine.opset,
            workspace_gib=spec.engine.workspace_gib,
            calibration=_calibration(spec, options.fetch, work / DATASETS),
        ),
        thresholds=gate.Thresholds(
            spec.validation.max_map_drop,
            spec.validation.max_output_delta,
            spec.validation.latency_budget_ms,
            unmeasured_reason=spec.validation.skip.reason if spec.validation.skip else None,
        ),
        serving_preprocessing=options.serving_preprocessing or preprocess.Preprocessing(imgsz=imgsz, stride=stride),
        serving_postprocessing=SERVING_POSTPROCESSING,
        threads=options.threads,
        gpu=gpu,
        validation_limit=options.validation_limit,
        iterations=options.iterations,
        obfuscate=spec.security.obfuscate,
    )
    candidates = plan.candidates(spec, gpu)
    if spec.engine.format != "auto":  # fail an impossible request now, not after minutes of baseline measurements
        for item in candidates:
            export.check_supported(item, settings.export, gpu)
    dataset = _dataset(spec.validation, options.fetch, work / DATASETS)
    fine_tune_data = _fine_tune_data(spec, options.fetch, work / DATASETS, classes=len(names))
    distill_data = _distill_data(spec, options.fetch, work / DATASETS, classes=len(names))
    held_out.calibration(settings.export.calibration, dataset)
    for field, data_yaml in ((finetune.FIELD, fine_tune_data), (distill.FIELD, distill_data)):
        if data_yaml is not None:
            held_out.training(field, data_yaml, dataset)
    # The baseline is always the source: the gate judges what pruning or distillation and export did together.
    base = candidate.baseline(fetched.path, settings, dataset, stride)
    engine_source, pruned, distilled = fetched.path, None, None
    if spec.engine.prune is not None:
        engine_source = work / "pruned.pt"
        progress.report("prune")
        pruned = prune.prune(fetched.path, engine_source, spec.engine.prune.amount, imgsz)
        if fine_tune_data is not None:
            tuned = work / "fine-tuned.pt"
            progress.report("fine-tune", 0, spec.engine.prune.fine_tune_epochs)
            effect = finetune.fine_tune(
                engine_source,
                tuned,
                fine_tune_data,
                finetune.Recipe(epochs=spec.engine.prune.fine_tune_epochs, threads=options.threads),
                served_imgsz=imgsz,
                workdir=work / "fine-tune",
                score=_scorer(dataset, settings, stride),
            )
            engine_source, pruned = tuned, dataclasses.replace(pruned, fine_tune=effect)
    if spec.engine.distill is not None and distill_data is not None:
        engine_source = work / "student.pt"
        progress.report("distill", 0, spec.engine.distill.epochs)
        distilled = distill.distill(
            fetched.path,
            engine_source,
            distill_data,
            width=spec.engine.distill.student.width,
            weight=spec.engine.distill.weight,
            recipe=finetune.Recipe(epochs=spec.engine.distill.epochs, threads=options.threads),
            imgsz=imgsz,
            workdir=work / "distill",
            score=_scorer(dataset, settings, stride),
        )
        progress.report("distill", spec.engine.distill.epochs, spec.engine.distill.epochs)
    outcomes = _evaluate_all(
        engine_source,
        candidates=candidates,
        settings=settings,
        base=base,
        work=work,
        asked_format=spec.engine.format,
    )
    winner = _choose(outcomes)
    repo_dir = None
    if winner.verdict.passed and winner.exported is not None:
        repo_dir = _write_repository(
            out,
            winner=winner,
            spec=spec,
            names=names,
            stride=stride,
            settings=settings,
            model_name=options.model_name,
            dataset=dataset,
        )
    result = _result(spec, winner)
    manifest = {
        "schema": report.MANIFEST_SCHEMA,
        "specHash": report.spec_hash(spec.to_wire()),
        "engineKey": result.engine_key,
        "source": {"uri": fetched.uri, "sha256": fetched.sha256, "sizeBytes": fetched.size},
        "versions": report.versions(),
        "files": report.file_entries(repo_dir) if repo_dir else [],
        "sourceModel": {"names": names, "stride": stride, "imgsz": imgsz},
        "sourceFingerprint": dataclasses.asdict(base.fingerprint),
        "prune": dataclasses.asdict(pruned) if pruned else None,
        "distill": dataclasses.asdict(distilled) if distilled else None,
        "servingPreprocessing": dataclasses.asdict(settings.serving_preprocessing),
        "driftBaseline": drift_summary(winner.drift_baseline, names),
        "result": result.model_dump(mode="json", by_alias=True, exclude_none=True),
        "candidates": [_candidate_entry(o) for o in outcomes],
        "seconds": round(time.monotonic() - started, 1),
    }
    result_file, manifest_file = report.write(out, result, manifest)
    return BuildResult(winner.verdict.passed, result, repo_dir, result_file, manifest_file)


def _gpu_present() -> bool:
    import torch  # noqa: PLC0415

    return bool(torch.cuda.is_available())


def _checkpoint_info(checkpoint: Path) -> tuple[dict[int, str], int]:
    tasks: Any = importlib.import_module("ultralytics.nn.tasks")
    model, _ = tasks.load_checkpoint(str(checkpoint), device="cpu", fuse=False)
    names = {int(k): str(v) for k, v in dict(model.names).items()}
    return names, int(max(int(model.stride.max()), 32))


def _dataset(validation: api.ValidationSpec, options: fetch.FetchOptions, cache: Path) -> datasets.Dataset | None:
    if validation.dataset is None:
        return None
    field = "spec.validation.dataset"
    return datasets.load(
        dataset_archives.data_yaml(validation.dataset, validation.dataset_sha256, options, field, cache)
    )


def _fine_tune_data(
    spec: api.ModelDeploymentSpec, options: fetch.FetchOptions, cache: Path, classes: int
) -> Path | None:
    """The fine-tune's data.yaml, checked before the minutes of baseline measurements that come first."""
    prune_spec = spec.engine.prune
    if prune_spec is None or not prune_spec.fine_tune_epochs:
        return None
    if prune_spec.dataset is None:  # refused by the spec's own rules already; this narrows the type
        raise api_errors.SpecError(finetune.FIELD, "required when spec.engine.prune.fineTuneEpochs > 0")
    data_yaml = dataset_archives.data_yaml(
        prune_spec.dataset, prune_spec.dataset_sha256, options, finetune.FIELD, cache
    )
    finetune.check_dataset(data_yaml, classes)
    return data_yaml


def _distill_data(spec: api.ModelDeploymentSpec, options: fetch.FetchOptions, cache: Path, classes: int) -> Path | None:
    """The distillation's data.yaml, checked (classes, a train split) before the baseline measurements."""
    distill_spec = spec.engine.distill
    if distill_spec is None:
        return None
    data_yaml = dataset_archives.data_yaml(
        distill_spec.dataset, distill_spec.dataset_sha256, options, distill.FIELD, cache
    )
    finetune.check_dataset(data_yaml, classes, distill.FIELD)
    return data_yaml


def _scorer(dataset: datasets.Dataset | None, settings: candidate.Settings, stride: int) -> finetune.Score | None:
    """mAP of a checkpoint in PyTorch, on the validation set, as the baseline's is measured (comparable with it)."""
    if dataset is None:
        return None
    reference = preprocess.Preprocessing(imgsz=settings.export.imgsz, stride=stride)

    def score(checkpoint: Path) -> accuracy.Accuracy:
        source = runners.torch_source(checkpoint, settings.threads, settings.export.batch)
        return accuracy.measure(source, dataset, reference, settings.validation_limit)

    return score


def _calibration(spec: api.ModelDeploymentSpec, options: fetch.FetchOptions, cache: Path) -> export.Calibration | None:
    calibration = spec.engine.calibration
    if calibration is None:
        return None
    field = "spec.engine.calibration.dataset"
    data_yaml = dataset_archives.data_yaml(calibration.dataset, calibration.dataset_sha256, options, field, cache)
    return export.Calibration(data_yaml, calibration.samples, calibration.split)


def _evaluate_all(
    checkpoint: Path,
    *,
    candidates: list[export.Candidate],
    settings: candidate.Settings,
    base: candidate.Baseline,
    work: Path,
    asked_format: str,
) -> list[candidate.Outcome]:
    outcomes = []
    for index, item in enumerate(candidates):
        progress.report("export", index, len(candidates))
        try:
            outcomes.append(candidate.evaluate(checkpoint, item, settings, base, work))
        except errors.ExportError as error:
            if asked_format != "auto":
                raise  # an explicit format that cannot be built is the build's failure, with the field named
            outcomes.append(candidate.failed_export(item, error))
    return outcomes


def _choose(outcomes: list[candidate.Outcome]) -> candidate.Outcome:
    """The fastest (median, batch 1) that passed; else the first candidate, whose failure the result reports."""
    passed = [o for o in outcomes if o.verdict.passed]
    if passed:
        return min(passed, key=lambda o: o.p50_ms)
    built = [o for o in outcomes if o.exported is not None]
    if not built:
        raise errors.ExportError(
            "spec.engine: no candidate could be built: " + "; ".join(o.verdict.message for o in outcomes)
        )
    return built[0]


def _write_repository(
    out: Path,
    *,
    winner: candidate.Outcome,
    spec: api.ModelDeploymentSpec,
    names: dict[int, str],
    stride: int,
    settings: candidate.Settings,
    model_name: str,
    dataset: datasets.Dataset | None,
) -> Path:
    assert winner.exported is not None
    triton = spec.serving.triton
    info = config.ModelInfo(
        model_name,
        names,
        stride,
        spec.model.imgsz,
        spec.model.task,
        winner.candidate.format,
        winner.candidate.precision,
    )
    latency = winner.numbers["latency"]
    batching = config.choose_batching(
        spec.engine.batch.max,
        latency[0]["p50_ms"],
        latency[0]["throughput_ips"],
        latency[-1]["throughput_ips"] if len(latency) > 1 else None,
    )
    asked = triton.dynamic_batching
    batching = dataclasses.replace(
        batching,
        enabled=asked.enabled and batching.enabled,
        preferred=tuple(asked.preferred_batch_sizes or batching.preferred),
        queue_delay_us=(
            asked.max_queue_delay_microseconds
            if asked.max_queue_delay_microseconds is not None
            else batching.queue_delay_us
        ),
    )
    instances = config.Instances(count=triton.instances, gpu=settings.gpu, warmup=triton.warmup, runtime=triton.runtime)
    layout = repository.layout(
        info,
        winner.exported.path,
        pre=settings.serving_preprocessing,
        post=SERVING_POSTPROCESSING,
        batching=batching,
        instances=instances,
        dynamic=spec.engine.batch.dynamic,
        baseline=winner.drift_baseline,
    )
    repo_dir = out / "repository"
    shutil.rmtree(repo_dir, ignore_errors=True)
    repository.write(layout, repo_dir)
    # The probes are answered by the engine being published, through the repository's own pre- and postprocessing.
    run = runners.for_engine(
        winner.candidate.format,
        winner.exported.path,
        settings.threads,
        spec.engine.batch.max,
        winner.candidate.precision,
    )
    recorded = probe_recording.record(dataset, run, settings.serving_preprocessing, SERVING_POSTPROCESSING)
    (repo_dir / probes.FILE).write_bytes(probes.encode(recorded, SERVING_POSTPROCESSING))
    return repo_dir


def drift_summary(baseline: drift.Tally | None, names: dict[int, str]) -> dict[str, Any]:
    """The drift baseline in a few numbers for manifest.json (the full tally is the repository's baseline.json)."""
    if baseline is None:
        return {"recorded": False, "why": "no spec.validation.dataset: the served model exports no drift score"}
    detections = sum(baseline.confidence)
    return {
        "recorded": True,
        "images": baseline.images,
        "detectionsPerImage": {names[i]: round(r, 4) for i, r in enumerate(baseline.rates().tolist())},
        "confidence": {
            b: round(n / detections, 4) if detections else 0.0
            for b, n in zip(drift.BUCKETS, baseline.confidence, strict=True)
        },
    }


def _candidate_entry(outcome: candidate.Outcome) -> dict[str, Any]:
    return {
        "name": outcome.candidate.name,
        "passed": outcome.verdict.passed,
        "reason": outcome.verdict.reason,
        "failures": outcome.verdict.failures,
        "message": outcome.verdict.message,
        **outcome.numbers,
    }


def _result(spec: api.ModelDeploymentSpec, winner: candidate.Outcome) -> api_result.BuildResult:
    n = winner.numbers
    message = winner.verdict.message
    if len(message) > _MAX_MESSAGE:  # the whole message is in manifest.json
        message = message[: _MAX_MESSAGE - 24] + " ... (see manifest.json)"
    return api_result.BuildResult(
        engine_key=keys.engine_key(spec),
        format=winner.candidate.format,
        precision=winner.candidate.precision,
        size_bytes=n.get("sizeBytes"),
        gpu_product=spec.target.gpu.product if spec.target.gpu else None,
        gate=api_result.Gate(
            passed=winner.verdict.passed,
            reason=winner.verdict.reason,  # "Passed", "NotMeasured" or a gate.Reason: api.result.GateReason values
            message=message,
        ),
        validation=status.ValidationStatus(
            passed=winner.verdict.passed,
            map_source=n.get("mapSource"),
            map_engine=n.get("mapEngine"),
            map50_source=n.get("map50Source"),
            map50_engine=n.get("map50Engine"),
            max_output_delta=n.get("maxOutputDelta"),
            mean_output_delta=n.get("meanOutputDelta"),
            p50_ms=n.get("p50Ms"),
            p95_ms=n.get("p95Ms"),
            throughput=n.get("throughput"),
        ),
    )
