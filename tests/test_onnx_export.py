"""ONNX export (``model.export(path, format="onnx")``, issue 32 item 6): the file runs in ONNX
Runtime (and OpenVINO where installed) and gives cconv's predictions, for the networks in
examples/ and ``cconv.models`` and for small models covering every exported layer, activation
and padding case; what has no ONNX form is refused by name.

Tolerance: ``assert_close`` (float32: 1e-5 of the outputs' magnitude; float64: 1e-10).
"""
import importlib.util
import math
import os
import sys

import numpy as np
import pytest

import cconv
from cconv import layers as L
from cconv.activations import Activation as ActivationFn
from tests._helpers import assert_close

onnx = pytest.importorskip("onnx", reason='the onnx package is needed (pip install "cconv[onnx]")')
ort = pytest.importorskip("onnxruntime", reason="ONNX Runtime is needed to run exported files")

from cconv.saving import onnx_export  # noqa: E402  (after the skips: it needs onnx)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


# ----- helpers ---------------------------------------------------------------------------------
def _example(name):
    """A module of examples/ (not a package), loaded from its file."""
    spec = importlib.util.spec_from_file_location(f"example_{name}",
                                                  os.path.join(ROOT, "examples", name + ".py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _randomize(model, seed=0):
    """Non-trivial weights everywhere (biases and BatchNorm statistics included)."""
    rng = np.random.default_rng(seed)
    for layer in model.layers:
        ws = layer.get_weights()
        if not ws:
            continue
        new = [rng.normal(0, 0.5, w.shape).astype(w.dtype) for w in ws]
        if isinstance(layer, L.BatchNormalization):
            new[-1] = rng.uniform(0.5, 1.5, ws[-1].shape).astype(ws[-1].dtype)
        layer.set_weights(new)
    return model


def _inputs(model, batch=3, seed=1):
    rng = np.random.default_rng(seed)
    return [rng.normal(0, 1, (batch,) + tuple(t.shape[1:])).astype(model.dtype)
            for t in model.inputs]


def _run_file(path, names, xs):
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    assert [i.name for i in sess.get_inputs()] == list(names)
    return sess.run(None, dict(zip(names, xs)))


def _check(model, tmp_path, batch=3, seed=1, dtype=None, **kwargs):
    """Export ``model``, run the file in ONNX Runtime on random inputs and compare with
    ``predict``; returns the file's path."""
    path = tmp_path / f"{model.name}.onnx"
    model.export(path, format="onnx", dtype=dtype, **kwargs)
    xs = _inputs(model, batch, seed)
    want = model.predict(xs if len(xs) > 1 else xs[0], verbose=0)
    want = want if isinstance(want, list) else [want]
    got = _run_file(path, model.input_names, [x.astype(dtype or model.dtype) for x in xs])
    assert len(got) == len(want)
    for i, (a, b) in enumerate(zip(got, want)):
        assert a.dtype == np.dtype(dtype or model.dtype)
        assert_close(a, b, dtype or model.dtype, f"{model.name} output {i}")
    return path


def _chain(input_shape, *layers, name=None, dtype="float32"):
    model = cconv.Sequential([L.Input(input_shape, dtype=dtype), *layers], name=name)
    model.build()
    return _randomize(model)


def _ops(path):
    return [n.op_type for n in onnx.load(str(path)).graph.node]


# ----- the networks of examples/ and cconv.models ----------------------------------------------
@pytest.mark.parametrize("make", [
    lambda: cconv.models.lenet5(),
    lambda: cconv.models.tutorial_cnn(),
    lambda: _example("course_lenet5").lenet5(cconv.Input(shape=(28, 28, 1))),
    lambda: _example("residual_mnist").resnet(),
], ids=["lenet5", "tutorial_cnn", "examples/course_lenet5", "examples/residual_mnist"])
def test_example_networks_trained_then_exported_agree_with_predict(make, tmp_path):
    model = make()
    rng = np.random.default_rng(0)
    x = rng.random((16,) + model.input_shape[1:], dtype=np.float32)
    classes = model.output_shape[-1]
    y = np.eye(classes, dtype=np.float32)[rng.integers(0, classes, 16)]
    if model.name == "tutorial_cnn":
        y = y.argmax(1)
    model.fit(x, y, batch_size=8, epochs=1, verbose=0)        # trained in cconv, then served
    path = _check(model, tmp_path, batch=5)
    # one transpose in (NHWC -> NCHW), one back before Flatten (none after a global pool)
    assert _ops(path).count("Transpose") == (1 if model.name == "resnet_mini" else 2)


def test_lenet5_graph_is_nchw_inside_and_nhwc_at_the_ends(tmp_path):
    model = cconv.models.lenet5(compile=False)
    path = tmp_path / "lenet.onnx"
    model.export(path)
    proto = onnx.load(str(path))
    assert [o.version for o in proto.opset_import] == [17]
    assert proto.ir_version == onnx.helper.find_min_ir_version_for(proto.opset_import)
    assert _ops(path) == ["Transpose", "Conv", "Relu", "MaxPool", "Conv", "Relu", "MaxPool",
                          "Transpose", "Flatten", "Gemm", "Relu", "Gemm", "Relu", "Gemm",
                          "Softmax", "Identity"]
    dims = [[d.dim_param or d.dim_value for d in v.type.tensor_type.shape.dim]
            for v in (proto.graph.input[0], proto.graph.output[0])]
    assert dims == [["batch", 28, 28, 1], ["batch", 10]]
    assert proto.graph.input[0].name == model.input_names[0]
    assert proto.graph.output[0].name == model.output_names[0]
    # the batch axis is symbolic: one file serves any batch size
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    for n in (1, 7):
        x = np.random.default_rng(n).random((n, 28, 28, 1), dtype=np.float32)
        assert_close(sess.run(None, {model.input_names[0]: x})[0],
                     model.predict(x, verbose=0), np.float32, f"batch {n}")


# ----- every layer -----------------------------------------------------------------------------
CONV_CASES = {
    # "same" on odd sizes with stride 2: the extra padded row/column goes after (asymmetric)
    "conv_same_stride2": ((11, 13, 3), lambda: L.Conv2D(4, 3, strides=2, padding="same")),
    "conv_same_even_kernel": ((9, 10, 2), lambda: L.Conv2D(3, (4, 2), padding="same")),
    "conv_valid_strides_2x1": ((10, 9, 3), lambda: L.Conv2D(5, (3, 2), strides=(2, 1))),
    "conv_dilated_same": ((12, 11, 2), lambda: L.Conv2D(3, 3, dilation_rate=(2, 3),
                                                         padding="same", activation="tanh")),
    "conv_groups": ((8, 8, 6), lambda: L.Conv2D(4, 3, groups=2, padding="same",
                                                 activation="relu")),
    "conv_no_bias_1x1": ((7, 7, 5), lambda: L.Conv2D(6, 1, use_bias=False)),
    "depthwise": ((9, 11, 3), lambda: L.DepthwiseConv2D(3, strides=2, padding="same",
                                                         depth_multiplier=2)),
    "depthwise_dilated": ((12, 12, 4), lambda: L.DepthwiseConv2D(3, dilation_rate=2,
                                                                  activation="relu")),
    "separable": ((10, 9, 3), lambda: L.SeparableConv2D(5, 3, padding="same", strides=2,
                                                         depth_multiplier=2)),
    "separable_valid_no_bias": ((8, 8, 2), lambda: L.SeparableConv2D(4, (3, 2), use_bias=False,
                                                                      activation="sigmoid")),
    "transpose_valid": ((5, 6, 3), lambda: L.Conv2DTranspose(4, 3)),
    "transpose_same_stride2": ((5, 6, 3), lambda: L.Conv2DTranspose(4, 3, strides=2,
                                                                     padding="same")),
    "transpose_even_kernel_stride2": ((4, 5, 2), lambda: L.Conv2DTranspose(3, 4, strides=2,
                                                                            padding="same")),
    "transpose_valid_stride3_k2": ((4, 4, 2), lambda: L.Conv2DTranspose(3, 2, strides=3)),
    "transpose_output_padding": ((4, 5, 2), lambda: L.Conv2DTranspose(
        3, 3, strides=2, padding="valid", output_padding=1)),
    "transpose_same_output_padding": ((4, 5, 2), lambda: L.Conv2DTranspose(
        3, (3, 4), strides=(2, 3), padding="same", output_padding=(1, 2))),
    "transpose_dilated": ((5, 5, 2), lambda: L.Conv2DTranspose(2, 3, dilation_rate=2,
                                                                padding="same")),
}


@pytest.mark.parametrize("case", sorted(CONV_CASES))
def test_convolutions(case, tmp_path):
    shape, make = CONV_CASES[case]
    _check(_chain(shape, make(), name=case), tmp_path)


POOL_CASES = {
    "max_valid": lambda: L.MaxPooling2D(2),
    "max_same_overlapping": lambda: L.MaxPooling2D(3, strides=2, padding="same"),
    "max_same_strides_1x2": lambda: L.MaxPooling2D((2, 3), strides=(1, 2), padding="same"),
    "avg_valid": lambda: L.AveragePooling2D((3, 2), strides=(2, 1)),
    "avg_same_counts_real_cells": lambda: L.AveragePooling2D(3, strides=2, padding="same"),
    "avg_same_even": lambda: L.AveragePooling2D(2, padding="same"),
    "global_avg": lambda: L.GlobalAveragePooling2D(),
    "global_max": lambda: L.GlobalMaxPooling2D(),
    "global_avg_keepdims": lambda: L.GlobalAveragePooling2D(keepdims=True),
    "global_max_keepdims": lambda: L.GlobalMaxPooling2D(keepdims=True),
}


@pytest.mark.parametrize("case", sorted(POOL_CASES))
def test_pooling(case, tmp_path):
    _check(_chain((9, 11, 3), POOL_CASES[case](), name=case), tmp_path)


SHAPE_CASES = {
    "zero_padding": ((5, 6, 2), lambda: [L.ZeroPadding2D(((1, 2), (0, 3)))]),
    "zero_padding_after_conv": ((5, 6, 2), lambda: [L.Conv2D(3, 3), L.ZeroPadding2D(2)]),
    "cropping": ((8, 9, 2), lambda: [L.Cropping2D(((1, 2), (3, 0)))]),
    "cropping_after_conv": ((8, 9, 2), lambda: [L.Conv2D(3, 1), L.Cropping2D(1)]),
    "upsampling_nearest": ((4, 5, 3), lambda: [L.UpSampling2D((2, 3))]),
    "upsampling_bilinear": ((4, 5, 3), lambda: [L.UpSampling2D((2, 3),
                                                               interpolation="bilinear")]),
    "upsampling_bilinear_3": ((5, 3, 2), lambda: [L.UpSampling2D(3, interpolation="bilinear")]),
    "rescaling": ((4, 4, 3), lambda: [L.Rescaling(1 / 255, offset=-0.5)]),
    "rescaling_per_channel": ((4, 4, 3), lambda: [L.Conv2D(3, 1), L.Rescaling(
        [0.5, 2.0, -1.0], offset=[0.1, 0.2, 0.3])]),
    "rescaling_identity": ((4, 4, 3), lambda: [L.Rescaling(1.0)]),
    "permute": ((4, 5, 3), lambda: [L.Permute((3, 1, 2)), L.Flatten(), L.Dense(4)]),
    "reshape": ((4, 6, 2), lambda: [L.Conv2D(4, 3, padding="same"), L.Reshape((8, -1)),
                                    L.Dense(3)]),
    "reshape_to_image": ((24,), lambda: [L.Reshape((2, 3, 4)), L.Conv2D(2, 2)]),
    "flatten_dropout_dense": ((6, 6, 2), lambda: [L.Conv2D(3, 3), L.Dropout(0.5), L.Flatten(),
                                                  L.Dropout(0.2), L.Dense(5)]),
    "dense_on_images": ((4, 5, 3), lambda: [L.Dense(6, activation="relu"), L.Conv2D(2, 3)]),
    "batchnorm_images": ((6, 7, 3), lambda: [L.Conv2D(4, 3), L.BatchNormalization(),
                                             L.ReLU()]),
    "batchnorm_vectors": ((10,), lambda: [L.Dense(6), L.BatchNormalization(epsilon=0.01,
                                                                          center=False)]),
    "batchnorm_no_scale": ((5, 5, 2), lambda: [L.BatchNormalization(scale=False)]),
}


@pytest.mark.parametrize("case", sorted(SHAPE_CASES))
def test_shape_and_normalization_layers(case, tmp_path):
    shape, make = SHAPE_CASES[case]
    _check(_chain(shape, *make(), name=case), tmp_path)


@pytest.mark.parametrize("act", ["linear", "relu", "sigmoid", "tanh", "softmax", "leaky_relu",
                                 "elu", "gelu", cconv.activations.get({
                                     "class_name": "gelu", "config": {"approximate": True}}),
                                 cconv.activations.get({"class_name": "leaky_relu",
                                                        "config": {"negative_slope": 0.05}}),
                                 cconv.activations.get({"class_name": "elu",
                                                        "config": {"alpha": 0.7}})],
                         ids=str)
def test_activations_after_conv_dense_and_as_layers(act, tmp_path):
    """Each activation fused in Conv2D (NCHW inside: softmax over axis 1), in Dense (2-D),
    and as an Activation layer on NHWC images."""
    model = _chain((6, 5, 3), L.Conv2D(4, 3, activation=act), L.Activation(act), L.Flatten(),
                   L.Dense(5, activation=act), L.Reshape((5, 1, 1)), L.Activation(act),
                   name="acts")
    _check(model, tmp_path)


@pytest.mark.parametrize("layer", [
    lambda: L.ReLU(), lambda: L.ReLU(max_value=0.5), lambda: L.ReLU(negative_slope=0.1),
    lambda: L.ReLU(threshold=0.3), lambda: L.ReLU(max_value=1.0, negative_slope=0.2,
                                                  threshold=-0.4),
    lambda: L.LeakyReLU(), lambda: L.LeakyReLU(0.01), lambda: L.Softmax(),
], ids=["relu", "max_value", "negative_slope", "threshold", "all", "leaky", "leaky_0.01",
        "softmax"])
def test_relu_family_layers(layer, tmp_path):
    _check(_chain((5, 5, 3), L.Conv2D(3, 2), layer(), name="relu_family"), tmp_path)


def _fake_activation(name, formula):
    """An activation object named like Keras 3's (the exporter maps activations by name), with
    Keras's formula, for the names cconv.activations does not define (yet)."""
    cls = type(f"_{name}", (ActivationFn,), {"name": name,
                                             "_forward": lambda self, z, out: formula(z)})
    return cls()


def _sigmoid(z):
    return 1 / (1 + np.exp(-z))


KERAS_FORMULAS = {
    "selu": lambda z: 1.0507009873554805 * np.where(z > 0, z, 1.6732632423543772 * np.expm1(z)),
    "swish": lambda z: z * _sigmoid(z),
    "silu": lambda z: z * _sigmoid(z),
    "relu6": lambda z: np.clip(z, 0, 6),
    "hard_sigmoid": lambda z: np.clip(z + 3, 0, 6) / 6,
    "hard_silu": lambda z: z * np.clip(z + 3, 0, 6) / 6,
    "softplus": lambda z: np.logaddexp(z, 0),
    "softsign": lambda z: z / (1 + np.abs(z)),
    "exponential": np.exp,
}


@pytest.mark.parametrize("name", sorted(KERAS_FORMULAS))
def test_keras_activations_known_by_name(name, tmp_path):
    act = _fake_activation(name, lambda z: KERAS_FORMULAS[name](z).astype(z.dtype))
    model = _chain((5, 4, 2), L.Conv2D(3, 2), L.Activation(act), name=name)
    x = _inputs(model)[0] * 4
    path = tmp_path / "act.onnx"
    model.export(path)
    got = _run_file(path, model.input_names, [x])[0]
    assert_close(got, model.predict(x, verbose=0), np.float32, name)


def test_graph_with_several_inputs_outputs_shared_layers_and_every_merge(tmp_path):
    a = cconv.Input((8, 8, 3), name="image_a")
    b = cconv.Input((8, 8, 3), name="image_b")
    v = cconv.Input((4,), name="vector")
    shared = L.Conv2D(4, 3, padding="same", activation="relu", name="shared_conv")
    fa, fb = shared(a), shared(b)                               # one layer, two nodes
    s = L.Add(name="add")([fa, fb, fa])
    d = L.Subtract(name="sub")([fa, fb])
    m = L.Multiply(name="mul")([s, d])
    avg = L.Average(name="avg")([s, d, m])
    mx = L.Maximum(name="max")([fa, fb, avg])
    mn = L.Minimum(name="min")([mx, d])
    gate = L.Dense(4, activation="sigmoid", name="gate")(v)     # (N, 4) * (N, 8, 8, 4)
    se = L.Multiply(name="squeeze_excite")([mn, gate])
    se = L.Add(name="bias_map")([se, L.Dense(4, name="bias_vec")(v)])
    cat_c = L.Concatenate(name="cat_channels")([se, fa, b])
    cat_h = L.Concatenate(axis=1, name="cat_height")([se, mn])  # NHWC axis 1 = NCHW axis 2
    pooled = L.MaxPooling2D(name="pool")(cat_h)
    head = L.Dense(3, name="head")                              # shared on two branches
    out1 = head(L.GlobalAveragePooling2D(name="gap")(cat_c))
    out2 = head(L.GlobalMaxPooling2D(name="gmp")(L.Conv2D(11, 1, name="conv2")(pooled)))
    cat_w = L.Concatenate(axis=2, name="cat_width")([pooled, pooled])
    model = cconv.Model([a, b, v], [out1, L.Softmax(name="probs")(out2), cat_w, fa],
                        name="graph")
    _randomize(model)
    path = _check(model, tmp_path, batch=4)
    proto = onnx.load(str(path))
    assert [i.name for i in proto.graph.input] == ["image_a", "image_b", "vector"]
    assert len(proto.graph.output) == 4
    # shared layers: each weight stored once
    names = [i.name for i in proto.graph.initializer]
    assert sum(n.startswith("shared_conv/kernel") for n in names) == 1
    assert sum(n.startswith("head/kernel") for n in names) == 1


def test_output_that_is_also_an_input_and_repeated_outputs(tmp_path):
    x = cconv.Input((3, 3, 2), name="x")
    y = L.Conv2D(2, 1, name="c")(x)
    model = _randomize(cconv.Model(x, [y, x, y], name="passthrough"))
    _check(model, tmp_path)


class Subclassed(cconv.Model):
    def __init__(self):
        super().__init__(name="subclassed")
        self.conv = L.Conv2D(3, 3, padding="same", activation="relu")
        self.flat = L.Flatten()
        self.head = L.Dense(2)

    def call(self, x):
        return self.head(self.flat(self.conv(x)))


def test_subclassed_and_not_yet_built_models(tmp_path):
    model = Subclassed()
    model.build((5, 5, 2))
    _check(_randomize(model), tmp_path)
    seq = cconv.Sequential([L.Input((5, 5, 2)), L.Conv2D(2, 3)], name="unbuilt")
    assert not seq.built
    _check(seq, tmp_path)                 # built from its declared input shape
    seq = cconv.Sequential([L.Conv2D(2, 3)], name="built_on_data")
    seq.predict(np.zeros((1, 4, 4, 1), np.float32), verbose=0)
    _check(seq, tmp_path)


def test_float64_model_runs_in_ort_where_it_has_double_kernels(tmp_path):
    """ONNX Runtime's CPU provider runs Gemm, MatMul, MaxPool, Relu, Sigmoid, Tanh, Softmax,
    LeakyRelu, Where, Pad, Slice, Transpose, Add/Mul/Max/Min... in float64."""
    f64 = dict(dtype="float64")
    model = _chain((6, 5, 2), L.MaxPooling2D(2, padding="same", **f64), L.Flatten(**f64),
                   L.Dense(8, activation="tanh", **f64), L.BatchNormalization(**f64),
                   L.Dense(6, activation="relu", **f64), L.Dense(3, activation="softmax", **f64),
                   name="f64", dtype="float64")
    assert model.dtype == np.float64
    _check(model, tmp_path)
    a = cconv.Input((6, 5, 2), dtype="float64")
    v = cconv.Input((2,), dtype="float64")
    h = L.ZeroPadding2D(1, **f64)(a)
    h = L.Rescaling([1.0, 2.0], offset=0.5, **f64)(L.Cropping2D(1, **f64)(h))
    h = L.Multiply(**f64)([L.MaxPooling2D(2, **f64)(h), L.Dense(2, activation="sigmoid",
                                                              **f64)(v)])
    for merge in (L.Add, L.Subtract, L.Average, L.Maximum, L.Minimum, L.Concatenate):
        h = merge(**f64)([h, L.LeakyReLU(**f64)(h)])
    h = L.Reshape((-1,), **f64)(L.Permute((2, 1, 3), **f64)(h))
    h = L.ReLU(max_value=1.0, threshold=0.1, negative_slope=0.1, **f64)(h)
    out = L.Dense(3, activation="softmax", **f64)(L.Dropout(0.5, **f64)(h))
    _check(_randomize(cconv.Model([a, v], out, name="f64_graph")), tmp_path)


def test_float64_conv_model_graph_matches_onnx_reference_and_float32_copy_runs(tmp_path):
    """A float64 graph with Conv, pools, Resize, Elu: valid ONNX, equal to cconv within
    float64 rounding in the onnx package's reference evaluator (not gelu: that evaluator's Erf
    rounds to float32); ONNX Runtime (no float64 Conv kernel) runs the float32 copy written
    with dtype="float32"."""
    from onnx.reference import ReferenceEvaluator
    f64 = dict(dtype="float64")
    model = _chain((7, 6, 2),
                   L.Conv2D(3, 3, padding="same", strides=2, activation="elu", **f64),
                   L.BatchNormalization(**f64), L.UpSampling2D(2, interpolation="bilinear", **f64),
                   L.DepthwiseConv2D(2, **f64), L.AveragePooling2D(2, padding="same", **f64),
                   L.Conv2DTranspose(2, 3, strides=2, padding="same", **f64),
                   L.GlobalAveragePooling2D(**f64), L.Dense(3, **f64), name="f64conv",
                   dtype="float64")
    path = tmp_path / "f64.onnx"
    model.export(path)
    x = _inputs(model)[0]
    got = ReferenceEvaluator(str(path)).run(None, {model.input_names[0]: x})[0]
    assert got.dtype == np.float64
    assert_close(got, model.predict(x, verbose=0), np.float64, "float64 reference")
    _check(model, tmp_path, dtype="float32")
    assert onnx.load(str(tmp_path / "f64conv.onnx")).graph.input[0].type.tensor_type \
        .elem_type == onnx.TensorProto.FLOAT


@pytest.mark.parametrize("opset", [13, 17, 21])
def test_opsets(opset, tmp_path):
    if opset > 21 or opset > onnx.defs.onnx_opset_version():
        pytest.skip("opset newer than the installed onnx")
    model = _chain((9, 8, 3), L.Conv2D(4, 3, padding="same", activation="gelu"),
                   L.UpSampling2D(2, interpolation="bilinear"), L.ZeroPadding2D(1),
                   L.Cropping2D(2), L.AveragePooling2D(3, 2, padding="same"),
                   L.GlobalAveragePooling2D(keepdims=True), L.Reshape((4,)),
                   L.Dense(2, activation="softmax"), name=f"opset{opset}")
    path = _check(model, tmp_path, opset_version=opset)
    assert [o.version for o in onnx.load(str(path)).opset_import] == [opset]


# ----- refusals and file handling --------------------------------------------------------------
class KerasStyle(L.Layer):
    def call(self, x):
        return 2 * x


class MyDense(L.Dense):
    def forward(self, x, training=False):
        return super().forward(x, training) * 2


@pytest.mark.parametrize("make, cls", [
    (lambda: KerasStyle(name="doubler"), "KerasStyle"),
    (lambda: MyDense(3, name="doubler"), "MyDense"),
])
def test_layer_without_onnx_form_is_refused_by_name_and_nothing_written(make, cls, tmp_path):
    x = cconv.Input((4,))
    model = cconv.Model(x, L.Dense(2)(make()(x)))
    path = tmp_path / "m.onnx"
    path.write_bytes(b"old")
    with pytest.raises(ValueError, match=rf"'doubler' \({cls}\) has no ONNX form"):
        model.export(path)
    assert path.read_bytes() == b"old"                  # untouched
    assert [p.name for p in tmp_path.iterdir()] == ["m.onnx"]  # no temporary file left


def test_unknown_activation_is_refused_by_name(tmp_path):
    act = _fake_activation("mystery", lambda z: z)
    model = _chain((4,), L.Dense(3, activation=act, name="d"))
    with pytest.raises(ValueError, match=r"'d' \(Dense\): activation 'mystery'"):
        model.export(tmp_path / "m.onnx")


def test_bad_arguments(tmp_path):
    model = cconv.models.lenet5(compile=False)
    with pytest.raises(ValueError, match=r"format must be one of \['onnx'\].*tf_saved_model"):
        model.export(tmp_path / "m", format="tf_saved_model")
    with pytest.raises(TypeError, match="input_signature"):
        model.export(tmp_path / "m.onnx", input_signature=[1])
    with pytest.raises(ValueError, match="opset_version must be an int from 13"):
        model.export(tmp_path / "m.onnx", opset_version=11)
    with pytest.raises(ValueError, match="dtype must be"):
        model.export(tmp_path / "m.onnx", dtype="int8")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        model.export(tmp_path / "missing" / "m.onnx")
    with pytest.raises(TypeError, match="filepath"):
        model.export(3)
    with pytest.raises(ValueError, match="not built"):
        cconv.Sequential([L.Dense(2)]).export(tmp_path / "m.onnx")
    assert list(tmp_path.iterdir()) == []


def test_without_onnx_the_error_names_the_extra(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "onnx", None)          # import onnx -> ImportError
    with pytest.raises(ImportError, match=r'pip install "cconv\[onnx\]"'):
        cconv.models.lenet5(compile=False).export(tmp_path / "m.onnx")


def test_export_changes_nothing_in_the_model(tmp_path):
    model = _example("residual_mnist").resnet()
    _randomize(model)
    x = _inputs(model)[0]
    before_w = [w.copy() for w in model.get_weights()]
    before_y = model.predict(x, verbose=0)
    model.export(tmp_path / "r.onnx", verbose=True)
    for a, b in zip(model.get_weights(), before_w):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(model.predict(x, verbose=0), before_y)


def test_verbose_prints_where_the_file_went(tmp_path, capsys):
    path = tmp_path / "m.onnx"
    cconv.models.lenet5(compile=False).export(path, verbose=True)
    assert f"Saved artifact at '{path}'" in capsys.readouterr().out
    cconv.models.lenet5(compile=False).export(path)
    assert capsys.readouterr().out == ""


def test_to_onnx_returns_a_checked_model_proto():
    proto = onnx_export.to_onnx(cconv.models.tutorial_cnn(compile=False))
    onnx.checker.check_model(proto, full_check=True)
    assert proto.producer_name == "cconv"
    assert "Conv2D" in onnx_export.supported_layers()


# ----- OpenVINO (optional) ---------------------------------------------------------------------
def test_openvino_reads_the_same_file(tmp_path):
    ov = pytest.importorskip("openvino", reason="OpenVINO is optional")
    model = _example("residual_mnist").resnet()
    _randomize(model)
    path = tmp_path / "resnet.onnx"
    model.export(path)
    core = ov.Core()
    compiled = core.compile_model(core.read_model(str(path)), "CPU",
                                  {"INFERENCE_PRECISION_HINT": "f32"})
    x = _inputs(model, batch=4)[0]
    got = compiled([x])[compiled.outputs[0]]
    want = model.predict(x, verbose=0)
    scale = max(1.0, float(np.abs(want).max()))
    assert float(np.abs(got - want).max()) <= 1e-5 * scale
    assert math.isfinite(float(got.sum()))
