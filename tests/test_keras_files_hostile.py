"""Hostile and damaged Keras files (``.keras``, ``.weights.h5``, legacy ``.h5``): each is
refused with a short ValueError naming the file and what is wrong, quickly, without
allocating what the file merely claims, and without changing the model it was loaded into.

Every damaged file is built here from a good one (no Keras needed): HDF5 datasets with
external raw storage, external and soft links, shape bombs, string-typed weights, zip bombs,
flipped bits, encrypted members, configs of the wrong JSON types, legacy files whose layer
list does not fit the model.
"""
import io
import json
import os
import time
import tracemalloc
import zipfile

import numpy as np
import pytest

import cconv
from cconv import layers as L

h5py = pytest.importorskip("h5py", reason="Keras files need h5py (the keras-files extra)")


def _model():
    """The model every file here holds: two Dense layers (keys layers/dense, layers/dense_1)."""
    m = cconv.Sequential([cconv.Input((4,)), L.Dense(3, name="d1"), L.Dense(2, name="d2")])
    m.compile(optimizer="adam", loss="mse")
    return m


def _refused(path, load, match):
    """``load(path)`` raises a ValueError naming ``path`` (and ``match``), in under 1,000
    characters, within seconds, with traced memory under 16 MB plus 10x the file's size (so
    nothing the file merely declares was allocated)."""
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
    assert peak < (16 << 20) + 10 * os.path.getsize(path), f"{peak / 2**20:.0f} MB traced"
    assert elapsed < 10.0, f"{elapsed:.2f} s to refuse {path}"
    if match:
        assert match in msg, msg


def _members(path):
    with zipfile.ZipFile(path) as zf:
        return {i.filename: zf.read(i) for i in zf.infolist()}


def _zip(path, members, compression=zipfile.ZIP_STORED):
    with zipfile.ZipFile(path, "w", compression=compression) as zf:
        for name, data in members.items():
            if callable(data):          # a generator of chunks, streamed (bombs)
                with zf.open(name, "w", force_zip64=True) as f:
                    for chunk in data():
                        f.write(chunk)
            else:
                zf.writestr(name, data)


def _edit_h5(data, edit, tmp_path):
    """The bytes of the HDF5 file ``data`` after ``edit(f, tmp_path)``."""
    buf = io.BytesIO(data)
    with h5py.File(buf, "r+") as f:
        edit(f, tmp_path)
    return buf.getvalue()


def _spaces(n_mib):
    return lambda: (b" " * (1 << 20) for _ in range(n_mib))


# ----- edits of an HDF5 weights layout (model.weights.h5 and .weights.h5 alike) ---------------
def _replace(f, path, **kwargs):
    del f[path]
    f.create_dataset(path, **kwargs)


def _external_storage(f, tmp_path):
    secret = tmp_path / "secret.bin"
    secret.write_bytes(np.arange(12, dtype=np.float32).tobytes())
    _replace(f, "layers/dense/vars/0", shape=(4, 3), dtype="f4",
             external=[(str(secret), 0, 48)])


def _external_link(f, tmp_path):
    with h5py.File(tmp_path / "other.h5", "w") as other:
        other.create_dataset("k", data=np.ones((4, 3), np.float32))
    del f["layers/dense/vars/0"]
    f["layers/dense/vars/0"] = h5py.ExternalLink(str(tmp_path / "other.h5"), "/k")


def _external_group_link(f, tmp_path):
    with h5py.File(tmp_path / "other.h5", "w") as other:
        other.create_dataset("vars/0", data=np.ones((4, 3), np.float32))
        other.create_dataset("vars/1", data=np.ones(3, np.float32))
    del f["layers/dense"]
    f["layers/dense"] = h5py.ExternalLink(str(tmp_path / "other.h5"), "/")


def _soft_link(f, tmp_path):
    f.create_dataset("elsewhere", data=np.ones((4, 3), np.float32))
    del f["layers/dense/vars/0"]
    f["layers/dense/vars/0"] = h5py.SoftLink("/elsewhere")


