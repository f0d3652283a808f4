"""Aggregate experiment runs over seeds and write CSV, JSON, PNG plots and markdown tables (ours beside the paper).

SAR values are shares in [0, 1] internally and percentages in tables and plots. "ratio to bound" is, per trace,
the requests a policy got through by their deadline divided by the LP upper bound for that trace, then averaged.
"""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path
from typing import Any

import numpy as np

from genserve.experiments.grid import Experiment
from genserve.experiments.paper import NOTES, PAPER, PAPER_IMAGE_WAIT, PAPER_LATENCY

_SAR_FIELD = {"overall": "sar", "image": "sar_image", "video": "sar_video"}
_BOUND_FIELD = {"overall": ("count", "total"), "image": ("image", "images"), "video": ("video", "videos")}


def _stats(vals: list[float]) -> dict[str, float | None]:
    v = [x for x in vals if x is not None and not (isinstance(x, float) and math.isnan(x))]
    if not v:
        return {"mean": None, "std": None, "min": None, "max": None, "n": 0}
    a = np.asarray(v, dtype=float)
    return {"mean": float(a.mean()), "std": float(a.std(ddof=1)) if len(a) > 1 else 0.0, "min": float(a.min()),
            "max": float(a.max()), "n": len(a)}


def collect(exp: Experiment, index: list, results: dict[str, dict]) -> dict[str, Any]:
    """Runs (one row per setting, seed, variant), bounds per (setting, seed) and the aggregate per cell."""
    bounds: dict[tuple[str, int], dict] = {}
    sims: list[tuple[str, int, str, dict]] = []
    for name, setting, seed, variant, key in index:
        if name != exp.name:
            continue
        if variant is None:
            bounds[(setting, seed)] = results[key]
        else:
            sims.append((setting, seed, variant, results[key]))
    runs = []
    for setting, seed, variant, r in sims:
        b = bounds.get((setting, seed), {})
        row = {"experiment": exp.name, "setting": setting, "seed": seed, "variant": variant}
        row.update({k: v for k, v in r.items() if k != "latencies"})
        row["bound_count"] = b.get("count")
        row["bound_sar"] = b.get("fraction")
        row["bound_image"] = b.get("image")
        row["bound_video"] = b.get("video")
        row["ratio_to_bound"] = r["met"] / b["count"] if b.get("count") else None
        row["gap_to_bound"] = b["count"] - r["met"] if b.get("count") is not None else None
        runs.append(row)
    summary = []
    for st in exp.settings:
        for v in exp.variants:
            rs = [row for row in runs if row["setting"] == st.label and row["variant"] == v.label]
            cell: dict[str, Any] = {"setting": st.label, "variant": v.label, "policy": v.policy,
                                    "options": dict(v.options), "seeds": len(rs)}
            for m, f in _SAR_FIELD.items():
                cell[f] = _stats([row[f] for row in rs])
            for f in ("ratio_to_bound", "gap_to_bound", "decision_mean_ms", "decision_max_ms", "image_wait_mean_s",
                      "preemptions", "sp_changes", "sim_wall_s", "lat_image_p90", "lat_video_p50", "lat_video_p99"):
                cell[f] = _stats([row.get(f) for row in rs])
            cell["stopped"] = sum(bool(row.get("stopped")) for row in rs)
            cell["paper"] = PAPER.get(exp.name, {}).get((v.label, st.label), {})
            summary.append(cell)
    bsum = []
    for st in exp.settings:
        bs = [b for (s, _), b in bounds.items() if s == st.label]
        row = {"setting": st.label}
        for m, (c, t) in _BOUND_FIELD.items():
            row[m] = _stats([b[c] / b[t] if b.get(t) else None for b in bs])
        row["solve_s"] = _stats([b["solve_s"] for b in bs])
        row["methods"] = sorted({b["method"] for b in bs})
        bsum.append(row)
    lat: dict[str, dict[str, list[float]]] = {}
    for setting, seed, variant, r in sims:
        if "latencies" in r:
            d = lat.setdefault(variant, {"image": [], "video": []})
            for m in ("image", "video"):
                d[m].extend(r["latencies"][m])
    return {"experiment": exp.name, "title": exp.title, "runs": runs, "summary": summary, "bounds": bsum,
            "latencies": lat}


# ---- formatting ----------------------------------------------------------------------------------------------
def _pct(s: dict | None, spread: bool = True) -> str:
    if not s or s.get("mean") is None:
        return "-"
    out = f"{100 * s['mean']:.0f}"
    if spread and s["n"] > 1:
        out += f" ± {100 * s['std']:.0f}"
    return out


def _paper(cell: dict, metric: str) -> str:
    v = cell["paper"].get(metric)
    return "" if v is None else f" ({v:g})"


