"""A trivial study for testing the runner: echoes its parameters, can be told to fail. Not part of the book."""

from __future__ import annotations

import time
from dataclasses import dataclass

import nbformat

from nnsens.study import Claim, Paper, StudyConfig, compare, param


@dataclass(frozen=True)
class Config(StudyConfig):
    message: str = param("hello", doc="any text; must arrive in the kernel as written")
    n: int = param(3, low=1, high=100)
    fail: bool = param(False, doc="raise inside run()")
    sleep: float = param(0.0, low=0.0, high=60.0, doc="seconds to wait inside run()")


@dataclass(frozen=True)
class Result:
    message: str
    metrics: dict


PRESETS = {"smoke": Config(), "cpu": Config(n=10), "paper": Config(n=100)}
PAPER = Paper(title="Echo", authors="Nobody", year=2026)


def run(cfg: Config) -> Result:
    time.sleep(cfg.sleep)
    if cfg.fail:
        raise RuntimeError("planted failure in P99")
    return Result(cfg.message, {"n": float(cfg.n), "message_length": float(len(cfg.message))})


CLAIMS = (Claim("c1_n_large", "n is at least 5", lambda r: compare(r.metrics["n"], ">=", 5)),)


def write_notebook(path) -> None:
    """The study's notebook, in the layout every chapter follows."""
    nb = nbformat.v4.new_notebook()
    params = nbformat.v4.new_code_cell('seed = 0\ndevice = "cpu"\nmessage = "hello"\nn = 3\nfail = False\nsleep = 0.0')
    params.metadata["tags"] = ["parameters"]
    claims = nbformat.v4.new_code_cell("from nnsens.record import finish\nclaims = finish(cfg, result)\nclaims")
    claims.metadata["tags"] = ["nbval-check-output"]
    nb.cells = [
        nbformat.v4.new_markdown_cell("# P99 · Echo"),
        params,
        nbformat.v4.new_code_cell(
            "from p99_echo import Config, run\n"
            "cfg = Config(seed=seed, device=device, message=message, n=n, fail=fail, sleep=sleep)\nresult = run(cfg)"
        ),
        claims,
    ]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, path)
