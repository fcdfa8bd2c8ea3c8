"""Report of a sweep: a tidy CSV, a seaborn figure of each metric against the swept parameter, a book page."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pandas as pd

from nnsens import registry
from nnsens.store import Store

SWEEP_PAGES = Path("book") / "_generated" / "sweeps"


def tidy_table(sweep: dict[str, Any]) -> pd.DataFrame:
    """One row per (point, metric): swept parameters, run id, status, metric, value.

    Claim values appear as metrics named ``claim:<name>``; failed points have one row with metric ``error``.
    """
    axes = list(sweep["definition"]["axes"])
    rows = []
    for p in sweep["points"]:
        run = p["run"]
        base = {"sweep": sweep["name"], "point": p["point"], **{a: p["params"][a] for a in axes},
                "run_id": run["run_id"] if run else None, "status": run["status"] if run else "pending"}
        if run is None or run["status"] != "completed":
            rows.append({**base, "metric": "error" if run else "pending", "value": None})
            continue
        rows += [{**base, "metric": k, "value": v} for k, v in run["metrics"].items()]
        rows += [{**base, "metric": f"claim:{c['claim']}", "value": c["value"]} for c in run["claims"]]
    return pd.DataFrame(rows)


def _x_and_hue(axes: list[str]) -> tuple[str, str | None]:
    """The swept parameter on the x axis (the first one that is not the seed) and the hue (the next one)."""
    non_seed = [a for a in axes if a != "seed"]
    x = non_seed[0] if non_seed else axes[0]
    hue = non_seed[1] if len(non_seed) > 1 else None
    return x, hue


def varying_metrics(tidy: pd.DataFrame, x: str, axes: list[str], metrics: list[str]) -> list[str]:
    """The metrics that change with ``x`` for some fixed value of the other axes (the others would be flat lines)."""
    others = [a for a in axes if a != x]
    out = []
    for m in metrics:
        data = tidy[tidy["metric"] == m]
        spread = data.groupby(others)["value"].nunique() if others else pd.Series([data["value"].nunique()])
        if (spread > 1).any():
            out.append(m)
    return out


def summary_table(tidy: pd.DataFrame, x: str, hue: str | None, metrics: list[str]) -> pd.DataFrame:
    """Mean ± standard deviation of each metric over seeds for each value of the swept parameter(s)."""
    keys = [x] + ([hue] if hue else [])
    done = tidy[tidy["metric"].isin(metrics)]
    stats = done.groupby(keys + ["metric"])["value"].agg(["mean", "std", "count"]).reset_index()
    stats["cell"] = [f"{m:.3g} ± {s:.2g} (n={n})" if n > 1 else f"{m:.3g} (n=1)"
                     for m, s, n in zip(stats["mean"], stats["std"].fillna(0.0), stats["count"])]
    return stats.pivot(index=keys, columns="metric", values="cell")[metrics]


def placeholder_page(name: str, data: dict[str, Any], root: Path | None = None) -> Path:
    """The page of a committed sweep file that has no run in the store yet."""
    root = root or registry.project_root()
    entry = registry.get(data["study"])
    pages = root / SWEEP_PAGES
    pages.mkdir(parents=True, exist_ok=True)
    page = pages / f"{name}.md"
    page.write_text(f"# Sweep `{name}`: {entry.id}\n\n{data.get('description', '')}\n\n"
                    f"This sweep has not been run in this build's results store. Run it with\n\n"
                    f"```bash\nnnsens sweep --file sweeps/{name}.yaml --resume\nnnsens report {name}\n```\n")
    return page


def write_report(store: Store, name: str, *, root: Path | None = None, csv_dir: Path | None = None,
                 description: str = "") -> dict[str, Path]:
    """Write ``<name>.csv``, ``<name>.png`` and the book page ``book/_generated/sweeps/<name>.md``."""
    from nnsens import plots

    root = root or registry.project_root()
    sweep = store.sweep(name)
    axes = list(sweep["definition"]["axes"])
    tidy = tidy_table(sweep)
    csv_dir = Path(csv_dir) if csv_dir else root / "results" / "sweeps"
    csv_dir.mkdir(parents=True, exist_ok=True)
    pages = root / SWEEP_PAGES
    pages.mkdir(parents=True, exist_ok=True)
    csv = csv_dir / f"{name}.csv"
    tidy.to_csv(csv, index=False)
    x, hue = _x_and_hue(axes)
    ok = tidy[tidy["status"] == "completed"]
    metrics = [m for m in dict.fromkeys(ok["metric"]) if not m.startswith("claim:")] if len(ok) else []
    flat = []
    if metrics:
        varying = varying_metrics(ok, x, axes, metrics)
        flat = [m for m in metrics if m not in varying]
        metrics = varying or metrics
    png = pages / f"{name}.png"
    if metrics:
        fig = plots.sweep_curves(ok, x=x, metrics=metrics, hue=hue)
        fig.savefig(png, dpi=110)
        fig.savefig(csv_dir / f"{name}.png", dpi=110)
        import matplotlib.pyplot as plt

        plt.close(fig)
    entry = registry.get(sweep["study"])
    n_done = int((tidy.drop_duplicates("point")["status"] == "completed").sum())
    failed = tidy[tidy["status"] == "failed"].drop_duplicates("point")
    grid = "; ".join(f"`{a}` ∈ {json.dumps(v)}" for a, v in sweep["definition"]["axes"].items())
    fixed = sweep["definition"].get("fixed") or {}
    lines = [
        f"# Sweep `{name}`: {entry.id}",
        "",
        description or sweep["definition"].get("description", ""),
        "",
        f"Study: {{doc}}`{entry.id} </book/_generated/studies/{entry.slug}>` ({entry.title}), "
        f"`{sweep['scale']}` scale, `{sweep['engine']}` engine. Grid: {grid}"
        + (f"; fixed: `{json.dumps(fixed)}`" if fixed else "") + ".",
        "",
        f"Points completed: {n_done} of {len(sweep['points'])}; failed: {len(failed)}. "
        f"Tidy table: `{csv.relative_to(root) if csv.is_relative_to(root) else csv}`.",
        "",
    ]
    if metrics:
        lines += [f"![Each metric against {x}]({png.name})", "",
                  f"Each panel: mean over {'seeds' if 'seed' in axes else 'runs'} with a band of one standard "
                  "deviation.", "", summary_table(ok, x, hue, metrics).to_markdown(), ""]
        if flat:
            names = ", ".join(f"`{m}`" for m in flat)
            lines += [f"Metrics that do not depend on `{x}` (the same value at every `{x}` for a given seed), left "
                      f"out of the figure and the table but kept in the CSV: {names}.", ""]
    else:
        lines += ["No point of this sweep has completed yet: run it with `nnsens sweep` (see below).", ""]
    if len(failed):
        lines += ["Failed points:", ""] + [f"- point {r.point}: {x}={getattr(r, x, '')}" for r in failed.itertuples()]
        lines.append("")
    lines += ["To reproduce or extend:", "", "```bash",
              f"nnsens sweep {entry.id} --scale {sweep['scale']} --engine {sweep['engine']} --name {name} "
              + " ".join(f"--grid {a}={','.join(map(str, v))}" for a, v in sweep["definition"]["axes"].items())
              + "".join(f" -p {k}={v}" for k, v in fixed.items()) + " --resume",
              f"nnsens report {name}", "```", ""]
    page = pages / f"{name}.md"
    page.write_text("\n".join(lines))
    return {"csv": csv, "figure": png, "page": page}
