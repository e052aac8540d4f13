"""The import layers of shared/DESIGN.md hold: every ``import`` of every module in lico_bench/
(module level or inside a function, parsed with ``ast``, nothing imported) points to the same
layer or a lower one, the report reads result files only, explainers and metrics know no
trainer, runner, report or CLI, and no two rooms import each other in a circle.

The layers, lowest first, from DESIGN.md ("What the package does, as one flow", "Rooms"):

0. shared helpers and types: errors, io, registry, options, config, precision, results,
   lock, and the torchrun helpers (distributed: "used by train/ and bench/, so they sit
   below both");
1. data/, lico/ and guidance/ (pure functions and small modules);
2. models/ (their configs name LICO's variants);
3. explainers/ and metrics/ (torch and the shared types; a model only as an argument);
4. train/;
5. the run's description: bench.spec (the grid) and bench.manifest (the one manifest
   reader, which the report uses);
6. report/ ("reads results/, writes tables and PNG/PDF");
7. the runner: bench.runner and bench.scoring (a batch's metrics), what it writes for the
   figures (bench.figure_inputs), the reliance of cue models it measures (bench.cue), the
   grid pointing game's qualifying images (bench.grid), the cross-seed agreement it writes
   (bench.agreement), the small images of the results browser (bench.thumbs), and
   bench/__init__ (its ``run``);
8. cli and cli_options (flags and config files -> TrainConfig, RunSpec) ("only parses
   arguments and calls one function of the layer below").
"""
import ast
from collections import defaultdict
from pathlib import Path

PKG = Path(__file__).resolve().parents[1] / "lico_bench"

SHARED = ("errors", "io", "registry", "options", "config", "precision", "schemas", "results",
          "arguments", "lock",
          "distributed")
LAYERS = [
    [f"lico_bench.{m}" for m in SHARED],
    ["lico_bench.data", "lico_bench.lico", "lico_bench.guidance"],
    ["lico_bench.models"],
    ["lico_bench.explainers", "lico_bench.metrics"],
    ["lico_bench.train"],
    ["lico_bench.bench.spec", "lico_bench.bench.manifest"],
    ["lico_bench.report"],
    ["lico_bench.bench.runner", "lico_bench.bench.scoring", "lico_bench.bench.figure_inputs",
     "lico_bench.bench.cue", "lico_bench.bench.grid", "lico_bench.bench.agreement",
     "lico_bench.bench.thumbs", "lico_bench.bench"],
    ["lico_bench.cli", "lico_bench.cli_options"],
]
# What a room must never import, beyond the layer order (the rules DESIGN.md states).
FORBIDDEN = {
    "lico_bench.report": ("lico_bench.data", "lico_bench.explainers", "lico_bench.metrics",
                          "lico_bench.models", "lico_bench.train", "lico_bench.bench.runner",
                          "lico_bench.bench.figure_inputs", "lico_bench.bench.thumbs",
                          "lico_bench.cli"),
    "lico_bench.explainers": ("lico_bench.train", "lico_bench.bench", "lico_bench.report",
                              "lico_bench.cli"),
    "lico_bench.metrics": ("lico_bench.train", "lico_bench.bench", "lico_bench.report",
                           "lico_bench.cli"),
}


