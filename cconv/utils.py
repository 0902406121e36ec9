"""Small helpers under Keras's ``keras.utils`` names: ``to_categorical``,
``set_random_seed``, ``PyDataset`` / ``Sequence`` (batches by index for ``fit``),
``plot_model`` / ``model_to_dot`` (an image of a model's graph, with pydot and graphviz) and
``register_keras_serializable`` / ``custom_object_scope`` (custom classes in model files),
``load_img`` / ``img_to_array`` / ``array_to_img`` / ``save_img`` (image files, with Pillow)."""

import numbers
import random as _random

import numpy as np

from . import backend as _backend
from .registry import (
    CustomObjectScope,
    custom_object_scope,
    get_custom_objects,
    get_registered_name,
    get_registered_object,
    register_keras_serializable,
)

__all__ = ["to_categorical", "set_random_seed", "PyDataset", "Sequence", "plot_model",
           "model_to_dot", "register_keras_serializable", "custom_object_scope",
           "CustomObjectScope", "get_custom_objects", "get_registered_name",
           "get_registered_object", "load_img", "img_to_array", "array_to_img", "save_img"]


def set_random_seed(seed):
    """Seed everything random in cconv, as Keras's ``keras.utils.set_random_seed``: Python's
    ``random``, NumPy's global generator (``fit``'s shuffling draws from it) and cconv's global
    seed, from which initializers without a seed draw their values and Dropout and the
    augmentation layers made afterwards without a seed draw their generators (Dropout: its
    mask seed). The same seed
    then gives the same weights and the same training, for any thread count
    (``cconv.set_num_threads``): every draw is NumPy's, in Python, and the kernels' results do
    not depend on the thread count.

    Args:
        seed: an int in ``[0, 2**32)``.

    Raises:
        TypeError: ``seed`` is not an int. ValueError: it is negative or too large.
    """
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral):
        raise TypeError(f"set_random_seed: seed must be an int; got seed={seed!r} of type "
                        f"{type(seed).__name__}.")
    seed = int(seed)
    if not 0 <= seed < 2 ** 32:
        raise ValueError(f"set_random_seed: seed must be in [0, 2**32); got seed={seed}.")
    _random.seed(seed)
    np.random.seed(seed)
    _backend.reset_global_seed(seed)


def to_categorical(y, num_classes=None, dtype="float32"):
    """One-hot encode integer class ids, Keras 3's rule: ``y`` of shape ``s`` gives
    ``s + (num_classes,)``, except that a trailing axis of 1 is dropped first (``(n, 1)`` ->
    ``(n, num_classes)``).

    Args:
        y: integer class ids in ``[0, num_classes)``.
        num_classes: default ``max(y) + 1``.
        dtype: of the result (float32 by default).

    Raises:
        ValueError: a class id outside ``[0, num_classes)``.
    """
    y = np.asarray(y)
    if y.dtype.kind == "f" and not np.all(np.isfinite(y) & (y == np.round(y))):
        raise ValueError("to_categorical: class ids must be whole numbers; got non-integral "
                         "values.")
    y = y.astype(np.int64)
    shape = y.shape
    if len(shape) > 1 and shape[-1] == 1:
        shape = shape[:-1]
    y = y.reshape(-1)
    if num_classes is None:
        num_classes = int(y.max()) + 1 if y.size else 0
    num_classes = int(num_classes)
    if y.size and (y.min() < 0 or y.max() >= num_classes):
        raise ValueError(f"to_categorical: class ids must be in [0, {num_classes}); got "
                         f"{y.min()}..{y.max()}.")
    out = np.zeros((y.size, num_classes), dtype=dtype)
    out[np.arange(y.size), y] = 1
    return out.reshape(shape + (num_classes,))


