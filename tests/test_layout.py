"""The layout BUILD.md draws, read from the code: which package and module may import which.

Every import counts, those inside function bodies too (a circle hidden in a function is still a
circle), read from the source with `ast`: nothing is imported to check it.
"""

import ast
import os
import re
import sys

import pytest

from tests.conftest import python_code

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PACKAGES = ("zoo", "pipelines", "trainers")
# Lower layers never import higher ones: zoo <- pipelines <- trainers.
LAYER = {"zoo": 0, "pipelines": 1, "trainers": 2}
# The command-line programs: thin, over the library; none imports another.
PROGRAMS = {
    "trainers.train",
    "trainers.tune",
    "trainers.evaluate",
    "trainers.predict",
    "trainers.show",
    "trainers.export",
}
# Modules every package may import, so they load no framework when imported.
FRAMEWORK_FREE = {"zoo.common", "zoo.compat", "pipelines.errors"}
FRAMEWORKS = ("keras", "tensorflow", "tensorflow_datasets", "keras_tuner", "jax", "torch")


def modules() -> dict[str, str]:
    """Module name -> file, for every module of the three packages."""
    found = {}
    for package in PACKAGES:
        for directory, _, files in os.walk(os.path.join(REPO, package)):
            for name in files:
                if name.endswith(".py"):
                    path = os.path.join(directory, name)
                    module = os.path.relpath(path, REPO)[: -len(".py")].replace(os.sep, ".")
                    found[module.removesuffix(".__init__")] = path
    return found


def imports(path: str, known, *, top_level_only: bool = False) -> set[str]:
    """The names ``path`` imports: project modules resolved to the module (``from trainers import
    cli`` is trainers.cli), other packages by their top-level name."""
    tree = ast.parse(open(path).read())
    nodes = tree.body if top_level_only else ast.walk(tree)
    found = set()
    for node in nodes:
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [
                f"{node.module}.{a.name}" if f"{node.module}.{a.name}" in known else node.module for a in node.names
            ]
        else:
            continue
        for name in names:
            if name.split(".")[0] in PACKAGES:
                while name not in known:
                    name = name.rsplit(".", 1)[0]
            else:
                name = name.split(".")[0]
            found.add(name)
    return found


@pytest.fixture(scope="module")
def graph():
    known = modules()
    return {
        module: {name for name in imports(path, known) if name in known} - {module} for module, path in known.items()
    }


def test_lower_packages_never_import_higher_ones(graph):
    upward = [
        (module, name)
        for module, names in graph.items()
        for name in names
        if LAYER[name.split(".")[0]] > LAYER[module.split(".")[0]]
    ]
    assert len(graph) > 30  # the walk found the packages
    assert upward == []


def test_no_module_imports_itself_back_through_others(graph):
    def cycle_from(start):
        stack, seen = [(start, (start,))], set()
        while stack:
            module, path = stack.pop()
            for name in graph[module]:
                if name == start:
                    return [*path, start]
                if name not in seen:
                    seen.add(name)
                    stack.append((name, (*path, name)))
        return None

    # A package's __init__ re-exporting its modules is no circle: they import the package for its
    # submodules, never for what __init__ defines.
    cycles = [cycle for module in graph if (cycle := cycle_from(module)) and not set(cycle) & set(PACKAGES)]
    assert cycles == []


def test_programs_import_the_library_never_each_other(graph):
    crossing = sorted((program, name) for program in PROGRAMS for name in graph[program] if name in PROGRAMS)
    assert crossing == []
    # ...and the library never imports a program.
    assert sorted((m, n) for m, names in graph.items() if m not in PROGRAMS for n in names if n in PROGRAMS) == []


def test_the_shared_vocabulary_and_the_shims_import_no_framework_when_imported():
    known = modules()
    for module in sorted(FRAMEWORK_FREE):
        top = imports(known[module], known, top_level_only=True)
        assert not top & set(FRAMEWORKS), (module, top & set(FRAMEWORKS))
        assert not {name for name in top if name in known and name not in FRAMEWORK_FREE | {"zoo"}}, module


def test_the_watchdog_imports_only_the_standard_library():
    # It runs by its path (`python -I trainers/peers.py`): a project module would not import there,
    # and importing `trainers` starts TensorFlow, seconds of CPU beside the worker it watches.
    known = modules()
    names = imports(known["trainers.peers"], known)
    assert {"select", "socket"} <= names
    assert sorted(name for name in names if name not in sys.stdlib_module_names) == []


@pytest.mark.slow
def test_a_pipeline_and_the_flags_load_without_building_the_model_registry():
    # zoo's shared words need no framework at all; a pipeline needs TensorFlow, but no model.
    code = (
        "import sys\n"
        "import zoo.common, zoo.compat\n"
        "light = not {'keras', 'tensorflow'} & set(sys.modules)\n"
        "import pipelines.core, trainers.config\n"
        "print(light, sorted(m for m in sys.modules if m.startswith('zoo.')))\n"
    )
    out = python_code(code)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.split() == ["True", "['zoo.common',", "'zoo.compat']"]


def test_build_md_maps_every_module():
    text = open(os.path.join(REPO, "BUILD.md")).read()
    layout = text[text.index("## Layout") :]
    layout = layout[: layout.index("\n## ", 1)]
    missing = [module for module in sorted(modules()) if not re.search(rf"`{re.escape(module)}`", layout)]
    assert missing == []
