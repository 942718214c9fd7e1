"""The build's probes (serving/probes.py): held-out validation images and what the served pipeline answers for them.

The images come from the `val` split the gate scored on, never from calibration (the build refuses a calibration
split that shares an image with it, pipeline.check_held_out). Of the first CANDIDATES, the MAX_IMAGES with the most
detections are kept: an image the model sees nothing in proves little about the live server. The detections are the
served pipeline's own, run here on the engine being published: the repository's preprocessing, the engine, the
repository's postprocessing (serving/backends/fused.py `detect`, one image per request as a client sends it).
"""

from __future__ import annotations

from kestrel.engine import datasets
from kestrel.serving import probes
from kestrel.serving.backends import fused, postprocess, preprocess, runtime

CANDIDATES = 16
NO_DATASET = (
    "the build had no spec.validation.dataset, so no validation image was recorded to check the live server with"
)


def record(
    dataset: datasets.Dataset | None,
    run: runtime.Run,
    pre: preprocess.Preprocessing,
    post: postprocess.Postprocessing,
) -> probes.Probes:
    if dataset is None:
        return probes.Probes((), post.conf, NO_DATASET)
    found = []
    for path in dataset.images("val", limit=CANDIDATES):
        image = probes.shrink(datasets.read_rgb(path))
        [answer] = fused.detect([[image]], run, pre, post)
        detections = answer[0]
        found.append(probes.Probe(path.name, image, detections[detections[:, 5] >= 0]))
    # Most detections first; sorted() is stable, so ties keep the split's order.
    chosen = sorted(found, key=lambda p: -len(p.detections))[: probes.MAX_IMAGES]
    return probes.Probes(tuple(chosen), post.conf)
