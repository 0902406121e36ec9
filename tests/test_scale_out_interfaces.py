"""The scale-out modules (MPI training, Dask inference) use only public or documented
interfaces of the models, layers and metrics they drive: no read of another object's
private attribute (``obj._x`` with ``obj`` not ``self`` or ``cls``), so the training loop
can change inside without breaking them (issue 31)."""
import importlib.util
import pathlib

import pytest

import cconv

from ._helpers import private_reads

PACKAGE = pathlib.Path(cconv.__file__).parent
SCALE_OUT = ["cconv.distributed", "cconv.dask"]


def _files():
    """The scale-out modules' source files (found without importing them: mpi4py and dask
    are optional), and any under a ``cconv/distribute/`` package."""
    files = [pathlib.Path(importlib.util.find_spec(name).origin) for name in SCALE_OUT]
    sub = PACKAGE / "distribute"
    if sub.is_dir():
        files += sorted(sub.rglob("*.py"))
    return files


def test_the_check_sees_private_reads():
    src = ("def f(self, model):\n"
           "    self._ok = model._bad\n"
           "    return self.model._worse, x.__class__\n")
    assert private_reads(src) == [(2, "model._bad"), (3, "self.model._worse")]


@pytest.mark.parametrize("path", _files(), ids=lambda p: p.name)
def test_scale_out_module_reads_no_private_attribute_of_another_object(path):
    found = private_reads(path.read_text())
    assert not found, (f"{path.name} reads private attributes of other objects (use a public "
                       f"or documented interface, e.g. model.distribution): {found}")
