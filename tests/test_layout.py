"""The package's rooms: only freqdet.detection imports Detectron2 and only the front door imports
freqdet.detection, the model does not import the loader, config imports nothing above it, no
module imports another's private names, and no modules import each other in a circle."""

import ast
import os
import subprocess
import sys
import textwrap

import pytest

PACKAGE = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "freqdet")


def modules():
    """(dotted name, path, parsed tree) of every module of the package."""
    for folder, _, files in os.walk(PACKAGE):
        for name in sorted(files):
            if name.endswith(".py"):
                path = os.path.join(folder, name)
                parts = os.path.relpath(path, os.path.dirname(PACKAGE))[:-3].split(os.sep)
                if parts[-1] == "__init__":
                    parts = parts[:-1]
                with open(path) as f:
                    yield ".".join(parts), path, ast.parse(f.read(), path)


def imports(module: str, tree: ast.AST, is_package: bool):
    """(imported module, names) of every import in a tree, relative imports resolved; anywhere
    in the file, function bodies included."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, ()
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = module.split(".")
                base = base[: len(base) - node.level + (1 if is_package else 0)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module
            yield target, tuple(alias.name for alias in node.names)


ALL = [(name, path, tree) for name, path, tree in modules()]


def test_the_package_is_where_the_tests_think():
    names = {name for name, _, _ in ALL}
    assert {
        "freqdet",
        "freqdet.dct",
        "freqdet.io",
        "freqdet.detection",
        "freqdet.classification",
        "freqdet.demo",
    } <= names


CORE = [m for m in ALL if not m[0].startswith("freqdet.detection")]


@pytest.mark.parametrize("name, path, tree", CORE, ids=[m[0] for m in CORE])
def test_only_freqdet_detection_imports_detectron2(name, path, tree):
    for target, _ in imports(name, tree, path.endswith("__init__.py")):
        assert not target.startswith("detectron2"), f"{name} imports {target}"


@pytest.mark.parametrize("name, path, tree", CORE, ids=[m[0] for m in CORE])
def test_the_core_does_not_import_freqdet_detection(name, path, tree):
    """The front door (freqdet/__init__.py) imports it inside its "Detectron2 is installed" branch,
    which registers the plug-in; the rest of the core never does."""
    if name == "freqdet":
        guarded = [node for node in tree.body if isinstance(node, ast.If) and "find_spec" in ast.dump(node.test)]
        outside = [n for n in tree.body if n not in guarded]
        tree = ast.Module(body=outside, type_ignores=[])
    for target, _ in imports(name, tree, path.endswith("__init__.py")):
        assert not target.startswith("freqdet.detection"), f"{name} imports {target}"


@pytest.mark.slow
def test_the_core_imports_with_detectron2_made_unimportable():
    code = textwrap.dedent(
        """
        import sys
        sys.modules["detectron2"] = None  # any import of it now fails
        import freqdet, freqdet.dct, freqdet.io, freqdet.stats, freqdet.normalization, freqdet.gate
        import freqdet.demo, freqdet.visualize, freqdet.classification, freqdet.config_files, freqdet.deploy
        assert freqdet.config_files.get_config_file("mask_rcnn_dct_R50_FPN_scratch.yaml")
        import freqdet.classification.convert, freqdet.classification.data, freqdet.classification.engine
        assert not hasattr(freqdet, "add_freqdet_config") and not hasattr(freqdet, "DCTDatasetMapper")
        assert freqdet.read_image and freqdet.ImageDecodeError
        assert "freqdet.detection" not in sys.modules
        print("ok")
        """
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0 and result.stdout.strip() == "ok", result.stderr[-2000:]


def freqdet_imports(name):
    entry = next(m for m in ALL if m[0] == name)
    return {
        target
        for target, _ in imports(name, entry[2], entry[1].endswith("__init__.py"))
        if target.startswith("freqdet")
    }


@pytest.mark.parametrize(
    "model_module", ["freqdet.detection.meta_arch", "freqdet.detection.backbone", "freqdet.detection.gate"]
)
def test_the_model_does_not_import_the_data_loader(model_module):
    loader = {
        "freqdet.detection.mapper",
        "freqdet.detection.bad_images",
        "freqdet.detection.checks",
        "freqdet.detection.dataset_stats",
        "freqdet.detection.trainer",
        "freqdet.detection.datasets",
        "freqdet.demo",
    }
    assert not freqdet_imports(model_module) & loader


def test_config_imports_nothing_above_it():
    assert not {t for t in freqdet_imports("freqdet.detection.config") if t.startswith("freqdet.detection")}


def test_no_module_imports_anothers_private_names():
    offences = []
    for name, path, tree in ALL:
        is_package = path.endswith("__init__.py")
        package = name if is_package else name.rpartition(".")[0]
        for target, names in imports(name, tree, is_package):
            if not target.startswith("freqdet"):
                continue
            # A package's own compiled extension (freqdet.dct._banded, freqdet.io._jpeg) is its business.
            private = [n for n in names if n.startswith("_") and not (target == package and n in ("_banded", "_jpeg"))]
            private += [
                part for part in target.split(".") if part.startswith("_") and not target.startswith(package + ".")
            ]
            if private:
                offences.append(f"{name} imports {private} from {target}")
    assert not offences


# The packages' compiled extensions: modules of their own, not the package they sit in.
EXTENSIONS = {"freqdet.dct._banded", "freqdet.io._jpeg"}


def import_graph():
    """{module: the freqdet modules it imports}, anywhere in its file; ``from package import name``
    counts as an import of the submodule ``name`` where there is one, else of the package."""
    names = {name for name, _, _ in ALL}
    graph = {}
    for name, path, tree in ALL:
        edges = set()
        for target, imported in imports(name, tree, path.endswith("__init__.py")):
            if not target.startswith("freqdet"):
                continue
            submodules = {f"{target}.{n}" for n in imported} & (names | EXTENSIONS)
            edges |= submodules - EXTENSIONS
            if len(submodules) < len(imported) or not imported:
                while target not in names:
                    target = target.rpartition(".")[0]
                edges.add(target)
        graph[name] = edges - {name}
    return graph


def test_no_modules_import_each_other_in_a_circle():
    graph = import_graph()
    circles = []

    def walk(module, path):
        for nxt in sorted(graph[module]):
            if nxt in path:
                circles.append(path[path.index(nxt) :] + [nxt])
            elif nxt not in done:
                walk(nxt, path + [nxt])
        done.add(module)

    done = set()
    for module in sorted(graph):
        if module not in done:
            walk(module, [module])
    assert not circles, "import circles: " + "; ".join(" -> ".join(c) for c in circles)
