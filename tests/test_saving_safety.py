"""Saving is atomic, exclusive and race-safe; loading refuses hostile files quickly and clearly."""
import importlib
import io
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
import tracemalloc
import types
import zipfile

import numpy as np
import pytest

import cconv
from cconv import fileio, saving
from cconv import layers as L

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def tiny_model(value=None):
    m = cconv.Sequential([cconv.Input((4,)), L.Dense(3)])
    m.compile(optimizer="adam", loss="mse")
    if value is not None:
        m.set_weights([np.full(w.shape, value, w.dtype) for w in m.get_weights()])
    return m


# ----------------------------------------------------------------------------- saving
def test_save_never_follows_a_link_planted_at_a_temporary_name(tmp_path, monkeypatch):
    victim = tmp_path / "victim.txt"
    victim.write_text("precious")
    target = tmp_path / "m.npz"
    os.symlink(victim, str(target) + ".tmp")               # the old fixed temporary name
    # and at the first name mkstemp will try: it must skip it, not write through it
    monkeypatch.setattr(tempfile, "_get_candidate_names", lambda: iter(["evil", "good"]))
    os.symlink(victim, tmp_path / ".m.npz.evil.tmp")
    tiny_model(1.0).save(target)
    assert victim.read_text() == "precious"
    assert os.path.islink(str(target) + ".tmp") and os.path.islink(tmp_path / ".m.npz.evil.tmp")
    assert all(np.all(w == 1.0) for w in cconv.load_model(target).get_weights())
    assert sorted(p.name for p in tmp_path.iterdir()) == [".m.npz.evil.tmp", "m.npz",
                                                          "m.npz.tmp", "victim.txt"]


_WRITER = """
import sys
import numpy as np
import cconv
from cconv import layers as L
value, path, n = float(sys.argv[1]), sys.argv[2], int(sys.argv[3])
m = cconv.Sequential([cconv.Input((4,)), L.Dense(3)])
m.compile(optimizer="adam", loss="mse")
m.set_weights([np.full(w.shape, value, w.dtype) for w in m.get_weights()])
method = sys.argv[4] if len(sys.argv) > 4 else "save"
for _ in range(n):
    getattr(m, method)(path)
"""


def test_two_writer_processes_and_a_reader_never_see_a_broken_file(tmp_path):
    path = tmp_path / "m.npz"
    tiny_model(0.0).save(path)
    writers = [subprocess.Popen([sys.executable, "-c", _WRITER, str(v), str(path), "60"],
                                cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                text=True) for v in (1.0, 2.0)]
    seen = set()
    while any(w.poll() is None for w in writers):
        weights = cconv.load_model(path).get_weights()        # always a whole file
        values = {float(v) for w in weights for v in np.ravel(w)}
        assert len(values) == 1, values                        # from one writer only
        seen |= values
    for w in writers:
        out, err = w.communicate(timeout=60)
        assert w.returncode == 0, err
    assert {float(np.ravel(w)[0]) for w in cconv.load_model(path).get_weights()} <= {1.0, 2.0}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.npz"]   # no temporary left
    assert seen


