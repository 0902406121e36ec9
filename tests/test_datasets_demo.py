"""Real data: the digits demo reaches its accuracy target; MNIST IDX reading and training."""
import gzip
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import cconv
from cconv.__main__ import main

MNIST_DIR = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "mnist"
needs_mnist = pytest.mark.skipif(
    not (MNIST_DIR / "t10k-images-idx3-ubyte.gz").exists(),
    reason=f"MNIST test files not found in {MNIST_DIR} (cconv ships no data)",
)


@pytest.mark.slow
def test_demo_trains_lenet5_on_digits_to_97_percent(tmp_path, capsys):
    pytest.importorskip("sklearn", reason="the digits come with scikit-learn")
    out_file = tmp_path / "lenet.npz"
    rc = main(["demo", "--save", str(out_file)])
    out = capsys.readouterr().out
    acc = float(out.split("test accuracy: ")[1].split("%")[0])
    assert rc == 0 and acc >= 97.0, out[-2000:]
    assert "Epoch 12/12" in out and "images/s" in out and "lenet5" in out
    model = cconv.load_model(out_file)
    (_, _), (xt, yt) = cconv.datasets.load_digits(upsample=3, pad=2)
    assert (model.predict(xt, verbose=0).argmax(1) == yt.argmax(1)).mean() == pytest.approx(
        acc / 100, abs=1e-3
    )


def test_load_digits_split_is_fixed_and_stratified():
    pytest.importorskip("sklearn", reason="the digits come with scikit-learn")
    (x, y), (xt, yt) = cconv.datasets.load_digits()
    (x2, _), _ = cconv.datasets.load_digits()
    assert x.shape == (1438, 8, 8, 1) and xt.shape == (359, 8, 8, 1) and x.dtype == np.float32
    np.testing.assert_array_equal(x, x2)
    assert 0 <= x.min() and x.max() <= 1 and y.shape == (1438, 10)
    assert np.bincount(yt.argmax(1)).min() >= 34
    (xs, ys), _ = cconv.datasets.load_digits(one_hot=False, upsample=3, pad=2)
    assert xs.shape[1:] == (28, 28, 1) and ys.dtype == np.int64


@needs_mnist
@pytest.mark.slow
def test_demo_learns_real_mnist(tmp_path, capsys):
    """The t10k files alone: the demo trains on the first 8,000 and tests on the last 2,000."""
    x, y = cconv.datasets.load_mnist(MNIST_DIR, subset="test")
    assert x.shape == (10000, 28, 28, 1) and y.shape == (10000, 10) and x.dtype == np.float32
    rc = main(
        [
            "demo",
            "--data",
            "mnist",
            "--path",
            str(MNIST_DIR),
            "--epochs",
            "1",
            "--quiet",
            "--save",
            "",
        ]
    )
    out = capsys.readouterr().out
    acc = float(out.split("test accuracy: ")[1].split("%")[0])
    assert rc == 0 and "t10k only" in out and acc >= 95.0, out


def test_load_mnist_reads_raw_and_gzip_and_explains_errors(tmp_path):
    imgs = np.arange(2 * 28 * 28, dtype=np.uint8).reshape(2, 28, 28)
    header = bytes([0, 0, 8, 3]) + (2).to_bytes(4, "big") + (28).to_bytes(4, "big") * 2
    (tmp_path / "t10k-images-idx3-ubyte").write_bytes(header + imgs.tobytes())
    with gzip.open(tmp_path / "t10k-labels-idx1-ubyte.gz", "wb") as f:
        f.write(bytes([0, 0, 8, 1]) + (2).to_bytes(4, "big") + bytes([3, 7]))
    x, y = cconv.datasets.load_mnist(tmp_path, subset="test", one_hot=False)
    np.testing.assert_allclose(x[..., 0], imgs / 255.0, rtol=1e-6)
    assert y.tolist() == [3, 7]
    with pytest.raises(FileNotFoundError, match="train-images-idx3-ubyte"):
        cconv.datasets.load_mnist(tmp_path)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        cconv.datasets.load_mnist(tmp_path / "nowhere")
    (tmp_path / "t10k-images-idx3-ubyte").write_bytes(header + imgs.tobytes()[:100])
    with pytest.raises(ValueError, match="truncated"):
        cconv.datasets.load_mnist(tmp_path, subset="test")
    assert main(["demo", "--data", "mnist"]) == 2


def test_package_ships_no_data():
    pkg = Path(cconv.__file__).parent
    found = [p for p in pkg.rglob("*") if p.suffix in (".gz", ".npz", ".idx") or "ubyte" in p.name]
    assert not found


def test_cli_version_and_plain_help(capsys):
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    out = subprocess.run([sys.executable, "-m", "cconv", "--version"], cwd=root,
                         capture_output=True, text=True, check=True).stdout
    assert out.strip() == f"cconv {cconv.__version__}"
    with pytest.raises(SystemExit):
        main(["--help"])
    text = capsys.readouterr().out
    assert "cconv demo" in text and "cconv check" in text and "``" not in text
