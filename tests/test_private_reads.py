"""The parts of cconv talk through public or documented interfaces (issue 31): reads of
another object's private attribute (``obj._x`` with ``obj`` not ``self`` or ``cls``, a
``super()._x`` call and a module's ``mod._helper`` included) stay within a budget across
the whole package, so that a new protocol between modules gets a public, documented name
(Keras's where Keras has one) instead of a private one. The scale-out modules have none at
all (tests/test_scale_out_interfaces.py)."""
import collections
import pathlib

import cconv

from ._helpers import private_reads

PACKAGE = pathlib.Path(cconv.__file__).parent
BUDGET = 40


def test_the_count_sees_private_reads():
    src = ("class A(B):\n"
           "    def f(self, model, mod):\n"
           "        self._ok = cls._ok = model._bad + mod._helper()\n"
           "        return super()._hook(), self.model._worse, x.__class__\n")
    assert sorted(private_reads(src)) == [(3, "mod._helper"), (3, "model._bad"),
                                          (4, "self.model._worse"), (4, "super()._hook")]


def test_cconv_reads_few_private_attributes_of_other_objects():
    reads = collections.defaultdict(list)
    for path in sorted(PACKAGE.rglob("*.py")):
        for line, expr in sorted(private_reads(path.read_text())):
            reads[str(path.relative_to(PACKAGE))].append(f"{line}: {expr}")
    total = sum(len(v) for v in reads.values())
    listing = "\n".join(f"  {f} ({len(v)}): {', '.join(v)}" for f, v in
                        sorted(reads.items(), key=lambda kv: -len(kv[1])))
    assert total <= BUDGET, (
        f"cconv/ reads {total} private attributes of other objects (budget {BUDGET}); give "
        f"the protocol a public, documented name (Keras's where it has one) instead:\n"
        f"{listing}")
