"""The package's layers: imports run one way (core -> arch -> contract -> graph -> runtime -> sim -> nn -> viz -> top),
there is no import cycle, the board-side layers import no torch, and no module grows past ~400 lines."""
import ast
from pathlib import Path

import pytest

import pytorch_fpga as pf
from pytorch_fpga.runtime import backends

PKG = Path(pf.__file__).resolve().parent
# lowest first; a module may import its own layer and the ones before it
LAYERS = ["core", "arch", "contract", "graph", "runtime", "sim", "nn", "viz", "top"]
BOARD_SIDE = ("core", "arch", "contract", "graph", "runtime")   # what runs on a stock PYNQ image: numpy + pynq only
MAX_LINES = 420


def module_name(path: Path) -> str:
    rel = path.relative_to(PKG.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def layer(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 and parts[1] in LAYERS else "top"


def imports(path: Path) -> set[str]:
    """Every module of the package (and every outside top-level package) that `path` imports, anywhere in it."""
    me = module_name(path)
    package = me if path.name == "__init__.py" else me.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                up = package.split(".")
                up = up[:len(up) - node.level + 1]
                base = ".".join(up + ([base] if base else []))
            subs = {f"{base}.{a.name}" for a in node.names}
            found |= subs
            if not subs <= set(MODULES):          # `from pkg import module` needs the module, not pkg's names
                found.add(base)
    return found


MODULES = {module_name(p): p for p in sorted(PKG.rglob("*.py"))}


def internal(names: set[str]) -> set[str]:
    """The package's own modules among `names` (a name that is an attribute counts as its module)."""
    out = set()
    for n in names:
        while n and n not in MODULES:
            n = n.rpartition(".")[0]
        if n and n != "pytorch_fpga":
            out.add(n)
    return out


GRAPH = {m: internal(imports(p)) - {m} for m, p in MODULES.items()}


def test_the_walk_sees_the_package():
    assert {"pytorch_fpga.core.gemm", "pytorch_fpga.runtime.backends", "pytorch_fpga.viz.conv"} <= set(MODULES)
    assert "pytorch_fpga.core.gemm" in GRAPH["pytorch_fpga.core.quant"]
    assert "pytorch_fpga.contract.regmap" in GRAPH["pytorch_fpga.contract.accel"]


@pytest.mark.parametrize("module", sorted(MODULES))
def test_imports_run_down_the_layers(module):
    mine = LAYERS.index(layer(module))
    upward = sorted(m for m in GRAPH[module] if LAYERS.index(layer(m)) > mine)
    assert not upward, f"{module} (layer {layer(module)}) imports from a higher layer: {upward}"


def test_no_import_cycle():
    state, stack = {}, []

    def visit(m):
        state[m] = "open"
        stack.append(m)
        for n in sorted(GRAPH[m]):
            if state.get(n) == "open":
                cycle = stack[stack.index(n):] + [n]
                raise AssertionError("import cycle: " + " -> ".join(cycle))
            if n not in state:
                visit(n)
        stack.pop()
        state[m] = "done"

    for m in sorted(GRAPH):
        if m not in state:
            visit(m)


@pytest.mark.parametrize("module", sorted(m for m in MODULES if layer(m) in BOARD_SIDE))
def test_board_side_imports_no_torch(module):
    outside = {n.split(".")[0] for n in imports(MODULES[module])}
    assert not outside & {"torch", "cocotb", "matplotlib", "ipywidgets"}, f"{module} imports {outside}"


def test_simulators_are_plugins_of_the_runtime():
    """The runtime reaches the simulation layer only through backends.PLUGINS, by name, on demand."""
    for name, spec in backends.PLUGINS.items():
        module, attr = spec.split(":")
        assert layer(module) == "sim", f"plugin {name} is not in the simulation layer: {spec}"
        assert module in MODULES and attr, spec


@pytest.mark.parametrize("path", sorted(PKG.rglob("*.py")), ids=lambda p: str(p.relative_to(PKG)))
def test_modules_stay_small(path):
    n = len(path.read_text().splitlines())
    assert n <= MAX_LINES, f"{path.relative_to(PKG)} has {n} lines; split it by topic (limit ~400)"
