"""The compiled inference plan (cconv.plan) against the layer-by-layer path: every native
node and both dtypes, fallback segments, identical results for any thread count and scheme,
buffers reused across calls, weights followed after they change."""
import tracemalloc

import numpy as np
import pytest

import cconv
from cconv import load_guard as lg
from cconv import plan as cplan
from cconv._ext import conv as _conv
from cconv.layers import (
    Activation,
    AveragePooling2D,
    BatchNormalization,
    Conv2D,
    Dense,
    Dropout,
    Flatten,
    Input,
    MaxPooling2D,
    ReLU,
    Softmax,
)

from ._helpers import assert_close

DTYPES = ["float32", "float64"]


# every test here may change the thread count: conftest's fixture puts it back
pytestmark = pytest.mark.usefixtures("restore_threads")


def _model(layers, dtype):
    """A built Sequential of ``layers`` (callables taking dtype), random biases."""
    model = cconv.Sequential([make(dtype) for make in layers])
    model.build()
    rng = np.random.default_rng(7)
    for layer in model.layers:
        if getattr(layer, "bias", None) is not None:
            layer.bias[...] = rng.standard_normal(layer.bias.shape)
    return model


def _layer_path(model, x):
    model.jit_compile = False
    try:
        return model.predict_on_batch(x)
    finally:
        model.jit_compile = True


def _check(model, batches=(1, 7), threads=(1, 2, 3)):
    """Plan == layer path (to rounding), identical for every thread count; returns the plan."""
    plan = cplan.compile_plan(model)
    assert plan is not None
    for n in batches:
        x = np.random.default_rng(n).standard_normal((n,) + model.input_shape[1:])
        x = x.astype(model.dtype)
        expected = _layer_path(model, x)
        first = None
        for t in threads:
            cconv.set_num_threads(t)
            y = model.predict_on_batch(x)
            assert y.dtype == model.dtype and y.shape == expected.shape
            assert_close(y, expected, model.dtype, f"batch {n}, {t} threads")
            if first is None:
                first = y
            else:
                np.testing.assert_array_equal(y, first, err_msg=f"batch {n}, {t} threads")
    return plan


def L(cls, *args, **kw):
    return lambda dtype: cls(*args, dtype=dtype, **kw)


NODE_CASES = {
    "direct conv + relu + fused max pool": [
        L(Input, (12, 11, 1)), L(Conv2D, 6, 5, padding="same", activation="relu"),
        L(MaxPooling2D, 2), L(Flatten), L(Dense, 5, activation="softmax")],
    "grouped direct conv + tanh": [
        L(Input, (9, 9, 4)), L(Conv2D, 4, 3, groups=2, activation="tanh"), L(Flatten),
        L(Dense, 3)],
    "im2col conv, stride, dilation + fused same avg pool": [
        L(Input, (13, 12, 5)), L(Conv2D, 9, 3, strides=2, padding="same"),
        L(AveragePooling2D, 3, strides=2, padding="same"), L(Flatten), L(Dense, 4)],
    "dilated conv + sigmoid, pool after pool": [
        L(Input, (14, 14, 6)), L(Conv2D, 10, 3, dilation_rate=2, activation="sigmoid"),
        L(MaxPooling2D, 2, strides=1), L(MaxPooling2D, 2), L(Flatten), L(Dense, 3)],
    "winograd conv + relu, pointwise conv + softmax": [
        L(Input, (10, 9, 16)), L(Conv2D, 16, 3, padding="same", activation="relu"),
        L(Conv2D, 7, 1, activation="softmax")],
    "CNN activations in epilogues and as layers": [
        L(Input, (8, 8, 3)), L(Conv2D, 8, 3, activation="swish"),
        L(Conv2D, 8, 3, padding="same", activation="hard_silu"), L(Activation, "relu6"),
        L(Activation, "hard_sigmoid"), L(Flatten), L(Dense, 6, activation="elu"),
        L(Dense, 5, activation="gelu"), L(Activation, "leaky_relu"),
        L(Dense, 4, activation="silu")],
    "dense on rank-3 samples, activation layers": [
        L(Input, (5, 6)), L(Dense, 8), L(Activation, "relu"), L(Dense, 4, activation="tanh"),
        L(Flatten), L(Dense, 6), L(Softmax)],
}


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("case", list(NODE_CASES))
def test_native_nodes_match_layer_path(case, dtype):
    model = _model(NODE_CASES[case], dtype)
    plan = _check(model)
    assert plan.fallback_layers == []


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("channels", [1, 3, 6, 16, 33])
def test_pooling_equals_the_layer_path_bit_for_bit(channels, dtype):
    """Every vector width of the plan's pooling (channel counts below, at and above a vector),
    ties and NaNs: the same bits as the layers' kernels (it only selects, and sums in order)."""
    model = _model([L(Input, (9, 10, channels)), L(MaxPooling2D, 3, strides=2, padding="same"),
                    L(AveragePooling2D, 2, strides=1), L(MaxPooling2D, 2)], dtype)
    x = np.round(np.random.default_rng(channels).standard_normal((4, 9, 10, channels)), 1)
    x[x > 1.8] = np.nan
    x = x.astype(dtype)
    assert cplan.compile_plan(model) is not None
    np.testing.assert_array_equal(model.predict_on_batch(x), _layer_path(model, x))


