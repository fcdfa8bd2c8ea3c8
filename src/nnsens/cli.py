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
    if failed:
        print(f"error: {len(failed)} studies failed: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


def cmd_book_build(args: argparse.Namespace) -> int:
    from nnsens import book, runner

    book.assemble(runner.default_store())
    index = book.build_html(args.html)
    print(f"book: {index}")
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
    s.set_defaults(func=cmd_book_run)
    s = b.add_parser("build", help="assemble chapters and ledger from the store, render HTML")
    s.add_argument("--html", default=".", help="output root (the index is <html>/_build/html/index.html)")
    s.set_defaults(func=cmd_book_build)

    s = sub.add_parser("ledger", help="print the claims ledger")
    s.add_argument("--json", action="store_true")
    s.set_defaults(func=cmd_ledger)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
