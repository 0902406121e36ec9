"""Crash- and race-safe writes, and bounded reading of untrusted ``.npz`` archives.

Writing (:func:`atomic_write`): the bytes go to a fresh temporary file in the target's folder,
created exclusively and never through a symbolic link (``tempfile.mkstemp``: ``O_CREAT |
O_EXCL | O_NOFOLLOW``, a random name), are flushed and fsynced, and the file then replaces the
target in one ``os.replace``; the folder is fsynced so the new name survives a power cut. On
any failure (including ``KeyboardInterrupt``) the temporary file is removed. Readers therefore
see the old file or the new one, whole; concurrent writers never disturb each other (the last
``os.replace`` wins).

Reading (:func:`read_npz`): every member of the archive is checked before any array is
allocated: its name, that it is stored uncompressed (as ``np.savez`` writes it; so nothing
can expand), the ``.npy`` header's dtype (numbers only; never objects) and shape, and that
the shape's byte count is what the archive really holds; then the metadata's types and counts
against the members. So a crafted file fails in milliseconds with a ``ValueError`` naming the
file and what is wrong, and no allocation exceeds the file's own size.
"""
import json
import os
import tempfile
import zipfile

import numpy as np

__all__ = ["atomic_write", "read_npz", "check_metadata", "check_member", "read_member",
           "expect_type", "check_serialized", "short_list"]

_META = "__cconv__"


# --------------------------------------------------------------------------- writing
def _file_mode():
    """The permission bits ``open(path, "w")`` would give (0o666 less the umask)."""
    try:
        with open("/proc/self/status") as f:   # Linux: reads the umask without changing it
            for line in f:
                if line.startswith("Umask:"):
                    return 0o666 & ~int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return 0o666 & ~mask


def _fsync_folder(folder):
    if os.name == "nt":   # folders cannot be opened (nor need to be synced) there
        return
    fd = os.open(folder, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write(filepath, write):
    """Replace ``filepath`` atomically by what ``write(f)`` writes to a binary file ``f``.

    ``f`` is a fresh temporary file (see the module docstring), open for reading and writing
    and seekable, so that writers which read back what they wrote (``h5py.File(f, "w")``,
    ``zipfile.ZipFile(f, "w")``) can use it; ``write`` must not close it. This is the one
    path every cconv file writer takes (``.npz``, ``.keras``, ``.weights.h5``, backups).

    Raises ``FileNotFoundError`` naming the folder when it does not exist; any exception
    from ``write`` propagates after the temporary file is removed (``filepath`` untouched).
    """
    filepath = os.fspath(filepath)
    folder = os.path.dirname(filepath) or "."
    if not os.path.isdir(folder):
        raise FileNotFoundError(
            f"Cannot save to {filepath!r}: directory {folder!r} does not exist.")
    fd, tmp = tempfile.mkstemp(prefix="." + os.path.basename(filepath) + ".", suffix=".tmp",
                               dir=folder)
    try:
        with os.fdopen(fd, "w+b") as f:
            if hasattr(os, "fchmod"):
                os.fchmod(f.fileno(), _file_mode())   # mkstemp's 0o600 is not what users expect
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, filepath)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    _fsync_folder(folder)


# --------------------------------------------------------------------------- reading
def short_list(items, limit=5):
    """At most ``limit`` items of a list, for error messages of bounded length."""
    text = ", ".join(repr(v) for v in items[:limit])
    return f"[{text}, ...]" if len(items) > limit else f"[{text}]"


def check_member(info, limit, deflated=False):
    """Refuse (``ValueError``) to read zip member ``info`` unless it is unencrypted, stored
    (or, with ``deflated``, deflated: Keras archives repacked by a zip tool) and inflates to
    at most ``limit`` bytes by its header. zipfile never inflates a member past the size its
    header gives (and checks the CRC there), so that size bounds what reading allocates."""
    name = info.filename[:80]
    if info.flag_bits & 0x1:
        raise ValueError(f"member {name!r} is encrypted")
    methods = (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED) if deflated else (zipfile.ZIP_STORED,)
    if info.compress_type not in methods:
        raise ValueError(f"member {name!r} is compressed (method {info.compress_type}); "
                         f"{'only deflate is' if deflated else 'cconv stores arrays as is,'} "
                         f"accepted")
    if info.file_size > limit:
        raise ValueError(f"member {name!r} inflates to {info.file_size} bytes, more than the "
                         f"{limit} it may hold")


