"""`convbench train`: one run of any registered classifier on any dataset (a segmenter on a segmentation
dataset), recorded under ``results/<run id>/``. Exit codes: 0 completed, 1 failed, 2 a user mistake, 3 diverged
(NaN/inf loss), 4 preempted (checkpointed on SIGUSR1 or SIGTERM: `--resume` continues it)."""

from __future__ import annotations

import argparse
import json
from typing import Any

from harness.config.keys import nest
from harness.config.train_config import TRANSFER_MODES, WANDB_MODES, TrainConfig, load_file, parse_set, resolve
from harness.errors import UserError


def configure(p: argparse.ArgumentParser) -> None:
    p.add_argument("--arch", help="a registered classifier or segmenter (convbench list)")
    p.add_argument(
        "--data",
        dest="dataset",
        help="fashion-mnist | cifar10 | cifar100 | imagefolder | imagenet | synthetic | yours; segmentation: "
        "segfolder | shapes",
    )
    p.add_argument("--data-root", help="where the dataset's files are")
    p.add_argument("--epochs", type=int)
    p.add_argument("--batch-size", type=int)
    p.add_argument(
        "--recipe", help="alexnet | vgg | googlenet | resnet-cifar | resnet-imagenet | densenet-cifar | lenet"
    )
    p.add_argument("--seed", type=int)
    p.add_argument("--config", help="a YAML file of config keys (every key: docs/config.md)")
    p.add_argument(
        "--set", action="append", default=[], metavar="KEY=VALUE", help="override any config key, e.g. optim.lr=0.05"
    )
    p.add_argument("--results", help="results root (default results/)")
    p.add_argument("--devices", type=int)
    p.add_argument("--num-nodes", type=int)
    p.add_argument("--accelerator", help="auto | cpu | gpu")
    p.add_argument("--strategy", help="auto | ddp | ddp_spawn | ddp_fork")
    p.add_argument("--precision", help="32-true | bf16-mixed | 16-mixed")
    p.add_argument("--workers", type=int, help="DataLoader worker processes")
    p.add_argument(
        "--transfer", choices=TRANSFER_MODES, help="with --from: linear-probe or finetune a trained checkpoint"
    )
    p.add_argument("--from", dest="checkpoint", metavar="CKPT", help="a convbench checkpoint of the same architecture")
    p.add_argument("--wandb", choices=WANDB_MODES, help="W&B mode (default offline: written under the run directory)")
    p.add_argument("--resume", action="store_true", help="continue an interrupted run from its last checkpoint")
    p.add_argument("--json", action="store_true", help="print result.json on stdout")
    p.add_argument(
        "--sweep",
        metavar="FILE",
        help="the run of this sweep file whose parameters are the KEY=VALUEs "
        "(what `wandb agent` passes), or a named run of it by NAME: the sweep's own config, references and run id",
    )
    p.add_argument(
        "overrides",
        nargs="*",
        metavar="KEY=VALUE",
        help="same as --set (the form `wandb agent` passes: ${args_no_hyphens})",
    )


def flag_layer(a: argparse.Namespace) -> dict[str, Any]:
    """The flags the user gave, as config keys (absent flags leave lower layers alone)."""
    pairs = {
        "arch": a.arch,
        "dataset": a.dataset,
        "epochs": a.epochs,
        "recipe": a.recipe,
        "seed": a.seed,
        "results": a.results,
        "data.root": a.data_root,
        "data.batch_size": a.batch_size,
        "data.num_workers": a.workers,
        "trainer.devices": a.devices,
        "trainer.num_nodes": a.num_nodes,
        "trainer.accelerator": a.accelerator,
        "trainer.strategy": a.strategy,
        "trainer.precision": a.precision,
        "transfer.mode": a.transfer,
        "transfer.checkpoint": a.checkpoint,
        "wandb.mode": a.wandb,
        "imports": a.imports or None,
    }
    return nest({key: value for key, value in pairs.items() if value is not None})


def resolve_args(args: argparse.Namespace) -> TrainConfig:
    """The run's config from the command line (without running it)."""
    if args.sweep:
        kept = ("sweep", "overrides", "resume", "json", "results", "wandb", "verb", "imports")
        given = [
            f"--{k.replace('_', '-')}" for k, v in vars(args).items() if k not in kept and v not in (None, [], False)
        ]
        if given:
            raise UserError(
                "--sweep FILE takes the run's parameters as KEY=VALUE arguments (and --results, --wandb),"
                f" not {given[0]}"
            )
        from harness.sweep.spec import load

        config = load(args.sweep, args.results, args.imports).agent_run(args.overrides).config
        if args.wandb:
            config.wandb.mode = args.wandb  # not part of the run id: the same run, logged another way
    else:
        bad = next((a for a in args.overrides if "=" not in a or a.startswith("=")), None)
        if bad is not None:
            raise UserError(f"argument {bad!r}: expected KEY=VALUE, e.g. optim.lr=0.05 (same as --set)")
        layers = [("config file " + args.config, load_file(args.config))] if args.config else []
        layers += [
            ("flags", flag_layer(args)),
            ("--set", parse_set(args.set)),
            ("arguments", parse_set(args.overrides)),
        ]
        config = resolve(layers)
    return config


def run(args: argparse.Namespace) -> int:
    config = resolve_args(args)
    from harness.training.preemption import EXIT_PREEMPTED, Preempted
    from harness.training.run import EXIT_DIVERGED, train

    try:
        result = train(config, resume=args.resume)
    except Preempted:  # checkpointed (and requeued under Slurm): `--resume` continues it
        return EXIT_PREEMPTED
    if result is None:  # a DDP rank other than 0
        return 0
    r = result
    if args.json:
        print(json.dumps(r.to_dict(), indent=1, default=str))
    else:
        pct = lambda v: "-" if v is None else f"{100 * v:.2f}%"  # noqa: E731
        world = r.world_size or 1
        ranks = f" over {world} ranks" if world > 1 else ""  # the job's rate, the sum over its ranks
        scores = (
            f"test Dice {pct(r.test_dice)}  mIoU {pct(r.test_miou)}  pixel acc {pct(r.test_acc1)}"
            if r.test_miou is not None
            else f"test top-1 {pct(r.test_acc1)}  top-5 {pct(r.test_acc5)}"
        )
        print(
            f"{r.run_id}: {r.status}  {scores}  "
            f"train loss {r.train_loss or float('nan'):.4f}  {r.train_samples_per_s or 0:.0f} samples/s{ranks}  "
            f"peak {(r.peak_memory_bytes or 0) / 2**20:.0f} MiB  -> {config.results}/{r.run_id}/result.json"
        )
    return EXIT_DIVERGED if r.status == "diverged" else 0
