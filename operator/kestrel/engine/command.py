"""The build Job's entry point behind `kestrel build`: read the spec, build, report, exit with a meaningful code.

Exit codes: 0 the engine passed the gate (and, in a build Job, was published to the store); 2 it was built but failed
the gate (nothing is published); 1 the build itself, or its publication, failed. A JSON result goes to stdout and to
the termination-message file, so the operator learns why without reading logs.
"""

from __future__ import annotations

import contextlib
import os
import sys
from pathlib import Path
from typing import Any, TextIO

import yaml

from kestrel.api import errors as api_errors
from kestrel.api import result as api_result
from kestrel.api import spec as api
from kestrel.engine import fetch, pipeline, publish

EXIT_PASSED, EXIT_FAILED, EXIT_GATE = 0, 1, 2
TERMINATION_LOG = Path(os.environ.get("KESTREL_TERMINATION_LOG", "/dev/termination-log"))


def load_spec(path: Path) -> tuple[api.ModelDeploymentSpec, str]:
    """A ModelDeployment YAML (the whole object, or only its spec) -> the parsed spec and the object's name."""
    document: Any = yaml.safe_load(path.read_text())
    if not isinstance(document, dict):
        raise api_errors.SpecError("spec", f"{path} is not a YAML mapping")
    name = str(document.get("metadata", {}).get("name") or "model")
    return api.parse(document.get("spec", document)), name


def run(
    spec_file: Path,
    out: Path,
    *,
    pvc_root: Path | None = None,
    credentials_dir: Path | None = None,
    ca_file: Path | None = None,
    threads: int | None = None,
) -> int:
    out.mkdir(parents=True, exist_ok=True)
    try:
        spec, name = load_spec(spec_file)
        fetch_options = fetch.FetchOptions(
            pvc_root=pvc_root or fetch.FetchOptions().pvc_root, credentials_dir=credentials_dir, ca_file=ca_file
        )
        destination = publish.Destination.from_environ()
        options = pipeline.BuildOptions(fetch=fetch_options, model_name=name, threads=threads or os.cpu_count() or 1)
        built = pipeline.build(spec, out, options)
        outcome = built.result
        if destination is not None and built.passed and built.repository is not None:
            outcome = publish.publish(built.repository, outcome, destination, out / "work")
            built.result_file.write_text(outcome.to_termination_message())
    except api_errors.KestrelError as error:
        # Not a BuildResult (nothing was built): a plain line that api.result.parse rejects and people can read.
        text = f"{type(error).__name__}: {error}"
        _emit(text.encode()[: api_result.MAX_BYTES].decode(errors="ignore"), sys.stderr)
        return EXIT_FAILED
    _emit(outcome.to_termination_message(), sys.stdout)
    return EXIT_PASSED if built.passed else EXIT_GATE


def _emit(text: str, stream: TextIO) -> None:
    stream.write(text + "\n")
    with contextlib.suppress(OSError):  # not in a pod (or the file is not mounted): the stream carries it
        TERMINATION_LOG.write_text(text)
