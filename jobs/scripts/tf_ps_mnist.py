#!/usr/bin/env python3
"""dlcluster training job: TensorFlow ParameterServerStrategy on MNIST.

What: asynchronous data-parallel training in the seed's parameter-server
layout. The model's variables live on the "ps" tasks; "worker" tasks compute
gradients on batches of their own copy of the input and update the variables
on the ps tasks; the "chief" is the coordinator (TF's own ClusterCoordinator)
that builds the model, schedules training steps onto the workers, then
evaluates the result on held-out test digits. The model is a small MLP written
with tf.Variables and a hand-written Adam (or SGD) update: Keras 3's model.fit has no
ParameterServerStrategy support (no DatasetCreator/coordinator in Keras 3), so
this is TF's documented custom-training-loop pattern.

How it is launched: one process per task, all started together by the train
playbook, each with TF_CONFIG describing the cluster and its own task:
    TF_CONFIG='{"cluster": {"chief": ["h0:2222"], "worker": ["h1:2222"],
                            "ps": ["h2:2222"]},
                "task": {"type": "ps", "index": 0}}' \
        python tf_ps_mnist.py --hparams mnist.conf --output DIR
ps and worker tasks run a tf.distribute.Server and never exit on their own:
the launcher stops them when the chief has exited. The job's result is the
chief's exit status.

Inputs: --hparams FILE (key=value: epochs, batch_size per step, lr, seed,
optimizer adam|sgd, step_sleep (here: the chief's pause after scheduling each
step), data; see jobs/hparams/mnist.conf),
--output DIR (default $DL_JOB_OUTPUT_DIR or cwd).
Outputs: the chief logs "epoch=E loss=L rank=0" per epoch and writes
DIR/metrics-rank0.json; each worker/ps writes a small
DIR/metrics-rank<R>.json when it starts (R: workers 1.., then ps tasks).
"""

import json
import os
import socket
import sys
import time

import mnist_data  # shared loader; sits next to this script (sys.path[0])

START_UNIX = time.time()  # process start, for wall_seconds
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # silence TensorFlow's C++ logs


DEFAULTS = mnist_data.JOB_DEFAULTS  # documented in jobs/hparams/mnist.conf


def read_tf_config() -> tuple[dict, str, int]:
    """(cluster, task_type, task_index) from TF_CONFIG, checked for this job."""
    try:
        config = json.loads(os.environ["TF_CONFIG"])
        cluster, task = config["cluster"], config["task"]
        task_type, index = task["type"], int(task["index"])
    except (KeyError, ValueError, TypeError) as exc:
        sys.exit(f"error: TF_CONFIG must be set with cluster and task.type/index: {exc}")
    if len(cluster.get("chief", [])) != 1 or not cluster.get("worker") or not cluster.get("ps"):
        sys.exit("error: TF_CONFIG cluster needs exactly 1 chief, at least 1 worker "
                 f"and at least 1 ps (got {sorted(cluster)})")
    if task_type not in ("chief", "worker", "ps") or not 0 <= index < len(cluster[task_type]):
        sys.exit(f"error: TF_CONFIG task {task_type}:{index} is not in the cluster")
    return cluster, task_type, index


def task_rank(cluster: dict, task_type: str, index: int) -> int:
    """chief → 0, worker i → 1 + i, ps j → 1 + workers + j."""
    if task_type == "chief":
        return 0
    if task_type == "worker":
        return 1 + index
    return 1 + len(cluster["worker"]) + index


def run_server(tf, cluster: dict, task_type: str, index: int, output: str) -> None:
    """ps/worker: leave a metrics file, then serve the chief until killed."""
    rank = task_rank(cluster, task_type, index)
    mnist_data.write_metrics(os.path.join(output, f"metrics-rank{rank}.json"), {
        "rank": rank,
        "role": task_type,
        "task": f"{task_type}:{index}",
        "host": socket.gethostname(),
        "framework": "tensorflow",
        "strategy": "parameter_server",
        "start_unix": START_UNIX,
    })
    os.environ["GRPC_FAIL_FAST"] = "use_caller"  # TF's advice for PS-strategy servers
    server = tf.distribute.Server(tf.train.ClusterSpec(cluster), job_name=task_type,
                                  task_index=index, protocol="grpc", start=True)
    print(f"{task_type}:{index} rank={rank} serving on {cluster[task_type][index]}", flush=True)
    server.join()  # never returns; the launcher stops this task


