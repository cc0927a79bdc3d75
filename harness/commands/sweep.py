"""`convbench sweep [run|status|cancel] FILE`: a grid of runs from a W&B-style sweep file (sweeps/*.yaml),
run locally (`--parallel N` subprocesses) or as SLURM array jobs. `convbench sweep FILE` = run.
Exit codes: 0 every run completed (or, for slurm, submitted), 1 some run did not complete, 2 a user mistake."""

from __future__ import annotations

import argparse
import json

from harness.errors import UserError

ACTIONS = ("run", "status", "cancel")


def configure(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "words", nargs="+", metavar="[ACTION] FILE", help="ACTION: run (default) | status | cancel; FILE: a sweep YAML"
    )
    p.add_argument("--backend", choices=("local", "slurm"), default="local")
    p.add_argument("--parallel", type=int, default=1, help="local: runs at a time; the cores are split between them")
    p.add_argument(
        "--dry-run", action="store_true", help="list the runs (local) or print the sbatch scripts (slurm); run nothing"
    )
    p.add_argument("--results", help="results root (default: the sweep's convbench.results, else results/)")
    p.add_argument("--json", action="store_true", help="status: print JSON")


def _overrides(values: dict) -> str:
    skip = {"results", "wandb.group"}
    return " ".join(f"{k}={json.dumps(v) if not isinstance(v, str) else v}" for k, v in values.items() if k not in skip)


def run(args: argparse.Namespace) -> int:
    words = args.words
    action = words[0] if words[0] in ACTIONS and len(words) > 1 else "run"
    files = words[1:] if words[0] in ACTIONS and len(words) > 1 else words
    if len(files) != 1:
        raise UserError(f"expected one sweep file, got {' '.join(files)}: convbench sweep [run|status|cancel] FILE")
    from harness.sweep.spec import load

    sweep = load(files[0], args.results, args.imports)
    if action == "status":
        from harness.sweep.status import statuses

        rows = statuses(sweep)
        if args.json:
            print(json.dumps(rows, indent=1))
        else:
            for r in rows:
                acc = "" if r["test_acc1"] is None else f"  test top-1 {100 * r['test_acc1']:.2f}%"
                slurm = f"  slurm {r['slurm_task']} {r['slurm']}" if r["slurm"] else ""
                print(f"{r['index']:>4}  {r['status']:<11} {r['run_id']}{slurm}{acc}")
            counts: dict[str, int] = {}
            for r in rows:
                counts[r["status"]] = counts.get(r["status"], 0) + 1
            print(f"{sweep.name}: " + ", ".join(f"{n} {s}" for s, n in counts.items()))
        return 0
    if action == "cancel":
        from harness.sweep.slurm import cancel

        return cancel(sweep)
    if args.dry_run and args.backend == "local":
        import architectures

        print(f"sweep {sweep.name}: {len(sweep.runs)} runs -> {sweep.results}   (sweep dir {sweep.dir})")
        for r in sweep.runs:
            deps = f"  after {','.join(map(str, r.deps))}" if r.deps else ""
            label = f"{r.name}: " if r.name else ""
            head = f"{r.index:>4}  {r.run_id:<40} {r.config.arch:<12} depth {architectures.depth(r.config.arch):<4}"
            print(f"{head} {label}{_overrides(r.values)}{deps}")
        return 0
    if args.backend == "slurm":
        from harness.sweep.slurm import submit

        submit(sweep, dry_run=args.dry_run)
        return 0
    from harness.sweep.local import run_local

    outcome = run_local(sweep, parallel=args.parallel)
    final = outcome.final
    bad = {i: s for i, s in final.items() if s != "completed"}
    print(
        f"sweep {sweep.name}: {len(final) - len(bad)}/{len(final)} completed"
        + ("; not completed: " + ", ".join(f"run {i} {s}" for i, s in sorted(bad.items())) if bad else "")
    )
    if outcome.overhead is not None:
        slots = min(outcome.parallel, len(outcome.run_s))
        print(
            f"sweep {sweep.name}: {len(outcome.run_s)} runs trained in {outcome.wall_s:.0f}s wall; "
            f"their own times sum to {sum(outcome.run_s):.0f}s over {slots} slots: overhead {outcome.overhead:.2f}x"
        )
    return 1 if bad else 0
