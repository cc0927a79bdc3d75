"""Aggregation: completed runs grouped by what they computed (everything but the seed), one row
per group with mean ± sample std over seeds, the per-run table, and the markdown rendering.

A group is (arch, task, transfer mode, labels_per_class) plus every other config key whose
value differs between runs of that group, except keys that do not change what is computed and
those that differ between the seeds of one experiment (the seed, transfer.checkpoint): the same
definition as the run id's, read from the config's field metadata (:func:`harness.config.role`).
The differing keys are shown as the row's ``variant``. A task is a dataset
and the class subset trained on (data.classes): transfer studies pretrain on some classes and learn
the others, and those runs answer different questions."""

from __future__ import annotations

import json
import re
import statistics
from collections import Counter, defaultdict
from collections.abc import Iterable
from typing import Any

from harness.config.train_config import identity_items, role
from harness.report.collect import Run, finite

TRANSFER_ORDER = {"scratch": 0, "linear-probe": 1, "finetune": 2}
BASE_KEYS = (
    "arch",
    "dataset",
    "data.classes",
    "transfer.mode",
    "data.labels_per_class",
)  # in base_key, not the variant
# (result key, column title, kind) of the mean ± std columns
METRICS = (
    ("test_acc1", "test top-1 %", "pct"),
    ("test_acc5", "test top-5 %", "pct"),
    ("test_dice", "test Dice %", "pct"),
    ("test_miou", "test mIoU %", "pct"),
    ("train_acc1", "train top-1 %", "pct"),
    ("train_loss", "train loss", "loss"),
)
# shown only when some row has them: a classification report has no Dice, a segmentation one no top-5
WHEN_MEASURED = ("test_acc5", "test_dice", "test_miou")
RUN_FIELDS = (
    "run_id",
    "arch",
    "family",
    "depth",
    "residual",
    "dataset",
    "classes",
    "transfer",
    "labels_per_class",
    "seed",
    "status",
    "train_loss",
    "train_acc1",
    "test_acc1",
    "test_acc5",
    "test_dice",
    "test_miou",
    "train_samples_per_s",
    "train_samples_per_s_rank_min",
    "train_samples_per_s_rank_max",
    "world_size",
    "num_nodes",
    "hosts",
    "peak_memory_mib",
    "wall_time_s",
    "elapsed_s",
    "device_hours",
    "hardware",
    "error",
)


def identity_keys(run: Run) -> dict[str, Any]:
    """The config keys that make a run's group: what is computed, less the seed and the base key (and an
    empty ``model: {}``, the same as a run that sets some model.* key leaving the others unset)."""
    return {
        k: v for k, v in identity_items(run.config).items() if k not in BASE_KEYS and role(k) == "identity" and v != {}
    }


def _hashable(v: Any) -> str:
    return json.dumps(v, sort_keys=True, default=str)


def task(dataset: Any, classes: list[int] | None) -> str:
    """'cifar10', or 'fashion-mnist classes 5-9' for a class subset."""
    if not classes:
        return str(dataset)
    ks = sorted(classes)
    subset = f"{ks[0]}-{ks[-1]}" if len(ks) > 2 and ks == list(range(ks[0], ks[-1] + 1)) else ",".join(map(str, ks))
    return f"{dataset} classes {subset}"


def base_key(run: Run) -> tuple[Any, ...]:
    return (run.get("arch"), task(run.get("dataset"), run.classes), run.transfer, run.labels_per_class)


def group(runs: Iterable[Run]) -> list[tuple[dict[str, Any], list[Run]]]:
    """``[(variant, runs)]``: the completed runs split by base key, then by the config keys that differ inside it."""
    by_base: dict[tuple[Any, ...], list[Run]] = {}
    for r in runs:
        by_base.setdefault(base_key(r), []).append(r)
    out = []
    for members in by_base.values():
        ids = [identity_keys(r) for r in members]
        keys = sorted({k for d in ids for k in d})
        differing = [k for k in keys if len({_hashable(d.get(k)) for d in ids}) > 1]
        sub: dict[str, tuple[dict[str, Any], list[Run]]] = {}
        for r, d in zip(members, ids):
            variant = {k: d.get(k) for k in differing}
            sub.setdefault(_hashable(variant), (variant, []))[1].append(r)
        out.extend(sub.values())
    return out


