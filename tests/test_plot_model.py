"""cconv.utils.plot_model / model_to_dot (Keras's keras.utils.plot_model), issue 32 item 5:
an image of the graph with Graphviz when installed, else an ImportError naming what to
install."""
import re
import shutil

import numpy as np
import pytest

import cconv
from cconv import layers as L


def _graph():
    inp = cconv.Input((8, 8, 3), name="image")
    a = L.Conv2D(4, 3, padding="same", activation="relu", name="left")(inp)
    b = L.Conv2D(4, 1, name="right")(inp)
    x = L.Add(name="sum")([a, b])
    x = L.GlobalAveragePooling2D(name="gap")(x)
    return cconv.Model(inp, L.Dense(2, name="head")(x), name="two_paths")


def _edges(dot):
    ids = dict(re.findall(r'(n\d+) \[label="([^"\\]*)', dot))
    return sorted((ids[a].split(" ")[0], ids[b].split(" ")[0])
                  for a, b in re.findall(r"(n\d+) -> (n\d+);", dot))


def test_model_to_dot_has_a_box_per_layer_and_an_arrow_per_connection():
    dot = cconv.utils.model_to_dot(_graph(), show_shapes=True, show_layer_names=True,
                                   show_layer_activations=True, show_trainable=True,
                                   show_dtype=True)
    assert dot.startswith("digraph G {") and dot.rstrip().endswith("}")
    assert _edges(dot) == [("gap", "head"), ("image", "left"), ("image", "right"),
                           ("left", "sum"), ("right", "sum"), ("sum", "gap")]
    assert "left (Conv2D)" in dot and "Activation: relu" in dot
    assert "Input shape: (None, 8, 8, 3)" in dot and "Output shape: (None, 2)" in dot
    assert "Trainable: Y" in dot and "dtype: float32" in dot
    plain = cconv.utils.model_to_dot(_graph())
    assert "Conv2D" in plain and "Input shape" not in plain


def test_a_sequential_is_a_chain_built_or_not():
    layers = [L.Dense(3, name="a"), L.Dense(2, name="b")]
    unbuilt = cconv.Sequential(layers)
    assert _edges(cconv.utils.model_to_dot(unbuilt, show_layer_names=True)) == [("a", "b")]
    built = cconv.Sequential([cconv.Input((4,)), L.Dense(3, name="c"), L.Dense(2, name="d")])
    edges = _edges(cconv.utils.model_to_dot(built, show_layer_names=True))
    assert ("c", "d") in edges and len(edges) == 2       # the input layer -> c -> d


def test_without_graphviz_an_import_error_names_what_to_install(tmp_path, monkeypatch):
    try:
        import keras  # noqa: F401  (importing TensorFlow loads IPython modules: not a shell)
    except ImportError:
        pass
    monkeypatch.setattr(shutil, "which", lambda name, *a, **k: None)
    with pytest.raises(ImportError, match="graphviz.*pydot|pydot.*graphviz"):
        cconv.utils.plot_model(_graph(), to_file=str(tmp_path / "m.png"))
    assert not (tmp_path / "m.png").exists()
    cconv.utils.plot_model(_graph(), to_file=str(tmp_path / "m.dot"))   # needs nothing
    assert (tmp_path / "m.dot").read_text().startswith("digraph G {")


def test_in_a_notebook_the_message_is_printed(tmp_path, monkeypatch, capsys):
    import sys
    import types
    monkeypatch.setattr(shutil, "which", lambda name, *a, **k: None)
    fake = types.ModuleType("IPython")
    fake.get_ipython = lambda: object()             # an active shell
    monkeypatch.setitem(sys.modules, "IPython", fake)
    assert cconv.utils.plot_model(_graph(), to_file=str(tmp_path / "m.png")) is None
    assert "graphviz" in capsys.readouterr().out
    assert not (tmp_path / "m.png").exists()


def test_bad_arguments(tmp_path):
    with pytest.raises(ValueError, match="layer_range"):
        cconv.utils.plot_model(_graph(), to_file=str(tmp_path / "m.dot"), layer_range=["a", "b"])
    with pytest.raises(ValueError, match="unrecognized keyword arguments: \\['colour'\\]"):
        cconv.utils.plot_model(_graph(), to_file=str(tmp_path / "m.dot"), colour="red")
    with pytest.raises(ValueError, match="rankdir"):
        cconv.utils.model_to_dot(_graph(), rankdir="BT")
    with pytest.raises(ValueError, match="model"):
        cconv.utils.model_to_dot(np.zeros(3))


@pytest.mark.skipif(shutil.which("dot") is None, reason="Graphviz's dot is not installed")
def test_draws_png_and_svg_images(tmp_path):
    png = tmp_path / "model.png"
    cconv.utils.plot_model(_graph(), to_file=str(png), show_shapes=True, rankdir="LR")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    svg = tmp_path / "model.svg"
    cconv.utils.plot_model(_graph(), to_file=str(svg), show_layer_names=True)
    text = svg.read_text()
    assert "<svg" in text and "left (Conv2D)" in text


@pytest.mark.skipif(shutil.which("dot") is None, reason="Graphviz's dot is not installed")
@pytest.mark.parametrize("with_pydot", [True, False])
def test_pydot_or_dot_directly_give_the_same_picture(tmp_path, monkeypatch, with_pydot):
    import sys
    if with_pydot:
        pytest.importorskip("pydot")
    else:
        monkeypatch.setitem(sys.modules, "pydot", None)     # import pydot fails
    out = tmp_path / "m.svg"
    cconv.utils.plot_model(_graph(), to_file=str(out), show_layer_names=True)
    assert "right (Conv2D)" in out.read_text()


def test_the_arrows_are_keras_arrows():
    pytest.importorskip("pydot")
    keras = pytest.importorskip("keras")
    inp = keras.Input((8, 8, 3), name="image")
    a = keras.layers.Conv2D(4, 3, padding="same", activation="relu", name="left")(inp)
    b = keras.layers.Conv2D(4, 1, name="right")(inp)
    x = keras.layers.GlobalAveragePooling2D(name="gap")(keras.layers.Add(name="sum")([a, b]))
    km = keras.Model(inp, keras.layers.Dense(2, name="head")(x))
    dot = keras.utils.model_to_dot(km, show_layer_names=True)
    names = {}
    for node in dot.get_nodes():
        found = re.search(r"<b>([a-z_]+)</b>", node.get("label") or "")
        if found:
            names[node.get_name()] = found.group(1)
    theirs = sorted((names[e.get_source()], names[e.get_destination()])
                    for e in dot.get_edges())
    assert _edges(cconv.utils.model_to_dot(_graph(), show_layer_names=True)) == theirs


def test_expand_nested_draws_a_nested_model_as_a_frame_of_its_layers():
    inner = cconv.Sequential([cconv.Input((4,), name="inner_in"), L.Dense(3, name="d1"),
                              L.Dense(3, name="d2")], name="inner")
    inp = cconv.Input((4,), name="x")
    model = cconv.Model(inp, L.Dense(2, name="head")(inner(inp)))
    flat = cconv.utils.model_to_dot(model, show_layer_names=True)
    assert _edges(flat) == [("inner", "head"), ("x", "inner")] and "cluster" not in flat
    nested = cconv.utils.model_to_dot(model, show_layer_names=True, expand_nested=True)
    assert 'subgraph cluster_' in nested and 'label="inner";' in nested
    assert _edges(nested) == [("d1", "d2"), ("d2", "head"), ("inner_in", "d1"),
                              ("x", "inner_in")]
