"""Parameter validation and the contract every study module and notebook follows."""

from __future__ import annotations

import ast
import dataclasses
import json
import re
from pathlib import Path

import numpy as np
import pytest
import yaml

from nnsens import registry
from nnsens.papermill_literal import to_literal
from nnsens.study import PASS, Claim, Paper, StudyConfig, Verdict, compare, param, validate_params

ROOT = Path(__file__).resolve().parents[1]
STUDIES = [e for e in registry.implemented()]


@dataclasses.dataclass(frozen=True)
class _Cfg(StudyConfig):
    n: int = param(3, low=1, high=10)
    xs: tuple[int, ...] = param((1, 2), low=0)
    mode: str = param("a", choices=("a", "b"))
    rate: float = param(0.5, low=0.0, high=1.0)


def test_config_coerces_and_validates():
    cfg = _Cfg(n=np.int64(4), xs=[3, 4], rate=1)
    assert (cfg.n, cfg.xs, cfg.rate) == (4, (3, 4), 1.0) and type(cfg.n) is int
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.n = 5
    for bad, msg in [({"n": 0}, "'n' parameter of _Cfg must be an int in [1, 10]. Got 0 instead."),
                     ({"xs": "1,-2"}, "'xs' parameter of _Cfg must be a non-empty comma-separated list of ints"),
                     ({"mode": "c"}, "must be one of 'a', 'b'. Got 'c'"),
                     ({"rate": float("nan")}, "'rate' parameter of _Cfg must be a float in [0.0, 1.0]"),
                     ({"n": True}, "'n' parameter"), ({"seed": -1}, "'seed' parameter")]:
        with pytest.raises(ValueError) as err:
            _Cfg(**bad)
        assert msg in str(err.value)


def test_validate_params_parses_cli_strings():
    assert validate_params("PX", _Cfg, {"n": "5", "xs": "1,2,3", "rate": "0.25"}) == {
        "n": 5, "xs": (1, 2, 3), "rate": 0.25}
    with pytest.raises(ValueError, match="PX has no parameter 'bogus'. Valid parameters: device, mode, n, rate"):
        validate_params("PX", _Cfg, {"bogus": 1})


def test_compare_and_verdict():
    assert compare(0.5, ">=", 0.4).verdict == PASS
    assert compare(float("nan"), "<=", 1.0).verdict == "FAIL"
    assert compare(1.0, "<", 1.0).threshold == "< 1"
    with pytest.raises(ValueError):
        Verdict(1.0, 1.0, "MAYBE")


@pytest.mark.parametrize("value", ['a"b', "it's", "x\ny", "\\", '"); import os; os._exit(1) #', "{x}", 3, 2.5,
                                   True, None, [1, "a"], {"k": [1.0]}, np.int64(3), np.float32(0.5)])
def test_literals_evaluate_to_the_value(value):
    expected = value.item() if isinstance(value, np.generic) else value
    assert ast.literal_eval(to_literal(value)) == expected


# --- every implemented study ------------------------------------------------------------------------------------

def _cells(entry):
    return json.loads(entry.notebook.read_text())["cells"]


@pytest.mark.parametrize("entry", STUDIES, ids=lambda e: e.id)
def test_study_module_contract(entry):
    mod = entry.load()
    assert set(mod.PRESETS) == {"smoke", "cpu", "paper"}
    assert all(isinstance(c, mod.Config) for c in mod.PRESETS.values())
    assert mod.PRESETS["smoke"] == mod.Config(), "Config defaults must be the smoke scale"
    assert dataclasses.fields(mod.Config) and mod.Config.__dataclass_params__.frozen
    assert isinstance(mod.PAPER, Paper) and mod.PAPER.year > 1900
    assert mod.CLAIMS and all(isinstance(c, Claim) and re.fullmatch(r"c\d+\w*", c.name) for c in mod.CLAIMS)
    assert callable(mod.run)


@pytest.mark.parametrize("entry", STUDIES, ids=lambda e: e.id)
def test_notebook_contract(entry):
    cells = _cells(entry)
    code = [c for c in cells if c["cell_type"] == "code"]
    params = [c for c in code if "parameters" in c["metadata"].get("tags", [])]
    assert len(params) == 1, "exactly one cell tagged 'parameters'"
    assigned = {}
    for node in ast.parse("".join(params[0]["source"])).body:
        assert isinstance(node, ast.Assign), "the parameters cell holds literals only"
        assigned[node.targets[0].id] = ast.literal_eval(node.value)
    smoke = entry.load().PRESETS["smoke"].to_params()
    assert assigned == smoke, "the parameters cell maps 1:1 onto Config fields with the smoke values"
    sources = ["".join(c["source"]) for c in code]
    assert not any(re.search(r"^\s*(def|class)\s", s, re.M) for s in sources), "no def/class in notebooks"
    assert sum(len([ln for ln in s.splitlines() if ln.strip()]) for s in sources) <= 150
    checked = [c for c in code if "nbval-check-output" in c["metadata"].get("tags", [])]
    assert len(checked) == 1 and "finish(cfg, result)" in "".join(checked[0]["source"])
    assert checked[0]["outputs"], "committed with its smoke outputs"
    assert not any(o["output_type"] == "error" for c in code for o in c.get("outputs", []))


def test_toc_lists_every_study_and_part():
    toc = yaml.safe_load((ROOT / "_toc.yml").read_text())
    files = re.findall(r"^\s*-?\s*file: (\S+)", (ROOT / "_toc.yml").read_text(), re.M)
    assert toc["root"] == "book/intro"
    for entry in STUDIES:
        assert f"book/_generated/studies/{entry.slug}" in files, f"{entry.id} missing from _toc.yml"
    for page in files:
        if not page.startswith("book/_generated"):
            assert (ROOT / f"{page}.md").exists(), page
    studies_in_toc = {f.rsplit("/", 1)[-1] for f in files if "/studies/" in f}
    assert studies_in_toc == {e.slug for e in STUDIES}