class PyDataset:
    """Keras 3's ``keras.utils.PyDataset`` (also ``cconv.utils.Sequence``): batches by index,
    for ``fit`` / ``evaluate`` / ``predict``. A subclass defines ``__len__`` (the number of
    batches per pass; or the ``num_batches`` property) and ``__getitem__(index)`` returning
    batch ``index`` as ``x``, ``(x,)``, ``(x, y)`` or ``(x, y, sample_weight)`` of NumPy arrays
    (``x`` of shape ``(batch,) + the model's input shape``); ``on_epoch_begin`` and
    ``on_epoch_end`` are called around each pass over the data (``fit(shuffle=True)`` visits
    the batches in a new order each pass).

    Args:
        workers: threads that read batches (``self[i]``) ahead of training; with 1 (the
            default) one background thread reads the next batch while the current one
            trains. Batches are used in order whatever the count.
        use_multiprocessing: accepted and checked; the readers are threads (no process
            pool), so ``__getitem__`` must be safe to call from several threads when
            ``workers > 1``.
        max_queue_size: how many batches the workers may read ahead (at least ``workers``).

    Raises:
        ValueError: ``workers`` or ``max_queue_size`` not an int >= 1,
            ``use_multiprocessing`` not a bool.
    """

    def __init__(self, workers=1, use_multiprocessing=False, max_queue_size=10):
        for arg, value in (("workers", workers), ("max_queue_size", max_queue_size)):
            if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
                raise ValueError(f"{type(self).__name__}: {arg} must be an int >= 1; got "
                                 f"{arg}={value!r}.")
        if not isinstance(use_multiprocessing, bool):
            raise ValueError(f"{type(self).__name__}: use_multiprocessing must be a bool; got "
                             f"use_multiprocessing={use_multiprocessing!r}.")
        self._workers = int(workers)
        self._use_multiprocessing = use_multiprocessing
        self._max_queue_size = int(max_queue_size)

    @property
    def workers(self):
        return getattr(self, "_workers", 1)

    @workers.setter
    def workers(self, value):
        self._workers = value

    @property
    def use_multiprocessing(self):
        return getattr(self, "_use_multiprocessing", False)

    @use_multiprocessing.setter
    def use_multiprocessing(self, value):
        self._use_multiprocessing = value

    @property
    def max_queue_size(self):
        return getattr(self, "_max_queue_size", 10)

    @max_queue_size.setter
    def max_queue_size(self, value):
        self._max_queue_size = value

    def __getitem__(self, index):
        """Batch ``index`` (``0 <= index < len(self)``)."""
        raise NotImplementedError(f"{type(self).__name__} must define __getitem__(index) "
                                  f"returning batch number index.")

    def __len__(self):
        """The number of batches in a pass (``num_batches``, when a subclass defines it)."""
        if type(self).num_batches is PyDataset.num_batches:
            raise NotImplementedError(f"{type(self).__name__} must define __len__ (or the "
                                      f"num_batches property): the number of batches.")
        n = self.num_batches
        if n is None:
            raise TypeError(f"{type(self).__name__}.num_batches is None: an endless "
                            f"PyDataset is not supported; give it a length.")
        return n

    @property
    def num_batches(self):
        """The number of batches in a pass (``len(self)``)."""
        return len(self)

    def on_epoch_begin(self):
        """Called before each pass over the data (does nothing by default)."""

    def on_epoch_end(self):
        """Called after each pass over the data (does nothing by default)."""


Sequence = PyDataset


# ----- plot_model ---------------------------------------------------------------------------
_GRAPHVIZ_HELP = ("plot_model needs Graphviz's `dot` program to draw an image: install "
                  "graphviz (apt-get install graphviz, brew install graphviz or conda install "
                  "graphviz) and pydot (pip install pydot).")


def _dot_quote(text):
    return '"' + str(text).replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


def _shape_text(shape):
    if isinstance(shape, list):
        return ", ".join(_shape_text(s) for s in shape)
    return str(tuple(shape))


