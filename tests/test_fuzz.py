"""Fuzzing every public op with valid and invalid arguments: agree or refuse, never crash.

Each example draws every argument from a mixture of valid values (zero-size dimensions, 1x1
everything, kernel equal to the input, strides larger than the kernel, huge dilations and
pool sizes with "same" padding, NaN/Inf data, non-contiguous arrays, the other byte order
(big-endian on this machine), lists, ints, bools, float16) and invalid ones (None, complex,
strings, objects, ragged lists, wrong ranks, mismatched channels, zero or negative strides,
floats where ints belong, unknown padding, sizes past the 64-bit index range). An oracle
written here from DESIGN.md decides what should happen:

* valid: the result has the documented shape and dtype and agrees with the NumPy reference
  (tests/reference.py; a clipped-window variant below for padding too large to materialise),
  with NaN/Inf in the same places; the inputs are unchanged;
* invalid: ``ValueError`` or ``TypeError`` whose message names the function;
* impossible sizes: ``MemoryError`` or ``ValueError``.

Quick profile (CI): a few hundred examples per test, derandomised so CI is reproducible.
Long profile: ``CCONV_FUZZ_EXAMPLES=N`` runs N random examples per test (see docs/testing.md).
"""
import os

import numpy as np
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

import cconv
from cconv import classic, ops

from . import reference as ref

LONG = int(os.environ.get("CCONV_FUZZ_EXAMPLES", "0") or 0)


def fuzz(quick):
    if LONG:
        return settings(max_examples=LONG, deadline=None, database=None,
                        suppress_health_check=list(HealthCheck))
    return settings(max_examples=quick, deadline=None, derandomize=True, database=None,
                    suppress_health_check=list(HealthCheck))


BIG = 2**62           # ops refuses sizes at or past this (64-bit index arithmetic)
HUGE_BYTES = 2**36    # outputs past this are expected to fail to allocate


class Invalid(Exception):
    """Raised by the oracle: this call must fail with ValueError or TypeError."""


# ----------------------------------------------------------------------------- arguments
@st.composite
def int_pair(draw, name, lo=1, huge=(), allow_none=False):
    """(value given to the op, normalised pair or Invalid)."""
    # about 1 in 16 draws is invalid, so that most examples reach the kernels
    kind = draw(st.sampled_from(["int"] * 5 + ["pair"] * 5 + ["list", "npint", "huge", "bad"]
                                + (["none"] * 3 if allow_none else [])))
    small = st.integers(lo, 5)
    if kind == "int":
        v = draw(small)
        return v, (v, v)
    if kind == "pair":
        v = (draw(small), draw(small))
        return v, v
    if kind == "list":
        v = [draw(small), draw(small)]
        return v, tuple(v)
    if kind == "npint":
        v = np.int64(draw(small))
        return v, (int(v), int(v))
    if kind == "huge" and huge:
        v = (draw(st.sampled_from(huge)), draw(st.sampled_from((1, 2) + tuple(huge))))
        if max(v) >= BIG:
            return v, Invalid(f"{name} too large")
        return v, v
    if kind == "none":
        return None, None
    v = draw(st.sampled_from([0, -1, (1, 0), (2, -3), 1.5, (1.0, 2), "2", (1, 2, 3), True,
                              (True, 1), None, [1], 2**70]))
    if v is None and allow_none:
        return None, None
    return v, Invalid(f"bad {name} {v!r}")


@st.composite
def padding_arg(draw, huge=False):
    kind = draw(
        st.sampled_from(
            ["valid"] * 4
            + ["same"] * 4
            + ["int", "pair", "pairs", "case", "bad"]
            + (["huge"] if huge else [])
        )
    )
    p = st.integers(0, 3)
    if kind in ("valid", "same"):
        return kind, kind
    if kind == "case":
        v = draw(st.sampled_from(["VALID", "Same", "SAME"]))
        return v, v.lower()
    if kind == "int":
        v = draw(p)
        return v, v
    if kind == "pair":
        v = (draw(p), draw(p))
        return v, v
    if kind == "pairs":
        v = ((draw(p), draw(p)), [draw(p), draw(p)])
        return v, (v[0], tuple(v[1]))
    if kind == "huge":
        v = ((draw(st.sampled_from([2**40, BIG])), 0), (0, draw(p)))
        return v, (Invalid("padding too large") if v[0][0] >= BIG else v)
    v = draw(st.sampled_from(["full", "", -1, (1, -1), 1.0, (1, 2, 3), ((1, 2), (3,)), None,
                              ((1, 2), 3), b"same", True]))
    return v, Invalid(f"bad padding {v!r}")


FLOAT_DTYPES = [np.float32, np.float64]
OK_DTYPES = FLOAT_DTYPES * 3 + [np.float16, np.int32, np.int64, np.bool_, np.uint8]


