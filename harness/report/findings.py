"""The comparisons the studies are run for, read off the aggregated rows and the runs' curves as
markdown sections with their verdicts computed, so a report states what it shows instead of leaving it
to the eye:

- degradation (He et al. 2016, s4.2): per family and task, final training error by depth; does the
  plain nets' error rise from the best shallower depth to the deepest, and does every residual net
  train at least as well as each shallower one? (Differences within the seeds' spread do not count.)
- budget (He et al.'s Figure 6): along the training curves, from which step on does every residual
  net train at least as well as each shallower one while the deepest plain net trains worse than the
  shallowest? Per ladder: the defaults' and each labelled variant's (e.g. zero_init_residual).
- variants: each configuration against its twin at the config's defaults (bf16-mixed against fp32,
  zero-initialised residual branches against the paper's init): training error, within the spread or not.
- transfer (the seeds' table): per arch, task and label budget, test top-1 of scratch / linear probe /
  finetune, each one's improvement over scratch, the winner and its margin over the runner-up.

Training error = 100 - the epoch's running train top-1 (as the papers' training curves)."""

from __future__ import annotations

import statistics
from collections import defaultdict
from typing import Any

from harness.config.train_config import is_default
from harness.report.collect import Run
from harness.report.tables import TRANSFER_ORDER, chart_variants, fmt, main_rows, variant_label


def _err(s: dict[str, Any]) -> float | None:
    return None if s["mean"] is None else 100 * (1 - s["mean"])


def _err_text(s: dict[str, Any]) -> str:
    return "–" if s["mean"] is None else fmt({"mean": 1 - s["mean"], "std": s["std"]}, "pct")


def _ladders(rows: list[dict[str, Any]]) -> dict[tuple[str, str], list[dict[str, Any]]]:
    """From-scratch, full-label rows by (task, chart variant): '' is the configuration most runs of
    the task share, as the charts draw them; a labelled variant (a one-off learning rate,
    zero_init_residual) is its own ladder."""
    out: dict[tuple[str, str], list[dict[str, Any]]] = defaultdict(list)
    for t in sorted({r["task"] for r in rows}):
        for r in chart_variants(main_rows([x for x in rows if x["task"] == t])):
            out[(t, r["chart_variant"])].append(r)
    return out


