"""The ``nnsens`` command: list, run, refresh, book run / book build, ledger."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from nnsens import registry


def _parse_overrides(items: list[str]) -> dict[str, Any]:
    """``["k=v", ...]`` → ``{"k": "v"}`` (values stay strings; the study's Config types them)."""
    out = {}
    for item in items:
        if "=" not in item:
            raise ValueError(f"The '-p' option takes key=value. Got {item!r} instead.")
        key, value = item.split("=", 1)
        out[key.strip()] = value
    return out


def cmd_list(args: argparse.Namespace) -> int:
    rows = registry.catalog().values()
    print(f"{'id':4} {'part':4} {'fidelity':8} {'status':12} title")
    for e in rows:
        status = "implemented" if e.implemented else "planned"
        if args.implemented and not e.implemented:
            continue
        print(f"{e.id:4} {e.part:4} {e.fidelity:8} {status:12} {e.title}")
    done = sum(e.implemented for e in rows)
    print(f"\n{done} of {len(rows)} studies implemented.")
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    from nnsens import runner

    try:
        spec = runner.prepare(args.study, args.scale, _parse_overrides(args.param), args.device)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    try:
        record = runner.execute(spec, out=args.out, force=args.force, threads=args.threads)
    except runner.RunFailed as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    how = "cached (same cache key; --force reruns)" if record.get("cached") else "executed"
    print(f"{spec.study} at {spec.scale} scale: {how}; notebook {record['notebook']}")
    for c in record["claims"]:
        print(f"  {c['claim']:<28} value={c['value']:<12.4g} threshold={c['threshold']:<10} {c['verdict']}")
    return 0


def cmd_refresh(args: argparse.Namespace) -> int:
    """Execute a committed notebook in place at its parameters cell's values (smoke) to refresh its outputs."""
    import nbclient
    import nbformat

    ids = [e.id for e in registry.implemented()] if args.study == "all" else [args.study]
    for sid in ids:
        entry = registry.get(sid)
        if not entry.implemented:
            print(f"error: {entry.id} is not implemented", file=sys.stderr)
            return 2
        nb = nbformat.read(entry.notebook, as_version=4)
        nbclient.NotebookClient(nb, kernel_name="python3", timeout=600,
                                resources={"metadata": {"path": str(entry.notebook.parent)}}).execute()
        for cell in nb.cells:  # keep committed notebooks free of volatile metadata
            cell.get("metadata", {}).pop("execution", None)
        nbformat.write(nb, entry.notebook)
        print(f"refreshed {entry.notebook}")
    return 0


def cmd_book_run(args: argparse.Namespace) -> int:
    from nnsens import book, runner

    scale = runner.resolve_scale(args.scale)
    failed = book.run_all(scale, jobs=args.jobs, out_root=args.out_root, force=args.force)
    if not args.no_sweeps:
        failed += book.run_sweeps(args.sweep_scale or scale, jobs=args.jobs, store=runner.default_store())
    if failed:
        print(f"error: {len(failed)} studies or sweeps failed: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


def cmd_book_build(args: argparse.Namespace) -> int:
    from nnsens import book, runner

    book.assemble(runner.default_store())
    index = book.build_html(args.html)
    print(f"book: {index}")
    return 0


def cmd_sweep(args: argparse.Namespace) -> int:
    from nnsens import runner, sweep

    try:
        if args.file:
            data = sweep.load_file(args.file)
            study, scale = data["study"], args.scale or data.get("scale", "cpu")
            axes = {k: sweep.expand_values(k, v) for k, v in data["grid"].items()}
            fixed = {**(data.get("params") or {}), **_parse_overrides(args.param)}
            name, engine = args.name or data["name"], args.engine or data.get("engine", "papermill")
            description = data.get("description", "")
        else:
            if not args.study or not args.grid:
                raise ValueError("Give a study and at least one --grid NAME=VALUES, or --file sweeps/NAME.yaml.")
            study, scale = args.study, args.scale or "cpu"
            axes = dict(sweep.parse_axis(g) for g in args.grid)
            fixed, engine, description = _parse_overrides(args.param), args.engine or "papermill", ""
            name = args.name or f"{study.upper()}-" + "-".join(axes)
        resources = {k: float(v) for k, v in _parse_overrides(args.resources).items()} or None
        plan = sweep.plan(name, study, scale, axes, fixed=fixed, engine=engine, device=args.device,
                          description=description)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(sweep.describe(plan))
    store = runner.default_store()
    try:
        summary = sweep.execute(plan, store=store, workers=args.workers, scheduler=args.scheduler,
                                resume=args.resume, resources=resources, out_root=args.out_root)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"sweep {plan.name}: {summary.total} points, {summary.skipped} already done, {summary.completed} run now, "
          f"{len(summary.failed)} failed, {summary.wall_s:.1f} s")
    for params, error in summary.failed:
        print(f"  FAILED {json.dumps(params)}: {error}", file=sys.stderr)
    return 1 if summary.failed else 0


def cmd_report(args: argparse.Namespace) -> int:
    from nnsens import runner, sweep_report

    try:
        paths = sweep_report.write_report(runner.default_store(), args.name)
    except KeyError as exc:
        print(f"error: {exc.args[0]}", file=sys.stderr)
        return 2
    for kind, path in paths.items():
        print(f"{kind}: {path}")
    return 0


def cmd_ledger(args: argparse.Namespace) -> int:
    from nnsens import ledger, runner

    rows = ledger.ledger_rows(runner.default_store())
    if args.json:
        print(json.dumps(rows, indent=1, default=str))
    else:
        print(ledger.render_markdown(runner.default_store()))
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="nnsens", description="Neural sensitivity compendium")
    sub = p.add_subparsers(dest="command", required=True)

    s = sub.add_parser("list", help="every study of the 68 with its part, fidelity and status")
    s.add_argument("--implemented", action="store_true", help="only implemented studies")
    s.set_defaults(func=cmd_list)

    s = sub.add_parser("run", help="execute one study's notebook with papermill and store its record")
    s.add_argument("study", help="study id, e.g. P46")
    s.add_argument("--scale", default="cpu", help="smoke, cpu, paper or auto (paper when CUDA is found)")
    s.add_argument("-p", "--param", action="append", default=[], metavar="KEY=VALUE", help="override a parameter")
    s.add_argument("--device", choices=("auto", "cpu", "cuda"), default=None)
    s.add_argument("--out", default=None, help="folder for the executed notebook and its record")
    s.add_argument("--force", action="store_true", help="execute even if an identical run is stored")
    s.add_argument("--threads", type=int, default=None, help="torch threads in the kernel (default: torch's)")
    s.set_defaults(func=cmd_run)

    s = sub.add_parser("refresh", help="re-execute a committed notebook in place (smoke outputs for nbval)")
    s.add_argument("study", help="study id or 'all'")
    s.set_defaults(func=cmd_refresh)

    b = sub.add_parser("book", help="run all studies / render the book").add_subparsers(dest="book", required=True)
    s = b.add_parser("run", help="execute every implemented study, side by side")
    s.add_argument("--scale", default="auto")
    s.add_argument("--jobs", type=int, default=2)
    s.add_argument("--out-root", default=None)
    s.add_argument("--force", action="store_true")
    s.add_argument("--no-sweeps", action="store_true", help="skip the committed sweeps (sweeps/*.yaml)")
    s.add_argument("--sweep-scale", default=None, help="scale of the committed sweeps (default: --scale)")
    s.set_defaults(func=cmd_book_run)
    s = b.add_parser("build", help="assemble chapters and ledger from the store, render HTML")
    s.add_argument("--html", default=".", help="output root (the index is <html>/_build/html/index.html)")
    s.set_defaults(func=cmd_book_build)

    s = sub.add_parser("sweep", help="run a study over a grid of parameters on Dask (resumable)")
    s.add_argument("study", nargs="?", help="study id, e.g. P21 (or use --file)")
    s.add_argument("--file", help="a sweep file, e.g. sweeps/p21_poke.yaml")
    s.add_argument("--grid", action="append", default=[], metavar="NAME=VALUES",
                   help="an axis: a list a,b,c or an integer range a:b[:step] (b excluded); repeat for a product")
    s.add_argument("-p", "--param", action="append", default=[], metavar="KEY=VALUE", help="a fixed parameter")
    s.add_argument("--scale", default=None, help="smoke, cpu (default), paper or auto")
    s.add_argument("--device", choices=("auto", "cpu", "cuda"), default=None)
    s.add_argument("--engine", choices=("papermill", "direct"), default=None,
                   help="papermill: a notebook per point (default); direct: run(cfg) in a warm worker")
    where = s.add_mutually_exclusive_group()
    where.add_argument("--workers", type=int, default=2, help="local Dask workers, one thread each")
    where.add_argument("--scheduler", default=None, help="address of a running Dask scheduler, tcp://HOST:PORT")
    s.add_argument("--resources", action="append", default=[], metavar="NAME=AMOUNT",
                   help="Dask worker resources each point needs, e.g. GPU=1")
    s.add_argument("--name", default=None, help="the sweep's name in the store (default: study and axes)")
    s.add_argument("--resume", action="store_true", help="complete an existing sweep, skipping finished points")
    s.add_argument("--out-root", default=None, help="folder for the points' notebooks")
    s.set_defaults(func=cmd_sweep)

    s = sub.add_parser("report", help="tidy CSV, figure and book page of a sweep")
    s.add_argument("name")
    s.set_defaults(func=cmd_report)

    s = sub.add_parser("ledger", help="print the claims ledger")
    s.add_argument("--json", action="store_true")
    s.set_defaults(func=cmd_ledger)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