def _shape_bomb(f, tmp_path):     # 2**64 bytes declared, a few KB stored
    _replace(f, "layers/dense/vars/0", shape=(2**31, 2**31), dtype="f4", chunks=(1, 1024),
             compression="gzip")


def _chunk_bomb(f, tmp_path):    # a (4, 3) kernel in one 16 MiB chunk, stored in a few KB
    _replace(f, "layers/dense/vars/0", data=np.ones((4, 3), np.float32), maxshape=(None, None),
             chunks=(2048, 2048), compression="gzip")


def _string_weights(f, tmp_path):
    _replace(f, "layers/dense/vars/0", data=np.full((4, 3), b"1.5", "S3"))


def _wrong_shape(f, tmp_path):
    _replace(f, "layers/dense_1/vars/0", data=np.ones((3, 5), np.float32))


def _vars_is_a_dataset(f, tmp_path):
    _replace(f, "layers/dense_1/vars", data=np.ones(3, np.float32))


def _missing_array(f, tmp_path):
    del f["layers/dense_1/vars/1"]


H5_EDITS = [
    (_external_storage, "external storage"),
    (_external_link, "ExternalLink"),
    (_external_group_link, "ExternalLink"),
    (_soft_link, "SoftLink"),
    (_shape_bomb, "(2147483648, 2147483648)"),
    (_chunk_bomb, "chunks of shape (2048, 2048)"),
    (_string_weights, "dtype |S3"),
    (_wrong_shape, "shape (3, 5)"),
    (_vars_is_a_dataset, "'layers/dense_1/vars' is not a group"),
    (_missing_array, "no 2 weight arrays"),
]


@pytest.mark.parametrize("edit,match", H5_EDITS, ids=[e.__name__ for e, _ in H5_EDITS])
def test_hostile_weights_h5_is_refused_and_the_model_kept(tmp_path, edit, match):
    model = _model()
    model.save_weights(tmp_path / "good.weights.h5")
    data = (tmp_path / "good.weights.h5").read_bytes()
    path = tmp_path / "bad.weights.h5"
    path.write_bytes(_edit_h5(data, edit, tmp_path))
    before = model.get_weights()
    _refused(path, model.load_weights, match)
    for a, b in zip(model.get_weights(), before):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("edit,match", H5_EDITS, ids=[e.__name__ for e, _ in H5_EDITS])
def test_hostile_weights_in_a_keras_archive_are_refused(tmp_path, edit, match):
    _model().save(tmp_path / "good.keras")
    members = _members(tmp_path / "good.keras")
    members["model.weights.h5"] = _edit_h5(members["model.weights.h5"], edit, tmp_path)
    _zip(tmp_path / "bad.keras", members)
    _refused(tmp_path / "bad.keras", cconv.load_model, match)


# ----- damaged .keras archives ------------------------------------------------------------------
def _config_edit(change):
    def edit(members):
        config = json.loads(members["config.json"])
        change(config)
        members["config.json"] = json.dumps(config).encode()
    return edit


def _set(key, value):
    return lambda members: members.__setitem__(key, value)


def _no_class_name(config):
    del config["config"]["layers"][1]["class_name"]


KERAS_EDITS = [
    ("config_not_json", _set("config.json", b"{not json"), "config.json is not JSON"),
    ("config_a_list", _set("config.json", b"[1, 2]"), "config.json must be dict, got list"),
    ("config_nested_deep", _set("config.json", b"[" * 100000 + b"]" * 100000), "config.json"),
    ("layers_not_a_list", _config_edit(lambda c: c["config"].update(layers={"a": 1})),
     '["layers"] must be list, got dict'),
    ("layer_not_a_dict", _config_edit(lambda c: c["config"]["layers"].append(7)),
     '["layers"][3] must be dict, got int'),
    ("layer_without_class_name", _config_edit(_no_class_name),
     '["layers"][1]["class_name"] must be str, got NoneType'),
    ("layer_config_a_list", _config_edit(lambda c: c["config"]["layers"][1].update(config=[])),
     '["layers"][1]["config"] must be dict, got list'),
    ("units_a_string", _config_edit(lambda c: c["config"]["layers"][1]["config"].update(
        units="many")), "'d1'"),
    ("compile_config_a_list", _config_edit(lambda c: c.update(compile_config=[1])),
     '["compile_config"] must be dict, got list'),
    ("no_weights_member", lambda m: m.pop("model.weights.h5"), "model.weights.h5"),
    ("weights_not_hdf5", _set("model.weights.h5", b"not hdf5 at all"), "not an HDF5 file"),
    ("config_zip_bomb", _set("config.json", _spaces(100)), "config.json"),
    ("weights_zip_bomb", _set("model.weights.h5", _spaces(200)), "model.weights.h5"),
]