def _grid(title: str, settings: list[str], rows: list[tuple[str, list[str]]]) -> list[str]:
    """A markdown table: one row per (label, cells), one column per setting."""
    lines = [title, "", "| variant | " + " | ".join(settings) + " |", "|---|" + "---|" * len(settings)]
    lines += [f"| {label} | " + " | ".join(cells) + " |" for label, cells in rows]
    return lines + [""]


def markdown(exp: Experiment, data: dict, seeds: int) -> str:
    summ = data["summary"]
    settings = [st.label for st in exp.settings]
    cell = {(x["variant"], x["setting"]): x for x in summ}
    bound = {b["setting"]: b for b in data["bounds"]}

    def per_variant(fmt) -> list[tuple[str, list[str]]]:
        return [(v.label, [fmt(cell[v.label, s]) for s in settings]) for v in exp.variants]

    lines = [f"### {exp.title}", ""]
    lines.append(f"SLO attainment, % of requests: ours mean ± std over {seeds} seed(s), (paper) where it reports "
                 "one. `LP bound`: the hindsight upper bound (mean over the same traces); `ratio to bound`: "
                 "requests met / bound per trace, mean [min].")
    lines.append("")
    for metric in exp.metrics:
        rows = per_variant(lambda c, m=metric: _pct(c[_SAR_FIELD[m]]) + _paper(c, m) + (" ⚠" if c["stopped"] else ""))
        rows.append(("**LP bound**", [_pct(bound[s][metric]) for s in settings]))
        lines += _grid(f"**{metric} SAR (%)**", settings, rows)
    lines += _grid("**ratio to bound (overall), mean [min]**", settings, per_variant(
        lambda c: "-" if c["ratio_to_bound"]["mean"] is None
        else f"{c['ratio_to_bound']['mean']:.3f} [{c['ratio_to_bound']['min']:.2f}]"))
    if exp.name == "e4":
        lines += _latency_table(exp, data)
    if exp.name == "ablation":
        lines.append("**average image queue wait (s)**: " + ", ".join(
            f"{c['variant']} {c['image_wait_mean_s']['mean']:.2f}"
            + (f" (paper {PAPER_IMAGE_WAIT[c['variant']]})" if c["variant"] in PAPER_IMAGE_WAIT else "")
            for c in summ if c["image_wait_mean_s"]["mean"] is not None))
        lines.append("")
    if exp.name == "scale":
        lines += _grid("**decision time per round (ms), mean [max over runs of the per-run max]**", settings,
                       per_variant(lambda c: "-" if c["decision_mean_ms"]["mean"] is None
                                   else f"{c['decision_mean_ms']['mean']:.2f} [{c['decision_max_ms']['max']:.1f}]"))
    stopped = [c for c in summ if c["stopped"]]
    if stopped:
        lines.append("⚠: a run hit its wall budget; requests still live then count as missed.")
        lines.append("")
    if exp.name in NOTES:
        lines.append(f"Note: {NOTES[exp.name]}")
        lines.append("")
    bs = [b["solve_s"]["mean"] for b in data["bounds"] if b["solve_s"]["mean"] is not None]
    if bs:
        lines.append(f"Bound solve time: mean {np.mean(bs):.2f} s per trace (methods: "
                     f"{', '.join(sorted({m for b in data['bounds'] for m in b['methods']}))}).")
        lines.append("")
    return "\n".join(lines)


def _latency_table(exp: Experiment, data: dict) -> list[str]:
    lines = ["**latency percentiles (s), pooled over seeds (paper in parentheses)**", "",
             "| policy | image p50 | image p90 | image p99 | video p50 | video p90 | video p99 |",
             "|---|---|---|---|---|---|---|"]
    for v in exp.variants:
        lat = data["latencies"].get(v.label, {"image": [], "video": []})
        cells = []
        for m in ("image", "video"):
            arr = np.asarray(lat[m], dtype=float)
            for q in (50, 90, 99):
                val = "-" if arr.size == 0 else f"{np.percentile(arr, q):.1f}"
                p = PAPER_LATENCY.get((v.label, m, f"p{q}"))
                cells.append(val + ("" if p is None else f" ({p:g})"))
        lines.append(f"| {v.label} | " + " | ".join(cells) + " |")
    lines.append("")
    return lines