@pytest.mark.parametrize("dtype", DTYPES)
def test_gemm_nodes_with_packed_weights_equal_the_layer_path(dtype):
    """The plan packs each GEMM's weights once per run (im2col, pointwise, Winograd's 16
    matrices, dense with a depth over one GEMM block and more columns than one block holds):
    the same bits as the layers' GEMM calls, for any batch and thread count."""
    model = _model([L(Input, (11, 10, 3)), L(Conv2D, 20, 3, activation="relu"),
                    L(Conv2D, 24, 3, padding="same"), L(Conv2D, 9, 1, activation="relu"),
                    L(Flatten), L(Dense, 700, activation="relu"), L(Dense, 5)], dtype)
    algos = [n.get("algo") for n in cplan.compile_plan(model).segments[0].native_nodes]
    assert {cplan._native.ALGOS[a] for a in ("im2col", "winograd", "pointwise")} <= set(algos)
    for n in (1, 5, 70):
        x = np.random.default_rng(n).standard_normal((n, 11, 10, 3)).astype(dtype)
        expected = _layer_path(model, x)
        for t in (1, 2):
            cconv.set_num_threads(t)
            np.testing.assert_array_equal(model.predict_on_batch(x), expected)
            np.testing.assert_array_equal(model.predict_on_batch(x), expected)   # reused


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("units", [5, 8, 16, 17, 40, 130, 260])
def test_dense_few_rows_equal_the_layer_path(dtype, units):
    """1-4 rows of a dense layer run on the plan's row kernel (vectors of columns held in
    registers, the last one moved back to end at the width; depths over one GEMM block):
    the same bits as the layers' GEMM for every width."""
    model = _model([L(Input, (300,)), L(Dense, units, activation="relu"), L(Dense, units)],
                   dtype)
    for n in (1, 3, 4):
        x = np.random.default_rng(units + n).standard_normal((n, 300)).astype(dtype)
        np.testing.assert_array_equal(model.predict_on_batch(x), _layer_path(model, x))


@pytest.mark.parametrize("dtype", DTYPES)
def test_standalone_activation_after_pool(dtype):
    model = _model([L(Input, (8, 8, 3)), L(Conv2D, 4, 3), L(MaxPooling2D, 2),
                    L(Activation, "sigmoid"), L(Flatten), L(Dense, 2), L(Activation, "tanh")],
                   dtype)
    plan = _check(model)
    kinds = [n["kind"] for n in plan.segments[0].native_nodes]
    assert kinds.count(cconv._ext.plan.KINDS["act"]) == 1      # the tanh is fused into Dense


@pytest.mark.parametrize("make", [cconv.models.lenet5, cconv.models.tutorial_cnn])
def test_models_bit_identical_across_threads(make):
    model = make(compile=False)
    _check(model, batches=(1, 7, 256))


@pytest.mark.parametrize("dtype", DTYPES)
def test_fallback_layers_run_inside_the_plan(dtype):
    # Rescaling and a ReLU with a threshold have no native node
    model = _model([L(Input, (10, 10, 2)), L(Conv2D, 8, 3, activation="relu"),
                    L(cconv.layers.Rescaling, 0.5, 0.1), L(Dropout, 0.5), L(MaxPooling2D, 2),
                    L(ReLU, threshold=0.1), L(Flatten), L(Dense, 3, activation="softmax")],
                   dtype)
    plan = _check(model)
    assert plan.fallback_layers == [model.layers[1].name, model.layers[4].name]
    assert [type(s).__name__ for s in plan.segments] == [
        "_NativeSegment", "_LayerSegment", "_NativeSegment", "_LayerSegment", "_NativeSegment"]


@pytest.mark.parametrize("dtype", DTYPES)
def test_batch_norm_and_relu_layers_are_native(dtype):
    model = _model([L(Input, (10, 10, 2)), L(Conv2D, 8, 3), L(BatchNormalization),
                    L(ReLU, negative_slope=0.1), L(Dropout, 0.5), L(MaxPooling2D, 2),
                    L(BatchNormalization), L(ReLU, 6.0), L(Flatten),
                    L(Dense, 3, activation="softmax")], dtype)
    rng = np.random.default_rng(2)
    for bn in (model.layers[1], model.layers[5]):
        bn.moving_mean[...] = rng.standard_normal(bn.moving_mean.shape)
        bn.moving_variance[...] = rng.uniform(0.5, 2, bn.moving_variance.shape)
        bn.gamma[...] = rng.uniform(0.5, 2, bn.gamma.shape)
        bn.beta[...] = rng.standard_normal(bn.beta.shape)
    plan = _check(model)
    assert plan.fallback_layers == []
    kinds = [n["kind"] for n in plan.segments[0].native_nodes]
    # the first batch norm and leaky ReLU join the convolution (and its pool); the second,
    # after the pool, is a node of its own with the ReLU6 in its epilogue
    assert kinds == [cplan._native.KINDS[k] for k in ("conv", "affine", "dense")]
    # the fold follows the layer's arrays changed in place
    model.layers[1].moving_mean[...] += 1.0
    _check(model, threads=(1, 2))


def _assert_schemes_agree(monkeypatch, model, x, threads):
    """Node by node (threads sharing each node) gives the bits of chunks by thread."""
    cconv.set_num_threads(threads)
    monkeypatch.setattr(cplan, "_SHARED_WORK", 1 << 62)       # never by layers
    model._plans = {}
    by_chunks = model.predict_on_batch(x)
    assert not cplan.get_plan(model).segments[0].native.by_layers
    monkeypatch.setattr(cplan, "_SHARED_WORK", 0)
    model._plans = {}
    by_layers = model.predict_on_batch(x)
    assert cplan.get_plan(model).segments[0].native.by_layers
    np.testing.assert_array_equal(by_layers, by_chunks)


@pytest.mark.parametrize("batch, threads", [(1, 2), (1, 3), (3, 4)])
def test_shared_scheme_equals_chunks(monkeypatch, batch, threads):
    model = cconv.models.tutorial_cnn(compile=False)
    x = np.random.default_rng(0).standard_normal((batch, 32, 32, 3)).astype(np.float32)
    _assert_schemes_agree(monkeypatch, model, x, threads)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("batch, threads, splits", [
    (1, 2, [2, 1, 2, 1]), (1, 3, [2, 1, 2, 1]), (3, 4, [4, 1, 2, 1])])