@pytest.mark.parametrize("edit,match", [e[1:] for e in KERAS_EDITS],
                         ids=[e[0] for e in KERAS_EDITS])
def test_damaged_keras_archive_is_refused(tmp_path, edit, match):
    _model().save(tmp_path / "good.keras")
    members = _members(tmp_path / "good.keras")
    edit(members)
    _zip(tmp_path / "bad.keras", members, zipfile.ZIP_DEFLATED)
    _refused(tmp_path / "bad.keras", cconv.load_model, match)


def _patch_flags(raw, name, bit):
    """``raw`` (a zip's bytes) with ``bit`` set in ``name``'s local and central headers."""
    raw = bytearray(raw)
    # (signature, offset of the flags, of the name's length, of the name) in each header
    for signature, flags_at, length_at, name_at in ((b"PK\x03\x04", 6, 26, 30),
                                                    (b"PK\x01\x02", 8, 28, 46)):
        start = raw.find(signature)
        while start >= 0:
            length = int.from_bytes(raw[start + length_at:start + length_at + 2], "little")
            if raw[start + name_at:start + name_at + length] == name.encode():
                raw[start + flags_at] |= bit
            start = raw.find(signature, start + 4)
    return bytes(raw)


def test_encrypted_member_is_refused(tmp_path):
    _model().save(tmp_path / "good.keras")
    raw = _patch_flags((tmp_path / "good.keras").read_bytes(), "config.json", 0x1)
    (tmp_path / "bad.keras").write_bytes(raw)
    with zipfile.ZipFile(tmp_path / "bad.keras") as zf:       # the patch took
        assert zf.getinfo("config.json").flag_bits & 0x1
    _refused(tmp_path / "bad.keras", cconv.load_model, "encrypted")