def compute_dtype(dtypes):
    """docs/usage.md (Dtypes): the dtype an op computes in and returns."""
    kinds = [np.float32 if np.dtype(d) in (np.float16, np.float32) else np.float64 for d in dtypes]
    return np.float64 if np.float64 in kinds else np.float32


@st.composite
def array_arg(draw, shape, name, special=True):
    """(value given to the op, expected-dtype-of-input or Invalid, the float64 data)."""
    form = draw(st.sampled_from(["c"] * 12 + ["view", "fortran", "list", "swapped", "bad"]))
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    data = rng.standard_normal(shape)
    if special and data.size and draw(st.booleans()):
        k = draw(st.integers(1, max(1, data.size // 3)))
        idx = rng.integers(0, data.size, k)
        data.flat[idx] = rng.choice([np.nan, np.inf, -np.inf], k)
    if form == "bad":
        bad = draw(st.sampled_from(["none", "complex", "str", "object", "rank", "ragged"]))
        if bad == "none":
            return None, Invalid("None"), None  # noqa: E501
        if bad == "complex":
            return data.astype(complex), Invalid("complex"), None
        if bad == "str":
            return np.full(shape, "a"), Invalid("str"), None
        if bad == "object":
            return data.astype(object), Invalid("object"), None
        if bad == "rank":   # one dimension more or fewer
            changed = data.reshape(1, -1) if data.ndim == 1 else data.reshape(-1)
            return changed, Invalid("rank"), None
        return [[1.0, 2.0], [3.0]], Invalid("ragged"), None
    dtype = np.dtype(draw(st.sampled_from(OK_DTYPES)))
    if dtype.kind in "iub":
        data = np.nan_to_num(np.round(data * 3), nan=0, posinf=4, neginf=-4)
        if dtype.kind == "u":
            data = np.abs(data)
        if dtype.kind == "b":
            data = data > 0
    elif dtype == np.float16:
        data = data.astype(np.float16)
    arr = data.astype(dtype)
    data = arr.astype(np.float64)
    if form == "list":
        return arr.tolist(), np.dtype(np.float64), data   # Python floats/ints/bools
    if form == "view":
        big = np.zeros(tuple(2 * s + 1 for s in shape), dtype)
        view = big[tuple(slice(1, None, 2) for _ in shape)]
        view[...] = arr
        return view, dtype, data
    if form == "fortran":
        return np.asfortranarray(arr), dtype, data
    if form == "swapped":   # the other byte order: same values, same precision, native results
        return arr.astype(dtype.newbyteorder("S")), dtype, data
    return arr, dtype, data


# ----------------------------------------------------------------------------- oracle
def check_pair(v):
    if isinstance(v, Invalid):
        raise v
    return v


def window_geometry(n, k, s, d, padding):
    """(out, pads) by the window rule of ``ops.conv_output_shape``, or raise Invalid; all
    Python ints."""
    s, d = check_pair(s), check_pair(d)
    if isinstance(padding, Invalid):
        raise padding
    if isinstance(padding, str) and padding not in ("valid", "same"):
        raise Invalid("padding")
    pads = ref.pads_for(n, k, s, d, padding)
    out = []
    for i in range(2):
        ke = (k[i] - 1) * d[i] + 1
        total = n[i] + pads[i][0] + pads[i][1]
        if total + ke + s[i] >= BIG:
            raise Invalid("index range")
        if padding == "same":
            out.append(-(-n[i] // s[i]))
        else:
            if total < ke:
                raise Invalid("kernel larger than padded input")
            out.append((total - ke) // s[i] + 1)
    return tuple(out), pads


def expect_refusal(call, op_names, allow_memory=False):
    errors = (ValueError, TypeError, MemoryError) if allow_memory else (ValueError, TypeError)
    with pytest.raises(errors) as info:
        call()
    msg = str(info.value)
    assert msg, f"empty message from {info.type.__name__}"
    if not isinstance(info.value, MemoryError):
        assert any(msg.startswith(f"{op}:") for op in op_names), (
            f"the message does not name the function ({op_names}): {msg!r}")


def assert_agrees(actual, expected, dtype, what):
    """Same shape and dtype; NaN and +-Inf in the same places; finite values within the
    tolerance of DESIGN.md section 6 (float32 1e-5, float64 1e-10 of the magnitude)."""
    expected = np.asarray(expected, np.float64)
    assert actual.shape == expected.shape, f"{what}: shape {actual.shape} != {expected.shape}"
    assert actual.dtype == dtype, f"{what}: dtype {actual.dtype} != {np.dtype(dtype)}"
    assert actual.flags.c_contiguous, f"{what}: not C-contiguous"
    a = actual.astype(np.float64)
    np.testing.assert_array_equal(np.isnan(a), np.isnan(expected), err_msg=f"{what}: NaN places")
    inf = np.isinf(expected)
    np.testing.assert_array_equal(a[inf], expected[inf], err_msg=f"{what}: Inf places")
    fin = np.isfinite(expected)
    assert np.all(np.isfinite(a[fin])), f"{what}: non-finite where the reference is finite"
    if fin.any():
        scale = max(1.0, float(np.max(np.abs(expected[fin]))))
        tol = (1e-10 if dtype == np.float64 else 1e-5) * scale * 4
        err = float(np.max(np.abs(a[fin] - expected[fin])))
        assert err <= tol, f"{what}: max abs error {err:.3g} > {tol:.3g}"


def snapshot(*values):
    return [np.array(v, copy=True) if isinstance(v, np.ndarray) else None for v in values]


def assert_unchanged(values, copies):
    for v, c in zip(values, copies):
        if c is not None:
            np.testing.assert_array_equal(v, c, err_msg="an input was modified")


# Clipped-window references for padding too large to materialise with np.pad (huge dilation
# or pool size with "same"): the same sums as tests/reference.py, taps outside the input
# skipped instead of multiplied by padded zeros.
def conv_clipped(x, kernel, bias, strides, pads, dilation, groups, out):
    n, h, w, c = x.shape
    kh, kw, cg, co = kernel.shape
    cog = co // groups if groups else 0
    y = np.zeros((n,) + tuple(out) + (co,))
    for i in range(out[0]):
        for j in range(out[1]):
            for a in range(kh):
                r = i * strides[0] - pads[0][0] + a * dilation[0]
                if not 0 <= r < h:
                    continue
                for b in range(kw):
                    q = j * strides[1] - pads[1][0] + b * dilation[1]
                    if not 0 <= q < w:
                        continue
                    for g in range(groups):
                        y[:, i, j, g * cog : (g + 1) * cog] += (
                            x[:, r, q, g * cg : (g + 1) * cg]
                            @ kernel[a, b, :, g * cog : (g + 1) * cog]
                        )
    if bias is not None:
        y += bias
    return y


def huge_spatial(shape):
    """An output with 2**30 or more positions per image (only possible when it is empty)."""
    return shape[1] * shape[2] >= 2**30


def padding_is_small(pads):
    return max(max(p) for p in pads) <= 64


def reference_conv(x, kernel, bias, s, pads, d, groups, out):
    if np.prod(out) * x.shape[0] * kernel.shape[3] == 0:
        return np.zeros((x.shape[0],) + tuple(out) + (kernel.shape[3],))
    if padding_is_small(pads):
        return ref.conv2d(x, kernel, bias, s, pads, d, groups)
    return conv_clipped(x, kernel, bias, s, pads, d, groups, out)


# ----------------------------------------------------------------------------- conv2d
@st.composite
def conv_case(draw):
    n = draw(st.sampled_from([0, 1, 1, 2, 3]))
    h, w = draw(st.integers(0, 7)), draw(st.integers(0, 7))
    groups_v = draw(st.sampled_from([1] * 8 + [2, 2, 3, 3, "bad"]))
    groups = (
        groups_v if groups_v != "bad" else draw(st.sampled_from([0, -1, 1.0, "1", None, True, 99]))
    )
    g = (
        groups
        if isinstance(groups, int) and not isinstance(groups, bool) and 1 <= groups <= 3
        else 1
    )
    cg, cog = draw(st.integers(0, 3)), draw(st.integers(0, 3))
    if g > 1:
        cg, cog = max(cg, 1), max(cog, 1)
    c, co = g * cg, g * cog
    kh = draw(st.sampled_from([1, 2, 3, 4, max(h, 1)]))      # max(h, 1): kernel == input
    kw = draw(st.sampled_from([1, 2, 3, 4, max(w, 1)]))
    kshape = [kh, kw, cg, co]
    mutation = draw(st.sampled_from([None] * 20 + ["cin", "cout", "k0"]))
    if mutation == "cin":
        kshape[2] += 1
    elif mutation == "cout" and g > 1:
        kshape[3] += 1
    elif mutation == "k0":
        kshape[draw(st.integers(0, 1))] = 0
    x = draw(array_arg((n, h, w, c), "x"))
    kernel = draw(array_arg(tuple(kshape), "kernel", special=False))
    bias_kind = draw(st.sampled_from(["none"] * 3 + ["ok"] * 4 + ["bad"]))
    if bias_kind == "none":
        bias = (None, None, None)
    else:
        bshape = (kshape[3] + (1 if bias_kind == "bad" else 0),)
        bias = draw(array_arg(bshape, "bias", special=False))
        if bias[0] is None:       # None is a valid bias: no bias
            bias = (None, None, None)
        elif bias_kind == "bad":
            bias = (bias[0], Invalid("bias shape"), None)
    strides = draw(int_pair("strides"))
    dilation = draw(int_pair("dilation_rate", huge=(2**20, 2**40, BIG)))
    padding = draw(padding_arg(huge=True))
    dy_seed = draw(st.integers(0, 2**32 - 1))
    dy_special = draw(st.booleans())
    return dict(x=x, kernel=kernel, bias=bias, strides=strides, dilation=dilation,
                padding=padding, groups=groups, mutation=mutation, dy=(dy_seed, dy_special))


def conv_oracle(case):
    """(expected output shape, compute dtype, pads, strides, dilation) or raise Invalid."""
    (xv, xdt, _), (kv, kdt, _), (bv, bdt, _) = case["x"], case["kernel"], case["bias"]
    for dt in (xdt, kdt, bdt):
        if isinstance(dt, Invalid):
            raise dt
    groups = case["groups"]
    if not isinstance(groups, int) or isinstance(groups, bool) or groups < 1:
        raise Invalid("groups")
    x_shape, k_shape = np.shape(xv), np.shape(kv)
    if len(x_shape) != 4 or len(k_shape) != 4:     # lists cannot hold zero-size trailing dims
        raise Invalid("rank")
    if bv is not None and np.shape(bv) != (k_shape[3],):
        raise Invalid("bias shape")
    if k_shape[2] * groups != x_shape[3] or k_shape[3] % groups or groups > max(x_shape[3], 1):
        raise Invalid("channels")
    if min(k_shape[:2]) < 1:
        raise Invalid("empty kernel")
    out, pads = window_geometry(x_shape[1:3], k_shape[:2], case["strides"][1],
                                case["dilation"][1], case["padding"][1])
    dtype = compute_dtype([xdt, kdt] + ([bdt] if bv is not None else []))
    return (x_shape[0],) + out + (k_shape[3],), dtype, pads


def conv_args(case):
    return dict(strides=case["strides"][0], padding=case["padding"][0],
                dilation_rate=case["dilation"][0], groups=case["groups"])


@fuzz(quick=300)
@given(conv_case())
def test_fuzz_conv2d(case):
    x, kernel, bias = case["x"][0], case["kernel"][0], case["bias"][0]
    kwargs = conv_args(case)
    call = lambda: ops.conv2d(x, kernel, bias, **kwargs)  # noqa: E731
    try:
        shape, dtype, pads = conv_oracle(case)
    except Invalid as why:
        event(f"refused: {why}")
        expect_refusal(call, ["conv2d"])
        return
    event("valid" if np.prod(shape, dtype=object) * 8 <= HUGE_BYTES else "too large")
    if np.prod(shape, dtype=object) * 8 > HUGE_BYTES:
        expect_refusal(call, ["conv2d"], allow_memory=True)
        return
    copies = snapshot(x, kernel, bias)
    try:
        y = call()
    except MemoryError:
        # Known limit: the kernels size a workspace by the output rows or by the padded
        # input, so an empty output of 2**30+ positions, or "same" padding of 2**19+ cells
        # (a huge dilation), may be refused with MemoryError although the result is small.
        assert huge_spatial(shape) or not padding_is_small(pads), "MemoryError on a small problem"
        event("workspace refused")
        return
    assert_unchanged((x, kernel, bias), copies)
    s, d = case["strides"][1], case["dilation"][1]
    want = reference_conv(case["x"][2], case["kernel"][2], case["bias"][2], s, pads, d,
                          case["groups"], shape[1:3])
    assert_agrees(y, want, dtype, "conv2d")


@fuzz(quick=200)
@given(conv_case())
def test_fuzz_conv2d_backward(case):
    x, kernel = case["x"][0], case["kernel"][0]
    kwargs = conv_args(case)
    try:
        shape, dtype, pads = conv_oracle(dict(case, bias=(None, None, None)))
    except Invalid as why:
        event(f"refused: {why}")
        # any dy: the arguments themselves are refused
        expect_refusal(lambda: ops.conv2d_backward(np.zeros((1, 1, 1, 1)), x, kernel, **kwargs),
                       ["conv2d_backward"])
        return
    if np.prod(shape, dtype=object) * 8 > HUGE_BYTES:
        return  # dy itself could not exist
    seed, special = case["dy"]
    rng = np.random.default_rng(seed)
    dy = rng.standard_normal(shape).astype(dtype)
    if special and dy.size:
        dy.flat[rng.integers(0, dy.size, 1)] = np.inf
    wrong = seed % 7 == 0 and np.prod(shape[:3], dtype=object) < 10**6
    if wrong:   # a dy of the wrong shape must be refused
        bad = np.zeros(shape[:3] + (shape[3] + 1,))
        expect_refusal(lambda: ops.conv2d_backward(bad, x, kernel, **kwargs), ["conv2d_backward"])
        return
    event("valid")
    copies = snapshot(dy, x, kernel)
    try:
        dx, dk, db = ops.conv2d_backward(dy, x, kernel, **kwargs)
    except MemoryError:
        assert huge_spatial(shape) or not padding_is_small(pads), "MemoryError on a small problem"
        event("workspace refused")
        return
    assert_unchanged((dy, x, kernel), copies)
    s, d = case["strides"][1], case["dilation"][1]
    if dy.size == 0:
        for name, a, b in zip(
            ("dx", "dkernel", "dbias"),
            (dx, dk, db),
            (np.zeros(np.shape(x)), np.zeros(np.shape(kernel)), np.zeros(shape[3])),
        ):
            assert_agrees(a, b, dtype, f"conv2d_backward {name}")
        return
    if not padding_is_small(pads):
        return  # huge padding: forward checked above; the reference would materialise it
    want = ref.conv2d_backward(dy, case["x"][2], case["kernel"][2], s, pads, d, case["groups"])
    for name, a, b in zip(("dx", "dkernel", "dbias"), (dx, dk, db), want):
        assert_agrees(a, b, dtype, f"conv2d_backward {name}")


# ----------------------------------------------------------------------------- pooling
@st.composite
def pool_case(draw):
    n = draw(st.sampled_from([0, 1, 1, 2]))
    h, w = draw(st.integers(0, 7)), draw(st.integers(0, 7))
    c = draw(st.integers(0, 3))
    x = draw(array_arg((n, h, w, c), "x"))
    pool = draw(int_pair("pool_size", huge=(2**40, BIG)))
    strides = draw(int_pair("strides", allow_none=True))
    padding = draw(padding_arg())
    return dict(x=x, pool=pool, strides=strides, padding=padding,
                dy=draw(st.integers(0, 2**32 - 1)))


def pool_oracle(case):
    (xv, xdt, _) = case["x"]
    if isinstance(xdt, Invalid):
        raise xdt
    pool = check_pair(case["pool"][1])
    strides = pool if case["strides"][1] is None else case["strides"][1]
    x_shape = np.shape(xv)
    if len(x_shape) != 4:
        raise Invalid("rank")
    out, pads = window_geometry(x_shape[1:3], pool, strides, (1, 1), case["padding"][1])
    padding = case["padding"][1]
    if not isinstance(padding, str) and any(max(pads[i]) >= pool[i] for i in range(2)):
        raise Invalid("padding >= pool")
    if (x_shape[1] == 0 and out[0]) or (x_shape[2] == 0 and out[1]):
        raise Invalid("windows with no real cell")
    return (x_shape[0],) + out + (x_shape[3],), compute_dtype([xdt]), pool, strides, pads


def pool_clipped(x, pool, strides, pads, out, mode, dy=None):
    """Forward (dy None) or backward over clipped windows, as tests/reference.py computes them."""
    n, h, w, c = x.shape
    y = np.zeros((n,) + tuple(out) + (c,))
    dx = np.zeros_like(x)
    for i in range(out[0]):
        for j in range(out[1]):
            r0, c0 = i * strides[0] - pads[0][0], j * strides[1] - pads[1][0]
            rows = range(max(r0, 0), min(r0 + pool[0], h))
            cols = range(max(c0, 0), min(c0 + pool[1], w))
            cells = [(r, q) for r in rows for q in cols]
            vals = np.stack([x[:, r, q, :] for r, q in cells], axis=1)   # (n, cells, c)
            if dy is None:
                y[:, i, j] = vals.max(axis=1) if mode == "max" else vals.mean(axis=1)
                continue
            if mode == "max":
                first = np.argmax(vals, axis=1)                            # first maximum
                for b in range(n):
                    for ch in range(c):
                        r, q = cells[first[b, ch]]
                        dx[b, r, q, ch] += dy[b, i, j, ch]
            else:
                for r, q in cells:
                    dx[:, r, q, :] += dy[:, i, j, :] / len(cells)
    return y if dy is None else dx


POOLS = {
    "max_pool2d": (ops.max_pool2d, ops.max_pool2d_backward, "max"),
    "avg_pool2d": (ops.avg_pool2d, ops.avg_pool2d_backward, "avg"),
}


@fuzz(quick=200)
@given(pool_case(), st.sampled_from(sorted(POOLS)), st.booleans())
def test_fuzz_pooling(case, name, backward):
    fwd, bwd, mode = POOLS[name]
    op = f"{name}_backward" if backward else name
    x = case["x"][0]
    args = (case["pool"][0],)
    kwargs = dict(strides=case["strides"][0], padding=case["padding"][0])
    try:
        shape, dtype, pool, strides, pads = pool_oracle(case)
    except Invalid as why:
        event(f"refused: {why}")
        if backward:
            expect_refusal(lambda: bwd(np.zeros((1, 1, 1, 1)), x, *args, **kwargs), [op])
        else:
            expect_refusal(lambda: fwd(x, *args, **kwargs), [op])
        return
    event("valid")
    xd = case["x"][2]
    small = padding_is_small(pads) and max(pool) <= 64
    if not backward:
        copies = snapshot(x)
        y = fwd(x, *args, **kwargs)
        assert_unchanged((x,), copies)
        if not np.prod(shape):
            want = np.zeros(shape)
        elif small:
            want = ref.pool2d(xd, pool, strides, pads, mode)
        else:
            want = pool_clipped(xd, pool, strides, pads, shape[1:3], mode)
        assert_agrees(y, want, dtype, op)
        return
    rng = np.random.default_rng(case["dy"])
    dy = rng.standard_normal(shape).astype(np.float32 if dtype == np.float32 else np.float64)
    if case["dy"] % 7 == 0 and np.prod(shape, dtype=object) < 10**6:
        bad = np.zeros(shape[:1] + (shape[1] + 1,) + shape[2:])
        expect_refusal(lambda: bwd(bad, x, *args, **kwargs), [op])
        return
    copies = snapshot(dy, x)
    dx = bwd(dy, x, *args, **kwargs)
    assert_unchanged((dy, x), copies)
    if not dy.size:
        want = np.zeros(xd.shape)
    elif small:
        want = ref.pool2d_backward(dy, xd, pool, strides, pads, mode)
    else:
        want = pool_clipped(xd, pool, strides, pads, shape[1:3], mode, dy=dy.astype(np.float64))
    assert_agrees(dx, want, dtype, op)


# ----------------------------------------------------------------------------- geometry
@fuzz(quick=300)
@given(st.one_of(st.tuples(st.integers(0, 50), st.integers(0, 50)),
                 st.sampled_from([None, 5, (5,), (5, 5, 5), (-1, 4), (2.5, 3), "ab", (True, 3)])),
       int_pair("kernel_size", huge=(2**40, BIG)), int_pair("strides"),
       padding_arg(huge=True), int_pair("dilation_rate", huge=(2**40, BIG)))
def test_fuzz_geometry_helpers(size, kernel, strides, padding, dilation):
    call_shape = lambda: ops.conv_output_shape(size, kernel[0], strides[0], padding[0], dilation[0])  # noqa: E731
    call_pads = lambda: ops.compute_padding(size, kernel[0], strides[0], padding[0], dilation[0])  # noqa: E731
    try:
        if not (isinstance(size, tuple) and len(size) == 2 and all(
                isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in size)):
            raise Invalid("input_size")
        out, pads = window_geometry(
            size, check_pair(kernel[1]), strides[1], dilation[1], padding[1]
        )
    except Invalid:
        expect_refusal(call_shape, ["conv_output_shape"])
        expect_refusal(call_pads, ["compute_padding"])
        return
    assert call_shape() == out
    assert call_pads() == pads


# ----------------------------------------------------------------------------- classic
@fuzz(quick=150)
@given(conv_case(), st.sampled_from(["ok", "ok", "ok", "b_none", "act"]))
def test_fuzz_classic_conv(case, twist):
    x, W = case["x"][0], case["kernel"][0]
    padding = case["padding"][0]
    stride = case["strides"][0]
    (bv, bdt, bd) = case["bias"]
    co = case["kernel"][2].shape[-1] if case["kernel"][2] is not None else 1
    if bv is None:   # the curriculum always passes b: zeros (1, 1, 1, c_new)
        bv, bdt, bd = np.zeros((1, 1, 1, co)), np.dtype(np.float64), np.zeros(co)
    elif isinstance(bdt, Invalid) and str(bdt) == "rank" and np.size(bv) == co:
        bdt, bd = np.dtype(np.float64), np.asarray(bv, np.float64).reshape(-1)  # b is reshaped
    b = None if twist == "b_none" else bv
    activation = "relu" if twist == "act" else np.tanh
    call = lambda: classic.conv_forward(  # noqa: E731  (semantics: the oracle's rules)
        x, W, b, activation, padding=padding, stride=stride, semantics="tensorflow")
    names = ["conv_forward", "conv2d"]
    try:
        if twist != "ok":
            raise Invalid(twist)
        flat = bd.reshape(-1) if bd is not None else bv     # classic reshapes b to (c_new,)
        case = dict(case, groups=1, dilation=(1, (1, 1)), bias=(flat, bdt, bd))
        shape, dtype, pads = conv_oracle(case)
    except Invalid:
        expect_refusal(call, names)
        return
    if np.prod(shape, dtype=object) * 8 > HUGE_BYTES:
        expect_refusal(call, names, allow_memory=True)
        return
    a = call()
    want = reference_conv(case["x"][2], case["kernel"][2], bd.reshape(-1), case["strides"][1],
                          pads, (1, 1), 1, shape[1:3])
    with np.errstate(invalid="ignore"):
        assert_agrees(a, np.tanh(want).astype(dtype), dtype, "conv_forward")


@fuzz(quick=150)
@given(pool_case(), st.sampled_from(["max", "avg", "min", None]), st.booleans())
def test_fuzz_classic_pool(case, mode, backward):
    x = case["x"][0]
    kshape, stride = case["pool"][0], case["strides"][0]
    names = ["pool_backward" if backward else "pool_forward",
             "max_pool2d", "avg_pool2d", "max_pool2d_backward", "avg_pool2d_backward"]
    try:
        if mode not in ("max", "avg"):
            raise Invalid("mode")
        if not isinstance(kshape, (tuple, list)) or len(kshape) != 2:
            raise Invalid("kernel_shape")
        shape, dtype, pool, strides, pads = pool_oracle(dict(case, padding=("valid", "valid")))
    except Invalid:
        if backward:
            expect_refusal(
                lambda: classic.pool_backward(np.zeros((1, 1, 1, 1)), x, kshape, stride, mode,
                                              "tensorflow"),
                names,
            )
        else:
            expect_refusal(lambda: classic.pool_forward(x, kshape, stride, mode, "tensorflow"),
                           names)
        return
    xd = case["x"][2]
    if backward:
        dA = np.random.default_rng(case["dy"]).standard_normal(shape)
        got = classic.pool_backward(dA, x, kshape, stride, mode, "tensorflow")  # the oracle's ties
        want = ref.pool2d_backward(dA, xd, pool, strides, pads, mode)
        assert_agrees(got, want, np.float64, "pool_backward")
    else:
        got = classic.pool_forward(x, kshape, stride, mode, "tensorflow")
        want = ref.pool2d(xd, pool, strides, pads, mode) if np.prod(shape) else np.zeros(shape)
        assert_agrees(got, want, dtype, "pool_forward")


# ----------------------------------------------------------------------------- threads
@fuzz(quick=50)
@given(st.one_of(st.integers(-3, 5000), st.sampled_from([None, 1.5, "2", True, 2**70])))
def test_fuzz_set_num_threads(n):
    before = cconv.get_num_threads()
    try:
        ok = n is None or (isinstance(n, int) and not isinstance(n, bool) and 1 <= n <= 4096)
        if ok:
            cconv.set_num_threads(n)
            if n is not None and cconv.openmp_enabled():
                assert cconv.get_num_threads() == n
        else:
            expect_refusal(lambda: cconv.set_num_threads(n), ["set_num_threads"])
            assert cconv.get_num_threads() == before
    finally:
        cconv.set_num_threads(before)


# ----------------------------------------------------------------------------- regressions
def test_regression_pool_zero_height_with_padding_is_refused():
    """Found by this suite: windows over a zero-height input held no real cell and the op
    returned uninitialised memory."""
    with pytest.raises(ValueError, match="hold no real cell"):
        ops.max_pool2d(np.zeros((1, 0, 5, 1)), 2, padding=1)
    with pytest.raises(ValueError, match="hold no real cell"):
        ops.avg_pool2d_backward(np.ones((1, 1, 3, 1)), np.zeros((1, 0, 5, 1)), 2, padding=1)


@pytest.mark.parametrize(
    "call",
    [
        lambda: ops.conv2d(np.zeros((1, 5, 5, 1)), np.ones((3, 3, 1, 1)), strides=10**19),
        lambda: ops.conv2d(
            np.zeros((1, 5, 5, 1)), np.ones((3, 3, 1, 1)), padding="same", dilation_rate=10**19
        ),
        lambda: ops.conv2d(np.zeros((1, 5, 5, 0)), np.ones((3, 3, 0, 0)), groups=10**20),
        lambda: ops.max_pool2d(np.zeros((1, 5, 5, 1)), 10**19, padding="same"),
        lambda: ops.max_pool2d(np.zeros((1, 5, 5, 1)), 2, strides=10**19),
        lambda: ops.conv_output_shape((5,), 3),
    ],
)
def test_regression_huge_ints_are_value_errors(call):
    """Found by this suite: these reached the compiled core as OverflowError (or overflowed
    its 64-bit index arithmetic)."""
    with pytest.raises((ValueError, TypeError)):
        call()


# ----------------------------------------------------------------------------- dense
@st.composite
def dense_case(draw):
    lead = draw(st.lists(st.integers(0, 4), min_size=1, max_size=3))      # (batch, ...)
    fin, units = draw(st.integers(0, 5)), draw(st.integers(0, 5))
    mutation = draw(st.sampled_from([None] * 12 + ["fin", "rank_x", "rank_k", "bias"]))
    xshape = tuple(lead) + (fin,)
    kshape = (fin + (mutation == "fin"), units)
    if mutation == "rank_x":
        xshape = (fin,)
    if mutation == "rank_k":
        kshape = kshape + (1,)
    x = draw(array_arg(xshape, "x"))
    kernel = draw(array_arg(kshape, "kernel", special=False))
    bias = draw(
        st.one_of(st.none(), array_arg((units + (mutation == "bias"),), "bias", special=False))
    )
    return x, kernel, bias, mutation, draw(st.integers(0, 2**32 - 1))


@fuzz(quick=200)
@given(dense_case(), st.booleans())
def test_fuzz_dense(case, backward):
    (xv, xdt, xd), (kv, kdt, kd), bias, mutation, seed = case
    bv, bdt, bd = bias if bias is not None and bias[0] is not None else (None, None, None)
    # dense takes any rank >= 2 for x, so a "wrong rank" array may well be valid here:
    # judge it by its shape below like any other array
    if isinstance(xdt, Invalid) and str(xdt) == "rank":
        xdt, xd = xv.dtype, xv.astype(np.float64)
    if isinstance(kdt, Invalid) and str(kdt) == "rank":
        kdt, kd = kv.dtype, kv.astype(np.float64)
    if isinstance(bdt, Invalid) and str(bdt) == "rank":
        bdt, bd = bv.dtype, bv.astype(np.float64)
    op = "dense_backward" if backward else "dense"
    try:
        for dt in (xdt, kdt) + (() if backward else (bdt,)):
            if isinstance(dt, Invalid):
                raise dt
        xs, ks = np.shape(xv), np.shape(kv)
        if len(xs) < 2 or len(ks) != 2 or xs[-1] != ks[0]:
            raise Invalid("shapes")
        if not backward and bv is not None and np.shape(bv) != (ks[1],):
            raise Invalid("bias shape")
        dtype = compute_dtype([xdt, kdt] + ([bdt] if (bv is not None and not backward) else []))
    except Invalid as why:
        event(f"refused: {why}")
        if backward:
            expect_refusal(lambda: ops.dense_backward(np.zeros((1, 1)), xv, kv), [op])
        else:
            expect_refusal(lambda: ops.dense(xv, kv, bv), [op])
        return
    event("valid")
    want = (
        np.einsum("...i,io->...o", xd, kd) if xd.size and kd.size else np.zeros(xs[:-1] + (ks[1],))
    )
    if not backward:
        copies = snapshot(xv, kv, bv)
        y = ops.dense(xv, kv, bv)
        assert_unchanged((xv, kv, bv), copies)
        assert_agrees(y, want + (bd if bd is not None else 0), dtype, "dense")
        return
    dy = np.random.default_rng(seed).standard_normal(xs[:-1] + (ks[1],)).astype(dtype)
    dx, dk, db = ops.dense_backward(dy, xv, kv)
    d64 = dy.astype(np.float64)
    rows = int(np.prod(xs[:-1]))
    x2, dy2 = xd.reshape(rows, xs[-1]), d64.reshape(rows, ks[1])
    assert_agrees(
        dx, (dy2 @ kd.T).reshape(xs) if dy2.size and kd.size else np.zeros(xs), dtype, "dense dx"
    )
    assert_agrees(dk, x2.T @ dy2 if x2.size and dy2.size else np.zeros(ks), dtype, "dense dkernel")
    assert_agrees(db, dy2.sum(axis=0), dtype, "dense dbias")


def test_regression_dense_with_zero_features():
    """Found by this suite: reshape(-1, 0) is ambiguous, so dense raised NumPy's ValueError."""
    y = ops.dense(np.zeros((3, 0)), np.zeros((0, 2)))
    np.testing.assert_array_equal(y, np.zeros((3, 2)))
    dx, dk, db = ops.dense_backward(np.ones((3, 0)), np.ones((3, 4)), np.ones((4, 0)))
    assert dx.shape == (3, 4) and dk.shape == (4, 0) and db.shape == (0,)
    np.testing.assert_array_equal(dx, 0)


def test_regression_conv2d_backward_of_an_empty_output():
    """Found by this suite: with an empty output (zero-size input, "same" padding) the direct
    kernel's backward wrote out of bounds and crashed the process."""
    dx, dk, db = ops.conv2d_backward(np.zeros((3, 0, 0, 2)), np.zeros((3, 0, 0, 1), np.int32),
                                     np.ones((1, 4, 1, 2), np.float32), strides=2, padding="same")
    assert dx.shape == (3, 0, 0, 1)
    np.testing.assert_array_equal(dk, np.zeros((1, 4, 1, 2)))
    np.testing.assert_array_equal(db, np.zeros(2))