def test_winograd_split_by_channels_equals_chunks(monkeypatch, dtype, batch, threads, splits):
    """Few Winograd tiles, by layers: the output channels are split into parts, one unit of
    work each (64 channels: up to 4 parts, 48: none, 32 with tanh and no bias: 2); the same
    bits as running by chunks, which never splits."""
    model = _model([L(Input, (6, 6, 16)), L(Conv2D, 64, 3, padding="same", activation="relu"),
                    L(Conv2D, 48, 3, padding="same"),
                    L(Conv2D, 32, 3, activation="tanh", use_bias=False), L(Flatten),
                    L(Dense, 3)], dtype)
    x = np.random.default_rng(3).standard_normal((batch, 6, 6, 16)).astype(dtype)
    cconv.set_num_threads(threads)
    monkeypatch.setattr(cplan, "_SHARED_WORK", 1 << 62)       # never by layers
    by_chunks = model.predict_on_batch(x)
    native = cplan.get_plan(model).segments[0].native
    assert not native.by_layers and native.splits == [1, 1, 1, 1]
    monkeypatch.setattr(cplan, "_SHARED_WORK", 0)
    model._plans = {}
    by_layers = model.predict_on_batch(x)
    native = cplan.get_plan(model).segments[0].native
    assert native.by_layers and native.splits == splits
    np.testing.assert_array_equal(by_layers, by_chunks)
    assert_close(by_layers, _layer_path(model, x), dtype, "layer path")


@pytest.mark.skipif(cconv.isa() == "generic",
                    reason="im2col rows are read in place only with the CPU's fused multiply-add")
def test_first_convs_read_their_im2col_rows_in_place():
    """The tutorial CNN's first conv (3 channels, no padding) and LeNet-5's second read
    their im2col rows straight from their input (implicit.h): no im2col tile, no packed
    kernel; nodes of other kinds and algorithms never do."""
    images = np.random.default_rng(0).standard_normal((2, 32, 32, 3)).astype(np.float32)
    for model, x, expected in ((cconv.models.tutorial_cnn(compile=False), images, [True]),
                               (cconv.models.lenet5(compile=False),
                                images[..., :1][:, 2:30, 2:30], [True])):
        model.predict_on_batch(x)
        native = cplan.get_plan(model).segments[0].native
        nodes = cplan.get_plan(model)._nodes
        convs = [flag for node, flag in zip(nodes, native.implicit)
                 if node["kind"] == cplan._native.KINDS["conv"]
                 and node["algo"] == cplan._native.ALGOS["im2col"]]
        assert convs == expected
        assert not any(flag for node, flag in zip(nodes, native.implicit)
                       if node["kind"] != cplan._native.KINDS["conv"]
                       or node["algo"] != cplan._native.ALGOS["im2col"])


