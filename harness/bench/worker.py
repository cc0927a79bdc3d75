"""`python -m harness.bench.worker`: run one job (JSON on stdin), print one result (JSON on stdout).

A fresh process per measurement: models measured in one process skew each other (allocator and
oneDNN caches, compiled kernels, a warmed or fragmented heap) and the CPU's peak resident memory is
per process. The worker pins glibc's malloc thresholds first (see harness.bench.malloc), so that
the same model measures the same in every process. Anything else that writes to stdout (compilers, libraries) is sent to stderr so the
parent reads exactly one JSON document. A user mistake is reported as {"error": ...} with exit 2;
anything else is a traceback on stderr and exit 1.
"""
from __future__ import annotations

import json
import os
import sys

from harness.errors import user_errors

from .jobs import DataJob, Job, ModelJob, from_json
from .malloc import pin_thresholds


def run(job: Job) -> dict:
    if isinstance(job, ModelJob):
        from .model import measure_model

        return measure_model(job).to_dict()
    if isinstance(job, DataJob):
        from .data import measure_data

        return measure_data(job).to_dict()
    import torch

    from .peak import device_peak

    device = torch.device(job.device)
    flops, source = device_peak(device, job.precision, job.threads)
    return {"peak_flops_per_s": flops, "peak_flops_source": source}


def main() -> int:
    pin_thresholds()
    result_out = os.fdopen(os.dup(1), "w")
    os.dup2(2, 1)
    job = from_json(json.load(sys.stdin))
    try:
        result = run(job)
    except user_errors() as err:
        json.dump({"error": str(err)}, result_out)
        return 2
    json.dump(result, result_out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