def run_chief(tf, cluster: dict, hp: dict, output: str) -> None:
    host = socket.gethostname()
    resolver = tf.distribute.cluster_resolver.TFConfigClusterResolver()
    strategy = tf.distribute.ParameterServerStrategy(resolver)
    coordinator = tf.distribute.coordinator.ClusterCoordinator(strategy)
    world_size = len(cluster["worker"]) + 1
    print(f"chief rank=0 world_size={world_size} host={host} "
          f"workers={len(cluster['worker'])} ps={len(cluster['ps'])}", flush=True)

    x_train, y_train, x_test, y_test = mnist_data.load(hp["data"] or None, seed=hp["seed"])
    # Workers run only graphs sent by the chief: the training data travels in
    # the dataset function, as uint8 pixels (4x smaller), scaled on the worker.
    pixels = (x_train * 255.0).round().astype("uint8")
    labels = y_train
    batch_size, seed = hp["batch_size"], hp["seed"]
    steps_per_epoch = len(x_train) // batch_size

    def dataset_fn():
        return (tf.data.Dataset.from_tensor_slices((pixels, labels))
                .shuffle(len(labels), seed=seed, reshuffle_each_iteration=True)
                .repeat()
                .batch(batch_size, drop_remainder=True)
                .map(lambda x, y: (tf.cast(x, tf.float32) / 255.0, y))
                .prefetch(2))

    with strategy.scope():  # variables are created on the ps tasks (round-robin)
        def glorot(shape, salt):
            limit = (6.0 / (shape[0] + shape[1])) ** 0.5
            return tf.Variable(tf.random.stateless_uniform(shape, [seed, salt], -limit, limit))

        params = [glorot((784, 256), 1), tf.Variable(tf.zeros([256])),
                  glorot((256, 10), 2), tf.Variable(tf.zeros([10]))]
        # Optimizer state: Adam's first/second moments (SGD: velocity) and the step count.
        moments1 = [tf.Variable(tf.zeros_like(p)) for p in params]
        moments2 = [tf.Variable(tf.zeros_like(p)) for p in params]
        step = tf.Variable(0.0)
    lr, beta1, beta2, eps = hp["lr"], 0.9, 0.999, 1e-7
    use_adam = hp["optimizer"] == "adam"

    def logits(x):
        w1, b1, w2, b2 = params
        return tf.matmul(tf.nn.relu(tf.matmul(x, w1) + b1), w2) + b2

    def replica_step(x, y):  # runs on a worker; reads/updates variables on the ps
        with tf.GradientTape() as tape:
            loss = tf.reduce_mean(
                tf.nn.sparse_softmax_cross_entropy_with_logits(labels=y, logits=logits(x)))
        grads = tape.gradient(loss, params)
        t = step.assign_add(1.0)
        scale = lr * tf.sqrt(1.0 - beta2 ** t) / (1.0 - beta1 ** t)
        for p, g, m, v in zip(params, grads, moments1, moments2, strict=True):
            if use_adam:
                m.assign(beta1 * m + (1.0 - beta1) * g)
                v.assign(beta2 * v + (1.0 - beta2) * tf.square(g))
                p.assign_sub(scale * m / (tf.sqrt(v) + eps))
            else:  # SGD with momentum 0.9; m is the velocity
                m.assign(0.9 * m + g)
                p.assign_sub(lr * m)
        return loss

    @tf.function
    def worker_step(iterator):
        x, y = next(iterator)
        return strategy.run(replica_step, args=(x, y))

    iterator = iter(coordinator.create_per_worker_dataset(dataset_fn))
    first_step_unix = None
    final_loss = float("nan")
    progress = mnist_data.JobProgress(0, "tensorflow")  # the chief's live metrics (DL_TEXTFILE_DIR)
    train_start = time.perf_counter()
    for epoch in range(1, hp["epochs"] + 1):
        # Schedule one epoch of steps; the coordinator hands them to free workers.
        results = []
        for _ in range(steps_per_epoch):
            results.append(coordinator.schedule(worker_step, args=(iterator,)))
            if first_step_unix is None:
                results[0].fetch()  # blocks until the very first step has run
                first_step_unix = time.time()
            if hp["step_sleep"] > 0:  # paces the scheduling (the workers run on demand)
                time.sleep(hp["step_sleep"])
        coordinator.join()  # wait for the epoch's steps (re-runs any that a worker lost)
        final_loss = sum(float(r.fetch()) for r in results) / len(results)
        for _ in results:  # the epoch's steps, counted once they have all run
            progress.step(batch_size)
        progress.epoch(epoch, final_loss)
        print(f"epoch={epoch} loss={final_loss:.4f} rank=0", flush=True)
    train_seconds = time.perf_counter() - train_start
    samples_seen = hp["epochs"] * steps_per_epoch * batch_size  # by all workers

    # Evaluate on the chief with the trained variables read from the ps tasks.
    predictions = tf.argmax(logits(tf.constant(x_test)), axis=1).numpy()
    test_accuracy = float((predictions == y_test).mean())
    progress.finish(test_accuracy)
    end_unix = time.time()
    mnist_data.write_metrics(os.path.join(output, "metrics-rank0.json"), {
        "rank": 0,
        "role": "chief",
        "world_size": world_size,
        "local_rank": int(os.environ.get("LOCAL_RANK", "0")),
        "host": host,
        "framework": "tensorflow",
        "strategy": "parameter_server",
        "backend": "grpc",
        "workers": len(cluster["worker"]),
        "ps": len(cluster["ps"]),
        "epochs": hp["epochs"],
        "final_loss": round(final_loss, 6),
        "test_accuracy": round(test_accuracy, 4),
        "wall_seconds": round(end_unix - START_UNIX, 3),
        "train_samples_seen": samples_seen,
        "samples_per_second": round(samples_seen / train_seconds, 1),
        "first_step_unix": first_step_unix,
        "start_unix": START_UNIX,
        "end_unix": end_unix,
    })
    print(f"done rank=0 test_accuracy={test_accuracy:.4f}", flush=True)


def main() -> int:
    args, hp = mnist_data.job_arguments("TensorFlow ParameterServer MNIST job")
    cluster, task_type, index = read_tf_config()
    os.makedirs(args.output, exist_ok=True)

    import tensorflow as tf

    mnist_data.configure_tf_gpus(tf)  # memory growth / DL_TF_GPU_MEMORY_FRACTION
    if task_type == "chief":
        run_chief(tf, cluster, hp, args.output)
    else:
        run_server(tf, cluster, task_type, index, args.output)
    return 0


if __name__ == "__main__":
    sys.exit(main())
