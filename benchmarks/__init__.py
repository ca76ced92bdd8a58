"""The op and training-iteration benchmarks (a package, so that its module names never clash
with the tests' under `pytest tests benchmarks`)."""