# ---- files ---------------------------------------------------------------------------------------------------
def write(exp: Experiment, data: dict, out: Path, seeds: int, plots: bool = True) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    files = []
    runs = data["runs"]
    if runs:
        cols = list(runs[0].keys())
        for r in runs[1:]:
            cols += [k for k in r if k not in cols]
        p = out / "runs.csv"
        with p.open("w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=cols)
            w.writeheader()
            w.writerows(runs)
        files.append(p)
    p = out / "summary.csv"
    with p.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["setting", "variant", "metric", "mean", "std", "min", "max", "n", "paper"])
        for c in data["summary"]:
            for m, fld in list(_SAR_FIELD.items()) + [("ratio_to_bound", "ratio_to_bound"),
                                                      ("decision_mean_ms", "decision_mean_ms")]:
                s = c[fld]
                w.writerow([c["setting"], c["variant"], m, s["mean"], s["std"], s["min"], s["max"], s["n"],
                            c["paper"].get(m, "")])
        for b in data["bounds"]:
            for m in ("overall", "image", "video"):
                s = b[m]
                w.writerow([b["setting"], "LP bound", m, s["mean"], s["std"], s["min"], s["max"], s["n"], ""])
    files.append(p)
    p = out / "results.json"
    slim = {k: v for k, v in data.items() if k != "latencies"}
    slim["seeds"] = seeds
    slim["summary"] = [dict(c, options={k: str(v) for k, v in c["options"].items()}) for c in data["summary"]]
    p.write_text(json.dumps(slim, indent=1, default=str))
    files.append(p)
    p = out / "table.md"
    p.write_text(markdown(exp, data, seeds) + "\n")
    files.append(p)
    if plots:
        files += plot(exp, data, out)
    return files


def plot(exp: Experiment, data: dict, out: Path) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker  # noqa: F401

    files = []
    summ = data["summary"]
    settings = [st.label for st in exp.settings]
    xs_lbl = ["\n".join(part.split("=", 1)[-1] for part in s.split(",")) for s in settings]
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    if exp.name == "e4":
        fig, axes = plt.subplots(1, 2, figsize=(10, 4))
        for ax, m in zip(axes, ("image", "video")):
            for i, v in enumerate(exp.variants):
                arr = np.sort(np.asarray(data["latencies"].get(v.label, {}).get(m, []), dtype=float))
                if arr.size:
                    ax.step(arr, np.arange(1, arr.size + 1) / arr.size, where="post", label=v.label,
                            color=colors[i % len(colors)])
            ax.set_xscale("log")
            ax.xaxis.set_major_formatter(matplotlib.ticker.ScalarFormatter())
            ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
            ax.set_xlabel(f"{m} latency (s), log scale")
            ax.set_ylabel("CDF")
            ax.grid(alpha=0.3)
            ax.legend(fontsize=8)
        fig.suptitle(exp.title, fontsize=10)
        fig.tight_layout()
        p = out / "e4_latency_cdf.png"
        fig.savefig(p, dpi=110)
        plt.close(fig)
        return [p]
    numeric = exp.name in ("e1", "e3")
    metrics = exp.metrics
    fig, axes = plt.subplots(1, len(metrics), figsize=(4.6 * len(metrics) + 0.6, 3.8), squeeze=False)
    for ax, m in zip(axes[0], metrics):
        f = _SAR_FIELD[m]
        bvals = [next(b for b in data["bounds"] if b["setting"] == s)[m]["mean"] for s in settings]
        if numeric:
            x = [float(s) for s in xs_lbl]
            for i, v in enumerate(exp.variants):
                cells = [next(c for c in summ if c["variant"] == v.label and c["setting"] == s) for s in settings]
                mean = [100 * (c[f]["mean"] or 0) for c in cells]
                lo = [100 * (c[f]["min"] or 0) for c in cells]
                hi = [100 * (c[f]["max"] or 0) for c in cells]
                col = colors[i % len(colors)]
                ax.plot(x, mean, "o-", color=col, label=v.label)
                ax.fill_between(x, lo, hi, color=col, alpha=0.12)
                px = [(xx, c["paper"].get(m)) for xx, c in zip(x, cells) if c["paper"].get(m) is not None]
                if px:
                    ax.plot([a for a, _ in px], [b for _, b in px], "x--", color=col, alpha=0.6)
            ax.plot(x, [100 * (b or 0) for b in bvals], "k:", lw=2, label="LP bound")
            ax.set_xlabel(exp.x_label)
        else:
            nv = len(exp.variants)
            width = 0.8 / (nv + 1)
            idx = np.arange(len(settings))
            for i, v in enumerate(exp.variants):
                cells = [next(c for c in summ if c["variant"] == v.label and c["setting"] == s) for s in settings]
                mean = np.array([100 * (c[f]["mean"] or 0) for c in cells])
                err = np.array([100 * (c[f]["std"] or 0) for c in cells])
                col = colors[i % len(colors)]
                ax.bar(idx + i * width, mean, width, yerr=err, color=col, label=v.label, capsize=2)
                for j, c in enumerate(cells):
                    pv = c["paper"].get(m)
                    if pv is not None:
                        ax.plot(idx[j] + i * width, pv, "kx", ms=6)
            ax.bar(idx + nv * width, [100 * (b or 0) for b in bvals], width, color="lightgrey", edgecolor="k",
                   label="LP bound")
            ax.set_xticks(idx + width * nv / 2)
            ax.set_xticklabels(xs_lbl, fontsize=8)
        ax.set_ylim(0, 105)
        ax.set_ylabel(f"{m} SAR (%)")
        ax.grid(alpha=0.3)
    handles, labels = axes[0][0].get_legend_handles_labels()
    fig.legend(handles, labels, fontsize=8, loc="lower center", ncol=min(len(labels), 7), frameon=False)
    fig.suptitle(exp.title + ("\n(x / dashed: the paper's numbers)" if any(c["paper"] for c in summ) else ""),
                 fontsize=9)
    fig.tight_layout(rect=(0, 0.08, 1, 1))
    p = out / f"{exp.name}_sar.png"
    fig.savefig(p, dpi=110)
    plt.close(fig)
    files.append(p)
    if exp.name == "scale":
        fig, ax = plt.subplots(figsize=(5, 3.6))
        for i, v in enumerate(exp.variants):
            cells = [next(c for c in summ if c["variant"] == v.label and c["setting"] == s) for s in settings]
            ax.bar(np.arange(len(settings)) + i * 0.25, [c["decision_mean_ms"]["mean"] or 0 for c in cells], 0.25,
                   label=v.label, color=colors[i % len(colors)])
        ax.set_xticks(np.arange(len(settings)) + 0.25)
        ax.set_xticklabels(xs_lbl, fontsize=7)
        ax.set_yscale("log")
        ax.set_ylabel("mean decision time per round (ms)")
        ax.legend(fontsize=8)
        ax.grid(alpha=0.3)
        fig.tight_layout()
        p = out / "scale_decision_time.png"
        fig.savefig(p, dpi=110)
        plt.close(fig)
        files.append(p)
    return files


