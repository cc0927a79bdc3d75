"""A machine-normalised throughput check for pytest, as a plugin (registered as the `pytest11` entry point
`convbench_throughput`): the `throughput` fixture times a model's train or infer step, or any callable, with
pytest-benchmark, divides the rate by a reference GEMM and convolution rate measured just before each round, and
compares the figure with a baseline JSON committed beside the tests
(docs/bench.md#the-throughput-check-a-pytest-plugin).

`verdict` (the decision) and `baseline` (the file) import no torch, nor does `plugin`, which every pytest session
of an environment with convbench installed loads; `measure` (the timing) is imported by the fixture only."""
