"""The two comparisons the studies are run for, read off the aggregated rows as markdown sections
with their verdicts computed, so a report states what it shows instead of leaving it to the eye:

- degradation (He et al. 2016, s4.2): per family and task, final training error by depth; does the
  plain nets' error rise from the best shallower depth to the deepest, and does every residual net
  train at least as well as each shallower one? (Differences within the seeds' spread do not count.)
- transfer: per arch, task and label budget, test top-1 of scratch / linear probe / finetune, the winner
  and its margin over the runner-up (marked when within the seeds' spread of the two).

Training error = 100 - the last epoch's running train top-1 (as the papers' training curves)."""
from __future__ import annotations

from collections import defaultdict
from typing import Any

from harness.report.tables import TRANSFER_ORDER, chart_variants, fmt, main_rows


def _err(s: dict[str, Any]) -> float | None:
    return None if s["mean"] is None else 100 * (1 - s["mean"])


def _err_text(s: dict[str, Any]) -> str:
    return "–" if s["mean"] is None else fmt({"mean": 1 - s["mean"], "std": s["std"]}, "pct")


def _usual(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """From-scratch, full-label rows in the configuration most runs of their task share (a one-off
    learning rate is left out), as the charts draw them."""
    tasks = {r["task"] for r in rows}
    return [r for t in sorted(tasks) for r in chart_variants(main_rows([x for x in rows if x["task"] == t]))
            if not r["chart_variant"]]


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
            "family": family, "task": task, "depths": sorted(set(plain) | set(residual)),
            "plain_train_err": {d: _err(r["train_acc1"]) for d, r in sorted(plain.items())},
            "residual_train_err": {d: _err(r["train_acc1"]) for d, r in sorted(residual.items())},
            "plain": None, "residual": None,
        }
        if len(plain) >= 2:
            lo, hi = min(plain), max(plain)
            best = min((d for d in plain if d < hi), key=lambda d: _err(plain[d]["train_acc1"]))
            rise = _err(plain[hi]["train_acc1"]) - _err(plain[best]["train_acc1"])
            finding["plain"] = {"shallow": lo, "best": best, "deep": hi, "rise": rise,
                                "spread": max(_spread(plain[best]), _spread(plain[hi]))}
        ds = sorted(residual)
        pairs = [(a, b, _err(residual[b]["train_acc1"]) - _err(residual[a]["train_acc1"]),
                  max(_spread(residual[a]), _spread(residual[b]))) for i, a in enumerate(ds) for b in ds[i + 1:]]
        if pairs:
            a, b, worst, spread = max(pairs, key=lambda p: p[2] - p[3])
            finding["residual"] = {"shallow": a, "deep": b, "rise": worst, "spread": spread}
        out.append(finding)
    return out


def _degradation_md(rows: list[dict[str, Any]], findings: list[dict[str, Any]]) -> list[str]:
    lines: list[str] = []
    usual = _usual(rows)
    for f in findings:
        index = {(bool(r["residual"]), r["depth"]): r for r in usual if (str(r["family"]), r["task"]) == (f["family"], f["task"])}
        lines += [f"### {f['family']} on {f['task']}: training error by depth", "",
                  "| depth | plain | plain train err % | residual | residual train err % | plain test err % | residual test err % |",
                  "|---:|---|---:|---|---:|---:|---:|"]
        for d in f["depths"]:
            p, r = index.get((False, d)), index.get((True, d))
            lines.append(f"| {d} | {p['arch'] if p else '–'} | {_err_text(p['train_acc1']) if p else '–'} | {r['arch'] if r else '–'} | "
                         f"{_err_text(r['train_acc1']) if r else '–'} | {_err_text(p['test_acc1']) if p else '–'} | "
                         f"{_err_text(r['test_acc1']) if r else '–'} |")
        lines.append("")
        pl, err = f["plain"], f["plain_train_err"]
        if pl is not None:
            past = "with depth" if pl["best"] == pl["shallow"] else f"past depth {pl['best']}"
            verdict = (f"rises {past}: degradation reproduced" if pl["rise"] > pl["spread"] else
                       f"does not rise {past} beyond the seeds' spread: degradation not reproduced")
            path = f"{err[pl['shallow']]:.2f}% at depth {pl['shallow']} -> "
            if pl["best"] != pl["shallow"]:
                path += f"{err[pl['best']]:.2f}% at depth {pl['best']} (the lowest) -> "
            lines.append(f"- Plain nets: training error {path}{err[pl['deep']]:.2f}% at depth {pl['deep']} ({pl['rise']:+.2f} points "
                         f"from depth {pl['best']}, seeds' spread {pl['spread']:.2f}): it {verdict}.")
        res = f["residual"]
        if res is not None:
            ok = res["rise"] <= res["spread"]
            lines.append(f"- Residual nets: {'every' if ok else 'not every'} deeper net trains at least as well as each shallower one "
                         f"within the seeds' spread (worst pair: depth {res['deep']} vs {res['shallow']}, {res['rise']:+.2f} points of "
                         f"training error, spread {res['spread']:.2f}).")
        lines.append("")
    return lines


def transfer(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One finding per (arch, task, labels_per_class) with two or more transfer modes."""
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
        out.append({"arch": arch, "task": task, "labels_per_class": lpc, "test_acc1": modes, "winner": ranked[0],
                    "margin": 100 * (modes[ranked[0]]["mean"] - modes[ranked[1]]["mean"]), "spread": spread})
    out.sort(key=lambda f: (f["arch"], f["task"], f["labels_per_class"] if f["labels_per_class"] is not None else float("inf")))
    return out


def _transfer_md(findings: list[dict[str, Any]]) -> list[str]:
    if not findings:
        return []
    modes = sorted({m for f in findings for m in f["test_acc1"]}, key=lambda m: TRANSFER_ORDER.get(m, 9))
    lines = ["### Transfer: test top-1 % by label budget", "",
             "| arch | task | labels/class | " + " | ".join(modes) + " | best | margin (points) |",
             "|---|---|---:|" + "---:|" * len(modes) + "---|---:|"]
    for f in findings:
        lpc = "all" if f["labels_per_class"] is None else str(f["labels_per_class"])
        accs = [fmt(f["test_acc1"][m], "pct") if m in f["test_acc1"] else "–" for m in modes]
        clear = "" if f["margin"] > f["spread"] else " (within the seeds' spread)"
        lines.append(f"| {f['arch']} | {f['task']} | {lpc} | " + " | ".join(accs) + f" | {f['winner']} | {f['margin']:+.2f}{clear} |")
    return lines + [""]


def markdown(rows: list[dict[str, Any]]) -> tuple[str, dict[str, Any]]:
    """The findings section ('' when the runs compare nothing) and its data for report.json."""
    deg, tra = degradation(rows), transfer(rows)
    lines = _degradation_md(rows, deg) + _transfer_md(tra)
    data = {"degradation": deg, "transfer": tra}
    return ("## Findings\n\n" + "\n".join(lines)) if lines else "", data