def read_member(zf, name, limit, deflated=False):
    """The bytes of member ``name`` of ``zf`` after :func:`check_member`. Raises
    ``ValueError`` when the member is missing, refused, or damaged (any error of zipfile or
    zlib: CRC, truncation, a flipped bit in the compressed stream)."""
    try:
        info = zf.getinfo(name)
    except KeyError:
        raise ValueError(f"no member {name!r}") from None
    check_member(info, limit, deflated)
    try:
        with zf.open(info) as f:
            data = f.read(limit + 1)
    except Exception as e:
        raise ValueError(f"member {name!r} is damaged ({type(e).__name__}: {str(e)[:200]})") \
            from None
    if len(data) > limit:
        raise ValueError(f"member {name!r} inflates to more than the {limit} bytes it may hold")
    return data


def _check_header(zf, info):
    """One ``.npy`` member's header: a numeric dtype (text for the metadata) and a shape whose
    byte count is what the member holds."""
    name = info.filename[:-4]
    with zf.open(info) as f:
        version = np.lib.format.read_magic(f)
        if version == (1, 0):
            shape, _, dtype = np.lib.format.read_array_header_1_0(f)
        elif version == (2, 0):
            shape, _, dtype = np.lib.format.read_array_header_2_0(f)
        else:
            raise ValueError(f"array {name!r} has .npy format version {version}")
        offset = f.tell()
    if dtype.hasobject or dtype.kind not in ("U" if name == _META else "biuf"):
        raise ValueError(f"array {name!r} has dtype {dtype}, which a cconv file never holds")
    nbytes = dtype.itemsize
    for n in shape:
        nbytes *= n
    if nbytes != info.file_size - offset:
        raise ValueError(
            f"array {name!r} claims shape {shape} of {dtype} ({nbytes} bytes) but the archive "
            f"holds {info.file_size - offset} bytes for it")


def _check_members(zf, filepath):
    """Member names, compression, sizes against the archive's own size, headers; -> infos."""
    infos = zf.infolist()
    size = os.path.getsize(filepath)
    names = [i.filename for i in infos]
    if len(set(names)) != len(names):
        raise ValueError("the archive lists a member twice")
    total = 0
    for info in infos:
        if not info.filename.endswith(".npy") or "/" in info.filename:
            raise ValueError(f"unexpected member {info.filename[:80]!r}")
        check_member(info, size - total)     # stored as is: nothing can expand
        total += info.compress_size
        if info.file_size != info.compress_size or total > size:
            raise ValueError(f"member {info.filename!r} claims {info.file_size} bytes, more "
                             f"than the {size}-byte file holds")
    if _META + ".npy" not in names:
        raise ValueError(f"no {_META!r} metadata")
    for info in infos:
        _check_header(zf, info)
    return infos


def _load(zf, name):
    """One member's array (zipfile checks its CRC as it reads)."""
    with zf.open(name + ".npy") as f:
        return np.lib.format.read_array(f, allow_pickle=False)


def _damaged(filepath, what, e):
    return ValueError(f"{filepath!r} is not a cconv {what} file, or is damaged "
                      f"({type(e).__name__}: {str(e)[:300]}).")


def read_npz(filepath, what):
    """``(metadata dict, {name: array})`` of a cconv ``.npz`` file, everything validated.

    Raises:
        FileNotFoundError: no such file.
        ValueError: the file is not a (whole, undamaged) cconv ``what`` file; the message
            names the file and what is wrong.
    """
    filepath = os.fspath(filepath)
    if not os.path.exists(filepath):
        raise FileNotFoundError(f"No such file: {filepath!r}.")
    # Any failure of zipfile, numpy or json here (BadZipFile, CRC, truncation, bad headers,
    # bad JSON, ...) means a damaged or foreign file.
    try:
        zf = zipfile.ZipFile(filepath)
    except Exception as e:
        raise _damaged(filepath, what, e) from None
    with zf:
        try:
            names = [i.filename[:-4] for i in _check_members(zf, filepath)]
            meta = json.loads(str(_load(zf, _META)))
        except Exception as e:
            raise _damaged(filepath, what, e) from None
        names.remove(_META)
        check_metadata(meta, set(names), filepath)
        try:
            arrays = {name: _load(zf, name) for name in names}
        except Exception as e:
            raise _damaged(filepath, what, e) from None
    return meta, arrays


