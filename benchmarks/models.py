"""Model descriptions shared by the benchmarks, and the Keras-vs-cconv model benchmark.

``GRAPHS`` describes the networks of ``benchmarks/compare.py`` as graphs (every runtime builds
its own model from these): a list of nodes ``(op, inputs, attrs)``, node 0 the input, each
node's output named by its index. Ops: ``conv`` (filters, kernel, strides, padding, use_bias,
activation), ``dwconv`` (kernel, strides, padding, use_bias, activation: a depthwise 3x3),
``bn`` (BatchNormalization, Keras defaults: epsilon 1e-3, momentum 0.99), ``act`` (relu,
relu6, softmax), ``maxpool`` (size = strides, valid), ``flatten``, ``dropout`` (rate),
``dense`` (units, activation), ``gap`` (GlobalAveragePooling2D) and ``add`` (two inputs).
``shapes`` gives every node's NHWC output shape and ``flops`` a model's forward FLOPs per
image (multiply-adds x2 of convolutions, depthwise convolutions and Dense layers; pooling,
BatchNorm, Add and activations are not counted).

``run`` (used by ``benchmarks/run.py --only models``): Keras vs cconv images/s for fit and
predict (LeNet-5, tutorial CNN).

Both models get the same architecture and the same initial weights; ``fit`` runs one epoch of
``batch_size=64`` over ``N_FIT`` random images (after a warm-up epoch), ``predict`` runs over
``N_PREDICT`` images with ``batch_size=64``; single-image latency is also reported.
"""
import statistics
import time
from functools import partial

import numpy as np

N_FIT = 4096
N_PREDICT = 4096


# ----------------------------------------------------------------------------- graph models
class Graph:
    """A model description under construction: ``g.add(op, *inputs, **attrs)`` returns the
    new node's index (its input defaults to the node added last)."""

    def __init__(self, input_shape):
        self.nodes = [("input", (), {"shape": tuple(input_shape)})]

    def add(self, op, *inputs, **attrs):
        self.nodes.append((op, tuple(inputs) or (len(self.nodes) - 1,), attrs))
        return len(self.nodes) - 1

    def conv(self, x, filters, kernel, strides=1, padding="same", activation=None,
             use_bias=True):
        return self.add("conv", x, filters=filters, kernel=kernel, strides=strides,
                        padding=padding, activation=activation, use_bias=use_bias)

    def conv_bn(self, x, filters, kernel, strides=1, activation="relu"):
        """Conv (no bias) + BatchNorm (+ activation): the unit of ResNets and MobileNets."""
        y = self.bn(self.conv(x, filters, kernel, strides, use_bias=False))
        return self.add("act", y, activation=activation) if activation else y

    def bn(self, x):
        return self.add("bn", x)


def chain(input_shape, layers):
    """The flat layer lists of the course's networks as a graph (a chain)."""
    g = Graph(input_shape)
    for kind, *a in layers:
        if kind == "conv":
            g.add("conv", filters=a[0], kernel=a[1], strides=1, padding=a[2],
                  activation=a[3], use_bias=True)
        elif kind == "maxpool":
            g.add("maxpool", size=a[0])
        elif kind == "dense":
            g.add("dense", units=a[0], activation=a[1])
        elif kind == "dropout":
            g.add("dropout", rate=a[0])
        else:
            g.add(kind)
    return g.nodes


def resnet20():
    """CIFAR ResNet-20 (He et al. 2015, v1): a 3x3 16-filter stem, 3 stages of 3 basic blocks
    (16/32/64 filters; conv-BN-ReLU, conv-BN, Add, ReLU), a 1x1 stride-2 conv + BN shortcut
    where the shape changes, GlobalAveragePooling2D, Dense 10 (logits)."""
    g = Graph((32, 32, 3))
    x = g.conv_bn(0, 16, 3)
    for stage, filters in enumerate((16, 32, 64)):
        for block in range(3):
            strides = 2 if stage > 0 and block == 0 else 1
            y = g.conv_bn(x, filters, 3, strides)
            y = g.conv_bn(y, filters, 3, 1, activation=None)
            if strides != 1:
                x = g.conv_bn(x, filters, 1, strides, activation=None)
            x = g.add("act", g.add("add", x, y), activation="relu")
    g.add("gap", x)
    g.add("dense", units=10, activation=None)
    return g.nodes