def stats(values: Iterable[Any]) -> dict[str, Any]:
    """mean, sample std (n-1; None for one value) and n of the finite values."""
    xs = [x for x in (finite(v) for v in values) if x is not None]
    if not xs:
        return {"mean": None, "std": None, "n": 0}
    return {"mean": statistics.fmean(xs), "std": statistics.stdev(xs) if len(xs) > 1 else None, "n": len(xs)}


def variant_label(variant: dict[str, Any]) -> str:
    return ", ".join(f"{k}={json.dumps(v) if isinstance(v, (list, dict)) else v}" for k, v in variant.items())


def _sort_key(row: dict[str, Any]) -> tuple[Any, ...]:
    inf = float("inf")
    return (
        str(row["family"]),
        row["depth"] if row["depth"] is not None else inf,
        bool(row["residual"]),
        str(row["arch"]),
        row["task"],
        TRANSFER_ORDER.get(row["transfer"], 9),
        row["labels_per_class"] or inf,
        row["variant_label"],
    )


def aggregate(runs: list[Run]) -> list[dict[str, Any]]:
    """One row per group of completed runs, sorted by family then depth. Non-completed runs of the
    same group are counted in ``not_completed``."""
    done = [r for r in runs if r.completed]
    others = Counter((base_key(r), r.get("status")) for r in runs if not r.completed)
    rows = []
    for variant, members in group(done):
        members.sort(key=lambda r: (r.get("seed") if r.get("seed") is not None else 0, r.get("run_id")))
        first = members[0]
        row: dict[str, Any] = {
            "arch": first.get("arch"),
            "family": first.get("family"),
            "depth": first.get("depth"),
            "residual": first.get("residual"),
            "dataset": first.get("dataset"),
            "classes": first.classes,
            "task": task(first.get("dataset"), first.classes),
            "transfer": first.transfer,
            "labels_per_class": first.labels_per_class,
            "variant": variant,
            "variant_label": variant_label(variant),
            "_identity": identity_keys(first),
            "params": first.get("params"),
            "macs": first.get("macs"),
            "n": len(members),
            "world_size": first.get("world_size")
            or 1,  # trainer.devices and num_nodes are identity keys: one per group
            "seeds": [r.get("seed") for r in members],
            "run_ids": [r.get("run_id") for r in members],
        }
        for key, _, _ in METRICS:  # accuracy pools the seeds whatever they ran on
            row[key] = stats(r.get(key) for r in members)
        # speed, memory and time never do: per hardware, and in the row only when its runs share one
        row["hardware"] = sorted({r.hardware for r in members})
        row["by_hardware"] = {hw: costs([r for r in members if r.hardware == hw]) for hw in row["hardware"]}
        shared = row["by_hardware"][row["hardware"][0]] if len(row["hardware"]) == 1 else costs([])
        row.update({k: v for k, v in shared.items() if k != "n"})  # n stays the seeds over all hardware
        row["not_completed"] = {
            s: n for (b, s), n in sorted(others.items(), key=lambda kv: str(kv[0])) if b == base_key(first)
        }
        rows.append(row)
    rows.sort(key=_sort_key)
    return rows


def costs(runs: list[Run]) -> dict[str, Any]:
    """Speed, memory and time of runs on one kind of hardware: mean ± std over them, and the
    device-hours they took in all."""
    hours = [finite(r.get("device_hours")) for r in runs]
    return {
        "n": len(runs),
        "train_samples_per_s": stats(r.get("train_samples_per_s") for r in runs),  # the job's: the sum over ranks
        "eval_samples_per_s": stats(r.get("eval_samples_per_s") for r in runs),
        "peak_memory_mib": stats(
            r.get("peak_memory_bytes") / 2**20 if r.get("peak_memory_bytes") is not None else None for r in runs
        ),
        "wall_time_s": stats(r.get("wall_time_s") for r in runs),
        "elapsed_s": stats(r.get("elapsed_s") for r in runs),
        "device_hours": sum(h for h in hours if h is not None) if any(h is not None for h in hours) else None,
    }


