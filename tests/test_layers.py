"""The package's layers: imports point down only, and no two packages import each other (directly or around a
cycle). Every import counts, also those inside functions: a lazy import up the layers is still a dependency.

Layers, bottom up (README "Architecture"):
  audio/, text/ (and the helper module parallel.py)
  models/                                   the math: no Lightning, Hydra, peft, datasets
  data/, adapters/, inference/, eval/, serve/, runs.py
  tasks/, training/                         Lightning and Hydra live here and above
  cli.py, demo.py, the package root
"""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

import qtts

ROOT = Path(qtts.__file__).parent
LAYERS = [
    {"audio", "text", "parallel"},
    {"models"},
    {"data", "adapters", "inference", "eval", "serve", "runs"},
    {"tasks", "training"},
    {"cli", "demo", "qtts"},
]
RANK = {name: rank for rank, names in enumerate(LAYERS) for name in names}
TRAINING_STACK = {"lightning", "pytorch_lightning", "hydra", "omegaconf"}
FORBIDDEN = {"models": TRAINING_STACK | {"peft", "datasets", "accelerate", "tests"}}
LIGHTNING_FROM = RANK["tasks"]  # the lowest layer that may import the training stack


def package_of(module: str) -> str:
    parts = module.split(".")
    return "qtts" if len(parts) == 1 else parts[1]


def imports() -> dict[tuple[str, str], list[str]]:
    """``{(package, imported top-level name or qtts package): ["module -> import", …]}`` over every file."""
    edges: dict[tuple[str, str], list[str]] = defaultdict(list)
    for path in sorted(ROOT.rglob("*.py")):
        parts = path.relative_to(ROOT.parent).with_suffix("").parts
        module = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        package = package_of(module)
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                if node.level:  # relative: resolve against this module's package
                    base = module.split(".")[: len(module.split(".")) - node.level + (parts[-1] == "__init__")]
                    names = [".".join(base + ([node.module] if node.module else []))]
                else:
                    names = [node.module]
            else:
                continue
            for name in names:
                target = package_of(name) if name.split(".")[0] == "qtts" else name.split(".")[0]
                if target != package:
                    edges[(package, target)].append(f"{module} -> {name}")
    return edges


def test_every_package_has_a_layer():
    packages = {package_of(".".join(p.relative_to(ROOT.parent).with_suffix("").parts)) for p in ROOT.rglob("*.py")}
    assert packages - {"__init__"} <= set(RANK), f"place {sorted(packages - set(RANK))} in LAYERS"


def test_imports_point_down():
    upward = [f"{where}  ({src} is layer {RANK[src]}, {dst} layer {RANK[dst]})"
              for (src, dst), lines in imports().items() if dst in RANK and RANK[dst] > RANK[src] for where in lines]
    assert not upward, "imports up the layers:\n" + "\n".join(upward)


def test_no_cycles_between_packages():
    graph: dict[str, set[str]] = defaultdict(set)
    for src, dst in imports():
        if dst in RANK:
            graph[src].add(dst)

    def reaches(start: str, goal: str, seen: set[str]) -> bool:
        for nxt in graph[start]:
            if nxt == goal or (nxt not in seen and (seen.add(nxt) or reaches(nxt, goal, seen))):
                return True
        return False

    cycles = sorted(f"{a} -> {b} -> … -> {a}" for a in list(graph) for b in graph[a] if reaches(b, a, {b}))
    assert not cycles, "packages that import each other:\n" + "\n".join(cycles)


def test_the_training_stack_stays_on_top():
    found = [where for (src, dst), lines in imports().items()
             if (dst in TRAINING_STACK and RANK[src] < LIGHTNING_FROM) or dst in FORBIDDEN.get(src, ())
             for where in lines]
    assert not found, "imports of Lightning/Hydra below tasks/training, or of the training stack in models/:\n" + \
        "\n".join(found)


def test_opening_a_run_does_not_import_lightning(tmp_path):
    """``qtts.runs`` and the Synthesizer import without Lightning or Hydra (a fresh interpreter tells)."""
    import subprocess
    import sys

    code = ("import sys, qtts.runs, qtts.inference.synthesizer; "
            "print(sorted(m for m in ('lightning', 'hydra', 'pytorch_lightning') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]", out.stdout + out.stderr