DEFAULT_CELLS = (("e4", "default"), ("e1", "sigma=1.0"), ("e2", "mix=balanced"), ("e3", "rate=24"))


def headline(agg: dict[str, dict]) -> str:
    """genserve's ratio to the bound at the default setting, and the largest gap to the bound found."""
    lines = ["## Headline: genserve vs the LP upper bound", ""]
    for exp, setting in DEFAULT_CELLS:
        if exp not in agg:
            continue
        c = next((x for x in agg[exp]["summary"] if x["setting"] == setting and x["variant"] in
                  ("genserve", "+SP switching", "replicated")), None)
        if c and c["ratio_to_bound"]["mean"] is not None:
            r = c["ratio_to_bound"]
            b = next(x for x in agg[exp]["bounds"] if x["setting"] == setting)
            lines.append(f"- default setting ({exp} {setting}, {c['seeds']} seeds): genserve SAR "
                         f"{_pct(c['sar'])}%, LP bound {_pct(b['overall'])}%, ratio to bound mean {r['mean']:.3f} "
                         f"(min {r['min']:.3f}).")
            break
    for label, pick in (("paper grid (100-request traces, 8 GPUs)", lambda e: e != "scale"),
                        ("scale experiment (400-request traces)", lambda e: e == "scale")):
        worst = None
        for exp, a in agg.items():
            if not pick(exp):
                continue
            for c in a["summary"]:
                if c["policy"] != "genserve" or c["ratio_to_bound"]["mean"] is None or c["stopped"]:
                    continue
                if dict(c["options"]):  # ablation rungs are not the full policy
                    continue
                if worst is None or c["ratio_to_bound"]["mean"] < worst[2]["ratio_to_bound"]["mean"]:
                    worst = (exp, c["setting"], c)
        if worst:
            exp, setting, c = worst
            lines.append(f"- largest gap, {label}: {exp} {setting}: genserve {_pct(c['sar'])}% of requests, "
                         f"ratio to bound {c['ratio_to_bound']['mean']:.3f} (worst trace "
                         f"{c['ratio_to_bound']['min']:.3f}, up to {c['gap_to_bound']['max']:.0f} requests below "
                         "the bound).")
    stopped = [(exp, c["setting"], c["variant"]) for exp, a in agg.items() for c in a["summary"] if c["stopped"]]
    if stopped:
        lines.append("- runs stopped at their wall budget (excluded above): "
                     + ", ".join(f"{e} {s} {v}" for e, s, v in stopped) + ".")
    best_other = []
    for exp, a in agg.items():
        for c in a["summary"]:
            if c["policy"] != "genserve" and c["ratio_to_bound"]["mean"] is not None:
                best_other.append(c["ratio_to_bound"]["mean"])
    if best_other:
        lines.append(f"- baselines' ratio to bound ranges {min(best_other):.3f} .. {max(best_other):.3f} over all "
                     "cells.")
    return "\n".join(lines)
