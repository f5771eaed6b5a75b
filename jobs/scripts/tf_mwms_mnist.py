#!/usr/bin/env python3
"""dlcluster training job: TensorFlow MultiWorkerMirroredStrategy on MNIST.

What: synchronous data-parallel training of a small Keras 3 MLP. Every worker
holds a full copy of the model; the input is sharded per worker (auto-shard
policy DATA) and gradients are all-reduced every step (collective ops).
Global batch = batch_size (per worker) x number of workers. Training is a
custom loop (strategy.run), TF's documented MultiWorkerMirrored pattern:
Keras 3's model.fit() fails with more than one worker (keras-team/keras#20585).

How it is launched: one process per worker host, all started together by the
train playbook, each with TF_CONFIG describing the cluster and its own task:
    TF_CONFIG='{"cluster": {"worker": ["h0:12345", "h1:12345"]},
                "task": {"type": "worker", "index": 0}}' \
        python tf_mwms_mnist.py --hparams mnist.conf --output DIR
No TF_CONFIG means a single local worker. Worker 0 is the chief.
GPUs: memory growth, or DL_TF_GPU_MEMORY_FRACTION (share of each GPU) so
several tasks can share a card; pin GPUs with CUDA_VISIBLE_DEVICES.

Inputs: --hparams FILE (key=value: epochs, batch_size per worker, lr,
optimizer adam|sgd, seed, step_sleep, data; see jobs/hparams/mnist.conf),
--output DIR (default $DL_JOB_OUTPUT_DIR or cwd).
Outputs: one log line per epoch per worker ("epoch=E loss=L rank=R"),
DIR/metrics-rank<index>.json from every worker, DIR/model.keras from the
chief only. Any error exits non-zero.
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


def cluster_from_env() -> tuple[int, int]:
    """(rank, world_size) from TF_CONFIG; validates its shape for this job."""
    raw = os.environ.get("TF_CONFIG", "").strip()
    if not raw:
        return 0, 1
    try:
        config = json.loads(raw)
        workers = config["cluster"]["worker"]
        task = config["task"]
        index = int(task["index"])
    except (ValueError, KeyError, TypeError) as exc:
        sys.exit(f"error: TF_CONFIG must hold cluster.worker and task.index: {exc}")
    other = sorted(set(config["cluster"]) - {"worker"})
    if other or task.get("type") != "worker":
        sys.exit(f"error: TF_CONFIG for MultiWorkerMirrored takes only 'worker' tasks "
                 f"(found job types {other or [task.get('type')]})")
    if not 0 <= index < len(workers):
        sys.exit(f"error: TF_CONFIG task.index {index} outside 0..{len(workers) - 1}")
    return index, len(workers)


def main() -> int:
    args, hp = mnist_data.job_arguments("TensorFlow MultiWorkerMirrored MNIST job")
    rank, world_size = cluster_from_env()
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    host = socket.gethostname()

    import tensorflow as tf

    gpus = mnist_data.configure_tf_gpus(tf)  # before any GPU is touched
    # Creating the strategy starts this worker's gRPC server and waits for peers.
    implementation = (tf.distribute.experimental.CommunicationImplementation.NCCL if gpus
                      else tf.distribute.experimental.CommunicationImplementation.RING)
    strategy = tf.distribute.MultiWorkerMirroredStrategy(
        communication_options=tf.distribute.experimental.CommunicationOptions(
            implementation=implementation))
    import keras  # Keras 3 on the TensorFlow backend

    keras.utils.set_random_seed(hp["seed"])  # same initial weights on every worker
    print(f"rank={rank} world_size={world_size} host={host} "
          f"replicas={strategy.num_replicas_in_sync} gpus={len(gpus)}", flush=True)

    x_train, y_train, x_test, y_test = mnist_data.load(hp["data"] or None, seed=hp["seed"])
    global_batch = hp["batch_size"] * world_size
    steps_per_epoch = len(x_train) // global_batch  # same step count on every worker
    if steps_per_epoch < 1:
        sys.exit(f"error: batch_size x workers ({global_batch}) exceeds the "
                 f"{len(x_train)} training samples")
    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    dataset = (tf.data.Dataset.from_tensor_slices((x_train, y_train))
               .shuffle(len(x_train), seed=hp["seed"], reshuffle_each_iteration=True)
               .repeat()
               .batch(global_batch, drop_remainder=True)
               .with_options(options))
    # Each worker gets its shard; each step hands every replica batch_size samples.
    batches = iter(strategy.experimental_distribute_dataset(dataset))

    with strategy.scope():  # variables are mirrored on every worker
        model = keras.Sequential([
            keras.Input(shape=(784,)),
            keras.layers.Dense(256, activation="relu"),
            keras.layers.Dense(10),
        ])
        if hp["optimizer"] == "adam":
            optimizer = keras.optimizers.Adam(hp["lr"])
        else:
            optimizer = keras.optimizers.SGD(hp["lr"], momentum=0.9)
    loss_fn = keras.losses.SparseCategoricalCrossentropy(from_logits=True, reduction="none")

    # Custom training loop (see the top of the file for why not model.fit).
    def replica_step(x, y):
        with tf.GradientTape() as tape:
            # Mean over the GLOBAL batch, so summing replicas gives the global mean.
            loss = tf.nn.compute_average_loss(loss_fn(y, model(x, training=True)),
                                              global_batch_size=global_batch)
        grads = tape.gradient(loss, model.trainable_variables)
        # The Keras optimizer all-reduces (sums) gradients across all replicas.
        optimizer.apply_gradients(zip(grads, model.trainable_variables, strict=True))
        return loss

    @tf.function
    def train_step(iterator):
        x, y = next(iterator)
        per_replica_loss = strategy.run(replica_step, args=(x, y))
        return strategy.reduce(tf.distribute.ReduceOp.SUM, per_replica_loss, axis=None)

    first_step_unix = None
    final_loss = float("nan")
    progress = mnist_data.JobProgress(rank, "tensorflow")  # live metrics for Prometheus (DL_TEXTFILE_DIR)
    train_start = time.perf_counter()
    for epoch in range(1, hp["epochs"] + 1):
        loss_sum = 0.0
        for _ in range(steps_per_epoch):
            loss_sum += float(train_step(batches))
            progress.step(hp["batch_size"])
            if first_step_unix is None:
                first_step_unix = time.time()
            if hp["step_sleep"] > 0:
                time.sleep(hp["step_sleep"])
        final_loss = loss_sum / steps_per_epoch  # mean over all workers' samples
        progress.epoch(epoch, final_loss)
        print(f"epoch={epoch} loss={final_loss:.4f} rank={rank}", flush=True)
    train_seconds = time.perf_counter() - train_start
    samples_seen = hp["epochs"] * steps_per_epoch * hp["batch_size"]  # this worker's share

    # Every worker holds the same weights: score the whole test split locally
    # (a plain forward pass, no collective ops).
    predictions = tf.argmax(model(x_test, training=False), axis=1).numpy()
    test_accuracy = float((predictions == y_test).mean())
    progress.finish(test_accuracy)

    os.makedirs(args.output, exist_ok=True)
    if rank == 0:  # only the chief writes the model
        model.save(os.path.join(args.output, "model.keras"))
    end_unix = time.time()
    mnist_data.write_metrics(os.path.join(args.output, f"metrics-rank{rank}.json"), {
        "rank": rank,
        "world_size": world_size,
        "local_rank": local_rank,
        "host": host,
        "framework": "tensorflow",
        "strategy": "multi_worker_mirrored",
        "backend": "collective-" + implementation.name.lower(),
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
    print(f"done rank={rank} test_accuracy={test_accuracy:.4f}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