@pytest.mark.parametrize("error", [OSError("No space left on device"), KeyboardInterrupt()])
def test_a_failed_save_leaves_no_temporary_and_the_old_file(tmp_path, monkeypatch, error):
    path = tmp_path / "m.npz"
    tiny_model(1.0).save(path)
    before = path.read_bytes()

    def half_written(f, **arrays):
        f.write(b"PK\x03\x04 half an archive")
        raise error
    monkeypatch.setattr(saving.saving_api.np, "savez", half_written)
    with pytest.raises(type(error)):
        tiny_model(2.0).save(path)
    with pytest.raises(type(error)):
        tiny_model(2.0).save_weights(path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.npz"]
    assert path.read_bytes() == before


def test_saved_files_get_the_usual_permissions(tmp_path):
    old = os.umask(0o027)
    try:
        tiny_model().save(tmp_path / "m.npz")
    finally:
        os.umask(old)
    assert os.stat(tmp_path / "m.npz").st_mode & 0o777 == 0o640


def test_checkpoints_go_through_the_atomic_writer(tmp_path, monkeypatch):
    written = []
    real = fileio.atomic_write
    monkeypatch.setattr(fileio, "atomic_write", lambda p, w: (written.append(p), real(p, w)))
    x = np.zeros((8, 4), np.float32)
    for weights_only in (False, True):
        ck = cconv.callbacks.ModelCheckpoint(str(tmp_path / f"c{int(weights_only)}-{{epoch}}.npz"),
                                             monitor="loss", save_weights_only=weights_only)
        tiny_model().fit(x, x[:, :3], epochs=2, verbose=0, callbacks=[ck])
    assert [os.path.basename(p) for p in written] == ["c0-1.npz", "c0-2.npz", "c1-1.npz",
                                                     "c1-2.npz"]
    assert not [p for p in os.listdir(tmp_path) if p.endswith(".tmp")]


class _FakeComm:
    """One process posing as rank 1 of 2 (its own root; collectives return its own data)."""

    def Get_rank(self):
        return 1

    def Get_size(self):
        return 2

    def allgather(self, value):
        return [value]

    def allreduce(self, value, op=None):
        return value

    def bcast(self, value, root=0):
        return value

    def Bcast(self, buf, root=0):
        pass

    def Allreduce(self, send, recv, op=None):
        pass

    def Iallreduce(self, send, recv, op=None):
        return types.SimpleNamespace(Test=lambda: True)


def test_distributed_checkpoints_are_written_by_rank_0_only(tmp_path, monkeypatch):
    mpi = types.SimpleNamespace(COMM_WORLD=_FakeComm(), IN_PLACE=None, SUM=None, LOR=None)
    monkeypatch.setitem(sys.modules, "mpi4py", types.SimpleNamespace(MPI=mpi))
    monkeypatch.setitem(sys.modules, "mpi4py.MPI", mpi)
    for name in ("cconv.distributed", "cconv.distribute.mpi"):   # the public path and its code
        monkeypatch.delitem(sys.modules, name, raising=False)
    distributed = importlib.import_module("cconv.distributed")
    for name in ("cconv.distributed", "cconv.distribute.mpi"):   # the real ones next time
        monkeypatch.delitem(sys.modules, name)
    model = tiny_model()
    dmodel = distributed.DistributedModel(model, root=1)
    x = np.zeros((8, 4), np.float32)
    ck = cconv.callbacks.ModelCheckpoint(str(tmp_path / "c-{epoch}.npz"), monitor="loss")
    dmodel.fit(x, x[:, :3], batch_size=2, epochs=2, verbose=0, callbacks=[ck], shuffle=False)
    dmodel.save(tmp_path / "m.npz")
    dmodel.save_weights(tmp_path / "w.npz")
    assert list(tmp_path.iterdir()) == []


# ----------------------------------------------------------------------------- every format
# Every writer goes through fileio.atomic_write: (file name, written by save_weights?).
FORMATS = [("m.npz", False), ("w.npz", True), ("m.keras", False), ("m.weights.h5", True)]
FORMAT_IDS = [name for name, _ in FORMATS]


def _write(model, path, weights_only):
    if str(path).endswith((".keras", ".h5")):
        pytest.importorskip("h5py")
    (model.save_weights if weights_only else model.save)(path)


def _values(path, weights_only):
    """The set of numbers in the weights a file holds (tiny_model(v) saves {v})."""
    if weights_only:
        model = tiny_model()
        model.load_weights(path)
    else:
        model = cconv.load_model(path)
    return {float(v) for w in model.get_weights() for v in np.ravel(w)}


@pytest.mark.parametrize("name,weights_only", FORMATS, ids=FORMAT_IDS)
def test_no_format_writes_through_a_link_planted_at_a_temporary_name(tmp_path, monkeypatch,
                                                                     name, weights_only):
    victim = tmp_path / "victim.txt"
    victim.write_text("precious")
    target = tmp_path / name
    links = [str(target) + ".tmp", str(tmp_path / f".{name}.evil.tmp")]
    for link in links:
        os.symlink(victim, link)
    monkeypatch.setattr(tempfile, "_get_candidate_names", lambda: iter(["evil", "good"]))
    _write(tiny_model(1.0), target, weights_only)
    assert victim.read_text() == "precious"
    assert all(os.path.islink(link) for link in links)
    assert _values(target, weights_only) == {1.0}
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        [name, "victim.txt"] + [os.path.basename(link) for link in links])


