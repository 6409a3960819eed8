"""Run as a script under one Keras backend (KERAS_BACKEND): from a run's saved weights, with the
reparameterization noise set to zero, the loss and gradients of one batch, the losses of ``steps``
training steps (Adam) on fixed batches, and after them the gradients of a batch as a training
step computes them and as computed afresh, written to an npz. tests/test_backends.py runs it
under TensorFlow and PyTorch and compares; on a GPU machine it compares the GPU path the same way.

    KERAS_BACKEND=torch python tests/backend_steps.py RUN DATA_DIR OUT.npz [STEPS]
"""

import sys

import asp  # noqa: F401  (dawdreamer before the backend)

# isort: split
import keras
import numpy as np

import models
from asp.checkpoints import read_config
from asp.training.stream import batch_keys, stream_arrays
from data.dataset import load_split


def main(run: str, data_dir: str, out: str, steps: int = 10) -> None:
    config = read_config(run)
    model = models.build_model(config)
    model.load_weights(f"{run}/model.weights.h5")
    models.keras.random.normal = lambda shape, *a, **k: keras.ops.zeros(shape)  # z = z_mean in both
    model.compile(optimizer=keras.optimizers.Adam(1e-3))
    model.optimizer.build(model.trainable_variables)
    split = load_split(data_dir, "train")
    arrays = stream_arrays(split, batch_keys(config["approach"], config["trained_synths"]))
    n = len(split.mels)

    def batch(step: int) -> dict:
        rows = np.sort((np.arange(8) + 8 * step) % n)
        return {k: keras.ops.convert_to_tensor(np.asarray(v[rows], np.float32)) for k, v in arrays.items()}

    variables = model.trainable_variables

    def gradients(b: dict) -> tuple[float, list[np.ndarray]]:
        """The loss and gradients of a batch as a training step computes them."""
        if keras.backend.backend() == "tensorflow":
            import tensorflow as tf

            with tf.GradientTape() as tape:
                loss = model.compute_losses(b, model(b, training=True))["loss"]
            grads = tape.gradient(loss, variables)
        else:
            losses, grads = model.torch_gradients(b)
            loss = losses["loss"].detach()
        return float(keras.ops.convert_to_numpy(loss)), [keras.ops.convert_to_numpy(g) for g in grads]

    loss, grads = gradients(batch(0))
    losses = [float(keras.ops.convert_to_numpy(model.train_step(batch(s))["loss"])) for s in range(steps)]
    # after the steps, the training path's gradients against ones computed afresh on the same
    # weights (gradients left over from earlier steps would show here)
    _, path = gradients(batch(steps))
    fresh = path
    if keras.backend.backend() == "torch":
        import torch

        b = batch(steps)
        total = model.compute_losses(b, model(b, training=True))["loss"]
        found = torch.autograd.grad(total, [v.value for v in variables], allow_unused=True)
        fresh = [
            np.zeros(v.shape, np.float32) if g is None else g.detach().cpu().numpy() for v, g in zip(variables, found)
        ]
    np.savez(
        out,
        loss=loss,
        losses=np.array(losses),
        names=np.array([v.path for v in variables]),
        **{f"grad{i}": g for i, g in enumerate(grads)},
        **{f"path{i}": g for i, g in enumerate(path)},
        **{f"fresh{i}": g for i, g in enumerate(fresh)},
    )


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], sys.argv[3], *(int(a) for a in sys.argv[4:]))