# --------------------------------------------------------------------------- metadata
def expect_type(value, types, where, filepath):
    """``value`` if it is one of ``types`` (a bool only where ``bool`` is named), else a
    ValueError saying that ``filepath`` is damaged at ``where``; the saved-file readers
    (native and Keras files) check every JSON value they use with it."""
    if not isinstance(value, types) or isinstance(value, bool) and bool not in types:
        names = " or ".join(t.__name__ for t in types)
        raise ValueError(f"{filepath!r} is damaged: {where} must be {names}, "
                         f"got {type(value).__name__}.")
    return value


def check_serialized(obj, where, filepath):
    """Check that ``obj`` is ``{"class_name": str, "config": dict}`` (a serialised layer,
    loss or optimizer), with :func:`expect_type`."""
    expect_type(obj, (dict,), where, filepath)
    expect_type(obj.get("class_name"), (str,), where + '["class_name"]', filepath)
    expect_type(obj.get("config", {}), (dict,), where + '["config"]', filepath)


def _check_compile(comp, arrays, filepath):
    expect_type(comp, (dict,), '"compile"', filepath)
    check_serialized(comp.get("optimizer"), '"compile"["optimizer"]', filepath)
    check_serialized(comp.get("loss"), '"compile"["loss"]', filepath)
    for key in ("metrics", "weighted_metrics"):
        where = f'"compile"["{key}"]'
        for m in expect_type(comp.get(key, []), (list,), where, filepath):
            if isinstance(m, dict):           # a metric object: its class and settings
                check_serialized(m, where + " items", filepath)
            else:
                expect_type(m, (str,), where + " items", filepath)
    expect_type(comp.get("iterations", 0), (int,), '"compile"["iterations"]', filepath)
    keys = expect_type(comp.get("state_keys", []), (list,), '"compile"["state_keys"]', filepath)
    if len(keys) > len(arrays):
        raise ValueError(f"{filepath!r} is damaged: it claims {len(keys)} optimizer arrays but "
                         f"holds {len(arrays)} arrays in all.")
    for k in keys:
        expect_type(k, (str,), '"compile"["state_keys"] items', filepath)
    missing = [k for k in keys if f"opt.{k}" not in arrays]
    if missing:
        raise ValueError(f"{filepath!r} is damaged: {len(missing)} optimizer arrays are "
                         f"missing: {short_list(missing)}.")


def check_metadata(meta, arrays, filepath):
    """Types and counts of a cconv file's metadata against the names of its ``arrays``
    (ValueError naming ``filepath`` if wrong).

    ``num_weights`` must be an int between 0 and the number of arrays, and ``w0`` ... present.
    """
    expect_type(meta, (dict,), "the metadata", filepath)
    expect_type(meta.get("format"), (str,), '"format"', filepath)
    n = expect_type(meta.get("num_weights"), (int,), '"num_weights"', filepath)
    if not 0 <= n <= len(arrays):
        raise ValueError(f"{filepath!r} is damaged: it claims {n} weight arrays but holds "
                         f"{len(arrays)} arrays in all.")
    missing = [f"w{i}" for i in range(n) if f"w{i}" not in arrays]
    if missing:
        raise ValueError(f"{filepath!r} is damaged: {len(missing)} of its {n} weight arrays "
                         f"are missing: {short_list(missing)}.")
    config = meta.get("config")
    if config is not None:
        expect_type(config, (dict,), '"config"', filepath)
        layers = expect_type(config.get("layers", []), (list,), '"config"["layers"]', filepath)
        for i, layer in enumerate(layers):
            check_serialized(layer, f'"config"["layers"][{i}]', filepath)
        shape = expect_type(config.get("build_input_shape", []), (list,),
                        '"config"["build_input_shape"]', filepath)
        for v in shape:
            expect_type(v, (int, type(None)), '"config"["build_input_shape"] items', filepath)
    if meta.get("compile") is not None:
        _check_compile(meta["compile"], arrays, filepath)