@pytest.mark.parametrize("name,weights_only", FORMATS, ids=FORMAT_IDS)
def test_24_concurrent_saves_to_one_path_all_succeed(tmp_path, name, weights_only):
    path = tmp_path / name
    models = [tiny_model(float(i)) for i in range(24)]
    if name.endswith((".keras", ".h5")):
        pytest.importorskip("h5py")
    start = threading.Barrier(len(models))
    errors = []

    def save(model):
        try:
            start.wait()
            for _ in range(3):
                _write(model, path, weights_only)
        except BaseException as e:          # reported below
            errors.append(e)
    threads = [threading.Thread(target=save, args=(m,)) for m in models]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    values = _values(path, weights_only)
    assert len(values) == 1 and values <= set(range(24)), values      # one writer's, whole
    assert sorted(p.name for p in tmp_path.iterdir()) == [name]       # no temporary left


@pytest.mark.parametrize("name,weights_only", FORMATS[2:], ids=FORMAT_IDS[2:])
def test_keras_files_written_by_two_processes_are_always_whole(tmp_path, name, weights_only):
    pytest.importorskip("h5py")
    path = tmp_path / name
    _write(tiny_model(0.0), path, weights_only)
    method = "save_weights" if weights_only else "save"
    writers = [subprocess.Popen([sys.executable, "-c", _WRITER, str(v), str(path), "30",
                                 method], cwd=ROOT, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True) for v in (1.0, 2.0)]
    while any(w.poll() is None for w in writers):
        assert len(_values(path, weights_only)) == 1        # a whole file, from one writer
    for w in writers:
        out, err = w.communicate(timeout=60)
        assert w.returncode == 0, err
    assert _values(path, weights_only) <= {1.0, 2.0}
    assert sorted(p.name for p in tmp_path.iterdir()) == [name]


def _break_mid_write(monkeypatch, name, error):
    """Make the next save of ``name`` write part of its file, then raise ``error``."""
    if name.endswith(".npz"):
        def half_written(f, **arrays):
            f.write(b"PK\x03\x04 half an archive")
            raise error
        monkeypatch.setattr(saving.saving_api.np, "savez", half_written)
    elif name.endswith(".keras"):
        real = zipfile.ZipFile.writestr

        def writestr(self, member, data, *args, **kwargs):
            if member == "model.weights.h5":             # after metadata.json, config.json
                raise error
            return real(self, member, data, *args, **kwargs)
        monkeypatch.setattr(zipfile.ZipFile, "writestr", writestr)
    else:
        h5py = pytest.importorskip("h5py")
        real = h5py.Group.create_dataset
        calls = []

        def create_dataset(self, *args, **kwargs):
            calls.append(1)
            if len(calls) == 2:                          # the first dataset is written
                raise error
            return real(self, *args, **kwargs)
        monkeypatch.setattr(h5py.Group, "create_dataset", create_dataset)


def _break_fsync(monkeypatch, name, error):
    """Make the flush to disk fail (a full disk shows up there)."""
    def fsync(fd):
        raise error
    monkeypatch.setattr(os, "fsync", fsync)


@pytest.mark.parametrize("error", [OSError("No space left on device"), KeyboardInterrupt()],
                         ids=["OSError", "KeyboardInterrupt"])
@pytest.mark.parametrize("brake", [_break_mid_write, _break_fsync], ids=["mid-write", "fsync"])
@pytest.mark.parametrize("name,weights_only", FORMATS, ids=FORMAT_IDS)
def test_a_failed_save_of_any_format_keeps_the_old_file_and_leaves_no_temporary(
        tmp_path, monkeypatch, name, weights_only, brake, error):
    path = tmp_path / name
    _write(tiny_model(1.0), path, weights_only)
    before = path.read_bytes()
    model = tiny_model(2.0)
    brake(monkeypatch, name, error)
    with pytest.raises(type(error)):
        _write(model, path, weights_only)
    monkeypatch.undo()
    assert sorted(p.name for p in tmp_path.iterdir()) == [name]
    assert path.read_bytes() == before
    assert _values(path, weights_only) == {1.0}