def mobilenet(input_shape, stem_strides, blocks, classes):
    """MobileNet v1 (Howard et al. 2017): a 3x3 32-filter stem, then depthwise-separable
    blocks (depthwise 3x3 + BN + ReLU6, pointwise 1x1 + BN + ReLU6), GlobalAveragePooling2D,
    Dense (logits). ``blocks``: (pointwise filters, depthwise strides) per block."""
    g = Graph(input_shape)
    x = g.conv_bn(0, 32, 3, stem_strides, activation="relu6")
    for filters, strides in blocks:
        x = g.add("dwconv", x, kernel=3, strides=strides, padding="same", activation=None,
                  use_bias=False)
        x = g.add("act", g.bn(x), activation="relu6")
        x = g.conv_bn(x, filters, 1, activation="relu6")
    g.add("gap", x)
    g.add("dense", units=classes, activation=None)
    return g.nodes


# MobileNet v1's 13 blocks at 224x224 (stem stride 2, 7x7 before pooling); for 32x32 the
# CIFAR adaptation: stem stride 1, the first 7 blocks (three stride-2 ones, 4x4 at the end)
MOBILENET_V1 = [(64, 1), (128, 2), (128, 1), (256, 2), (256, 1), (512, 2)] + [(512, 1)] * 5 \
    + [(1024, 2), (1024, 1)]

GRAPHS = {
    # name: nodes, from_logits, batch size of the "batch" metric, whether to train
    "lenet5": {"from_logits": False, "nodes": chain((28, 28, 1), [
        ("conv", 6, 5, "same", "relu"), ("maxpool", 2), ("conv", 16, 5, "valid", "relu"),
        ("maxpool", 2), ("flatten",), ("dense", 120, "relu"), ("dense", 84, "relu"),
        ("dense", 10, "softmax")])},
    "tutorial_cnn": {"from_logits": True, "nodes": chain((32, 32, 3), [
        ("conv", 32, 3, "valid", "relu"), ("maxpool", 2), ("conv", 64, 3, "valid", "relu"),
        ("maxpool", 2), ("conv", 64, 3, "valid", "relu"), ("flatten",),
        ("dense", 64, "relu"), ("dense", 10, None)])},
    # keras-io "Simple MNIST convnet"
    "mnist_convnet": {"from_logits": False, "nodes": chain((28, 28, 1), [
        ("conv", 32, 3, "valid", "relu"), ("maxpool", 2), ("conv", 64, 3, "valid", "relu"),
        ("maxpool", 2), ("flatten",), ("dropout", 0.5), ("dense", 10, "softmax")])},
    "resnet20": {"from_logits": True, "nodes": resnet20(), "train_images": 1024},
    "mobilenet32": {"from_logits": True, "train_images": 1024,
                    "nodes": mobilenet((32, 32, 3), 1, MOBILENET_V1[:7], 10)},
    "mobilenet224": {"from_logits": True, "batch": 32, "train": False,
                     "nodes": mobilenet((224, 224, 3), 2, MOBILENET_V1, 1000)},
}


