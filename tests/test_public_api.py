"""Every name the README and docs/ show a user still imports: each dotted ``cconv.x.y`` in
the text and each ``from cconv... import ...`` in their examples (issue 31: the layout may
change inside, the documented names may not). Also the public import paths that the issue
names, and the old module paths that moved into subpackages."""
import importlib
import importlib.util
import pathlib
import re

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
# Public paths whose import needs an extra (mpi4py with an MPI library; dask): without it they
# must still be found, and raise ImportError saying what to install.
OPTIONAL = {"cconv.distributed": "mpi4py", "cconv.dask": "dask"}


def _resolve(name):
    """The object a dotted name refers to: the longest importable module prefix, then
    attributes."""
    parts = name.split(".")
    for i in range(len(parts), 0, -1):
        module = ".".join(parts[:i])
        if module in OPTIONAL and importlib.util.find_spec(OPTIONAL[module]) is None:
            assert importlib.util.find_spec(module) is not None, module
            pytest.skip(f"{module} needs {OPTIONAL[module]}, which is not installed")
        try:
            obj = importlib.import_module(module)
        except ModuleNotFoundError as e:
            if not (e.name and module.startswith(e.name)):
                raise                 # a module that exists failed to import something else
            continue
        for attr in parts[i:]:
            obj = getattr(obj, attr)
        return obj
    raise AssertionError(f"{name}: no importable prefix")


def _documented_names():
    names = set()
    for path in DOCS:
        text = path.read_text(encoding="utf-8")
        for m in re.finditer(r"\bcconv(?:\.[A-Za-z_]\w*)+(?!\w*/)", text):
            names.add((path.name, m.group(0)))
        for m in re.finditer(r"^\s*from (cconv[\w.]*) import \(?([\w, ]+)", text, re.M):
            for item in m.group(2).split(","):
                item = item.strip().split(" as ")[0]
                if item:
                    names.add((path.name, f"{m.group(1)}.{item}"))
    return sorted(names)


DOCUMENTED = _documented_names()


def test_the_docs_name_something():
    assert len(DOCUMENTED) > 50, DOCUMENTED


@pytest.mark.parametrize("where,name", DOCUMENTED, ids=[f"{w}:{n}" for w, n in DOCUMENTED])
def test_documented_name_imports(where, name):
    _resolve(name)


@pytest.mark.parametrize("name", [
    "cconv.layers", "cconv.optimizers", "cconv.losses", "cconv.metrics", "cconv.callbacks",
    "cconv.load_model", "cconv.models.load_model", "cconv.Sequential", "cconv.Model",
    "cconv.Input", "cconv.ops", "cconv.classic", "cconv.from_keras", "cconv.distributed",
    "cconv.distributed.DistributedModel", "cconv.dask", "cconv.dask.predict",
])
def test_public_import_paths(name):
    _resolve(name)


@pytest.mark.parametrize("old,new", [
    ("cconv.trainer", "cconv.trainers.trainer"),
    ("cconv.epoch_iterator", "cconv.trainers.epoch_iterator"),
    ("cconv.load_guard", "cconv.trainers.load_guard"),
    ("cconv.sequential", "cconv.models.sequential"),
    ("cconv.functional", "cconv.models.functional"),
    ("cconv.fileio", "cconv.saving.fileio"),
    ("cconv.keras_files", "cconv.saving.keras_files"),
    ("cconv.interop", "cconv.saving.interop"),
])
def test_moved_modules_keep_their_old_paths(old, new):
    """``import cconv.trainer`` (and pickles naming ``cconv.sequential.Sequential``) give the
    moved module itself, not a copy: one class, one set of module state."""
    assert importlib.import_module(old) is importlib.import_module(new)


@pytest.mark.parametrize("module,cls", [("cconv.sequential", "Sequential"),
                                        ("cconv.functional", "Model")])
def test_pickles_naming_an_old_class_path_find_the_class(module, cls):
    """What unpickling a model saved before the move looks up."""
    import io
    import pickle

    import cconv
    found = pickle.Unpickler(io.BytesIO(b"")).find_class(module, cls)
    assert found is getattr(cconv, cls)