@pytest.mark.parametrize("name,weights_only", FORMATS, ids=FORMAT_IDS)
def test_every_format_gets_the_usual_permissions(tmp_path, name, weights_only):
    old = os.umask(0o027)
    try:
        _write(tiny_model(), tmp_path / name, weights_only)
    finally:
        os.umask(old)
    assert os.stat(tmp_path / name).st_mode & 0o777 == 0o640


@pytest.mark.parametrize("suffix,weights_only", [(".keras", False), (".weights.h5", True)])
def test_keras_checkpoints_go_through_the_atomic_writer(tmp_path, monkeypatch, suffix,
                                                        weights_only):
    pytest.importorskip("h5py")
    written = []
    real = fileio.atomic_write
    monkeypatch.setattr(fileio, "atomic_write", lambda p, w: (written.append(p), real(p, w)))
    x = np.zeros((8, 4), np.float32)
    ck = cconv.callbacks.ModelCheckpoint(str(tmp_path / f"c-{{epoch}}{suffix}"),
                                         monitor="loss", save_weights_only=weights_only)
    tiny_model().fit(x, x[:, :3], epochs=2, verbose=0, callbacks=[ck])
    assert [os.path.basename(p) for p in written] == [f"c-1{suffix}", f"c-2{suffix}"]
    assert sorted(os.listdir(tmp_path)) == [f"c-1{suffix}", f"c-2{suffix}"]


def test_history_plots_go_through_the_atomic_writer(tmp_path, monkeypatch):
    figure = pytest.importorskip("matplotlib.figure")
    x = np.zeros((8, 4), np.float32)
    history = tiny_model().fit(x, x[:, :3], epochs=2, verbose=0)
    written = []
    real = fileio.atomic_write
    monkeypatch.setattr(fileio, "atomic_write", lambda p, w: (written.append(p), real(p, w)))
    for name, magic in [("h.png", b"\x89PNG"), ("h.pdf", b"%PDF"), ("h.svg", b"<?xml")]:
        history.plot(tmp_path / name)
        assert (tmp_path / name).read_bytes()[:len(magic)] == magic
    assert [os.path.basename(p) for p in written] == ["h.png", "h.pdf", "h.svg"]
    before = (tmp_path / "h.png").read_bytes()

    def half_drawn(self, fname, **kwargs):
        if isinstance(fname, (str, os.PathLike)):
            with open(fname, "wb") as f:
                f.write(b"\x89PNG half")
        else:
            fname.write(b"\x89PNG half")
        raise OSError("No space left on device")
    monkeypatch.setattr(figure.Figure, "savefig", half_drawn)
    with pytest.raises(OSError):
        history.plot(tmp_path / "h.png")
    assert (tmp_path / "h.png").read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["h.pdf", "h.png", "h.svg"]


# ----------------------------------------------------------------------------- hostile files
def _archive(path, meta, arrays):
    """An .npz like cconv's, written without cconv's checks."""
    np.savez(path, __cconv__=np.array(json.dumps(meta)), **arrays)


def _npy_member(shape, dtype, payload):
    """The bytes of a .npy member whose header claims ``shape`` but holds ``payload``."""
    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(
        buf, {"descr": np.lib.format.dtype_to_descr(np.dtype(dtype)), "fortran_order": False,
              "shape": shape})
    return buf.getvalue() + payload