def _graph_layers(model):
    """``[(layer, [parent layers])]`` of ``model`` in graph order: its input layers, then its
    layers, each with the layers whose outputs it reads (public graph API)."""
    if not model.built:
        try:
            model.build()
        except (ValueError, TypeError):
            pass
    layers, seen = [], set()
    inputs = model.inputs if model.built else []
    for layer in [t.node.layer for t in inputs] + list(model.layers):
        if id(layer) not in seen:
            seen.add(id(layer))
            layers.append(layer)
    edges = {}
    layer_nodes = getattr(model, "layer_nodes", None)
    for i, layer in enumerate(layers):
        parents = []
        nodes = layer_nodes(layer) if (model.built and layer_nodes is not None) else []
        for node in nodes:
            for t in node.inbound_tensors:
                parent = t.node.layer
                if id(parent) in seen and parent not in parents:
                    parents.append(parent)
        if not model.built and i > 0:      # an unbuilt Sequential: the chain of its layers
            parents = [layers[i - 1]]
        edges[id(layer)] = parents
    return [(layer, edges[id(layer)]) for layer in layers]


def _layer_label(layer, show_shapes, show_dtype, show_layer_names, show_layer_activations,
                 show_trainable):
    cls = type(layer).__name__
    lines = [f"{layer.name} ({cls})" if show_layer_names else cls]
    if show_layer_activations:
        act = (layer.get_config() or {}).get("activation") if hasattr(layer, "get_config") \
            else None
        if isinstance(act, str):
            lines.append(f"Activation: {act}")
    if show_dtype:
        lines.append(f"dtype: {layer.dtype}")
    if show_shapes:
        shapes = []
        for what in ("input_shape", "output_shape"):
            try:
                value = getattr(layer, what)
            except (AttributeError, ValueError, TypeError, RuntimeError):
                value = None
            shapes.append("?" if value is None else _shape_text(value))
        lines.append(f"Input shape: {shapes[0]}")
        lines.append(f"Output shape: {shapes[1]}")
    if show_trainable:
        lines.append(f"Trainable: {'Y' if layer.trainable else 'N'}")
    return "\n".join(lines)


def _is_model(layer):
    return hasattr(layer, "layers") and hasattr(layer, "inputs") and hasattr(layer, "outputs")


def model_to_dot(model, show_shapes=False, show_dtype=False, show_layer_names=True,
                 rankdir="TB", expand_nested=False, dpi=200, subgraph=False,
                 show_layer_activations=False, show_trainable=False, **kwargs):
    """The model's graph as Graphviz DOT source (a string): one box per layer (its input
    layers included), one arrow per connection. Needs no package; :func:`plot_model` draws it.
    Arguments as :func:`plot_model`'s; with ``expand_nested`` a nested model is drawn as a
    frame holding its own layers (arrows go to its input layers and leave from its output
    layers), else as one box. ``subgraph`` is accepted (Keras's internal argument).

    Raises:
        ValueError: ``rankdir`` not one of "TB", "LR"; ``model`` without ``layers``.
    """
    if rankdir not in ("TB", "LR"):
        raise ValueError(f"model_to_dot: rankdir must be 'TB' or 'LR'; got rankdir={rankdir!r}.")
    if not hasattr(model, "layers"):
        raise ValueError(f"model_to_dot: model must be a cconv model (with layers); got "
                         f"{type(model).__name__}.")
    lines = ["digraph G {", f"  graph [rankdir={rankdir}, dpi={int(dpi)}, "
             f"label={_dot_quote(model.name)}, concentrate=true];",
             "  node [shape=record, fontname=Helvetica, fontsize=10];"]
    label_args = (show_shapes, show_dtype, show_layer_names, show_layer_activations,
                  show_trainable)
    counter = [0]

    def fresh(prefix):
        counter[0] += 1
        return f"{prefix}{counter[0]}"

    def emit(graph_model, indent):
        """Boxes and arrows of ``graph_model``; returns ``(entries, exits)``: the node ids
        arrows into it and out of it attach to."""
        graph = _graph_layers(graph_model)
        ends = {}                  # id(layer) -> (entry node ids, exit node ids)
        for layer, _ in graph:
            if expand_nested and _is_model(layer) and layer.built:
                lines.append(f"{indent}subgraph {fresh('cluster_')} {{")
                lines.append(f"{indent}  label={_dot_quote(layer.name)};")
                ends[id(layer)] = emit(layer, indent + "  ")
                lines.append(f"{indent}}}")
            else:
                node = fresh("n")
                label = _layer_label(layer, *label_args)
                lines.append(f"{indent}{node} [label={_dot_quote(label)}];")
                ends[id(layer)] = ([node], [node])
        for layer, parents in graph:
            for parent in parents:
                for src in ends[id(parent)][1]:
                    for dst in ends[id(layer)][0]:
                        lines.append(f"{indent}{src} -> {dst};")
        ins = [t.node.layer for t in graph_model.inputs] if graph_model.built else []
        outs = [t.node.layer for t in graph_model.outputs] if graph_model.built else []
        entries = [n for layer in ins if id(layer) in ends for n in ends[id(layer)][0]]
        exits = [n for layer in outs if id(layer) in ends for n in ends[id(layer)][1]]
        return entries, exits

    emit(model, "  ")
    lines.append("}")
    return "\n".join(lines) + "\n"