@pytest.mark.parametrize("threads", [2, 3, 4])
def test_by_layers_units_give_every_thread_work(threads):
    """By layers, a convolution's units are its tiles (or im2col rows) divided among the
    threads rounded up: with F(2x2) tiles the tutorial CNN's one image had 49 tiles in its
    second conv, so on 2 threads units of 25 (units of 24 left a third unit of 1 tile, and one
    thread did 48). Winograd tiles are m x m outputs, m by the output's size."""
    model = cconv.models.tutorial_cnn(compile=False)
    x = np.random.default_rng(0).standard_normal((1, 32, 32, 3)).astype(np.float32)
    cconv.set_num_threads(threads)
    model.predict_on_batch(x)
    native = cplan.get_plan(model).segments[0].native
    assert native.by_layers
    nodes = cplan.get_plan(model)._nodes
    for node, tile, split in zip(nodes, native.tiles, native.splits):
        if node["kind"] != cplan._native.KINDS["conv"]:
            continue
        g = node["g"]
        m = _conv.winograd_tile(g[6], g[7])
        work = (-(-g[6] // m) * -(-g[7] // m) if node["algo"] == cplan._native.ALGOS["winograd"]
                else g[6] * g[7])
        parts = max(1, threads // split)
        assert -(-work // tile) == min(parts, work), (node["algo"], work, tile, threads)


def test_stalled_node_by_node_call_backs_off_to_one_thread(monkeypatch):
    """After its first node-by-node call a batch size is timed once on one thread; later
    node-by-node calls far slower than that (STALLS in a row) send the calls to one thread
    until the back-off ends. Every call gives the same bits. The clock is a fake one."""
    model = cconv.models.tutorial_cnn(compile=False)
    x = np.random.default_rng(0).standard_normal((1, 32, 32, 3)).astype(np.float32)
    cconv.set_num_threads(2)
    monkeypatch.setattr(cplan, "_SHARED_WORK", 0)
    seg_of = lambda: cplan.get_plan(model).segments[0]  # noqa: E731
    want = model.predict_on_batch(x)
    seg = seg_of()
    assert seg.native.key == (1, 2) and seg.native.by_layers and seg.guard.probe == 1
    now, step = [100.0], [1e-4]

    def clock():
        now[0] += step[0]
        return now[0]
    seg.guard.clock = clock
    np.testing.assert_array_equal(model.predict_on_batch(x), want)   # the one-thread probe
    assert seg.native.key == (1, 1) and seg.guard.probe is None
    assert seg.guard.serial_t[1] == pytest.approx(1e-4)
    np.testing.assert_array_equal(model.predict_on_batch(x), want)   # fast: stays
    assert seg.native.key == (1, 2) and seg.guard.serial_until < 0
    step[0] = 1e-3                                          # now each call "takes" 10x
    for _ in range(lg.STALLS):                              # a lone slow call is noise
        assert seg.guard.serial_until < 0
        np.testing.assert_array_equal(model.predict_on_batch(x), want)
    assert seg.guard.serial_until > now[0]
    np.testing.assert_array_equal(model.predict_on_batch(x), want)
    assert seg.native.key == (1, 1) and not seg.native.by_layers     # backed off
    now[0] = seg.guard.serial_until
    np.testing.assert_array_equal(model.predict_on_batch(x), want)
    assert seg.native.key == (1, 2) and seg.native.by_layers         # tried again


def test_node_by_node_calls_back_off_through_the_shared_load_guard(monkeypatch):
    """A segment's threads come from a :class:`LoadGuard` with the inference settings (the
    class training uses): STALLS stalled node-by-node calls back it off to one thread, whose
    calls time the batch size anew; after the back-off node by node runs again (its first call
    not judged), backs off again while the stalls last, and stays once they end. Every call
    gives the same bits. The clock is a fake one: each read advances it by the time of the
    current call's thread count."""
    model = cconv.models.tutorial_cnn(compile=False)
    x = np.random.default_rng(0).standard_normal((1, 32, 32, 3)).astype(np.float32)
    cconv.set_num_threads(2)
    monkeypatch.setattr(cplan, "_SHARED_WORK", 0)
    want = model.predict_on_batch(x)                        # node by node: asks for a probe
    seg = cplan.get_plan(model).segments[0]
    guard = seg.guard
    assert type(guard) is lg.LoadGuard and {
        k: getattr(guard, k) for k in lg.INFERENCE} == lg.INFERENCE
    tick = {1: 1e-4, 2: 5e-5}                               # seconds per clock read

    def clock():
        clock.now += tick[seg.native.key[1]]
        return clock.now
    clock.now = 100.0
    guard.clock = clock

    def calls(count):
        used = []
        for _ in range(count):
            np.testing.assert_array_equal(model.predict_on_batch(x), want)
            used.append(seg.native.key[1])
        return used
    assert calls(5) == [1, 2, 2, 2, 2]                      # the probe, then node by node
    assert guard.serial_t[1] == pytest.approx(1e-4)
    tick.update({1: 2e-4, 2: 5e-3})                         # a busy neighbour: stalls
    assert calls(lg.STALLS + 3) == [2] * lg.STALLS + [1] * 3
    assert guard.serial_t[1] == pytest.approx(2e-4)         # timed anew on one thread
    clock.now = guard.serial_until
    assert calls(lg.STALLS + 2) == [2] * (lg.STALLS + 1) + [1]  # tried again, still stalls
    clock.now = guard.serial_until
    tick.update({1: 2e-4, 2: 1e-4})                         # the load went
    assert calls(10) == [2] * 10


def test_dense_weights_packed_only_for_enough_rows():
    """One image runs the dense layers on unpacked weights, so the plan holds no packed copy
    of them until a batch needs one; the outputs do not depend on it."""
    model = cconv.models.lenet5(compile=False)
    x = np.random.default_rng(0).standard_normal((32, 28, 28, 1)).astype(np.float32)
    one = model.predict_on_batch(x[:1])
    plan = cplan.get_plan(model)
    dense_bytes = sum(l.kernel.nbytes for l in model.layers if isinstance(l, cconv.layers.Dense))
    assert plan.buffer_bytes < dense_bytes
    many = model.predict_on_batch(x)
    assert plan.buffer_bytes > dense_bytes
    np.testing.assert_array_equal(many[:1], one)
    np.testing.assert_array_equal(model.predict_on_batch(x[:1]), one)


def test_winograd_kernel_packed_only_for_enough_tiles():
    """GEMMs of fewer tiles than one panel run on the transformed kernel itself, so the plan
    packs a Winograd layer's kernel only once a call gives it a whole panel of tiles (the
    tutorial CNN's one image never does for its third convolution: 1 tile); the outputs do
    not depend on it."""
    model = cconv.Sequential([cconv.Input((10, 10, 16)),
                              cconv.layers.Conv2D(32, 3, activation="relu")])
    x = np.random.default_rng(0).standard_normal((64, 10, 10, 16)).astype(np.float32)
    cconv.set_num_threads(1)
    one = model.predict_on_batch(x[:1])             # 4 tiles of F(4x4)
    native = cplan.get_plan(model).segments[0].native
    assert native.packed == [False]
    many = model.predict_on_batch(x)                # chunks of 8 images: 32 tiles
    assert native.packed == [True]
    np.testing.assert_array_equal(many[:1], one)
    np.testing.assert_array_equal(model.predict_on_batch(x[:1]), one)
    tutorial = cconv.models.tutorial_cnn(compile=False)
    for threads in (1, 2):
        cconv.set_num_threads(threads)
        tutorial.predict_on_batch(np.zeros((1, 32, 32, 3), np.float32))
        seg = cplan.get_plan(tutorial).segments[0]
        wino = [i for i, n in enumerate(seg.native_nodes)
                if n.get("algo") == cplan._native.ALGOS["winograd"]]
        assert [seg.native.packed[i] for i in wino] == [True, False]   # 16 tiles, 1 tile


def test_buffers_reused_across_calls():
    model = cconv.models.lenet5(compile=False)
    x = np.random.default_rng(0).standard_normal((1, 28, 28, 1)).astype(np.float32)
    model.predict_on_batch(x)
    plan = cplan.get_plan(model)
    nbytes = plan.buffer_bytes
    tracemalloc.start()
    try:
        for _ in range(200):
            model.predict_on_batch(x)
        before = tracemalloc.get_traced_memory()[0]
        for _ in range(10_000):
            model.predict_on_batch(x)
        after = tracemalloc.get_traced_memory()[0]
    finally:
        tracemalloc.stop()
    assert cplan.get_plan(model) is plan
    assert plan.buffer_bytes == nbytes
    assert after - before < 64 * 1024
    # another batch size re-plans; coming back does not grow the buffers
    model.predict_on_batch(np.repeat(x, 5, axis=0))
    grown = plan.buffer_bytes
    model.predict_on_batch(x)
    assert plan.buffer_bytes == grown


def test_plan_follows_weight_changes():
    model = cconv.models.tutorial_cnn(compile=False)        # has a Winograd layer
    x = np.random.default_rng(0).standard_normal((2, 32, 32, 3)).astype(np.float32)
    model.predict_on_batch(x)
    weights = [w * 0.5 for w in model.get_weights()]
    model.set_weights(weights)                               # in place
    assert_close(model.predict_on_batch(x), _layer_path(model, x), "float32")
    model.compile(optimizer="sgd", loss="mse")
    model.fit(x, np.zeros((2, 10), np.float32), epochs=1, verbose=0)   # repacks the weights
    assert_close(model.predict_on_batch(x), _layer_path(model, x), "float32")
    model.add(Activation("softmax"))
    model.build()
    assert_close(model.predict(x), _layer_path(model, x), "float32")


def test_opt_out(monkeypatch):
    model = cconv.models.lenet5(compile=False)
    assert cplan.get_plan(model) is not None
    model.compile(optimizer="adam", loss="mse", jit_compile=False)
    assert cplan.get_plan(model) is None
    model.jit_compile = True
    monkeypatch.setenv("CCONV_PLAN", "0")
    assert cplan.get_plan(model) is None


def test_unplannable_model_has_no_plan():
    model = _model([L(Input, (4,)), L(ReLU, threshold=0.2), L(Flatten)], "float32")
    assert cplan.compile_plan(model) is None
    x = np.ones((3, 4), np.float32)
    np.testing.assert_array_equal(model.predict(x), _layer_path(model, x))


def test_predict_batches_and_non_contiguous_input():
    model = cconv.models.lenet5(compile=False)
    x = np.random.default_rng(0).standard_normal((70, 28, 28, 2)).astype(np.float32)[..., :1]
    assert not x.flags.c_contiguous
    expected = _layer_path(model, np.ascontiguousarray(x))
    assert_close(model.predict(x, batch_size=32, verbose=0), expected, "float32")
    assert_close(model(x), expected, "float32")


def test_native_run_checks_arrays():
    model = cconv.models.lenet5(compile=False)
    x = np.zeros((2, 28, 28, 1), np.float32)
    model.predict_on_batch(x)
    native = cplan.get_plan(model).segments[0].native
    with pytest.raises(ValueError, match="expected C-contiguous"):
        native.run(x, np.empty((3, 10), np.float32))
    with pytest.raises(TypeError, match="float32"):
        native.run(x.astype(np.float64), np.empty((2, 10), np.float32))
    with pytest.raises(ValueError, match=r"\(batch,\) \+ \(28, 28, 1\)"):
        cplan.compile_plan(model)(np.zeros((2, 784), np.float32))


@pytest.mark.parametrize("dtype", DTYPES)
def test_evaluate_through_the_logits_plan(dtype):
    model = _model([L(Input, (8, 8, 1)), L(Conv2D, 4, 3, activation="relu"), L(MaxPooling2D, 2),
                    L(Flatten), L(Dense, 3, activation="softmax")], dtype)
    model.compile(optimizer="sgd", loss="categorical_crossentropy", metrics=["accuracy"])
    rng = np.random.default_rng(3)
    x = rng.standard_normal((9, 8, 8, 1)).astype(dtype)
    y = np.eye(3, dtype=dtype)[rng.integers(0, 3, 9)]
    planned = model.evaluate(x, y, batch_size=4, verbose=0)
    assert cplan.get_plan(model, logits=True) is not None
    model.jit_compile = False
    layered = model.evaluate(x, y, batch_size=4, verbose=0)
    assert_close(planned, layered, dtype)
    expected = model._forward(x, False, logits=True)          # layer by layer
    assert_close(cplan.compile_plan(model, logits=True)(x), expected, dtype)


def test_model_with_a_plan_pickles_and_takes_empty_batches():
    import pickle
    model = cconv.models.lenet5(compile=False)
    x = np.random.default_rng(0).standard_normal((2, 28, 28, 1)).astype(np.float32)
    y = model.predict_on_batch(x)
    clone = pickle.loads(pickle.dumps(model))
    np.testing.assert_array_equal(clone.predict_on_batch(x), y)
    assert model.predict(x[:0], verbose=0).shape == (0, 10)


# ----- training through the plan --------------------------------------------------------------
def _trajectory(model, x, y, jit, steps=3, batch=8):
    import pickle
    clone = pickle.loads(pickle.dumps(model))
    clone.jit_compile = jit
    losses = [float(np.ravel(clone.train_on_batch(x[i * batch:(i + 1) * batch],
                                                  y[i * batch:(i + 1) * batch]))[0])
              for i in range(steps)]
    return losses, clone.get_weights(), clone


TRAIN_CASES = {
    "lenet5 adam": (lambda dtype: cconv.models.lenet5(compile=False), "adam",
                    "categorical_crossentropy"),
    "tutorial cnn rmsprop, logits": (lambda dtype: cconv.models.tutorial_cnn(compile=False),
                                     "rmsprop", "sparse"),
    "avg pool, sigmoid, tanh, activation layer, sgd momentum": (lambda dtype: _model([
        L(Input, (9, 9, 2)), L(Conv2D, 5, 3, padding="same", activation="sigmoid"),
        L(AveragePooling2D, 2), L(Conv2D, 4, 2, activation="tanh"), L(MaxPooling2D, 2, strides=1),
        L(Flatten), L(Dense, 6), L(Activation, "relu"), L(Dense, 3, activation="softmax")],
        dtype), "sgd_momentum", "categorical_crossentropy"),
    "pool after pool, dense on rank-3 samples, mse": (lambda dtype: _model([
        L(Input, (10, 10, 3)), L(Conv2D, 6, 3, strides=2, padding="same", activation="relu"),
        L(MaxPooling2D, 2, strides=1), L(MaxPooling2D, 2, padding="same"),
        L(Dense, 5, activation="tanh"), L(Flatten), L(Dense, 4)], dtype), "adam", "mse"),
    "winograd first layer without bias, then winograd with an input gradient": (
        lambda dtype: _model([
            L(Input, (7, 9, 16)), L(Conv2D, 16, 3, padding="same", use_bias=False),
            L(Conv2D, 17, 3, activation="relu"), L(MaxPooling2D, 2), L(Flatten),
            L(Dense, 3)], dtype), "adam", "mse"),
    "dropout with rates (keras-io's MNIST convnet): the layer path's masks": (
        lambda dtype: _model([
            L(Input, (12, 12, 1)), L(Dropout, 0.2), L(Conv2D, 4, 3, activation="relu"),
            L(MaxPooling2D, 2), L(Dropout, 0.3), L(Flatten), L(Dropout, 0.5),
            L(Dense, 3, activation="softmax")], dtype), "adam", "categorical_crossentropy"),
    "dense only: every kernel gradient over the whole batch": (lambda dtype: _model([
        L(Input, (70,)), L(Dense, 130, activation="relu"), L(Dense, 9, activation="sigmoid"),
        L(Dense, 3, activation="softmax")], dtype), "adam", "categorical_crossentropy"),
}


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("case", list(TRAIN_CASES))
def test_training_trajectory_matches_layer_path(case, dtype):
    make, opt, loss = TRAIN_CASES[case]
    model = make(dtype)
    if model.dtype != dtype:
        model = cconv.Sequential.from_config(
            {**model.get_config(), "layers": [
                {**c, "config": {**c["config"], "dtype": dtype}}
                for c in model.get_config()["layers"]]})
    opt = cconv.optimizers.SGD(0.05, momentum=0.9) if opt == "sgd_momentum" else opt
    if loss == "sparse":
        loss = cconv.losses.SparseCategoricalCrossentropy(from_logits=True)
    model.compile(optimizer=opt, loss=loss)
    rng = np.random.default_rng(5)
    n, classes = 24, model.output_shape[-1]
    x = rng.standard_normal((n,) + model.input_shape[1:]).astype(dtype)
    labels = rng.integers(0, classes, n)
    y = labels if isinstance(loss, cconv.losses.SparseCategoricalCrossentropy) else \
        np.eye(classes, dtype=dtype)[labels]
    planned, w_plan, clone = _trajectory(model, x, y, True)
    assert cplan.get_train_plan(clone, clone._fused) is not None
    layered, w_layer, _ = _trajectory(model, x, y, False)
    tol = 1e-5 if dtype == "float32" else 1e-10
    np.testing.assert_allclose(planned, layered, rtol=tol)
    for a, b in zip(w_plan, w_layer):
        assert_close(a, b, dtype, "weights after training")


@pytest.mark.parametrize("name", ["lenet5", "tutorial_cnn"])
def test_training_bit_identical_across_threads(name):
    model = getattr(cconv.models, name)()
    if name == "tutorial_cnn":   # Winograd layers: kernel gradients summed transformed
        model.compile(optimizer="adam", loss="categorical_crossentropy")
    rng = np.random.default_rng(2)
    x = rng.standard_normal((24,) + model.input_shape[1:]).astype(np.float32)
    y = np.eye(10, dtype=np.float32)[rng.integers(0, 10, 24)]
    results = []
    for t in (1, 2, 3):
        cconv.set_num_threads(t)
        losses, weights, _ = _trajectory(model, x, y, True)
        results.append((losses, weights))
    for losses, weights in results[1:]:
        assert losses == results[0][0]
        for a, b in zip(weights, results[0][1]):
            np.testing.assert_array_equal(a, b)


def test_training_winograd_gradients_keep_the_exact_non_finite_values():
    """An Inf in dL/d(output) reaches the Winograd layers' gradients: the plan's transformed
    sums would turn Inf into NaN, so it reruns with the exact kernels and gives the layer
    path's Inf and NaN entries."""
    model = _model([L(Input, (6, 6, 16)), L(Conv2D, 16, 3, padding="same", activation="relu"),
                    L(Conv2D, 16, 3), L(Flatten), L(Dense, 2)], "float32")
    model.compile(optimizer="sgd", loss="mse")
    x = np.random.default_rng(3).standard_normal((16, 6, 6, 16)).astype(np.float32)
    grads = []
    for jit in (True, False):
        model.jit_compile = jit
        y = model._forward(x, True)
        assert (model._runner().train_plan is not None) == jit
        g = np.full_like(y, 0.5)
        g[3, 1] = np.inf
        model._backward(g)
        grads.append([layer.grads[k].copy() for layer in model._layers
                      for k in ("kernel", "bias") if layer.weights])
    for a, b in zip(*grads):
        assert not np.all(np.isfinite(a))
        np.testing.assert_array_equal(np.isnan(a), np.isnan(b))
        np.testing.assert_array_equal(np.isposinf(a), np.isposinf(b))
        np.testing.assert_array_equal(np.isneginf(a), np.isneginf(b))
        fin = np.isfinite(a)
        np.testing.assert_allclose(a[fin], b[fin], rtol=1e-5, atol=1e-6)


def test_training_falls_back_for_layers_without_native_training():
    model = _model([L(Input, (6, 6, 1)), L(Conv2D, 3, 3), L(BatchNormalization),
                    L(Dropout, 0.3), L(Flatten), L(Dense, 2, activation="softmax")], "float32")
    model.compile(optimizer="adam", loss="categorical_crossentropy")
    assert cplan.compile_train_plan(model, True) is None
    x = np.random.default_rng(0).standard_normal((8, 6, 6, 1)).astype(np.float32)
    history = model.fit(x, np.eye(2, dtype=np.float32)[np.arange(8) % 2], epochs=2, verbose=0)
    assert np.all(np.isfinite(history.history["loss"]))


def test_training_a_model_without_weights_runs_layer_by_layer():
    model = _model([L(Input, (4, 4, 1)), L(MaxPooling2D, 2), L(Flatten)], "float32")
    model.compile(optimizer="sgd", loss="mse")
    assert cplan.compile_train_plan(model) is None
    loss = model.train_on_batch(np.ones((2, 4, 4, 1), np.float32), np.zeros((2, 4), np.float32))
    assert np.isfinite(loss)


# ----- graph models --------------------------------------------------------------------------
def _functional_lenet(dtype="float32"):
    """The course's LeNet-5 written with the Functional API (a chain)."""
    inputs = cconv.Input((28, 28, 1), dtype=dtype)
    x = Conv2D(6, 5, padding="same", activation="relu", dtype=dtype)(inputs)
    x = MaxPooling2D(2, dtype=dtype)(x)
    x = Conv2D(16, 5, activation="relu", dtype=dtype)(x)
    x = Flatten(dtype=dtype)(MaxPooling2D(2, dtype=dtype)(x))
    x = Dense(120, activation="relu", dtype=dtype)(x)
    return cconv.Model(inputs, Dense(10, activation="softmax", dtype=dtype)(x))


def _residual():
    inputs = cconv.Input((8, 8, 2))
    x = Conv2D(4, 3, padding="same", activation="relu")(inputs)
    y = Conv2D(4, 3, padding="same")(x)
    x = cconv.layers.Add()([x, y])
    return cconv.Model(inputs, Dense(3, activation="softmax")(Flatten()(x)))


@pytest.mark.parametrize("dtype", DTYPES)
def test_functional_chain_runs_through_the_plan(dtype):
    model = _functional_lenet(dtype)
    assert [l.name for l in model.chain_layers()] == [l.name for l in model.layers[1:]]
    plan = _check(model)
    assert plan.fallback_layers == []
    assert cplan.get_plan(model) is not None


def test_functional_chain_trains_through_the_plan():
    model = _functional_lenet()
    model.compile(optimizer="adam", loss="categorical_crossentropy")
    rng = np.random.default_rng(3)
    x = rng.standard_normal((24, 28, 28, 1)).astype(np.float32)
    y = np.eye(10, dtype=np.float32)[rng.integers(0, 10, 24)]
    planned, w_plan, clone = _trajectory(model, x, y, True)
    assert cplan.get_train_plan(clone, clone._fused) is not None
    layered, w_layer, _ = _trajectory(model, x, y, False)
    np.testing.assert_allclose(planned, layered, rtol=1e-5)
    for a, b in zip(w_plan, w_layer):
        assert_close(a, b, "float32", "weights after training")
    seq = cconv.Sequential([Input((28, 28, 1))] + [
        type(l).from_config(l.get_config()) for l in model.layers[1:]])
    seq.build()
    seq.set_weights(model.get_weights())
    seq.compile(optimizer="adam", loss="categorical_crossentropy")
    as_seq, w_seq, _ = _trajectory(seq, x, y, True)
    assert as_seq == planned                       # the same plan, the same bits
    for a, b in zip(w_seq, w_plan):
        np.testing.assert_array_equal(a, b)


def test_graph_that_is_no_chain_predicts_natively_and_trains_node_by_node():
    model = _residual()
    assert model.chain_layers() is None
    plan = _check(model)
    assert plan.fallback_layers == [] and cplan.get_plan(model) is not None
    model.compile(optimizer="sgd", loss="categorical_crossentropy")
    assert cplan.compile_train_plan(model, True) is None
    x = np.random.default_rng(1).standard_normal((4, 8, 8, 2)).astype(np.float32)
    assert np.isfinite(model.train_on_batch(x, np.eye(3, dtype=np.float32)[[0, 1, 2, 0]]))


@pytest.mark.parametrize("make", [_functional_lenet, _residual])
def test_graph_model_pickles(make):
    import pickle
    model = make()
    x = np.random.default_rng(0).standard_normal((2,) + model.input_shape[1:])
    x = x.astype(np.float32)
    y = model.predict(x, verbose=0)
    clone = pickle.loads(pickle.dumps(model))
    np.testing.assert_array_equal(clone.predict(x, verbose=0), y)


# ----- graph plans ------------------------------------------------------------------------------
def _randomize_batch_norms(model, seed=5):
    """Moving statistics, gamma and beta away from their initial values (a fold of the
    initial ones is nearly the identity)."""
    rng = np.random.default_rng(seed)
    for bn in model.layers:
        if isinstance(bn, BatchNormalization):
            c = bn.moving_mean.shape
            bn.moving_mean[...] = rng.standard_normal(c) * 0.3
            bn.moving_variance[...] = rng.uniform(0.5, 2.0, c)
            bn.gamma[...] = rng.uniform(0.5, 1.5, c)
            bn.beta[...] = rng.standard_normal(c) * 0.3


def _kinds(plan):
    names = {v: k for k, v in cplan._native.KINDS.items()}
    return [names[n["kind"]] for s in plan.segments if hasattr(s, "native_nodes")
            for n in s.native_nodes]


def _resnet_block(dtype="float32"):
    layers = cconv.layers
    inputs = cconv.Input((12, 12, 4), dtype=dtype)
    x = Conv2D(8, 3, padding="same", use_bias=False, dtype=dtype)(inputs)
    x = BatchNormalization(dtype=dtype)(x)
    x = ReLU(dtype=dtype)(x)
    y = Conv2D(8, 3, strides=2, padding="same", dtype=dtype)(x)
    y = BatchNormalization(dtype=dtype)(y)
    y = ReLU(dtype=dtype)(y)
    y = Conv2D(8, 3, padding="same", dtype=dtype)(y)
    y = BatchNormalization(dtype=dtype)(y)
    s = Conv2D(8, 1, strides=2, dtype=dtype)(x)
    s = BatchNormalization(dtype=dtype)(s)
    x = layers.Add(dtype=dtype)([y, s])
    x = Activation("relu", dtype=dtype)(x)
    x = layers.GlobalAveragePooling2D(dtype=dtype)(x)
    model = cconv.Model(inputs, Dense(5, activation="softmax", dtype=dtype)(x))
    _randomize_batch_norms(model)
    return model


@pytest.mark.parametrize("dtype", DTYPES)
def test_residual_network_runs_as_one_native_segment(dtype):
    model = _resnet_block(dtype)
    plan = _check(model, batches=(1, 7, 40))
    assert plan.fallback_layers == [] and len(plan.segments) == 1
    # every batch norm folded into its convolution, the Add (+ ReLU) into the epilogue of
    # the convolution that runs later
    assert _kinds(plan) == ["conv", "conv", "conv", "conv", "gpool", "dense"]
    assert sum(n["res"] != cplan._native.NONE for n in plan.segments[0].native_nodes) == 1


def test_residual_network_by_layers_equals_by_chunks(monkeypatch):
    x = np.random.default_rng(4).standard_normal((1, 12, 12, 4)).astype(np.float32)
    _assert_schemes_agree(monkeypatch, _resnet_block(), x, 2)


@pytest.mark.parametrize("dtype", DTYPES)
def test_depthwise_separable_network_with_zero_padding_is_native(dtype):
    layers = cconv.layers
    model = _model([L(Input, (17, 17, 3)), L(Conv2D, 8, 3, strides=2, padding="same"),
                    L(BatchNormalization), L(ReLU, 6.0),
                    L(layers.ZeroPadding2D, ((0, 1), (0, 1))),
                    L(layers.DepthwiseConv2D, 3, strides=2, use_bias=False),
                    L(BatchNormalization), L(ReLU, 6.0),
                    L(Conv2D, 16, 1, use_bias=False), L(BatchNormalization),
                    L(Activation, "relu"),
                    L(layers.DepthwiseConv2D, 3, padding="same", depth_multiplier=2),
                    L(layers.ZeroPadding2D, 1),
                    L(layers.SeparableConv2D, 8, 3, strides=2, depth_multiplier=2,
                      activation="relu"),
                    L(BatchNormalization),
                    L(layers.GlobalMaxPooling2D), L(Dense, 4)], dtype)
    _randomize_batch_norms(model)
    plan = _check(model, batches=(1, 5, 33))
    assert plan.fallback_layers == []
    # the separable convolution: its depthwise and pointwise halves; the last batch norm
    # after its relu is a node of its own
    assert _kinds(plan) == ["conv"] * 6 + ["affine", "gpool", "dense"]


def _merges(dtype):
    layers = cconv.layers
    inputs = cconv.Input((6, 6, 3), dtype=dtype)
    a = Conv2D(4, 3, padding="same", activation="elu", dtype=dtype)(inputs)
    b = Conv2D(4, 1, activation="tanh", dtype=dtype)(inputs)
    c = Conv2D(4, 3, padding="same", activation="gelu", dtype=dtype)(inputs)
    bn = BatchNormalization(dtype=dtype)(inputs)          # a batch norm of its own
    d = Conv2D(4, 1, dtype=dtype)(bn)
    merged = [layers.Subtract(dtype=dtype)([a, b]), layers.Multiply(dtype=dtype)([a, c]),
              layers.Average(dtype=dtype)([a, b, c]), layers.Maximum(dtype=dtype)([b, c, d]),
              layers.Minimum(dtype=dtype)([a, d]), layers.Add(dtype=dtype)([a, b, c])]
    x = layers.Concatenate(dtype=dtype)(merged + [d])
    x = cconv.layers.LeakyReLU(0.2, dtype=dtype)(x)
    x = layers.Concatenate(dtype=dtype)([layers.GlobalAveragePooling2D(dtype=dtype)(x),
                                         layers.GlobalMaxPooling2D(dtype=dtype)(x)])
    model = cconv.Model(inputs, Dense(3, activation="sigmoid", dtype=dtype)(x))
    _randomize_batch_norms(model)
    return model


@pytest.mark.parametrize("dtype", DTYPES)
def test_merges_concatenations_and_global_pools_are_native(dtype):
    model = _merges(dtype)
    plan = _check(model, batches=(1, 6))
    assert plan.fallback_layers == []
    kinds = _kinds(plan)
    assert kinds.count("merge") == 6 and kinds.count("concat") == 2
    assert kinds.count("affine") == 1 and kinds.count("gpool") == 2


def test_nested_models_are_inlined():
    inner = _model([L(Input, (8, 8, 4)), L(Conv2D, 4, 3, padding="same"),
                    L(BatchNormalization)], "float32")
    inputs = cconv.Input((8, 8, 4))
    x = cconv.layers.Add()([inner(inputs), inputs])
    x = cconv.layers.Flatten()(cconv.layers.ReLU()(x))
    model = cconv.Model(inputs, Dense(2)(x))
    _randomize_batch_norms(inner)
    plan = _check(model)
    assert plan.fallback_layers == []
    assert _kinds(plan) == ["conv", "dense"]         # the Add's other operand: the input


def test_a_branch_without_native_nodes_splits_the_graph_where_one_tensor_is_live():
    inputs = cconv.Input((8, 8, 2))
    x = Conv2D(4, 3, padding="same", activation="relu")(inputs)
    y = cconv.layers.Rescaling(2.0)(x)                         # no native node
    z = Conv2D(4, 3, padding="same")(x)
    x = cconv.layers.Add()([y, z])                             # a piece with Rescaling
    x = Conv2D(4, 3, activation="relu")(x)
    model = cconv.Model(inputs, Dense(3)(Flatten()(x)))
    plan = _check(model)
    assert [type(s).__name__ for s in plan.segments] == [
        "_NativeSegment", "_LayerSegment", "_NativeSegment"]
    assert sorted(plan.fallback_layers) == sorted(l.name for l in model.layers[2:5])


def test_several_inputs_run_layer_by_layer():
    a, b = cconv.Input((4,)), cconv.Input((4,))
    model = cconv.Model([a, b], Dense(2)(cconv.layers.Add()([a, b])))
    assert cplan.compile_plan(model) is None


@pytest.mark.parametrize("threads", [2, 3])
def test_depthwise_rows_shared_by_threads_equal_whole_images(monkeypatch, threads):
    """One image node by node: a depthwise layer's output rows are cut into a block per
    thread (dwconv.h's row entry point), with the whole image's bits."""
    layers = cconv.layers
    model = _model([L(Input, (19, 17, 24)), L(layers.DepthwiseConv2D, 3, padding="same"),
                    L(BatchNormalization), L(ReLU, 6.0),
                    L(layers.DepthwiseConv2D, 3, strides=2, depth_multiplier=2,
                      activation="relu"), L(Conv2D, 8, 1)], "float32")
    _randomize_batch_norms(model)
    x = np.random.default_rng(8).standard_normal((1, 19, 17, 24)).astype(np.float32)
    _assert_schemes_agree(monkeypatch, model, x, threads)
    seg = cplan.compile_plan(model).segments[0]
    native = seg._make_native()         # prepared here: the load guard may not pick threads
    native.prepare(1, threads, 1, True)
    assert native.splits[:2] == [threads, threads]
    y = np.empty((1,) + seg.out_shape, np.float32)
    cconv.set_num_threads(threads)
    native.run(x, y)
    cconv.set_num_threads(1)
    np.testing.assert_array_equal(y, model.predict_on_batch(x))
    assert_close(y, _layer_path(model, x), "float32")
