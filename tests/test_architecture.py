"""The layers of docs/architecture.md, checked on every import statement of the package.

Each module belongs to one layer (the longest entry of ``LAYERS`` that names it or a package
above it). A module imports only from its own or lower layers; never from a sibling package
(another package of its layer, or another feature package: codecs, compression, pruning and
grouping, whose sweeps sit a layer up); and nothing outside the CLI imports ``splitbench.cli``.
Every ``import`` and ``from … import`` counts: at the top, inside functions, under
``if TYPE_CHECKING``. Imports by name in a string (a forkserver's preload) are not seen.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
from conftest import REPO

PACKAGE = REPO / "splitbench"
DOC = REPO / "docs" / "architecture.md"

# Lowest first; names are relative to ``splitbench`` ("" is the package itself, and only it).
LAYERS: list[tuple[str, list[str]]] = [
    ("foundation", ["", "errors", "finite", "results", "runs", "provenance", "progress", "metrics", "macs", "timing",
                    "references", "points", "values"]),
    ("machine", ["checks", "orphans", "executors"]),
    ("data", ["data", "weights", "evaluation"]),
    ("detection", ["detection"]),
    ("models", ["zoo", "cuts"]),
    ("model tools", ["split", "profiling", "scoring", "reporting", "training"]),
    ("features", ["codecs", "compression", "pruning", "grouping"]),
    ("transport", ["transport"]),
    ("sweeps", ["codecs.pipeline", "codecs.sweep", "codecs.report", "codecs.detection_report",
                "compression.sweep", "compression.report", "pruning.sweep", "pruning.report",
                "grouping.sweep", "grouping.report", "detection.evaluate", "link"]),
    ("reports", ["overview", "claims", "spread", "regression", "preflight", "jobs", "api"]),
    ("cli", ["cli", "__main__"]),
]

# Imports that break the rule today, each a to-do: (importer, imported, why). A name covers
# the modules below it. An entry that no import needs any more fails the test: delete it then.
EXCEPTIONS: list[tuple[str, str, str]] = [
    # data → detection (upward): open_dataset opens coco:/voc: names and detection manifests
    # itself; to do: detection registers its openers with splitbench.data.
    ("data.datasets", "detection.data", "open_dataset dispatches to detection's data sets"),
]


# The feature packages: siblings whichever layer their modules are in (their sweeps are a layer up).
FEATURES = {f"splitbench.{name.split('.')[0]}" for layer, names in LAYERS if layer == "features" for name in names}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(REPO).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(path): path for path in sorted(PACKAGE.rglob("*.py"))}


def full(name: str) -> str:
    return f"splitbench.{name}" if name else "splitbench"


def covers(name: str, module: str) -> bool:
    """Whether the entry ``name`` (relative to splitbench) names ``module`` or a package above it."""
    return module == full(name) or (name != "" and module.startswith(full(name) + "."))


def place(module: str) -> tuple[int, str] | None:
    """(layer index, the entry that placed it), by the longest entry that covers ``module``."""
    found = [(len(name), index, name) for index, (_, names) in enumerate(LAYERS) for name in names
             if covers(name, module)]
    if not found:
        return None
    _, index, name = max(found)
    return index, name


def package_of(module: str) -> str | None:
    """The subpackage a module is in (``splitbench.codecs`` for ``splitbench.codecs.bpg``), None for a plain module."""
    parts = module.split(".")
    if len(parts) >= 2 and (PACKAGE / parts[1]).is_dir():
        return ".".join(parts[:2])
    return None


def imported(module: str, path: Path) -> list[tuple[int, str]]:
    """(line, module) for every import of a splitbench module in ``path``, anywhere in the file."""
    tree = ast.parse(path.read_text(), filename=str(path))
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: from the package, up level - 1 more
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                source = ".".join(base + ([node.module] if node.module else []))
            else:
                source = node.module or ""
            for alias in node.names:  # `from splitbench import provenance` imports a module
                name = f"{source}.{alias.name}"
                found.append((node.lineno, name if name in MODULES else source))
    return sorted({(line, name) for line, name in found if name == "splitbench" or name.startswith("splitbench.")})


def problem(importer: str, target: str) -> str | None:
    """Why ``importer`` may not import ``target``, or None where it may."""
    if target.startswith("splitbench.cli") and not importer.startswith("splitbench.cli") \
            and importer != "splitbench.__main__":
        return "imports the command line"
    (mine, _), (theirs, _) = place(importer), place(target)
    if theirs > mine:
        return f"imports upward ({LAYERS[mine][0]} → {LAYERS[theirs][0]})"
    here, there = package_of(importer), package_of(target)
    if here is None or there is None or here == there:
        return None
    if theirs == mine:
        return f"imports a sibling package in the {LAYERS[mine][0]} layer"
    if here in FEATURES and there in FEATURES:  # a feature's sweep is no licence to use another feature
        return "imports a sibling feature package"
    return None


def excepted(importer: str, target: str) -> tuple[str, str, str] | None:
    return next((entry for entry in EXCEPTIONS if covers(entry[0], importer) and covers(entry[1], target)), None)


def violations() -> list[tuple[str, int, str, str]]:
    return [(module, line, target, why) for module, path in MODULES.items() for line, target in imported(module, path)
            if (why := problem(module, target)) is not None]


def test_every_module_has_a_layer() -> None:
    unplaced = [module for module in MODULES if place(module) is None]
    assert not unplaced, f"add these to LAYERS here and to docs/architecture.md: {unplaced}"


def test_every_import_of_the_package_names_a_module_that_exists() -> None:
    missing = [f"{module}:{line} {target}" for module, path in MODULES.items() for line, target in imported(module, path)
               if target not in MODULES]
    assert not missing, missing


def test_imports_run_downward_only() -> None:
    if any(place(module) is None for module in MODULES):
        pytest.skip("a module has no layer (test_every_module_has_a_layer)")
    found = [f"{module}:{line} {target}: {why}" for module, line, target, why in violations()
             if excepted(module, target) is None]
    assert not found, "\n".join(["imports against docs/architecture.md:", *found])


def test_every_exception_is_still_needed() -> None:
    if any(place(module) is None for module in MODULES):
        pytest.skip("a module has no layer (test_every_module_has_a_layer)")
    used = {excepted(module, target) for module, _, target, _ in violations()}
    stale = [entry[:2] for entry in EXCEPTIONS if entry not in used]
    assert not stale, f"these imports are fixed: delete them from EXCEPTIONS (and docs/architecture.md): {stale}"


def test_the_document_names_every_layer_entry_and_exception() -> None:
    text = DOC.read_text()
    entries = [name for _, names in LAYERS for name in names if name]
    assert not [name for name in entries if f"`{name}`" not in text]
    assert not [entry[:2] for entry in EXCEPTIONS if f"`{entry[0]}` → `{entry[1]}`" not in text]


@pytest.mark.parametrize(("importer", "target", "allowed"), [
    ("splitbench.zoo", "splitbench.preflight", False),  # upward: the model layer into the commands' checks
    ("splitbench.preflight", "splitbench.cli.render", False),  # the command line
    ("splitbench.grouping.sweep", "splitbench.pruning.sweep", False),  # sibling sweeps
    ("splitbench.compression.train", "splitbench.codecs.base", False),  # sibling features
    ("splitbench.pruning.sweep", "splitbench.grouping.flgc", False),  # a sweep into another feature
    ("splitbench.link.endpoints", "splitbench.codecs.features", True),  # the link over the codecs' transport
    ("splitbench.codecs.sweep", "splitbench.codecs.cache", True),  # its own package, lower
    ("splitbench.executors", "splitbench.orphans", True),
    ("splitbench.claims", "splitbench.compression.curves", True),
])
def test_the_rule_itself(importer: str, target: str, allowed: bool) -> None:
    assert (problem(importer, target) is None) == allowed