def device_hours(runs: list[Run]) -> dict[str, Any]:
    """What a set of runs cost, all statuses and all attempts: in all and per hardware (runs
    recorded before device-hours existed are counted in ``unrecorded``)."""
    by: dict[str, float] = defaultdict(float)
    for r in runs:
        h = finite(r.get("device_hours"))
        if h is not None:
            by[r.hardware] += h
    return {
        "total": sum(by.values()),
        "by_hardware": dict(sorted(by.items())),
        "unrecorded": sum(finite(r.get("device_hours")) is None for r in runs),
    }


def run_rows(runs: list[Run], root: Any = None) -> list[dict[str, Any]]:
    """Every run's final metrics, all statuses (runs.json)."""
    out = []
    for r in runs:
        peak = finite(r.get("peak_memory_bytes"))
        row = {
            k: r.get(k) if k not in ("classes", "labels_per_class", "peak_memory_mib", "hardware") else None
            for k in RUN_FIELDS
        }
        row.update(
            hardware=r.hardware,
            classes=r.classes,
            transfer=r.transfer,
            labels_per_class=r.labels_per_class,
            peak_memory_bytes=r.get("peak_memory_bytes"),
            peak_memory_mib=None if peak is None else peak / 2**20,
        )
        for k in (
            "train_loss",
            "train_acc1",
            "test_acc1",
            "test_acc5",
            "test_dice",
            "test_miou",
            "train_samples_per_s",
            "wall_time_s",
            "elapsed_s",
        ):
            row[k] = finite(row[k])
        row["error"] = (r.get("error") or "").splitlines()[0][:300] if r.get("error") else None
        # relative to the report's root, else to the run's own results root (<results>/<run id>): never absolute
        row["path"] = str(r.path.relative_to(root)) if root is not None and r.path.is_relative_to(root) else r.path.name
        out.append(row)
    inf = float("inf")
    out.sort(
        key=lambda x: (
            str(x["family"]),
            x["depth"] if x["depth"] is not None else inf,
            bool(x["residual"]),
            str(x["arch"]),
            str(x["dataset"]),
            TRANSFER_ORDER.get(x["transfer"], 9),
            x["labels_per_class"] or inf,
            x["seed"] if x["seed"] is not None else inf,
            x["run_id"],
        )
    )
    return out


def fmt(s: dict[str, Any], kind: str) -> str:
    """'91.23 ± 0.45' (pct), '0.2345 ± 0.0123' (loss), '1,234' (int); '–' when there is no value."""
    if s["mean"] is None:
        return "–"
    scale, spec = {"pct": (100, ".2f"), "loss": (1, ".4f"), "int": (1, ",.0f"), "s": (1, ",.1f")}[kind]
    text = format(s["mean"] * scale, spec)
    return text if s["std"] is None else f"{text} ± {format(s['std'] * scale, spec)}"


def _human(n: Any) -> str:
    from harness.console import human

    return "–" if n is None else human(n)


