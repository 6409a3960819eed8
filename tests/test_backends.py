"""The PyTorch path trains as the TensorFlow one (issue 41, part 5): from the same weights on the
same batches, the loss and the gradients of both backends agree, and so do the first steps of
training. Needs PyTorch (the CPU build: ``pip install torch==2.13.0+cpu``; CI installs it where it
is reachable); skipped with that reason without it."""

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parent.parent
NO_TORCH = importlib.util.find_spec("torch") is None

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(NO_TORCH, reason="PyTorch is not installed (pip install torch==2.13.0+cpu; CI does)"),
]

# parameters whose gradient is rounding noise in both backends, not a signal to compare: the
# biases of the convolutions that BatchNorm follows (it removes their effect) and, with no noise
# and no KL weight, z_log_var (nothing depends on it)
NO_SIGNAL = ("conv0/bias", "conv1/bias", "z_log_var/")


def steps(backend: str, run: Path, data: Path, out: Path) -> dict:
    env = dict(os.environ, KERAS_BACKEND=backend, TF_CPP_MIN_LOG_LEVEL="3", PYTHONPATH=str(ROOT))
    res = subprocess.run(
        [sys.executable, str(ROOT / "tests" / "backend_steps.py"), str(run), str(data), str(out), "10"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert res.returncode == 0, res.stderr[-2000:]
    with np.load(out) as saved:
        return {k: saved[k] for k in saved.files}


def test_both_backends_compute_the_same_loss_gradients_and_steps(tiny_models, tiny_data, tmp_path):
    run = tiny_models / "vae_multi_8_paper"
    tf_out = steps("tensorflow", run, tiny_data, tmp_path / "tf.npz")
    torch_out = steps("torch", run, tiny_data, tmp_path / "torch.npz")
    loss = float(tf_out["loss"])
    assert abs(loss - float(torch_out["loss"])) <= 1e-4 * loss
    compared = 0
    for i, name in enumerate(tf_out["names"]):
        a, b = tf_out[f"grad{i}"].ravel(), torch_out[f"grad{i}"].ravel()
        if any(part in str(name) for part in NO_SIGNAL) or not np.any(a):
            continue
        cosine = float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))
        assert cosine > 0.999, f"{name} (variable {i}): the gradients point apart (cosine {cosine:.4f})"
        assert np.linalg.norm(a - b) <= 0.05 * np.linalg.norm(a), f"{name} (variable {i})"
        compared += 1
    assert compared >= 30  # the encoder, the spectrogram decoder and the three heads
    # after ten steps, a training step's gradients are that batch's alone: none left from earlier
    # steps (under PyTorch the heads' once added up: zero_grad() did not reach them)
    for i, name in enumerate(torch_out["names"]):
        np.testing.assert_allclose(
            torch_out[f"path{i}"], torch_out[f"fresh{i}"], rtol=1e-4, atol=1e-7, err_msg=f"{name} (variable {i})"
        )
    # ten Adam steps on the same batches: the same course (float rounding apart; Adam's first steps
    # turn the last bits of near-zero gradients into whole steps, so the weights part slowly)
    np.testing.assert_allclose(torch_out["losses"], tf_out["losses"], rtol=0.01)
    assert tf_out["losses"][-1] < tf_out["losses"][0] * 1.1
