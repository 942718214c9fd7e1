"""`kestrel protoset -o triton.protoset`: Triton's gRPC API as a protobuf FileDescriptorSet, for grpcurl and other
generic gRPC clients.

Triton serves no gRPC reflection, so such a client needs the service's descriptors. These are the ones of the
tritonclient release Kestrel's own client uses (`inference.GRPCInferenceService` and the model configuration it
returns), each file after the files it imports, as `protoc --include_imports --descriptor_set_out` writes them.
"""

from __future__ import annotations

import argparse
import pathlib
import sys

from google.protobuf import descriptor, descriptor_pb2

EXIT_OK = 0


def add_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = commands.add_parser(
        "protoset",
        help="write Triton's gRPC API as a FileDescriptorSet (grpcurl -protoset FILE)",
        description="Triton serves no gRPC reflection; generic clients such as grpcurl read the API from this file.",
    )
    parser.add_argument("-o", "--output", type=pathlib.Path, required=True, help="the file to write")
    parser.set_defaults(command=run)


def _with_imports(found: descriptor.FileDescriptor, files: dict[str, descriptor_pb2.FileDescriptorProto]) -> None:
    if found.name in files:
        return
    for imported in found.dependencies:
        _with_imports(imported, files)
    proto = descriptor_pb2.FileDescriptorProto()
    found.CopyToProto(proto)
    files[found.name] = proto


def descriptor_set() -> descriptor_pb2.FileDescriptorSet:
    """Triton's gRPC service and every file it imports, imports first."""
    from tritonclient.grpc import service_pb2  # noqa: PLC0415 - gRPC loads only for this command

    files: dict[str, descriptor_pb2.FileDescriptorProto] = {}
    _with_imports(service_pb2.DESCRIPTOR, files)
    return descriptor_pb2.FileDescriptorSet(file=list(files.values()))


def run(args: argparse.Namespace) -> int:
    target: pathlib.Path = args.output
    found = descriptor_set()
    target.write_bytes(found.SerializeToString())
    print(f"Wrote Triton's gRPC API ({', '.join(f.name for f in found.file)}) to {target}", file=sys.stderr)
    return EXIT_OK
