"""The one-pass optimizer updates (cconv/_ext/optim.pyx) give NumPy's results bit for bit."""
import numpy as np
import pytest

import cconv
from cconv import optimizers

# every test here may change the thread count: conftest's fixture puts it back
pytestmark = pytest.mark.usefixtures("restore_threads")


def _steps(opt, fused, monkeypatch, dtype, steps=6, shape=(7, 5)):
    monkeypatch.setattr(optimizers, "_fused", lambda g, w: fused)
    rng = np.random.default_rng(3)
    w = rng.standard_normal(shape).astype(dtype)
    for i in range(steps):
        g = rng.standard_normal(w.shape).astype(dtype) * 10.0 ** (i - 3)
        if i == 4:
            g[0, :2] = [np.nan, np.inf]
        opt.apply([g], [w])
    return w, opt.get_state()


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("make", [
    lambda: optimizers.Adam(0.01), lambda: optimizers.Adam(0.01, amsgrad=True),
    lambda: optimizers.AdamW(0.01), lambda: optimizers.SGD(0.1),
    lambda: optimizers.SGD(0.1, momentum=0.9), lambda: optimizers.SGD(0.1, 0.9, nesterov=True)],
    ids=["adam", "amsgrad", "adamw", "sgd", "momentum", "nesterov"])
@pytest.mark.parametrize("shape, threads", [((7, 5), 1), ((201, 200), 2), ((201, 200), 3)])
def test_fused_update_is_numpys(make, dtype, shape, threads, monkeypatch):
    cconv.set_num_threads(threads)      # from 32768 elements the update is split by threads
    w_fused, (it_f, state_f) = _steps(make(), True, monkeypatch, dtype, shape=shape)
    w_numpy, (it_n, state_n) = _steps(make(), False, monkeypatch, dtype, shape=shape)
    assert w_fused.tobytes() == w_numpy.tobytes()
    assert it_f == it_n and state_f.keys() == state_n.keys()
    for key in state_f:
        if not key.endswith("tmp") and not key.endswith("tmp2"):
            assert state_f[key].tobytes() == state_n[key].tobytes(), key


def test_fused_update_is_used_for_contiguous_weights():
    g, w = np.ones(4, np.float32), np.ones(4, np.float32)
    assert optimizers._fused(g, w)
    assert not optimizers._fused(g, np.ones(8, np.float32)[::2])
    assert not optimizers._fused(g.astype(np.float64), w)
