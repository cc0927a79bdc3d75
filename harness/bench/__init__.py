"""`convbench bench`: throughput, step time, memory and MFU of architectures and data pipelines,
and DDP scaling across ranks.

Measured the way timm's benchmark.py does (synthetic input already on the device, warm-up, then
device-synchronised timing of a fixed number of steps), repeated to report a spread, each
measurement in a fresh worker process so that models do not skew each other and peak resident
memory is per measurement. The parent (`jobs.run_job`, or `distributed.Launcher` for the ranks of a
DDP measurement) spawns `python -m harness.bench.worker`, which reads one job as JSON on stdin and
writes one result as JSON on stdout. `run` takes the command's request from its checks to its
output, `progress` says on stderr what is measuring and what is left, `measure` is how a step is
timed, `peak` the MFU denominator, `results` the row and where it goes, `sweep` the bench sweep
file that runs the DDP bench as a Slurm array.
"""