def same_pads(size, kernel, strides):
    """TensorFlow's "same" padding along one axis: (before, after), the extra one after."""
    out = -(-size // strides)
    total = max((out - 1) * strides + kernel - size, 0)
    return total // 2, total - total // 2


def shapes(nodes):
    """Every node's output shape (NHWC, no batch axis)."""
    out = []
    for op, ins, a in nodes:
        s = out[ins[0]] if ins else a["shape"]
        if op in ("conv", "dwconv"):
            h, w, c = s
            k, st = a["kernel"], a["strides"]
            if a["padding"] == "same":
                h, w = -(-h // st), -(-w // st)
            else:
                h, w = (h - k) // st + 1, (w - k) // st + 1
            s = (h, w, a["filters"] if op == "conv" else c)
        elif op == "maxpool":
            s = (s[0] // a["size"], s[1] // a["size"], s[2])
        elif op == "flatten":
            s = (int(np.prod(s)),)
        elif op == "gap":
            s = (s[2],)
        elif op == "dense":
            s = (a["units"],)
        out.append(tuple(s))
    return out


def flops(nodes):
    """Forward FLOPs per image: 2 x the multiply-adds of conv, dwconv and dense nodes."""
    shp, total = shapes(nodes), 0
    for (op, ins, a), s in zip(nodes, shp):
        if op == "conv":
            total += np.prod(s) * a["kernel"] ** 2 * shp[ins[0]][-1]
        elif op == "dwconv":
            total += np.prod(s) * a["kernel"] ** 2
        elif op == "dense":
            total += s[0] * shp[ins[0]][0]
    return 2 * int(total)


def is_chain(nodes):
    """Whether every node reads only the node before it (a Sequential model)."""
    return all(ins == (i - 1,) for i, (_, ins, _) in enumerate(nodes) if i)


def _keras_lenet5(keras):
    L = keras.layers
    init = keras.initializers.HeNormal(seed=0)
    return keras.Sequential([
        keras.Input((28, 28, 1)),
        L.Conv2D(6, 5, padding="same", activation="relu", kernel_initializer=init),
        L.MaxPooling2D(2, 2),
        L.Conv2D(16, 5, padding="valid", activation="relu", kernel_initializer=init),
        L.MaxPooling2D(2, 2),
        L.Flatten(),
        L.Dense(120, activation="relu", kernel_initializer=init),
        L.Dense(84, activation="relu", kernel_initializer=init),
        L.Dense(10, activation="softmax", kernel_initializer=init),
    ])


def _keras_tutorial(keras):
    L = keras.layers
    return keras.Sequential([
        keras.Input((32, 32, 3)),
        L.Conv2D(32, 3, activation="relu"), L.MaxPooling2D(2),
        L.Conv2D(64, 3, activation="relu"), L.MaxPooling2D(2),
        L.Conv2D(64, 3, activation="relu"),
        L.Flatten(), L.Dense(64, activation="relu"), L.Dense(10),
    ])


def _timed(fn, repeat):
    fn()
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def run(repeat, frameworks):
    import cconv

    rows = []
    have_keras = "tensorflow" in frameworks
    if have_keras:
        import keras
    rng = np.random.default_rng(0)
    specs = [
        ("LeNet-5", (28, 28, 1), cconv.models.lenet5, _keras_lenet5 if have_keras else None,
         "categorical_crossentropy"),
        ("tutorial CNN", (32, 32, 3), cconv.models.tutorial_cnn,
         _keras_tutorial if have_keras else None, None),
    ]
    print("\n| model | what | cconv images/s | keras images/s | cconv/keras |\n"
          "|---|---|---|---|---|")
    for name, shape, make_cconv, make_keras, _ in specs:
        x = rng.random((N_FIT,) + shape, dtype=np.float32)
        labels = rng.integers(0, 10, N_FIT)
        y = np.eye(10, dtype=np.float32)[labels]
        model = make_cconv()
        if not getattr(model, "compiled", False) or name != "LeNet-5":
            model.compile(optimizer="adam",
                          loss=cconv.losses.CategoricalCrossentropy(from_logits=name != "LeNet-5"),
                          metrics=["accuracy"])
        km = None
        if make_keras:
            km = make_keras(keras)
            km.compile(optimizer="adam",
                       loss=keras.losses.CategoricalCrossentropy(from_logits=name != "LeNet-5"),
                       metrics=["accuracy"])
            model.set_weights(km.get_weights())
        fit_repeat = max(1, repeat // 3)
        fit = dict(batch_size=64, epochs=1, verbose=0, shuffle=False)
        results = {
            "fit": (partial(model.fit, x, y, **fit), partial(km.fit, x, y, **fit) if km else None,
                    N_FIT, fit_repeat),
            "predict": (partial(model.predict, x[:N_PREDICT], batch_size=64, verbose=0),
                        partial(km.predict, x[:N_PREDICT], batch_size=64, verbose=0)
                        if km else None, N_PREDICT, repeat),
            "predict 1 image": (partial(model.predict, x[:1], verbose=0),
                                partial(km.predict, x[:1], verbose=0) if km else None, 1,
                                repeat * 5),
        }
        for what, (ours, theirs, count, rep) in results.items():
            row = {"model": name, "what": what, "cconv_images_s": count / _timed(ours, rep)}
            if theirs:
                row["keras_images_s"] = count / _timed(theirs, rep)
                row["ratio"] = row["cconv_images_s"] / row["keras_images_s"]
            rows.append(row)
            print(f"| {name} | {what} | {row['cconv_images_s']:,.0f} | "
                  f"{row.get('keras_images_s', float('nan')):,.0f} | "
                  f"{row.get('ratio', float('nan')):.2f}x |",
                  flush=True)
    return rows