def table(rows: list[dict[str, Any]]) -> tuple[list[str], list[list[str]]]:
    """Column titles and cells of the aggregated table (labels/class and variant only when used)."""
    lpc = any(r["labels_per_class"] is not None for r in rows)
    var = any(r["variant_label"] for r in rows)
    cols = (
        ["arch", "family", "depth", "type", "dataset", "transfer"]
        + (["labels/class"] if lpc else [])
        + (["variant"] if var else [])
    )
    metrics = [
        (key, title, kind)
        for key, title, kind in METRICS
        if key not in WHEN_MEASURED or any(r[key]["mean"] is not None for r in rows)
    ]
    cols += ["params", "MACs", "n"] + [title for _, title, _ in metrics] + ["ranks", "samples/s", "peak MiB", "wall s"]
    several = len({hw for r in rows for hw in r["hardware"]}) > 1
    cols += ["hardware"] if several else []
    cells = []
    for r in rows:
        c = [
            r["arch"],
            r["family"] or "–",
            "–" if r["depth"] is None else str(r["depth"]),
            "residual" if r["residual"] else "plain",
            r["task"],
            r["transfer"],
        ]
        c += [str(r["labels_per_class"]) if r["labels_per_class"] is not None else "all"] if lpc else []
        c += [r["variant_label"] or "–"] if var else []
        c += [_human(r["params"]), _human(r["macs"]), str(r["n"])]
        c += [fmt(r[key], kind) for key, _, kind in metrics]
        # cost columns: the mean only (their std is in report.json); samples/s over all ranks
        c += [str(r["world_size"])]
        c += [
            fmt({**r[k], "std": None}, kind)
            for k, kind in (("train_samples_per_s", "int"), ("peak_memory_mib", "int"), ("wall_time_s", "s"))
        ]
        if several:
            c += [r["hardware"][0] if len(r["hardware"]) == 1 else f"{len(r['hardware'])} kinds: see below"]
        cells.append([str(x) for x in c])
    return cols, cells


COST_COLUMNS = (("train_samples_per_s", "int"), ("peak_memory_mib", "int"), ("wall_time_s", "s"), ("elapsed_s", "s"))


def hardware_table(rows: list[dict[str, Any]]) -> tuple[list[str], list[list[str]]]:
    """The rows whose runs ran on more than one kind of hardware, one line per kind: their speed,
    memory and time, which the main table leaves out rather than average across machines."""
    cols = ["arch", "dataset", "variant", "hardware", "n", "samples/s", "peak MiB", "wall s", "clock s", "device-h"]
    cells = []
    for r in rows:
        if len(r["hardware"]) < 2:
            continue
        for hw, cost in r["by_hardware"].items():
            hours = "–" if cost["device_hours"] is None else f"{cost['device_hours']:.3g}"
            cells.append(
                [r["arch"], r["task"], r["variant_label"] or "–", hw, str(cost["n"])]
                + [fmt(cost[k], kind) for k, kind in COST_COLUMNS]
                + [hours]
            )
    return cols, cells


def markdown(cols: list[str], cells: list[list[str]]) -> str:
    esc = lambda s: s.replace("|", "\\|")  # noqa: E731
    right = {
        "depth",
        "params",
        "MACs",
        "n",
        "labels/class",
        "ranks",
        "samples/s",
        "peak MiB",
        "wall s",
        "clock s",
        "device-h",
    } | {t for _, t, _ in METRICS}
    lines = ["| " + " | ".join(cols) + " |", "|" + "|".join("---:" if c in right else "---" for c in cols) + "|"]
    lines += ["| " + " | ".join(esc(x) for x in row) + " |" for row in cells]
    return "\n".join(lines)


def main_rows(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [r for r in rows if r["transfer"] == "scratch" and r["labels_per_class"] is None]


def chart_variants(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The rows with ``chart_variant``: the part of their variant that differs from the value most
    runs of the chart have, so a one-off learning rate of one arch (or a labelled variant such as
    zero_init_residual) gets its own series while the arch's usual runs stay on their family's line."""
    keys = {k for r in rows for k in (*r.get("_identity", {}), *r["variant"])}
    votes: dict[str, Counter[str]] = defaultdict(Counter)
    for r in rows:
        values = {**r.get("_identity", {}), **r["variant"]}
        for k in keys:  # a key a row does not set (model.zero_init_residual of a plain net) votes for None
            votes[k][_hashable(values.get(k))] += r["n"]
    out = []
    for r in rows:
        odd = {k: v for k, v in r["variant"].items() if not votes[k] or _hashable(v) != votes[k].most_common(1)[0][0]}
        out.append({**r, "chart_variant": variant_label(odd)})
    return out


def slug(text: str) -> str:
    """A task or hardware label as a file or W&B key part: 'cifar10-classes-0-4'."""
    return re.sub(r"[^\w.-]+", "-", text).strip("-")