def _refused(path, load, match):
    """Refused with a short ValueError naming the file, before anything large is allocated.

    The property is "no allocation sized by what the file claims", only by what it holds:
    traced peak memory stays under 64 MB plus 10x the file's size (parsing its metadata); the
    time bound only catches a hang (a refusal takes milliseconds when quiet)."""
    t0 = time.perf_counter()
    tracemalloc.start()
    try:
        with pytest.raises(ValueError) as info:
            load(path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    elapsed = time.perf_counter() - t0
    msg = str(info.value)
    assert str(path) in msg, msg
    assert len(msg) < 1000, msg[:2000]
    limit = (64 << 20) + 10 * os.path.getsize(path)
    assert peak < limit, f"{peak / 2**20:.0f} MB traced to refuse {path}"
    assert elapsed < 10.0, f"{elapsed:.2f} s to refuse {path}"
    if match:
        assert match in msg, msg


@pytest.fixture
def good(tmp_path):
    """(meta, arrays) of a real saved model (compiled, trained one step: optimizer state)."""
    m = tiny_model()
    x = np.zeros((4, 4), np.float32)
    m.fit(x, x[:, :3], epochs=1, verbose=0)
    m.save(tmp_path / "good.npz")
    with zipfile.ZipFile(tmp_path / "good.npz") as zf:
        raw = {i.filename: zf.read(i) for i in zf.infolist()}
    meta, arrays = fileio.read_npz(tmp_path / "good.npz", "model")
    return meta, arrays, raw


@pytest.mark.parametrize("edit,match", [
    (lambda m: m.update(num_weights=10**9), "claims 1000000000 weight arrays"),
    (lambda m: m.update(num_weights=-1), "claims -1 weight arrays"),
    (lambda m: m.update(num_weights="4"), '"num_weights" must be int, got str'),
    (lambda m: m.update(num_weights=True), '"num_weights" must be int, got bool'),
    (lambda m: m.update(num_weights=4.0), '"num_weights" must be int, got float'),
    (lambda m: m.update(format=["cconv.model"]), '"format" must be str'),
    (lambda m: m.update(config=[1, 2]), '"config" must be dict, got list'),
    (lambda m: m["config"].update(layers={"a": 1}), '"config"["layers"] must be list'),
    (lambda m: m["config"]["layers"].append(7), '"config"["layers"][2] must be dict'),
    (lambda m: m["config"]["layers"][0].update(class_name=3), '["class_name"] must be str'),
    (lambda m: m["config"].update(build_input_shape="x"), '"build_input_shape"] must be list'),
    (lambda m: m.update(compile="adam"), '"compile" must be dict, got str'),
    (lambda m: m["compile"].update(optimizer="adam"), '"compile"["optimizer"] must be dict'),
    (lambda m: m["compile"].update(metrics={"x": 1}), '"compile"["metrics"] must be list'),
    (lambda m: m["compile"].update(state_keys=5), '"compile"["state_keys"] must be list'),
    (lambda m: m["compile"].update(state_keys=[f"k{i}" for i in range(10**6)]),
     "claims 1000000 optimizer arrays"),
    (lambda m: m["compile"].update(iterations="1"), '"compile"["iterations"] must be int'),
])
def test_wrong_counts_and_types_in_the_metadata_are_refused(tmp_path, good, edit, match):
    meta, arrays, _ = good
    meta = json.loads(json.dumps(meta))
    edit(meta)
    _archive(tmp_path / "bad.npz", meta, arrays)
    _refused(tmp_path / "bad.npz", cconv.load_model, match)
    model = tiny_model()
    if isinstance(meta.get("num_weights"), int) and 0 <= meta["num_weights"] <= len(arrays):
        return
    _refused(tmp_path / "bad.npz", model.load_weights, None)


def test_metadata_that_is_not_json_or_not_an_object_is_refused(tmp_path, good):
    _, arrays, _ = good
    np.savez(tmp_path / "a.npz", __cconv__=np.array("{not json"), **arrays)
    _refused(tmp_path / "a.npz", cconv.load_model, "JSONDecodeError")
    _archive(tmp_path / "b.npz", [1, 2, 3], arrays)
    _refused(tmp_path / "b.npz", cconv.load_model, "the metadata must be dict, got list")
    np.savez(tmp_path / "c.npz", **arrays)
    _refused(tmp_path / "c.npz", cconv.load_model, "no '__cconv__' metadata")
    np.savez(tmp_path / "d.npz", __cconv__=np.array("[" * 100000 + "]" * 100000), **arrays)
    _refused(tmp_path / "d.npz", cconv.load_model, None)


@pytest.mark.parametrize("name,member,match", [
    ("w0.npy", _npy_member((10**6, 10**6), np.float64, b"\0" * 8),
     "claims shape (1000000, 1000000)"),
    ("w0.npy", _npy_member((2**62, 8), np.float32, b""), "claims shape"),
    ("w0.npy", _npy_member((4, 3), object, b"\0" * 96), "dtype object"),
    ("w0.npy", _npy_member((2,), "<U4", b"\0" * 32), "dtype <U4"),
    ("w0.npy", b"\x93NUMPY\x03\x00" + b"\0" * 50, "format version (3, 0)"),
    ("w0.npy", b"not a numpy array at all", None),
    ("../evil.npy", _npy_member((1,), np.float32, b"\0" * 4), "unexpected member '../evil.npy'"),
    ("w0.txt", b"x", "unexpected member 'w0.txt'"),
])
def test_array_members_are_checked_before_anything_is_allocated(tmp_path, good, name, member,
                                                                match):
    _, _, raw = good
    raw = dict(raw)
    raw.pop("w0.npy")
    raw[name] = member
    with zipfile.ZipFile(tmp_path / "bad.npz", "w") as zf:
        for k, v in raw.items():
            zf.writestr(k, v)
    _refused(tmp_path / "bad.npz", cconv.load_model, match)


def test_a_deflate_bomb_is_refused(tmp_path, good):
    _, _, raw = good
    with zipfile.ZipFile(tmp_path / "bomb.npz", "w", zipfile.ZIP_DEFLATED) as zf:
        for k, v in raw.items():
            zf.writestr(k, v)
        zf.writestr("w9.npy", _npy_member((200 * 2**20,), np.uint8, b"\0" * (200 * 2**20)))
    assert os.path.getsize(tmp_path / "bomb.npz") < 2**20
    _refused(tmp_path / "bomb.npz", cconv.load_model, "is compressed")


def test_truncated_files_are_refused(tmp_path, good):
    data = (tmp_path / "good.npz").read_bytes()
    for n in (0, 1, 4, 30, 100, len(data) // 2, len(data) - 30, len(data) - 1):
        path = tmp_path / f"cut{n}.npz"
        path.write_bytes(data[:n])
        _refused(path, cconv.load_model, "not a cconv model file, or is damaged")


def test_bit_flips_are_refused_or_harmless(tmp_path, good):
    """Every flipped byte either is refused with the path, or leaves the model intact (a flip
    in a field zipfile does not read, such as a timestamp)."""
    data = (tmp_path / "good.npz").read_bytes()
    want = cconv.load_model(tmp_path / "good.npz").get_weights()
    refused = 0
    for pos in range(0, len(data), max(1, len(data) // 300)):
        path = tmp_path / "flip.npz"
        path.write_bytes(data[:pos] + bytes([data[pos] ^ 0x10]) + data[pos + 1:])
        try:
            got = cconv.load_model(path).get_weights()
        except ValueError as e:
            assert str(path) in str(e)
            refused += 1
            continue
        for u, v in zip(got, want):
            np.testing.assert_array_equal(u, v)
    assert refused > 0


# ----------------------------------------------------------------------------- backups
def _backup(tmp_path):
    """A kept BackupAndRestore backup of 2 epochs (Adam state included), and the data."""
    x = np.random.default_rng(0).normal(size=(8, 4)).astype(np.float32)
    y = x[:, :3]
    backup = cconv.callbacks.BackupAndRestore(tmp_path / "b", delete_checkpoint=False)
    tiny_model(0.5).fit(x, y, epochs=2, verbose=0, callbacks=[backup])
    return tmp_path / "b" / "backup.npz", x, y


def _resume(path, x, y, model=None):
    """The epochs a fresh fit(epochs=4) runs after restoring the backup at ``path``."""
    epochs = []
    model = tiny_model(0.5) if model is None else model
    model.fit(x, y, epochs=4, verbose=0, callbacks=[
        cconv.callbacks.BackupAndRestore(path.parent),
        cconv.callbacks.LambdaCallback(on_epoch_begin=lambda e, logs: epochs.append(e))])
    return epochs


def _edit_backup(path, edit):
    meta, arrays = fileio.read_npz(path, "backup")
    edit(meta, arrays)
    _archive(path, meta, arrays)


def test_a_good_backup_resumes_after_its_epoch(tmp_path):
    path, x, y = _backup(tmp_path)
    assert _resume(path, x, y) == [2, 3]


def _set(key, value):
    return lambda meta, arrays: meta.update({key: value})


def _set_opt(key, value):
    return lambda meta, arrays: meta["optimizer"].update({key: value})


def _add_slot(meta, arrays):
    meta["optimizer"]["state_keys"].append("0.bogus")
    arrays["opt.0.bogus"] = np.zeros(15, np.float32)


def _drop_slot_array(meta, arrays):
    del arrays["opt.0.m"]


def _reshape_slot(meta, arrays):
    arrays["opt.0.m"] = np.zeros(5, np.float32)


def _reshape_weight(meta, arrays):
    arrays["w0"] = np.zeros((5, 3), np.float32)


@pytest.mark.parametrize("edit,match", [
    (_set("epoch", -3), '"epoch" (the epochs done) must be an int >= 0, got -3'),
    (lambda meta, arrays: meta.pop("epoch"), '"epoch" (the epochs done) must be an int >= 0, '
                                             'got None'),
    (_set("epoch", "2"), "must be an int >= 0, got '2'"),
    (_set("epoch", 2.0), "must be an int >= 0, got 2.0"),
    (_set("epoch", True), "must be an int >= 0, got True"),
    (_set("optimizer", [1]), '"optimizer" must be a dict, got list'),
    (_set_opt("state_keys", "0.m"), '"optimizer"["state_keys"] must be a list of str'),
    (lambda meta, arrays: meta["optimizer"].pop("state_keys"), '"state_keys"] must be a list'),
    (_set_opt("learning_rate", "fast"), '"optimizer"["learning_rate"] must be a float >= 0'),
    (_set_opt("learning_rate", float("nan")), '"learning_rate"] must be a float >= 0'),
    (_set_opt("iterations", -1), "step count must be an int >= 0, got -1"),
    (lambda meta, arrays: meta["optimizer"].pop("iterations"), "step count must be an int"),
    (_add_slot, "it holds optimizer slots ['0.bogus'] that this Adam does not keep"),
    (_drop_slot_array, "1 optimizer arrays are missing: ['0.m']"),
    (_reshape_slot, "optimizer slot '0.m' has shape (5,), the model's (15,)"),
    (_reshape_weight, "does not fit this model: Layer"),
], ids=["epoch-3", "no-epoch", "epoch-str", "epoch-float", "epoch-bool", "optimizer-list",
        "keys-str", "no-keys", "lr-str", "lr-nan", "iterations-1", "no-iterations",
        "unknown-slot", "missing-slot", "slot-shape", "weight-shape"])
def test_a_damaged_backup_is_refused_naming_it_and_the_model_is_untouched(tmp_path, edit,
                                                                           match):
    path, x, y = _backup(tmp_path)
    _edit_backup(path, edit)
    model = tiny_model(0.5)
    iterations, state = model.get_optimizer_state()
    with pytest.raises(ValueError) as info:
        _resume(path, x, y, model)
    msg = str(info.value)
    assert str(path) in msg and match in msg, msg
    assert all(np.all(w == 0.5) for w in model.get_weights())
    assert model.get_optimizer_state()[0] == iterations == 0
    assert path.exists()                                 # kept, for the user to look at


def test_a_backup_of_another_optimizer_is_refused(tmp_path):
    path, x, y = _backup(tmp_path)                       # Adam: slots m, v
    model = tiny_model(0.5)
    model.compile(optimizer=cconv.optimizers.SGD(0.1, momentum=0.9), loss="mse")
    with pytest.raises(ValueError, match="that this SGD does not keep"):
        _resume(path, x, y, model)


def test_a_model_file_with_an_unknown_optimizer_slot_is_refused(tmp_path, good):
    meta, arrays, _ = good
    meta = json.loads(json.dumps(meta))
    meta["compile"]["state_keys"].append("0.bogus")
    arrays = dict(arrays, **{"opt.0.bogus": np.zeros(15, np.float32)})
    _archive(tmp_path / "bad.npz", meta, arrays)
    _refused(tmp_path / "bad.npz", cconv.load_model, "optimizer slots ['0.bogus']")
    arrays["opt.0.bogus"] = np.zeros(1, np.float32)      # broadcast into a slot before
    meta["compile"]["state_keys"].remove("0.bogus")
    arrays["opt.0.m"] = arrays.pop("opt.0.bogus")
    _archive(tmp_path / "bad.npz", meta, arrays)
    _refused(tmp_path / "bad.npz", cconv.load_model, "optimizer slot '0.m' has shape (1,)")
