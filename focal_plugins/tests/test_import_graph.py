"""No import circles among the adapters' modules (focal_plugins/detectron2/*.py,
focal_plugins/mmdet/*.py), counting imports inside functions too: a static check of the
source, so it needs neither framework."""
import ast
import os

PKG = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _modules():
    out = {}
    for sub in ("detectron2", "mmdet"):
        for f in sorted(os.listdir(os.path.join(PKG, sub))):
            if f.endswith(".py") and f != "__init__.py":
                out[f"focal_plugins.{sub}.{f[:-3]}"] = os.path.join(PKG, sub, f)
    return out


def _imports(mod, path):
    pkg = mod.rsplit(".", 1)[0]
    found = set()
    for node in ast.walk(ast.parse(open(path, encoding="utf-8").read())):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = pkg.rsplit(".", node.level - 1)[0] if node.level > 1 else pkg
                base = f"{base}.{node.module}" if node.module else base
            else:
                base = node.module or ""
            found.add(base)
            found.update(f"{base}.{a.name}" for a in node.names)
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
    return found


def _cycles(graph):
    state, stack, out = {}, [], []

    def visit(n):
        state[n] = 1
        stack.append(n)
        for m in graph[n]:
            if state.get(m) == 1:
                out.append(stack[stack.index(m):] + [m])
            elif m not in state:
                visit(m)
        stack.pop()
        state[n] = 2

    for n in graph:
        if n not in state:
            visit(n)
    return out


def test_adapter_modules_import_no_circle():
    mods = _modules()
    graph = {m: sorted(_imports(m, p) & set(mods) - {m}) for m, p in mods.items()}
    assert "focal_plugins.detectron2.checks" in graph and "focal_plugins.mmdet.heads" in graph
    assert _cycles(graph) == []


def test_the_check_finds_a_circle():
    assert _cycles({"a": ["b"], "b": ["a"]}) == [["a", "b", "a"]]
    assert _cycles({"a": ["b"], "b": []}) == []
