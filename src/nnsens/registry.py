"""The 68 studies of the compendium: which are implemented, where their module and notebook live."""

from __future__ import annotations

import csv
import importlib
import os
import re
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from types import ModuleType

PARTS = {
    "I": "Attribution: where does the model look?",
    "II": "Input sensitivity and robustness",
    "III": "Parameter sensitivity: pruning, quantization, precision",
    "IV": "Training sensitivity: seeds, hyperparameters, optimizers",
    "V": "Sensitivity analysis under uncertainty: causal, privacy, global indices",
    "VI": "Sensitivity as detection power",
}
SCALES = ("smoke", "cpu", "paper")
_STUDY_RE = re.compile(r"^p(\d\d)_(\w+)\.py$")


def project_root() -> Path:
    """Root of the checkout (``NNSENS_ROOT`` overrides): where notebooks/, book/ and results/ live."""
    env = os.environ.get("NNSENS_ROOT")
    return Path(env).resolve() if env else Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class StudyEntry:
    """One paper of the catalog and, when implemented, its study module and notebook."""

    id: str
    part: str
    fidelity: str
    title: str
    module_name: str | None = None

    @property
    def implemented(self) -> bool:
        return self.module_name is not None

    @property
    def slug(self) -> str | None:
        """``P46_sobol_attribution`` for ``nnsens.studies.p46_sobol_attribution``."""
        if self.module_name is None:
            return None
        return "P" + self.module_name.rsplit(".", 1)[-1][1:]

    @property
    def notebook(self) -> Path | None:
        return None if self.slug is None else project_root() / "notebooks" / f"{self.slug}.ipynb"

    def load(self) -> ModuleType:
        """Import the study module (raises if the study is not implemented)."""
        if self.module_name is None:
            raise ValueError(f"Study {self.id} is not implemented yet.")
        return importlib.import_module(self.module_name)


EXTRA_ENV = "NNSENS_EXTRA_STUDIES"


@lru_cache(maxsize=1)
def catalog() -> dict[str, StudyEntry]:
    """All 68 studies keyed by id, with the module of those implemented.

    ``NNSENS_EXTRA_STUDIES="P99=some.module,..."`` registers study modules outside the package (tests, and studies
    under development); its notebook is ``notebooks/P99_<rest of the module name>.ipynb``.
    """
    modules = {}
    for path in (Path(__file__).parent / "studies").glob("p*.py"):
        m = _STUDY_RE.match(path.name)
        if m:
            modules[f"P{m.group(1)}"] = f"nnsens.studies.{path.stem}"
    with open(Path(__file__).parent / "catalog.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    entries = {r["id"]: StudyEntry(r["id"], r["part"], r["fidelity"], r["title"], modules.get(r["id"])) for r in rows}
    for item in filter(None, os.environ.get(EXTRA_ENV, "").split(",")):
        sid, _, module = item.partition("=")
        sid = sid.strip().upper()
        base = entries.get(sid)
        entries[sid] = StudyEntry(sid, base.part if base else "IV", base.fidelity if base else "high",
                                  base.title if base else module.strip(), module.strip())
    return entries


def get(study_id: str) -> StudyEntry:
    """Look a study up by id (``P46``, ``p46`` or ``46``); unknown or unimplemented ids raise ValueError."""
    key = study_id.strip().upper()
    if not key.startswith("P"):
        key = "P" + key
    if len(key) == 2:
        key = "P0" + key[1:]
    entries = catalog()
    if key not in entries:
        raise ValueError(f"Unknown study {study_id!r}. Valid ids: P01 to P68 (see `nnsens list`).")
    return entries[key]


def implemented() -> list[StudyEntry]:
    """The studies that have a module, in id order."""
    return [e for e in catalog().values() if e.implemented]