@pytest.mark.parametrize("member", ["config.json", "model.weights.h5"])
def test_flipped_bits_in_a_deflated_member_are_refused(tmp_path, member):
    """One flipped bit at a time through the compressed stream (about 180 files): each is
    refused with a ValueError naming the file, or (a bit deflate never reads) loads the
    original model."""
    model = _model()
    model.save(tmp_path / "good.keras")
    _zip(tmp_path / "deflated.keras", _members(tmp_path / "good.keras"), zipfile.ZIP_DEFLATED)
    with zipfile.ZipFile(tmp_path / "deflated.keras") as zf:
        info = zf.getinfo(member)
    good = (tmp_path / "deflated.keras").read_bytes()
    local = info.header_offset      # the data follow the local header, its name and extra
    start = local + 30 + int.from_bytes(good[local + 26:local + 28], "little") \
        + int.from_bytes(good[local + 28:local + 30], "little")
    path, refused = tmp_path / "bad.keras", 0
    for pos in range(0, info.compress_size, max(1, info.compress_size // 60)):
        for bit in (0x01, 0x10, 0x80):
            raw = bytearray(good)
            raw[start + pos] ^= bit
            path.write_bytes(bytes(raw))
            try:
                loaded = cconv.load_model(path)
            except ValueError as e:
                assert str(path) in str(e) and len(str(e)) < 1000, str(e)[:2000]
                refused += 1
                continue
            for a, b in zip(loaded.get_weights(), model.get_weights()):
                np.testing.assert_array_equal(a, b)
    assert refused > 100


# ----- optimizer state that does not fit: a warning, and the state is skipped ------------------
@pytest.mark.parametrize("index,value", [
    ("0", np.zeros(3, np.int64)),                  # iterations not a scalar
    ("1", np.array(["0.001"], "S5")),              # learning rate as text
    ("2", np.zeros((5, 3), np.float32)),           # a slot of the wrong shape
])
def test_optimizer_state_that_does_not_fit_is_skipped_with_a_warning(tmp_path, index, value):
    model = _model()
    x = np.ones((8, 4), np.float32)
    model.fit(x, x[:, :2], epochs=1, verbose=0)
    model.save(tmp_path / "good.keras")
    members = _members(tmp_path / "good.keras")

    def edit(f, _):
        _replace(f, f"optimizer/vars/{index}", data=value)
    members["model.weights.h5"] = _edit_h5(members["model.weights.h5"], edit, tmp_path)
    _zip(tmp_path / "bad.keras", members)
    with pytest.warns(UserWarning, match=f"bad.keras.*optimizer/vars/{index}"):
        loaded = cconv.load_model(tmp_path / "bad.keras")
    assert loaded.optimizer.get_state()[0] == 0          # nothing of the state was taken
    for a, b in zip(loaded.get_weights(), model.get_weights()):
        np.testing.assert_array_equal(a, b)


def test_hostile_optimizer_state_is_refused(tmp_path):
    _model().save(tmp_path / "good.keras")
    members = _members(tmp_path / "good.keras")

    def edit(f, tmp):
        (tmp / "secret.bin").write_bytes(b"\0" * 48)      # Adam's first slot: (4, 3)
        _replace(f, "optimizer/vars/2", shape=(4, 3), dtype="f4",
                 external=[(str(tmp / "secret.bin"), 0, 48)])
        assert f["optimizer/vars/2"].external
    members["model.weights.h5"] = _edit_h5(members["model.weights.h5"], edit, tmp_path)
    _zip(tmp_path / "bad.keras", members)
    _refused(tmp_path / "bad.keras", cconv.load_model, "external storage")


# ----- damaged legacy .h5 files ---------------------------------------------------------------
def legacy_h5(path, edit=None):
    """A legacy full-model ``.h5`` as tf.keras 2 wrote it (made with h5py alone): input (3,)
    -> Dense "dense" (2, relu) -> Dense "dense_1" (2). ``edit(f, weights_group)`` damages it
    before it is closed. Returns the model's weights in order."""
    def dense(name, inbound, units):
        return {"class_name": "Dense", "name": name, "inbound_nodes": [[[inbound, 0, 0, {}]]],
                "config": {"name": name, "units": units, "activation": "relu",
                           "use_bias": True}}
    config = {"class_name": "Model", "config": {"name": "m", "layers": [
        {"class_name": "InputLayer", "name": "input_1", "inbound_nodes": [],
         "config": {"batch_input_shape": [None, 3], "name": "input_1"}},
        dense("dense", "input_1", 2), dense("dense_1", "dense", 2)],
        "input_layers": [["input_1", 0, 0]], "output_layers": [["dense_1", 0, 0]]}}
    rng = np.random.default_rng(0)
    weights = [rng.normal(size=s).astype(np.float32) for s in ((3, 2), (2,), (2, 2), (2,))]
    with h5py.File(path, "w") as f:
        f.attrs["model_config"] = json.dumps(config).encode()
        g = f.create_group("model_weights")
        g.attrs["layer_names"] = [b"input_1", b"dense", b"dense_1"]
        g.create_group("input_1").attrs["weight_names"] = []
        for name, (kernel, bias) in (("dense", weights[:2]), ("dense_1", weights[2:])):
            d = g.create_group(name)
            d.attrs["weight_names"] = [f"{name}/kernel:0".encode(), f"{name}/bias:0".encode()]
            d.create_dataset(f"{name}/kernel:0", data=kernel)
            d.create_dataset(f"{name}/bias:0", data=bias)
        if edit is not None:
            edit(f, g)
    return weights


def _attr(name, value):
    return lambda f, g: g.attrs.__setitem__(name, value)


def _legacy_external(f, g):
    path = os.path.join(os.path.dirname(f.filename), "secret.bin")
    with open(path, "wb") as out:
        out.write(b"\0" * 24)
    del g["dense/dense/kernel:0"]
    g.create_dataset("dense/dense/kernel:0", shape=(3, 2), dtype="f4",
                     external=[(path, 0, 24)])


def _legacy_bomb(f, g):
    del g["dense_1/dense_1/kernel:0"]
    g.create_dataset("dense_1/dense_1/kernel:0", shape=(2**31, 2**31), dtype="f4",
                     chunks=(1, 1024), compression="gzip")


LEGACY_EDITS = [
    ("unknown_layer_name", _attr("layer_names", [b"input_1", b"dense", b"nope"]), "'nope'"),
    ("omits_a_weighted_layer", _attr("layer_names", [b"input_1", b"dense"]),
     "Layer count mismatch: the model has 2 layers with weights, the file 1 (missing: "
     "'dense_1')"),
    ("no_layer_names", lambda f, g: g.attrs.__delitem__("layer_names"), "no layer_names"),
    ("layer_names_twice", _attr("layer_names", [b"dense", b"dense_1", b"dense"]), "twice"),
    ("weight_names_missing_array", lambda f, g: g["dense"].attrs.__setitem__(
        "weight_names", [b"dense/kernel:0", b"dense/nothing:0"]), "'dense/nothing:0'"),
    ("weight_count", lambda f, g: g["dense"].attrs.__setitem__(
        "weight_names", [b"dense/kernel:0"]), "1 saved weight"),
    ("external_storage", _legacy_external, "external storage"),
    ("shape_bomb", _legacy_bomb, "(2147483648, 2147483648)"),
    ("config_not_json", lambda f, g: f.attrs.__setitem__("model_config", b"{oops"),
     "model_config is not JSON"),
    ("config_a_list", lambda f, g: f.attrs.__setitem__("model_config", b"[]"),
     "model_config must be dict, got list"),
]


@pytest.mark.parametrize("edit,match", [e[1:] for e in LEGACY_EDITS],
                         ids=[e[0] for e in LEGACY_EDITS])
def test_damaged_legacy_h5_is_refused(tmp_path, edit, match):
    legacy_h5(tmp_path / "bad.h5", edit)
    _refused(tmp_path / "bad.h5", cconv.load_model, match)


def test_file_that_is_not_hdf5_is_refused(tmp_path):
    (tmp_path / "junk.h5").write_bytes(b"definitely not HDF5" * 10)
    _refused(tmp_path / "junk.h5", cconv.load_model, "not an HDF5 file")
    (tmp_path / "junk.weights.h5").write_bytes(b"definitely not HDF5" * 10)
    _refused(tmp_path / "junk.weights.h5", _model().load_weights, "not an HDF5 file")


def test_good_files_still_load(tmp_path):
    """The files every test above damages load as they are."""
    weights = legacy_h5(tmp_path / "good.h5")
    for a, b in zip(cconv.load_model(tmp_path / "good.h5").get_weights(), weights):
        np.testing.assert_array_equal(a, b)
    model = _model()
    model.save(tmp_path / "good.keras")
    model.save_weights(tmp_path / "good.weights.h5")
    members = _members(tmp_path / "good.keras")
    _zip(tmp_path / "deflated.keras", members, zipfile.ZIP_DEFLATED)
    for path in ("good.keras", "deflated.keras"):
        for a, b in zip(cconv.load_model(tmp_path / path).get_weights(), model.get_weights()):
            np.testing.assert_array_equal(a, b)
    other = _model()
    other.load_weights(tmp_path / "good.weights.h5")
    for a, b in zip(other.get_weights(), model.get_weights()):
        np.testing.assert_array_equal(a, b)