def _render_dot(source, fmt):
    """``source`` drawn by Graphviz as ``fmt`` bytes: through pydot when it is installed,
    else by running ``dot`` directly. ImportError naming what to install without either."""
    import shutil
    import subprocess
    if shutil.which("dot") is None:
        raise ImportError(_GRAPHVIZ_HELP)
    try:
        import pydot
    except ImportError:
        pydot = None
    if pydot is not None:
        graphs = pydot.graph_from_dot_data(source)
        return graphs[0].create(format=fmt)
    done = subprocess.run(["dot", f"-T{fmt}"], input=source.encode(), capture_output=True,
                          check=False, timeout=120)
    if done.returncode != 0:
        raise RuntimeError(f"plot_model: Graphviz's dot failed ({done.returncode}): "
                           f"{done.stderr.decode(errors='replace')[:500]}")
    return done.stdout


def _in_ipython():
    """Whether this runs inside an IPython shell or notebook (an IPython shell is active).
    Keras tests for a loaded IPython module instead, which importing TensorFlow loads too."""
    import sys
    ipython = sys.modules.get("IPython")
    get = getattr(ipython, "get_ipython", None)
    try:
        return get is not None and get() is not None
    except Exception:      # a broken or partial IPython: not a shell
        return False


def plot_model(model, to_file="model.png", show_shapes=False, show_dtype=False,
               show_layer_names=False, rankdir="TB", expand_nested=False, dpi=200,
               show_layer_activations=False, show_trainable=False, **kwargs):
    """Draw ``model``'s graph to ``to_file`` (Keras's ``keras.utils.plot_model``): the image
    format is the suffix's (``.png``, ``.svg``, ``.pdf``, ...; ``.dot`` writes the DOT source
    and needs nothing installed). Each box is a layer (``name (Class)`` with
    ``show_layer_names``), with its input and output shapes (``(None, 28, 28, 1)``) when
    ``show_shapes``; arrows follow the data.

    Args:
        model: a cconv model (Sequential or graph Model).
        to_file: the image's path (written atomically).
        show_shapes, show_dtype, show_layer_names, show_layer_activations, show_trainable:
            what each box shows.
        rankdir: "TB" (top to bottom) or "LR" (left to right).
        expand_nested: draw each nested model as a frame of its own layers (else one
            box).
        dpi: the image's resolution.

    Returns:
        an ``IPython.display.Image`` of the file when IPython is installed and the image is
        a PNG, JPEG or GIF (shown in a notebook), else None.

    Raises:
        ImportError: Graphviz's ``dot`` program is not installed (the message says how to
            install graphviz and pydot; in a notebook the message is printed instead, as
            Keras does). ValueError: a bad ``rankdir`` or ``model``, an unknown keyword
            argument (``layer_range`` included, as in Keras 3).
    """
    from .saving import fileio
    if kwargs.pop("layer_range", None) is not None:
        raise ValueError("plot_model: argument layer_range is no longer supported (Keras 3).")
    if kwargs:
        raise ValueError(f"plot_model: unrecognized keyword arguments: {sorted(kwargs)}.")
    source = model_to_dot(model, show_shapes=show_shapes, show_dtype=show_dtype,
                          show_layer_names=show_layer_names, rankdir=rankdir,
                          expand_nested=expand_nested, dpi=dpi,
                          show_layer_activations=show_layer_activations,
                          show_trainable=show_trainable)
    path = str(to_file)
    ext = path.rsplit(".", 1)[-1].lower() if "." in path.replace("\\", "/").rsplit("/", 1)[-1] \
        else "png"
    try:
        data = source.encode() if ext == "dot" else _render_dot(source, ext)
    except ImportError:
        if _in_ipython():            # a notebook or IPython: say it and go on, as Keras does
            print(_GRAPHVIZ_HELP)
            return None
        raise
    fileio.atomic_write(to_file, lambda f: f.write(data))
    if ext not in ("png", "jpg", "jpeg", "gif"):
        return None
    try:
        from IPython import display
    except ImportError:
        return None
    return display.Image(filename=path)


