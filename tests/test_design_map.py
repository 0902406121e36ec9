"""DESIGN.md is the map of the package: every source file under cconv/ is named there, with
one line on what it holds (issue 31). A new file fails this test until it is described."""
import pathlib

ROOT = pathlib.Path(__file__).resolve().parent.parent
SOURCE_SUFFIXES = {".py", ".pyx", ".pxd", ".pxi", ".h", ".typed"}


def test_design_md_names_every_file_under_cconv():
    design = (ROOT / "DESIGN.md").read_text(encoding="utf-8")
    files = sorted(p.relative_to(ROOT).as_posix() for p in (ROOT / "cconv").rglob("*")
                   if p.is_file() and p.suffix in SOURCE_SUFFIXES
                   and "__pycache__" not in p.parts)
    assert len(files) > 50, files
    missing = [f for f in files if f"`{f}`" not in design]
    assert not missing, f"DESIGN.md's map does not name: {missing}"
