"""Run every registered study side by side, then assemble and render the Jupyter Book."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

from nnsens import registry, sweep, sweep_report
from nnsens.ledger import render_markdown
from nnsens.store import Store

GENERATED = Path("book") / "_generated"
SWEEP_FILES = Path("sweeps")


def run_all(scale: str, *, jobs: int, out_root: str | None = None, force: bool = False) -> list[str]:
    """Execute every implemented study with ``nnsens run``, ``jobs`` at a time, one torch thread each.

    Each study runs in its own process (its own kernel), so one failure never stops the others. Returns the ids
    that failed (their errors were printed and stored).
    """
    from tqdm import tqdm

    pending = [e.id for e in registry.implemented()]
    running: list[tuple[str, subprocess.Popen, float]] = []
    failed: list[str] = []
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    bar = tqdm(total=len(pending), desc=f"studies ({scale})", unit="study")
    while pending or running:
        while pending and len(running) < max(1, jobs):
            sid = pending.pop(0)
            cmd = [sys.executable, "-m", "nnsens.cli", "run", sid, "--scale", scale, "--threads", "1"]
            if out_root:
                cmd += ["--out", str(Path(out_root) / sid)]
            if force:
                cmd.append("--force")
            running.append((sid, subprocess.Popen(cmd, env=env), time.time()))
        time.sleep(0.2)
        for item in list(running):
            sid, proc, t0 = item
            if proc.poll() is None:
                continue
            running.remove(item)
            bar.update(1)
            bar.write(f"{sid}: {'ok' if proc.returncode == 0 else 'FAILED'} in {time.time() - t0:.0f} s")
            if proc.returncode != 0:
                failed.append(sid)
    bar.close()
    return failed


def run_sweeps(scale: str, *, jobs: int, store: Store) -> list[str]:
    """Run every committed sweep file (``sweeps/*.yaml``) at ``scale`` on a local cluster; return those that failed.

    Points already in the store are skipped, so a second ``make book`` only runs what changed.
    """
    failed = []
    for path in sorted((registry.project_root() / SWEEP_FILES).glob("*.yaml")):
        data = sweep.load_file(path)
        axes = {k: sweep.expand_values(k, v) for k, v in data["grid"].items()}
        plan = sweep.plan(data["name"], data["study"], scale, axes, fixed=data.get("params") or {},
                          engine=data.get("engine", "papermill"), description=data.get("description", ""))
        print(sweep.describe(plan))
        summary = sweep.execute(plan, store=store, workers=jobs, resume=True)
        if summary.failed:
            failed.append(plan.name)
    return failed


def assemble(store: Store, root: Path | None = None) -> None:
    """Copy each study's chapter notebook (the store's best run, else the committed smoke notebook) and write
    the ledger and the per-part study lists into ``book/_generated``."""
    root = root or registry.project_root()
    gen = root / GENERATED
    shutil.rmtree(gen, ignore_errors=True)
    (gen / "studies").mkdir(parents=True)
    for entry in registry.implemented():
        best = store.best(entry.id)
        source = Path(best["notebook"]) if best and best.get("notebook") else None
        if source is None or not source.exists():
            source = entry.notebook
        shutil.copy(source, gen / "studies" / f"{entry.slug}.ipynb")
    (gen / "ledger.md").write_text(render_markdown(store))
    known = set(store.sweeps())
    for name in sorted(known):
        sweep_report.write_report(store, name, root=root)
    for path in sorted((root / SWEEP_FILES).glob("*.yaml")):
        data = sweep.load_file(path)
        if data["name"] not in known:
            sweep_report.placeholder_page(data["name"], data, root=root)
    for part, _title in registry.PARTS.items():
        lines = ["| id | fidelity | paper | chapter |", "| --- | --- | --- | --- |"]
        for e in registry.catalog().values():
            if e.part == part:
                chapter = (f"{{doc}}`read </book/_generated/studies/{e.slug}>`" if e.implemented
                           else "not yet reproduced")
                lines.append(f"| {e.id} | {e.fidelity} | {e.title} | {chapter} |")
        (gen / f"part-{part}.md").write_text("\n".join(lines) + "\n")


def build_html(html: str | Path, root: Path | None = None) -> Path:
    """Render the book with Jupyter Book 1.x, warnings as errors; return the path of index.html."""
    root = root or registry.project_root()
    exe = Path(sys.executable).with_name("jupyter-book")
    cmd = [str(exe), "build", str(root), "--path-output", str(html), "-W", "-n", "--keep-going"]
    subprocess.run(cmd, check=True, cwd=root)
    index = Path(html) / "_build" / "html" / "index.html"
    if not index.exists():
        raise FileNotFoundError(f"Jupyter Book finished but {index} is missing.")
    return index