# ----- images: load_img, img_to_array, array_to_img, save_img (Keras's, with Pillow) ----------
_PIL_RESAMPLING = ("nearest", "bilinear", "bicubic", "hamming", "box", "lanczos")


def _pil_image(what):
    try:
        from PIL import Image
    except ImportError:
        raise ImportError(f"{what} needs Pillow: pip install pillow.") from None
    return Image


def _image_data_format(data_format, what):
    if data_format is None:
        return _backend.image_data_format()
    if data_format not in ("channels_last", "channels_first"):
        raise ValueError(f"{what}: data_format must be 'channels_last' or 'channels_first'; "
                         f"got data_format={data_format!r}.")
    return data_format


def load_img(path, color_mode="rgb", target_size=None, interpolation="nearest",
             keep_aspect_ratio=False):
    """An image file as a PIL image (Keras's ``keras.utils.load_img``), converted to
    ``color_mode`` ("grayscale", "rgb" or "rgba") and resized to ``target_size``
    ``(height, width)`` when given (``interpolation``: "nearest", "bilinear", "bicubic",
    "hamming", "box" or "lanczos"; ``keep_aspect_ratio`` crops the centre to the target's
    aspect ratio first). ``img_to_array`` turns it into a ``(height, width, channels)`` array.

    Raises:
        ImportError: Pillow is not installed. TypeError: ``path`` is neither path-like nor a
            ``BytesIO``. ValueError: a bad ``color_mode`` or ``interpolation``.
    """
    import io
    import os
    image = _pil_image("load_img")
    if isinstance(path, io.BytesIO):
        img = image.open(path)
    elif isinstance(path, (str, bytes, os.PathLike)):
        with open(path, "rb") as f:
            img = image.open(io.BytesIO(f.read()))
    else:
        raise TypeError(f"load_img: path must be path-like or io.BytesIO; got "
                        f"{type(path).__name__}.")
    modes = {"grayscale": ("L", ("L", "I;16", "I")), "rgba": ("RGBA", ("RGBA",)),
             "rgb": ("RGB", ("RGB",))}
    if color_mode not in modes:
        raise ValueError(f"load_img: color_mode must be 'grayscale', 'rgb' or 'rgba'; got "
                         f"color_mode={color_mode!r}.")
    mode, keep = modes[color_mode]
    if img.mode not in keep:
        img = img.convert(mode)
    if target_size is not None:
        size = (int(target_size[1]), int(target_size[0]))
        if img.size != size:
            if interpolation not in _PIL_RESAMPLING:
                raise ValueError(f"load_img: interpolation must be one of "
                                 f"{list(_PIL_RESAMPLING)}; got interpolation={interpolation!r}.")
            resample = getattr(image.Resampling, interpolation.upper())
            box = None
            if keep_aspect_ratio:          # Keras's centre crop to the target's aspect ratio
                width, height = img.size
                crop_h = min(height, (width * size[1]) // size[0])
                crop_w = min(width, (height * size[0]) // size[1])
                top, left = (height - crop_h) // 2, (width - crop_w) // 2
                box = [left, top, left + crop_w, top + crop_h]
            img = img.resize(size, resample, box=box)
    return img


def img_to_array(img, data_format=None, dtype=None):
    """A PIL image (or array-like) as a NumPy array ``(height, width, channels)`` (a 2-D
    grayscale image gets a channel axis of 1) of ``dtype`` (default ``floatx()``), Keras's
    ``keras.utils.img_to_array``; ``data_format="channels_first"`` gives ``(channels,
    height, width)``.

    Raises:
        ValueError: an image that is not 2-D or 3-D, or a bad ``data_format``.
    """
    data_format = _image_data_format(data_format, "img_to_array")
    x = np.asarray(img, dtype=dtype or _backend.floatx())
    if x.ndim == 3:
        return x.transpose(2, 0, 1) if data_format == "channels_first" else x
    if x.ndim == 2:
        return x.reshape(((1,) + x.shape) if data_format == "channels_first"
                         else (x.shape + (1,)))
    raise ValueError(f"img_to_array: an image must be 2-D or 3-D; got shape {x.shape}.")


def array_to_img(x, data_format=None, scale=True, dtype=None):
    """A ``(height, width, channels)`` array (1, 3 or 4 channels) as a PIL image, Keras's
    ``keras.utils.array_to_img``: with ``scale`` the values are stretched to [0, 255] first.
    The input is not modified.

    Raises:
        ImportError: Pillow is not installed. ValueError: not one image of 1, 3 or 4
            channels, or a bad ``data_format``.
    """
    image = _pil_image("array_to_img")
    data_format = _image_data_format(data_format, "array_to_img")
    x = np.array(x, dtype=dtype or _backend.floatx())          # a copy: x is the caller's
    if x.ndim != 3:
        raise ValueError(f"array_to_img: expected one image of rank 3; got shape {x.shape}.")
    if data_format == "channels_first":
        x = x.transpose(1, 2, 0)
    if scale:
        x = x - np.min(x)
        top = np.max(x)
        if top != 0:
            x /= top
        x *= 255
    channels = x.shape[2]
    if channels in (3, 4):
        return image.fromarray(x.astype("uint8"), "RGB" if channels == 3 else "RGBA")
    if channels == 1:
        if np.max(x) > 255:           # a 32-bit grayscale image (PIL mode "I")
            return image.fromarray(x[:, :, 0].astype("int32"), "I")
        return image.fromarray(x[:, :, 0].astype("uint8"), "L")
    raise ValueError(f"array_to_img: an image needs 1, 3 or 4 channels; got shape {x.shape}.")


def save_img(path, x, data_format=None, file_format=None, scale=True, **kwargs):
    """Write the image array ``x`` to ``path`` (Keras's ``keras.utils.save_img``): the
    format from ``file_format`` or the suffix; an RGBA image saved as JPEG loses its alpha
    channel (with a warning, as in Keras). Other keyword arguments go to ``PIL``'s
    ``Image.save``."""
    import os
    import warnings
    if file_format is None and isinstance(path, (str, os.PathLike)):
        file_format = os.path.splitext(os.fspath(path))[1][1:].lower() or None
    if file_format and file_format.lower() == "jpg":
        file_format = "jpeg"
    img = array_to_img(x, data_format=data_format, scale=scale)
    if img.mode == "RGBA" and file_format == "jpeg":
        warnings.warn("The JPEG format does not support RGBA images, converting to RGB.",
                      stacklevel=2)
        img = img.convert("RGB")
    img.save(path, format=file_format, **kwargs)
