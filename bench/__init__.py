"""Benchmarks, run from the repository root as modules (`.venv/bin/python -m bench.engine ...`): each writes its own
section of docs/benchmarks.md (doc_sections) with the command that reproduces it. Not imported by the operator."""
