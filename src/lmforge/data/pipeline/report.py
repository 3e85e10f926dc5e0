"""`lmforge data report DIR`: what each step removed, as a table and a PNG plot.

The plot has three panels: the document-length distribution of what was read and what was
kept, the lengths of the documents each step dropped (so a filter that only removes short
pages, or one that eats long ones, shows at a glance), and the drops by step and reason.
"""

from __future__ import annotations

import json
import os
from typing import Any

from lmforge.errors import DataError


def load_stats(out_dir: str) -> dict[str, Any]:
    path = os.path.join(out_dir, "stats.json")
    if not os.path.isfile(path):
        raise DataError(f"'{path}' not found: point at the output.dir of a finished `lmforge data run`")
    try:
        with open(path, encoding="utf-8") as f:
            stats = json.load(f)
        stats["steps"], stats["read"]  # noqa: B018 - the keys a report needs
    except (ValueError, KeyError, TypeError):
        raise DataError(f"'{path}' is not the stats.json of `lmforge data run`: re-run the pipeline") from None
    return stats


def _pct(part: int, whole: int) -> str:
    return f"{100.0 * part / whole:.1f}%" if whole else "-"


def format_report(stats: dict[str, Any]) -> str:
    """The per-step table: documents in, kept, dropped (share of the step's input), top reasons."""
    rows = [("#", "step", "in", "kept", "dropped", "changed", "reasons (count)")]
    for step in stats["steps"]:
        dropped = sum(step["dropped"].values())
        reasons = sorted(step["dropped"].items(), key=lambda kv: (-kv[1], kv[0]))
        shown = ", ".join(f"{r} {n:,}" for r, n in reasons[:4]) + (", ..." if len(reasons) > 4 else "")
        rows.append((str(step["index"]), step["step"], f"{step['in']:,}", f"{step['kept']:,}",
                     f"{dropped:,} ({_pct(dropped, step['in'])})", f"{step['changed']:,}", shown or "-"))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]) - 1)]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row[:-1], widths)) + "  " + row[-1] for row in rows]
    lines.insert(1, "-" * len(lines[0]))
    failed = ", ".join(f"{r} {n:,}" for r, n in stats.get("failed_by_reason", {}).items()) or "none"
    output = stats.get("output", {})
    splits = ", ".join(f"{s} {output[s]['docs']:,} docs" for s in ("train", "val") if s in output)
    lines += ["",
              f"read {stats['read']:,} = kept {stats['kept']:,} + dropped {stats['dropped']:,} "
              f"+ failed {stats['failed']:,} ({failed})",
              f"kept {_pct(stats['kept'], stats['read'])} of what was read; output: {splits}"]
    return "\n".join(lines)


def _bin_edges(num_bins: int) -> list[int]:
    return [2**b for b in range(num_bins + 1)]


def write_report_plot(stats: dict[str, Any], path: str) -> str:
    """Write the three-panel PNG; returns ``path``."""
    try:
        import matplotlib
    except ImportError:
        raise DataError("the report plot needs matplotlib: pip install 'lmforge[data]'") from None
    matplotlib.use("Agg")  # files only: no display on servers
    import matplotlib.pyplot as plt

    read, kept = stats["read_lengths"], stats["kept_lengths"]
    used = [i for i in range(len(read)) if read[i] or kept[i]] or [0]
    lo, hi = min(used), max(used) + 1
    centers = [2 ** (b + 0.5) for b in range(lo, hi)]
    widths = [2 ** (b + 1) - 2**b for b in range(lo, hi)]

    steps = stats["steps"]
    fig, axes = plt.subplots(1, 3, figsize=(17, 5))
    ax = axes[0]
    ax.bar([2**b for b in range(lo, hi)], read[lo:hi], width=widths, align="edge", alpha=0.5, label="read")
    ax.bar([2**b for b in range(lo, hi)], kept[lo:hi], width=widths, align="edge", alpha=0.5, label="kept")
    ax.set_xscale("log")
    ax.set_xlabel("document length (characters)")
    ax.set_ylabel("documents")
    ax.set_title("document lengths")
    ax.legend()

    ax = axes[1]
    for step in steps:
        if sum(step["dropped"].values()):
            ax.plot(centers, step["dropped_lengths"][lo:hi], marker="o", label=f"{step['index']}: {step['step']}")
    ax.set_xscale("log")
    ax.set_xlabel("document length (characters)")
    ax.set_ylabel("documents dropped")
    ax.set_title("lengths of dropped documents, by step")
    if any(sum(s["dropped"].values()) for s in steps):
        ax.legend(fontsize=8)

    ax = axes[2]
    labels, counts = [], []
    for step in steps:
        for reason, n in sorted(step["dropped"].items(), key=lambda kv: -kv[1]):
            labels.append(f"{step['index']}:{step['step']}: {reason}")
            counts.append(n)
    for reason, n in stats.get("failed_by_reason", {}).items():
        labels.append(f"reader: {reason}")
        counts.append(n)
    ax.barh(range(len(counts)), counts)
    ax.set_yticks(range(len(counts)), labels, fontsize=7)
    ax.invert_yaxis()
    ax.set_xlabel("documents")
    ax.set_title(f"drops by step and reason (read {stats['read']:,}, kept {stats['kept']:,})")
    fig.tight_layout()
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    fig.savefig(path, dpi=100, format="png")  # PNG whatever the name ends in (report.inf, report)
    plt.close(fig)
    return path