def _usual(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [r for (_, variant), ladder in _ladders(rows).items() if not variant for r in ladder]


def _spread(r: dict[str, Any]) -> float:
    """The seed-to-seed std of the training error, in points (0 for one seed)."""
    return 100 * (r["train_acc1"]["std"] or 0.0)


def degradation(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One finding per (family, task) with plain or residual nets at two or more depths. A difference
    counts only beyond the seeds' spread (the larger std of the two rows compared).

    plain (when the family has them): the training error at the deepest plain net vs the lowest at
    any shallower depth (rises = degradation: He et al.'s "adding more layers to a suitably deep
    model leads to higher training error"; a ladder may first improve with depth, as the VGG
    pattern does, and then degrade).
    residual (when the family has them): the worst case of a deeper residual net training worse
    than a shallower one, as (shallow depth, deep depth, rise, spread); none beyond the spread =
    every residual net trains at least as well as its shallower siblings."""
    by_family: dict[tuple[str, str], dict[bool, dict[int, dict[str, Any]]]] = defaultdict(lambda: {True: {}, False: {}})
    for r in _usual(rows):
        if r["depth"] is not None and r["train_acc1"]["mean"] is not None:
            by_family[(str(r["family"]), r["task"])][bool(r["residual"])][r["depth"]] = r
    out = []
    for (family, task), kinds in sorted(by_family.items()):
        plain, residual = kinds[False], kinds[True]
        if len(plain) < 2 and len(residual) < 2:
            continue
        finding: dict[str, Any] = {
            "family": family,
            "task": task,
            "depths": sorted(set(plain) | set(residual)),
            "plain_train_err": {d: _err(r["train_acc1"]) for d, r in sorted(plain.items())},
            "residual_train_err": {d: _err(r["train_acc1"]) for d, r in sorted(residual.items())},
            "plain": None,
            "residual": None,
        }
        if len(plain) >= 2:
            lo, hi = min(plain), max(plain)
            best = min((d for d in plain if d < hi), key=lambda d: _err(plain[d]["train_acc1"]))
            rise = _err(plain[hi]["train_acc1"]) - _err(plain[best]["train_acc1"])
            finding["plain"] = {
                "shallow": lo,
                "best": best,
                "deep": hi,
                "rise": rise,
                "spread": max(_spread(plain[best]), _spread(plain[hi])),
            }
        if len(residual) >= 2:
            _, (a, b, worst, spread) = _ordered({d: (_err(r["train_acc1"]), _spread(r)) for d, r in residual.items()})
            finding["residual"] = {"shallow": a, "deep": b, "rise": worst, "spread": spread}
        out.append(finding)
    return out


def _degradation_md(rows: list[dict[str, Any]], findings: list[dict[str, Any]]) -> list[str]:
    lines: list[str] = []
    usual = _usual(rows)
    for f in findings:
        index = {
            (bool(r["residual"]), r["depth"]): r
            for r in usual
            if (str(r["family"]), r["task"]) == (f["family"], f["task"])
        }
        lines += [
            f"### {f['family']} on {f['task']}: training error by depth",
            "",
            "| depth | plain | plain train err % | residual | residual train err % "
            "| plain test err % | residual test err % |",
            "|---:|---|---:|---|---:|---:|---:|",
        ]
        for d in f["depths"]:
            p, r = index.get((False, d)), index.get((True, d))
            lines.append(
                f"| {d} | {p['arch'] if p else '–'} | {_err_text(p['train_acc1']) if p else '–'} | "
                f"{r['arch'] if r else '–'} | "
                f"{_err_text(r['train_acc1']) if r else '–'} | {_err_text(p['test_acc1']) if p else '–'} | "
                f"{_err_text(r['test_acc1']) if r else '–'} |"
            )
        lines.append("")
        pl, err = f["plain"], f["plain_train_err"]
        if pl is not None:
            past = "with depth" if pl["best"] == pl["shallow"] else f"past depth {pl['best']}"
            verdict = (
                f"rises {past}: degradation reproduced"
                if pl["rise"] > pl["spread"]
                else f"does not rise {past} beyond the seeds' spread: degradation not reproduced"
            )
            path = f"{err[pl['shallow']]:.2f}% at depth {pl['shallow']} -> "
            if pl["best"] != pl["shallow"]:
                path += f"{err[pl['best']]:.2f}% at depth {pl['best']} (the lowest) -> "
            lines.append(
                f"- Plain nets: training error {path}{err[pl['deep']]:.2f}% at depth {pl['deep']} "
                f"({pl['rise']:+.2f} points "
                f"from depth {pl['best']}, seeds' spread {pl['spread']:.2f}): it {verdict}."
            )
        res = f["residual"]
        if res is not None:
            ok = res["rise"] <= res["spread"]
            lines.append(
                f"- Residual nets: {'every' if ok else 'not every'} deeper net trains at least as well as each "
                f"shallower one within the seeds' spread (worst pair: depth {res['deep']} vs {res['shallow']}, "
                f"{res['rise']:+.2f} points of "
                f"training error, spread {res['spread']:.2f})."
            )
        lines.append("")
    return lines


def _seed_curve(runs: list[Run], metric: str = "train_error") -> dict[float, tuple[float, float]]:
    """{step: (mean, sample std)} of a row's runs at the steps every one of them logged (std 0 for one run)."""
    curves = [dict(r.curve().get(metric, [])) for r in runs]
    steps = set.intersection(*(set(c) for c in curves)) if curves else set()
    return {
        x: (statistics.fmean(ys), statistics.stdev(ys) if len(ys) > 1 else 0.0)
        for x in sorted(steps)
        for ys in [[100 * c[x] for c in curves]]
    }


def _ordered(point: dict[int, tuple[float, float]]) -> tuple[bool, tuple[int, int, float, float]]:
    """Whether no deeper net's error exceeds a shallower one's beyond the larger std of the two; and the worst pair."""
    ds = sorted(point)
    pairs = [
        (a, b, point[b][0] - point[a][0], max(point[a][1], point[b][1])) for i, a in enumerate(ds) for b in ds[i + 1 :]
    ]
    worst = max(pairs, key=lambda p: p[2] - p[3])
    return worst[2] <= worst[3], worst


def budget(rows: list[dict[str, Any]], runs: list[Run]) -> list[dict[str, Any]]:
    """Per (family, task, ladder) with residual nets at two or more depths: the first logged step from
    which on, to the end of training, every residual net's training error is at most each shallower
    one's (within the seeds' spread at that step) while the deepest plain net's exceeds the shallowest's
    beyond it (when the ladder has plain nets; a variant's ladder borrows the defaults' plain nets)."""
    by_id = {r.get("run_id"): r for r in runs}
    ladders = _ladders(rows)
    curve = {}
    for ladder in ladders.values():
        for r in ladder:
            members = [by_id[i] for i in r["run_ids"] if i in by_id]
            curve[id(r)] = _seed_curve(members) if members else {}
    out = []
    for (task, variant), ladder in sorted(ladders.items()):
        for family in sorted({str(r["family"]) for r in ladder}):
            residual = {
                r["depth"]: curve[id(r)]
                for r in ladder
                if str(r["family"]) == family and r["residual"] and r["depth"] is not None
            }
            plain_rows = [
                r
                for r in ladders.get((task, ""), [])
                if str(r["family"]) == family and not r["residual"] and r["depth"] is not None
            ]
            plain = {r["depth"]: curve[id(r)] for r in plain_rows if curve[id(r)]}
            if len(residual) < 2 or not all(residual.values()):
                continue
            steps = sorted(set.intersection(*(set(c) for c in [*residual.values(), *plain.values()])))
            if not steps:
                continue
            points = []
            for x in steps:
                ok, worst = _ordered({d: c[x] for d, c in residual.items()})
                p = None
                if len(plain) >= 2:
                    lo, hi = min(plain), max(plain)
                    p = plain[hi][x][0] - plain[lo][x][0], max(plain[hi][x][1], plain[lo][x][1])
                    ok = ok and p[0] > p[1]
                points.append({"step": x, "holds": ok, "worst": worst, "plain_rise": p})
            since = None
            for pt in reversed(points):
                if not pt["holds"]:
                    break
                since = pt["step"]
            out.append(
                {
                    "family": family,
                    "task": task,
                    "variant": variant,
                    "depths": sorted(residual),
                    "plain_depths": sorted(plain) if len(plain) >= 2 else [],
                    "steps": steps[-1],
                    "holds_from": since,
                    "holds_at": [pt["step"] for pt in points if pt["holds"]],
                    "end": points[-1],
                    "train_err": {d: {x: c[x][0] for x in steps} for d, c in residual.items()},
                }
            )
    return out


def _budget_md(found: list[dict[str, Any]]) -> list[str]:
    if not found:
        return []
    lines = ["### Deeper is better: from which step on (training error along the curves)", ""]
    for f in found:
        name = f"{f['family']} on {f['task']}" + (f" ({f['variant']})" if f["variant"] else "")
        order = " >= ".join(f"resnet{d}" if f["family"] == "resnet_cifar" else str(d) for d in f["depths"])
        end = f["end"]
        a, b, rise, spread = end["worst"]
        plain = ""
        if end["plain_rise"] is not None:
            lo, hi = f["plain_depths"][0], f["plain_depths"][-1]
            rise_, spread_ = end["plain_rise"]
            plain = f"; deepest plain net (depth {hi}) {rise_:+.2f} points against depth {lo} (spread {spread_:.2f})"
        if f["holds_from"] is not None:
            verdict = f"holds from step {f['holds_from']} of {f['steps']} on"
        else:
            verdict = f"does not hold at the last step all the curves logged (step {f['steps']})"
        held = ", ".join(str(x) for x in f["holds_at"]) or "none"
        both = ", with the deepest plain net worse than the shallowest," if plain else ""
        lines.append(
            f"- {name}: training error {order} (within the seeds' spread){both} {verdict}. "
            f"At step {f['steps']}: worst residual pair depth {b} vs {a}, {rise:+.2f} points (spread {spread:.2f})"
            f"{plain}. Logged steps where it holds: {held}."
        )
    return lines + [""]


def variants(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Each row whose configuration differs from a twin at the config's defaults (same arch, task,
    transfer mode and label budget): its training error, test error and throughput against the twin's."""
    groups: dict[tuple[Any, ...], list[dict[str, Any]]] = defaultdict(list)
    for r in rows:
        if r["variant"] and r["train_acc1"]["mean"] is not None:
            groups[(r["arch"], r["task"], r["transfer"], r["labels_per_class"])].append(r)
    out = []
    for members in groups.values():
        # None: the row does not set the key (a non-default-identity key at its default is not hashed)
        base = next((r for r in members if all(v is None or is_default(k, v) for k, v in r["variant"].items())), None)
        if base is None:
            continue
        for r in members:
            if r is base:
                continue
            rise = _err(r["train_acc1"]) - _err(base["train_acc1"])
            spread = max(_spread(r), _spread(base))
            rate, base_rate = r["train_samples_per_s"]["mean"], base["train_samples_per_s"]["mean"]
            changed = {k: v for k, v in r["variant"].items() if v is not None and not is_default(k, v)}
            out.append(
                {
                    "arch": r["arch"],
                    "task": r["task"],
                    "variant": variant_label(changed),
                    "train_err": _err(r["train_acc1"]),
                    "default_train_err": _err(base["train_acc1"]),
                    "rise": rise,
                    "spread": spread,
                    "within_spread": abs(rise) <= spread,
                    "test_err": _err(r["test_acc1"]),
                    "default_test_err": _err(base["test_acc1"]),
                    # a speed-up only on one kind of hardware: rates from two machines are not comparable
                    "speedup": rate / base_rate if rate and base_rate and r["hardware"] == base["hardware"] else None,
                    "n": (r["n"], base["n"]),
                }
            )
    out.sort(key=lambda f: (f["variant"], str(f["task"]), str(f["arch"])))
    return out


def _variants_md(found: list[dict[str, Any]]) -> list[str]:
    if not found:
        return []
    lines = [
        "### Variants against the defaults",
        "",
        "| arch | task | variant | train err % | at defaults | difference (points) | seeds' spread | verdict | "
        "test err % | at defaults | samples/s ratio |",
        "|---|---|---|---:|---:|---:|---:|---|---:|---:|---:|",
    ]
    for f in found:
        speed = "–" if f["speedup"] is None else f"{f['speedup']:.2f}x"
        verdict = (
            "within the spread"
            if f["within_spread"]
            else ("lower, beyond the spread" if f["rise"] < 0 else "higher, beyond the spread")
        )
        if min(f["n"]) < 2:
            verdict += " (one seed: no spread)"
        test, default_test = ("–" if e is None else f"{e:.2f}" for e in (f["test_err"], f["default_test_err"]))
        lines.append(
            f"| {f['arch']} | {f['task']} | {f['variant']} | {f['train_err']:.2f} | {f['default_train_err']:.2f} | "
            f"{f['rise']:+.2f} | {f['spread']:.2f} | {verdict} | {test} | {default_test} | {speed} |"
        )
    return lines + [""]


def transfer(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One finding per (arch, task, labels_per_class) with two or more transfer modes: each mode's test
    top-1, its improvement over scratch (points; the seeds' table), the winner and its margin."""
    cells: dict[tuple[str, str, Any], dict[str, dict[str, Any]]] = defaultdict(dict)
    for r in rows:
        if not r["variant_label"] and r["test_acc1"]["mean"] is not None:
            cells[(str(r["arch"]), r["task"], r["labels_per_class"])][r["transfer"]] = r["test_acc1"]
    out = []
    for (arch, task, lpc), modes in cells.items():
        if len(modes) < 2 or set(modes) == {"scratch"}:
            continue
        ranked = sorted(modes, key=lambda m: -modes[m]["mean"])
        spread = 100 * max(modes[m]["std"] or 0.0 for m in ranked[:2])
        scratch = modes.get("scratch")
        gain = {m: 100 * (a["mean"] - scratch["mean"]) for m, a in modes.items() if m != "scratch"} if scratch else {}
        gain_spread = {m: 100 * max(modes[m]["std"] or 0.0, scratch["std"] or 0.0) for m in gain} if scratch else {}
        out.append(
            {
                "arch": arch,
                "task": task,
                "labels_per_class": lpc,
                "test_acc1": modes,
                "winner": ranked[0],
                "margin": 100 * (modes[ranked[0]]["mean"] - modes[ranked[1]]["mean"]),
                "spread": spread,
                "over_scratch": gain,
                "over_scratch_spread": gain_spread,
            }
        )
    out.sort(
        key=lambda f: (
            f["arch"],
            f["task"],
            f["labels_per_class"] if f["labels_per_class"] is not None else float("inf"),
        )
    )
    return out


def _gain(f: dict[str, Any], mode: str) -> str:
    if mode not in f["over_scratch"]:
        return "–"
    g, spread = f["over_scratch"][mode], f["over_scratch_spread"][mode]
    return f"{g:+.2f}" + ("" if abs(g) > spread else "~")


def _claims(findings: list[dict[str, Any]]) -> list[str]:
    """The seeds' three claims, per arch and task, as numbers: does a linear probe do well (beat scratch,
    come near finetuning), must one fine-tune (finetune ahead of the probe), and does finetuning beat
    scratch when labels are few (at the smallest budget)?"""
    lines = []
    by: dict[tuple[str, str], list[dict[str, Any]]] = defaultdict(list)
    for f in findings:
        by[(f["arch"], f["task"])].append(f)
    for (arch, task), fs in sorted(by.items()):
        fs = [
            f
            for f in fs
            if f["labels_per_class"] is not None and {"linear-probe", "finetune"} <= set(f["over_scratch"])
        ]
        if not fs:
            continue
        lp = [f["over_scratch"]["linear-probe"] for f in fs]
        ft_lp = [f["over_scratch"]["finetune"] - f["over_scratch"]["linear-probe"] for f in fs]
        few = fs[0]
        budgets = ", ".join(str(f["labels_per_class"]) for f in fs)
        lines.append(
            f"- {arch} on {task} (labels/class {budgets}): linear probe over scratch "
            + ", ".join(f"{g:+.2f}" for g in lp)
            + "; finetune over linear probe "
            + ", ".join(f"{g:+.2f}" for g in ft_lp)
            + f"; at {few['labels_per_class']} labels/class finetune over scratch {_gain(few, 'finetune')} points."
        )
    return lines


def _transfer_md(findings: list[dict[str, Any]]) -> list[str]:
    if not findings:
        return []
    modes = sorted({m for f in findings for m in f["test_acc1"]}, key=lambda m: TRANSFER_ORDER.get(m, 9))
    gains = [m for m in modes if m != "scratch" and "scratch" in modes]
    lines = [
        "### Transfer: test top-1 % by task and label budget, and each mode's improvement over scratch",
        "",
        "Improvements in points; ~ marks one within the seeds' spread (the larger std of the two).",
        "",
        "| arch | task | labels/class | "
        + " | ".join(modes)
        + " | "
        + "".join(f"{m} vs scratch | " for m in gains)
        + "best | margin (points) |",
        "|---|---|---:|" + "---:|" * (len(modes) + len(gains)) + "---|---:|",
    ]
    for f in findings:
        lpc = "all" if f["labels_per_class"] is None else str(f["labels_per_class"])
        accs = [fmt(f["test_acc1"][m], "pct") if m in f["test_acc1"] else "–" for m in modes]
        clear = "" if f["margin"] > f["spread"] else " (within the seeds' spread)"
        lines.append(
            f"| {f['arch']} | {f['task']} | {lpc} | "
            + " | ".join(accs)
            + " | "
            + "".join(f"{_gain(f, m)} | " for m in gains)
            + f"{f['winner']} | {f['margin']:+.2f}{clear} |"
        )
    claims = _claims(findings)
    return lines + ([""] + claims if claims else []) + [""]


def markdown(rows: list[dict[str, Any]], runs: list[Run] | None = None) -> tuple[str, dict[str, Any]]:
    """The findings section ('' when the runs compare nothing) and its data for report.json; the
    budget finding reads the curves of ``runs``."""
    deg, bud, var, tra = degradation(rows), budget(rows, runs or []), variants(rows), transfer(rows)
    lines = _degradation_md(rows, deg) + _budget_md(bud) + _variants_md(var) + _transfer_md(tra)
    data = {"degradation": deg, "budget": bud, "variants": var, "transfer": tra}
    return ("## Findings\n\n" + "\n".join(lines)) if lines else "", data
