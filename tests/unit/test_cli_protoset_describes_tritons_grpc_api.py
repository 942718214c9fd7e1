"""`kestrel protoset` writes Triton's gRPC API as a FileDescriptorSet that a generic client can load: every file after
the files it imports, and the inference service with the calls docs/calling-the-endpoint.md makes."""

from __future__ import annotations

import pathlib

from google.protobuf import descriptor_pb2, descriptor_pool

from kestrel import cli


def test_the_protoset_loads_into_a_fresh_pool_with_the_inference_service(tmp_path: pathlib.Path) -> None:
    target = tmp_path / "triton.protoset"
    assert cli.main(["protoset", "-o", str(target)]) == 0
    found = descriptor_pb2.FileDescriptorSet.FromString(target.read_bytes())
    names = [file.name for file in found.file]
    assert names.index("model_config.proto") < names.index("grpc_service.proto")  # imports first
    pool = descriptor_pool.DescriptorPool()
    for file in found.file:  # a file whose imports came later would be refused here
        pool.Add(file)
    service = pool.FindServiceByName("inference.GRPCInferenceService")
    methods = {method.name for method in service.methods}
    assert {"ModelReady", "ModelMetadata", "ModelConfig", "ModelInfer"} <= methods