def _modules():
    """{dotted module name: path} for every .py file of the package."""
    out = {}
    for path in sorted(PKG.rglob("*.py")):
        parts = list(path.relative_to(PKG.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = path
    return out


def _imports(name: str, path: Path):
    """[(line, imported module)] of module ``name``: absolute and relative imports, anywhere
    in the file; ``from X import y`` counts as X.y when X.y is a module, else X."""
    modules = _modules()
    is_pkg = path.name == "__init__.py"
    here = name.split(".") if is_pkg else name.split(".")[:-1]
    out = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            out += [(node.lineno, a.name) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = here[: len(here) - node.level + 1]
                mod = ".".join(base + ([node.module] if node.module else []))
            else:
                mod = node.module
            for a in node.names:
                full = f"{mod}.{a.name}"
                out.append((node.lineno, full if full in modules else mod))
    return [(line, m) for line, m in out if m == "lico_bench" or m.startswith("lico_bench.")]


def _unit(module: str):
    """(layer, unit) of a module: the longest prefix named in LAYERS."""
    best = None
    for layer, units in enumerate(LAYERS):
        for u in units:
            if (module == u or module.startswith(u + ".")) and (best is None or len(u) > len(best[1])):
                best = (layer, u)
    return best


def _edges():
    """[(module, line, imported, unit, imported unit)] over the package; the package's own
    __init__ (a façade over data and models for users) is no room and is left out."""
    out = []
    for name, path in _modules().items():
        if name == "lico_bench":
            continue
        for line, target in _imports(name, path):
            if target == "lico_bench":
                continue
            out.append((name, line, target, _unit(name), _unit(target)))
    return out


def test_every_module_has_a_layer():
    missing = [m for m in _modules() if m != "lico_bench" and _unit(m) is None]
    assert not missing, f"modules in no layer of this test (add them where DESIGN.md puts them): {missing}"


def test_no_module_imports_a_higher_layer():
    bad = [f"{name} (layer {u[0]}, {u[1]}) imports {target} (layer {t[0]}, {t[1]}) at line {line}"
           for name, line, target, u, t in _edges() if t is not None and t[0] > u[0]]
    assert not bad, "upward imports:\n" + "\n".join(bad)


def test_rooms_never_import_what_design_forbids():
    bad = []
    for name, line, target, u, _ in _edges():
        for room, banned in FORBIDDEN.items():
            if name == room or name.startswith(room + "."):
                hit = [b for b in banned if target == b or target.startswith(b + ".")]
                bad += [f"{name} imports {target} at line {line} ({room} must not import {b})"
                        for b in hit]
    assert not bad, "\n".join(bad)


def test_no_circle_of_imports_between_rooms():
    graph = defaultdict(set)
    where = {}
    for name, line, target, u, t in _edges():
        if u[1] != t[1]:
            graph[u[1]].add(t[1])
            where.setdefault((u[1], t[1]), f"{name} -> {target} (line {line})")

    def path_back(start):
        """A path of rooms from ``start`` back to itself, or None (depth-first search)."""
        stack = [(start, [start])]
        seen = set()
        while stack:
            node, path = stack.pop()
            for nxt in sorted(graph[node]):
                if nxt == start:
                    return path + [start]
                if nxt not in seen:
                    seen.add(nxt)
                    stack.append((nxt, path + [nxt]))
        return None

    for room in sorted(graph):
        circle = path_back(room)
        assert circle is None, "import circle: " + "; ".join(
            where[(a, b)] for a, b in zip(circle, circle[1:]))


def test_the_checker_sees_imports_and_names_them():
    """Known by construction: relative, absolute, lazy and ``from . import x`` imports of
    modules this test knows are resolved to the module they name."""
    mods = _modules()
    found = dict((m, line) for line, m in _imports("lico_bench.bench.runner", mods["lico_bench.bench.runner"]))
    assert "lico_bench.bench.manifest" in found           # from . import figure_inputs, manifest
    assert "lico_bench.distributed" in found              # from .. import distributed
    assert "lico_bench.report" in found                   # lazy, inside run()
    assert _unit("lico_bench.bench.manifest") == (5, "lico_bench.bench.manifest")
    assert _unit("lico_bench.bench.runner") == (7, "lico_bench.bench.runner")
    assert _unit("lico_bench.report.figures") == (6, "lico_bench.report")


def test_no_circle_of_imports_between_modules_of_a_room():
    """Inside a room, modules import each other one way (a shared helper module below the
    modules that use it, e.g. data/common.py under cifar.py; each dataset registers itself
    rather than a central module importing them back). A package's __init__ importing its
    own modules is its façade, not a circle, and is left out."""
    graph = defaultdict(set)
    where = {}
    modules = _modules()
    for name, line, target, u, t in _edges():
        if u[1] != t[1] or name == target:
            continue
        if modules[name].name == "__init__.py" and target.startswith(name + "."):
            continue
        graph[name].add(target)
        where.setdefault((name, target), f"{name} -> {target} (line {line})")
    state = {}

    def visit(node, path):
        state[node] = "open"
        for nxt in sorted(graph[node]):
            if state.get(nxt) == "open":
                cyc = path[path.index(nxt):] + [nxt]
                raise AssertionError("import circle inside a room: " + "; ".join(
                    where[(a, b)] for a, b in zip(cyc, cyc[1:])))
            if nxt not in state:
                visit(nxt, path + [nxt])
        state[node] = "done"

    for node in sorted(graph):
        if node not in state:
            visit(node, [node])
