"""Data-parallel training over MPI: 2 ranks on per-rank batch b must equal one process on
batch 2b with the same sample order. The ranks run under ``mpirun`` in a
subprocess (tests/mpi_worker.py); the references are computed here."""
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest

from . import mpi_worker as W

pytestmark = pytest.mark.mpi

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NP = 2


def _mpi_launcher(ranks=NP):
    """``mpirun`` command prefix, or skip with the reason when MPI is truly absent."""
    mpirun = shutil.which("mpirun") or shutil.which("mpiexec")
    if mpirun is None:
        pytest.skip(
            "mpirun not found: install OpenMPI (apt-get install openmpi-bin libopenmpi-dev; "
            ".ci/run does this) to run the MPI tests"
        )
    probe = subprocess.run(
        [sys.executable, "-c", "from mpi4py import MPI; print(MPI.Get_library_version())"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    if probe.returncode != 0:
        err = probe.stderr.strip().splitlines()
        pytest.skip("mpi4py is not importable (pip install mpi4py against the system MPI): "
                    + (err[-1] if err else f"exit code {probe.returncode}"))
    version = subprocess.run(
        [mpirun, "--version"], capture_output=True, text=True, timeout=60
    ).stdout
    cmd = [mpirun, "-n", str(ranks)]
    if "Open MPI" in version or "OpenRTE" in version:
        cmd.append("--oversubscribe")           # ranks may exceed the slots a container reports
        if hasattr(os, "geteuid") and os.geteuid() == 0:
            cmd.append("--allow-run-as-root")   # CI runs as root
    return cmd


def _env():
    env = dict(os.environ)
    env["PYTHONPATH"] = ROOT + os.pathsep + env.get("PYTHONPATH", "")
    env["OMP_NUM_THREADS"] = "1"
    # Containers often forbid the cross-memory-attach single-copy path of OpenMPI's shared
    # memory transport; plain copies work everywhere.
    env.setdefault("OMPI_MCA_btl_vader_single_copy_mechanism", "none")
    return env


def _launch(tmp_path_factory, ranks, *args):
    cmd = _mpi_launcher(ranks)
    out = tmp_path_factory.mktemp("mpi")
    # `python -m mpi4py` aborts every rank when one raises, instead of leaving the others
    # waiting in a collective.
    script = os.path.join(ROOT, "tests", "mpi_worker.py")
    proc = subprocess.run(cmd + [sys.executable, "-m", "mpi4py", script, str(out), *args],
                          capture_output=True, text=True, timeout=180, env=_env(), cwd=ROOT)
    assert proc.returncode == 0, f"mpirun failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}"
    return out, proc.stdout


@pytest.fixture(scope="module")
def mpi_run(tmp_path_factory):
    return _launch(tmp_path_factory, NP)


@pytest.fixture(scope="module")
def mpi_run3(tmp_path_factory):
    return _launch(tmp_path_factory, W.RANKS_EMPTY, "three")


def _load(out, name, size=NP):
    ranks = []
    for r in range(size):
        with np.load(out / f"{name}_rank{r}.npz") as f:
            ranks.append({k: f[k] for k in f.files})
    return ranks


def _weights(d):
    return [d[f"w{i}"] for i in range(sum(k.startswith("w") for k in d))]


def _max_diff(a, b):
    return max(float(np.max(np.abs(np.asarray(u, np.float64) - v))) for u, v in zip(a, b))


def _assert_ranks_identical(ranks):
    for r in ranks[1:]:
        for i, (u, v) in enumerate(zip(_weights(ranks[0]), _weights(r))):
            assert np.array_equal(u, v), f"weight {i} differs between ranks"


def test_two_ranks_equal_one_process_on_double_batch(mpi_run, record_property):
    out, stdout = mpi_run
    ranks = _load(out, "main")
    _assert_ranks_identical(ranks)

    import cconv
    cconv.set_num_threads(1)
    x, y = W.main_data()
    ref = W.lenet()
    np.random.seed(7)
    hist = ref.fit(x, y, batch_size=NP * W.PER_RANK_BATCH, epochs=W.EPOCHS, verbose=0, shuffle=True,
                   validation_data=(x[:20], y[:20]))
    expected = ref.get_weights()
    got = _weights(ranks[0])
    diff = _max_diff(got, expected)
    scale = max(float(np.max(np.abs(w))) for w in expected)
    record_property("max_abs_weight_diff", diff)
    print(f"\n2 ranks x batch {W.PER_RANK_BATCH} vs 1 process x batch {NP * W.PER_RANK_BATCH}, "
          f"{W.EPOCHS} epochs of {-(-W.N_MAIN // (NP * W.PER_RANK_BATCH))} steps (Adam): "
          f"largest weight difference {diff:.3g} (largest weight {scale:.3g})")
    assert diff <= 1e-5 * max(scale, 1.0)
    # The logged values are global: they match the single-process history.
    for k, v in hist.history.items():
        np.testing.assert_allclose(ranks[0]["h_" + k], v, rtol=1e-5, atol=1e-6, err_msg=k)
        np.testing.assert_array_equal(ranks[1]["h_" + k], ranks[0]["h_" + k])
    # Only rank 0 prints the progress lines.
    assert stdout.count("Epoch 1/2") == 1 and stdout.count("Epoch 2/2") == 1, stdout


def test_sharded_input_equals_one_process(mpi_run):
    out, _ = mpi_run
    ranks = _load(out, "sharded")
    _assert_ranks_identical(ranks)
    import cconv
    cconv.set_num_threads(1)
    x, y = W.main_data()
    ref = W.lenet()
    # Rank 0 holds 33 samples, rank 1 32: an epoch has min(5, 4) = 4 steps, so the
    # reference sees the first 64 samples.
    ref.fit(
        x[:64], y[:64], batch_size=NP * W.PER_RANK_BATCH, epochs=W.EPOCHS, verbose=0, shuffle=False
    )
    diff = _max_diff(_weights(ranks[0]), ref.get_weights())
    assert diff <= 1e-5, diff


def test_batchnorm_local_statistics_averaged_moving_statistics(mpi_run):
    """Each rank normalises with its local batch statistics; the moving statistics end as the
    average over ranks of what each rank accumulated, identical on every rank."""
    out, _ = mpi_run
    ranks = _load(out, "bn")
    _assert_ranks_identical(ranks)
    x, _ = W.bn_data()
    b, mom = W.PER_RANK_BATCH, W.BN_MOMENTUM
    mm, mv = np.zeros(3), np.ones(3)
    for _epoch in range(W.EPOCHS):
        for lo in range(0, x.shape[0], NP * b):
            parts = [x[lo + r * b: lo + (r + 1) * b].astype(np.float64) for r in range(NP)]
            mean = np.mean([p.mean(axis=(0, 1, 2)) for p in parts], axis=0)
            var = np.mean([p.var(axis=(0, 1, 2)) for p in parts], axis=0)
            mm = mm * mom + mean * (1 - mom)
            mv = mv * mom + var * (1 - mom)
    w = _weights(ranks[0])              # gamma, beta, moving_mean, moving_variance, ...
    np.testing.assert_allclose(w[2], mm, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(w[3], mv, rtol=1e-5, atol=1e-6)
    # Global (synchronised) statistics would differ here: the channel means differ per batch.
    glob = np.zeros(3)
    for _epoch in range(W.EPOCHS):
        for lo in range(0, x.shape[0], NP * b):
            glob = glob * mom + x[lo:lo + NP * b].astype(np.float64).var(axis=(0, 1, 2)) * (1 - mom)
    assert not np.allclose(w[3], glob + mom ** (2 * x.shape[0] // (NP * b)), rtol=1e-6)


def test_checkpoints_are_written_by_rank_0_only(mpi_run):
    """Rank 1 fails if it writes (see mpi_worker.py); rank 0's files are whole and current."""
    out, _ = mpi_run
    ranks = _load(out, "ckpt")
    _assert_ranks_identical(ranks)
    import cconv
    for epoch in range(1, W.EPOCHS + 1):
        assert cconv.load_model(out / f"ckpt-{epoch}.npz").count_params() > 0
    final = cconv.load_model(out / "final.npz").get_weights()
    for u, v in zip(final, _weights(ranks[0])):
        np.testing.assert_array_equal(u, v)
    weights_only = W.lenet()
    weights_only.load_weights(out / "final-weights.npz")
    for u, v in zip(weights_only.get_weights(), final):
        np.testing.assert_array_equal(u, v)
    assert not [p.name for p in out.iterdir() if p.name.endswith(".tmp")]


def _empty_share_reference():
    """Single-process training on the same global batches as the 3-rank run (rank 0's seed)."""
    import cconv
    cconv.set_num_threads(1)
    x, y = W.empty_share_data()
    ref = W.regularized_model()
    np.random.seed(7)
    rec = W._recorder()
    hist = ref.fit(x, y, batch_size=W.RANKS_EMPTY * W.PER_RANK_BATCH, epochs=W.EPOCHS,
                   verbose=0, shuffle=True, validation_data=(x[:10], y[:10]), callbacks=[rec])
    return ref, hist, rec, x, y


def test_a_rank_without_samples_takes_the_same_regularized_step(mpi_run3):
    """The last step of each epoch has 2 samples for 3 ranks: rank 2 has none. It still takes
    the step's reduced gradient plus the regularizers' gradient, so after every epoch (before
    fit's final broadcast could hide a difference) all ranks hold the same weights, equal to
    single-process training on the same global batches."""
    out, _ = mpi_run3
    ranks = _load(out, "empty", W.RANKS_EMPTY)
    _assert_ranks_identical(ranks)
    ref, hist, rec, _, _ = _empty_share_reference()
    for e in range(W.EPOCHS):
        expected = rec.epoch_weights[e]
        scale = max(float(np.max(np.abs(w))) for w in expected)
        for r, d in enumerate(ranks):
            got = [d[f"e{e}_w{i}"] for i in range(len(expected))]
            diff = _max_diff(got, expected)
            assert diff <= 1e-5 * max(scale, 1.0), (f"epoch {e + 1}: rank {r}'s weights are "
                                                   f"{diff:.3g} from single-process training")
    assert _max_diff(_weights(ranks[0]), ref.get_weights()) <= 1e-5


def test_confusion_metrics_and_validation_are_global(mpi_run3):
    """Precision, Recall and AUC (per-threshold counts) are summed over ranks like the mean
    metrics: training and validation logs, evaluate (split or sharded) all equal one process's;
    the validation calls the on_test_* hooks and on_train_end gets the last epoch's logs."""
    out, _ = mpi_run3
    ranks = _load(out, "empty", W.RANKS_EMPTY)
    ref, hist, rec, x, y = _empty_share_reference()
    assert {"precision", "recall", "auc", "val_precision", "val_auc"} <= set(hist.history)
    for d in ranks:
        for k, v in hist.history.items():
            np.testing.assert_allclose(d["h_" + k], v, rtol=1e-5, atol=1e-6, err_msg=k)
        assert list(d["test_calls"]) == ["begin", "end"] * W.EPOCHS
        last = {k: v[-1] for k, v in hist.history.items()}
        assert list(d["end_keys"]) == sorted(last)
        np.testing.assert_allclose(d["end_logs"], [last[k] for k in sorted(last)], rtol=1e-5,
                                   atol=1e-6)
        np.testing.assert_allclose(d["eval"], ref.evaluate(x[:2], y[:2], verbose=0),
                                   rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(d["eval_sharded"], ref.evaluate(x, y, verbose=0),
                                   rtol=1e-5, atol=1e-6)


def test_bad_arguments_are_refused_on_every_rank(mpi_run3):
    out, _ = mpi_run3
    for d in _load(out, "empty", W.RANKS_EMPTY):
        sharded, stream = d["refused"]
        assert "sharded must be True or False; got 'yes'" in sharded
        assert "x must be an array when the model has a distribution" in stream


def test_a_graph_model_trains_like_one_process(mpi_run3):
    out, _ = mpi_run3
    ranks = _load(out, "graph", W.RANKS_EMPTY)
    _assert_ranks_identical(ranks)
    import cconv
    cconv.set_num_threads(1)
    x, y = W.empty_share_data()
    ref = W.regularized_model(graph=True)
    hist = ref.fit(x, y, batch_size=W.RANKS_EMPTY * W.PER_RANK_BATCH, epochs=W.EPOCHS,
                   verbose=0, shuffle=False)
    assert _max_diff(_weights(ranks[0]), ref.get_weights()) <= 1e-5
    for k, v in hist.history.items():
        np.testing.assert_allclose(ranks[0]["h_" + k], v, rtol=1e-5, atol=1e-6, err_msg=k)
