#!/usr/bin/env python3
"""dlbench: the benchmark engine that playbooks/benchmark.yml copies to each host.

What: one standalone script (Python 3.11, standard library + numpy; PyTorch,
TensorFlow and Keras are imported only inside the subcommand that needs them,
so the controller's unit tests import this file without any framework). It is
run with the host's virtualenv python. Every subcommand prints exactly ONE
JSON object on stdout; logs, warnings and framework noise go to stderr (file
descriptor 1 is pointed at stderr while the work runs, so not even a C library
can write into the JSON stream).

Subcommands
  resnet      ResNet-50 v1.5 images/s on synthetic data, training or inference.
                --framework pytorch|keras  --device cpu|cuda (cuda covers ROCm
                builds of torch)  --precision fp32|bf16|fp16  --mode train|infer
                --batch N  --image-size S  --warmup W  --steps K  --threads T
                --interop I  --gpus G (cuda, G>1 = DDP on this node)
                --onednn on|off  --memory-format auto|channels_last|contiguous
                --model-source auto|torchvision|dlbench
              PyTorch uses torchvision.models.resnet50(weights=None) when
              torchvision imports, otherwise build_resnet50_torch() below (same
              architecture): "model": "resnet50_v1.5". Keras uses
              keras.applications.ResNet50(weights=None), which is ResNet-50 v1
              (stride on the block's first 1x1 convolution, convolutions with
              biases): "model": "resnet50_v1", reported as such.
  allreduce   all_reduce bandwidth from --min-bytes to --max-bytes (x --factor),
              run under torchrun; gloo on CPU, NCCL (RCCL on ROCm) on CUDA.
              algbw = bytes / time, busbw = algbw * 2(n-1)/n, in GB/s (1e9),
              as nccl-tests define them for all_reduce:
              https://github.com/NVIDIA/nccl-tests/blob/master/doc/PERFORMANCE.md
  versions    python, torch (+CUDA/HIP/cuDNN), tensorflow, keras, numpy, NVIDIA
              driver, ROCm, CPU model, bf16 CPU flags; missing = null.

Exit status: 0 ok; 1 the benchmark failed ({"ok": false, "error": ...});
2 the input was refused before anything ran (also {"ok": false, "error": ...},
the sentence names the option). Refusals that need no framework are made
before torch or tensorflow is imported.

DLBENCH_CPUINFO=<file> reads CPU facts from that file instead of /proc/cpuinfo
(tests use it to stand for a CPU without bf16).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import platform
import shutil
import socket
import statistics
import subprocess
import sys
import time
from typing import Any, Iterable

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_REFUSED = 2

BF16_CPU_FLAGS = ("avx512_bf16", "amx_bf16")
RESNET50_BLOCKS = (3, 4, 6, 3)
NUM_CLASSES = 1000
MIN_IMAGE_SIZE = 32  # keras.applications.ResNet50 refuses smaller inputs
ALLREDUCE_DTYPES = {"float32": 4, "float64": 8, "float16": 2, "bfloat16": 2}


class Refused(Exception):
    """Input that is refused (exit 2); the message is one sentence naming the option."""


def log(message: str) -> None:
    print(f"dlbench: {message}", file=sys.stderr, flush=True)


# ------------------------------------------------------------ pure helpers --


def parse_cpuinfo(text: str) -> dict[str, Any]:
    """CPU model name and flags from the text of /proc/cpuinfo (first processor).

    x86 has 'model name' and 'flags'; aarch64 has 'Features' and often no model
    name (then 'CPU part' or None)."""
    model = None
    flags: set[str] = set()
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        if not sep:
            continue
        key = key.strip().lower()
        value = value.strip()
        if key in ("model name", "hardware", "cpu model") and model is None and value:
            model = value
        elif key in ("flags", "features") and not flags:
            flags = set(value.split())
    return {"model_name": model, "flags": flags}


def cpu_supports_bf16(flags: str | Iterable[str]) -> bool:
    """True when the CPU flags include avx512_bf16 or amx_bf16.

    `flags` is the flags line of /proc/cpuinfo (a string, with or without the
    'flags :' prefix) or any iterable of flag names."""
    if isinstance(flags, str):
        flags = flags.partition(":")[2] if ":" in flags else flags
        flags = flags.split()
    names = {str(flag).strip().lower() for flag in flags}
    return any(flag in names for flag in BF16_CPU_FLAGS)


def bus_bandwidth(algbw: float, world_size: int) -> float:
    """all_reduce bus bandwidth from algorithm bandwidth, as nccl-tests define it.

    busbw = algbw * 2 * (n - 1) / n
    (https://github.com/NVIDIA/nccl-tests/blob/master/doc/PERFORMANCE.md,
    section AllReduce). One rank moves nothing: busbw is 0."""
    if isinstance(world_size, bool) or not isinstance(world_size, int) or world_size < 1:
        raise ValueError(f"bus_bandwidth: world_size must be an integer >= 1, got {world_size!r}")
    if algbw < 0 or not math.isfinite(algbw):
        raise ValueError(f"bus_bandwidth: algbw must be a finite number >= 0, got {algbw!r}")
    return algbw * 2.0 * (world_size - 1) / world_size


def algorithm_bandwidth(nbytes: int, seconds: float) -> float:
    """Algorithm bandwidth in GB/s (1e9 bytes/s, as nccl-tests): size / time."""
    if seconds <= 0:
        raise ValueError(f"algorithm_bandwidth: seconds must be > 0, got {seconds!r}")
    return nbytes / seconds / 1e9


def message_sizes(min_bytes: int, max_bytes: int, factor: int) -> list[int]:
    """min_bytes, min_bytes*factor, ... up to and including max_bytes."""
    if min_bytes < 1 or max_bytes < min_bytes or factor < 2:
        raise ValueError("message_sizes: need 1 <= min_bytes <= max_bytes and factor >= 2")
    sizes = []
    size = min_bytes
    while size <= max_bytes:
        sizes.append(size)
        size *= factor
    return sizes


def throughput(step_seconds: Iterable[float], batch: int, gpus: int = 1) -> dict[str, float]:
    """images/s, ms per step and ms per image from the measured steps.

    Each step processes `batch` images on each of `gpus` replicas (1 on CPU),
    so images/s = batch * gpus * steps / total seconds: the replicas' rates
    summed. ms_per_image = 1000 / images_per_second (the seed table's
    "step time" column)."""
    seconds = [float(s) for s in step_seconds]
    if not seconds:
        raise ValueError("throughput: no measured steps")
    if any(s <= 0 or not math.isfinite(s) for s in seconds):
        raise ValueError("throughput: every step time must be a finite number > 0")
    if batch < 1 or gpus < 1:
        raise ValueError("throughput: batch and gpus must be >= 1")
    total = sum(seconds)
    images_per_second = batch * gpus * len(seconds) / total
    return {
        "images_per_second": images_per_second,
        "ms_per_step": 1000.0 * total / len(seconds),
        "ms_per_step_median": 1000.0 * statistics.median(seconds),
        "ms_per_image": 1000.0 / images_per_second,
    }


def one_sentence(error: BaseException | str) -> str:
    """The first line of an error, as one sentence ending with a full stop."""
    if isinstance(error, BaseException):
        text = str(error).strip() or type(error).__name__
        if not isinstance(error, Refused):
            text = f"{type(error).__name__}: {text}"
    else:
        text = error.strip()
    text = text.splitlines()[0].strip() if text else "unknown error"
    if len(text) > 400:
        text = text[:397] + "..."
    return text if text.endswith((".", "!", "?")) else text + "."


# ------------------------------------------------------------- host facts --


def read_cpuinfo() -> dict[str, Any]:
    path = os.environ.get("DLBENCH_CPUINFO", "/proc/cpuinfo")
    try:
        with open(path, encoding="utf-8", errors="replace") as handle:
            facts = parse_cpuinfo(handle.read())
    except OSError:
        facts = {"model_name": None, "flags": set()}
    if not facts["model_name"]:
        facts["model_name"] = platform.processor() or platform.machine() or None
    return facts


def nvidia_driver() -> str | None:
    if not shutil.which("nvidia-smi"):
        return None
    try:
        out = subprocess.run(
            ["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
            capture_output=True, text=True, timeout=20, check=True,
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    versions = sorted({line.strip() for line in out.splitlines() if line.strip()})
    return ",".join(versions) or None


def rocm_version() -> str | None:
    try:
        with open("/opt/rocm/.info/version", encoding="utf-8") as handle:
            return handle.read().strip() or None
    except OSError:
        return None


def dist_version(*names: str) -> str | None:
    from importlib import metadata  # pylint: disable=import-outside-toplevel

    for name in names:
        try:
            return metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return None


# -------------------------------------------------------------- arguments --


class JsonArgumentParser(argparse.ArgumentParser):
    """argparse whose errors are a JSON refusal on stdout (exit 2), like every other refusal."""

    def __init__(self, *args, kind: str = "dlbench", **kwargs):
        super().__init__(*args, **kwargs)
        self.kind = kind

    def error(self, message):
        # argparse's messages name the option: "argument --framework: invalid choice: 'jax' ...".
        raise Refused(message[0].upper() + message[1:] if message else "invalid arguments")


def positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be an integer greater than 0, got {text}")
    return value


def non_negative_int(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be an integer of 0 or more, got {text}")
    return value


def build_parser() -> JsonArgumentParser:
    parser = JsonArgumentParser(prog="dlbench.py", description=__doc__.split("\n", 1)[0])
    sub = parser.add_subparsers(dest="command", required=True, parser_class=JsonArgumentParser)

    res = sub.add_parser("resnet", kind="resnet", help="ResNet-50 v1.5 images/s on synthetic data")
    res.add_argument("--model", default="resnet50", choices=["resnet50"],
                     help="the model (only ResNet-50 v1.5 today)")
    res.add_argument("--framework", default="pytorch", choices=["pytorch", "keras"])
    res.add_argument("--device", default="cpu", choices=["cpu", "cuda"],
                     help="cuda also covers ROCm builds of torch")
    res.add_argument("--precision", default="fp32", choices=["fp32", "bf16", "fp16"])
    res.add_argument("--mode", default="train", choices=["train", "infer"])
    res.add_argument("--batch", type=positive_int, default=32, help="images per step per GPU")
    res.add_argument("--image-size", type=positive_int, default=224)
    res.add_argument("--warmup", type=non_negative_int, default=10, help="steps not measured")
    res.add_argument("--steps", type=positive_int, default=30, help="steps measured")
    res.add_argument("--threads", type=positive_int, default=None,
                     help="intra-op threads (default: the framework's)")
    res.add_argument("--interop", type=positive_int, default=None,
                     help="inter-op threads (default: the framework's)")
    res.add_argument("--gpus", type=positive_int, default=1,
                     help="cuda: GPUs on this node; above 1 = DistributedDataParallel")
    res.add_argument("--onednn", choices=["on", "off"], default=None,
                     help="oneDNN (MKL-DNN) on/off; default: the framework's")
    res.add_argument("--memory-format", default="auto",
                     choices=["auto", "channels_last", "contiguous"],
                     help="pytorch tensor layout; auto = channels_last")
    res.add_argument("--model-source", default="auto", choices=["auto", "torchvision", "dlbench"],
                     help="pytorch: torchvision's resnet50 when it imports (auto), or dlbench's own")

    red = sub.add_parser("allreduce", kind="allreduce", help="all_reduce bandwidth under torchrun")
    red.add_argument("--min-bytes", type=positive_int, default=1024)
    red.add_argument("--max-bytes", type=positive_int, default=64 * 1024 * 1024)
    red.add_argument("--factor", type=positive_int, default=4)
    red.add_argument("--warmup", type=non_negative_int, default=2)
    red.add_argument("--iters", type=positive_int, default=5)
    red.add_argument("--dtype", default="float32", choices=sorted(ALLREDUCE_DTYPES))
    red.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"],
                     help="auto = cuda when torch sees a GPU")
    red.add_argument("--backend", default=None, choices=["gloo", "nccl", "mpi", "ucc"],
                     help="default: gloo on cpu, nccl on cuda (RCCL on ROCm)")
    red.add_argument("--timeout", type=positive_int, default=300,
                     help="seconds for the process group to form and each collective")

    sub.add_parser("versions", kind="versions", help="framework, driver and CPU versions")
    return parser


def validate_resnet(args: argparse.Namespace, cpu: dict[str, Any]) -> None:
    """Refusals that need no framework; each raises Refused with one sentence."""
    if args.image_size < MIN_IMAGE_SIZE:
        raise Refused(f"--image-size must be at least {MIN_IMAGE_SIZE} (ResNet-50 downsamples 32x), "
                      f"got {args.image_size}.")
    if args.device == "cpu" and args.gpus != 1:
        raise Refused(f"--gpus {args.gpus} needs --device cuda; a CPU run uses one process.")
    if args.framework == "keras" and args.gpus != 1:
        raise Refused("--gpus above 1 is implemented for --framework pytorch only.")
    if args.framework == "keras" and args.model_source != "auto":
        raise Refused("--model-source applies to --framework pytorch only; "
                      "keras uses keras.applications.ResNet50.")
    if args.precision == "fp16" and args.device != "cuda":
        raise Refused("--precision fp16 needs --device cuda; use bf16 (on a CPU with "
                      "avx512_bf16 or amx_bf16) or fp32 on CPU.")
    if args.precision == "bf16" and args.device == "cpu" and not cpu_supports_bf16(cpu["flags"]):
        raise Refused(f"--precision bf16 on CPU needs avx512_bf16 or amx_bf16 in the CPU flags, "
                      f"and this CPU ({cpu['model_name'] or 'unknown'}) has neither.")


def validate_allreduce(args: argparse.Namespace) -> dict[str, Any]:
    """Refusals and torchrun's environment; returns rank facts."""
    if args.max_bytes < args.min_bytes:
        raise Refused(f"--max-bytes ({args.max_bytes}) must not be below --min-bytes ({args.min_bytes}).")
    if args.factor < 2:
        raise Refused(f"--factor must be 2 or more, got {args.factor}.")
    size = ALLREDUCE_DTYPES[args.dtype]
    if args.min_bytes % size:
        raise Refused(f"--min-bytes must be a multiple of {size} bytes (one {args.dtype}), got {args.min_bytes}.")
    if args.backend == "nccl" and args.device == "cpu":
        raise Refused("--backend nccl needs --device cuda (or auto on a GPU host).")
    missing = [name for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")
               if name not in os.environ]
    if missing:
        raise Refused(f"allreduce runs under torchrun, which sets {', '.join(missing)}; "
                      f"start it as: torchrun --nproc_per_node N dlbench.py allreduce.")
    try:
        env = {name.lower(): int(os.environ[name]) for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK")}
    except ValueError as err:
        raise Refused(f"RANK, WORLD_SIZE and LOCAL_RANK must be integers ({err}).") from err
    return env


# ------------------------------------------------------- ResNet-50 (torch) --


def build_resnet50_torch(num_classes: int = NUM_CLASSES):
    """ResNet-50 v1.5 in plain torch.nn, the same architecture as torchvision's
    resnet50(weights=None): bottleneck blocks (3, 4, 6, 3), expansion 4, the
    stride on the 3x3 convolution (v1.5), 25,557,032 parameters, torchvision's
    initialisation. Used where torchvision is not installed."""
    # pylint: disable=import-outside-toplevel
    from torch import nn

    class Bottleneck(nn.Module):
        expansion = 4

        def __init__(self, inplanes, planes, stride=1, downsample=None):
            super().__init__()
            self.conv1 = nn.Conv2d(inplanes, planes, 1, bias=False)
            self.bn1 = nn.BatchNorm2d(planes)
            self.conv2 = nn.Conv2d(planes, planes, 3, stride=stride, padding=1, bias=False)
            self.bn2 = nn.BatchNorm2d(planes)
            self.conv3 = nn.Conv2d(planes, planes * self.expansion, 1, bias=False)
            self.bn3 = nn.BatchNorm2d(planes * self.expansion)
            self.relu = nn.ReLU(inplace=True)
            self.downsample = downsample

        def forward(self, x):
            identity = x if self.downsample is None else self.downsample(x)
            out = self.relu(self.bn1(self.conv1(x)))
            out = self.relu(self.bn2(self.conv2(out)))
            out = self.bn3(self.conv3(out))
            return self.relu(out + identity)

    class ResNet50(nn.Module):
        def __init__(self):
            super().__init__()
            self.inplanes = 64
            self.conv1 = nn.Conv2d(3, 64, 7, stride=2, padding=3, bias=False)
            self.bn1 = nn.BatchNorm2d(64)
            self.relu = nn.ReLU(inplace=True)
            self.maxpool = nn.MaxPool2d(3, stride=2, padding=1)
            self.layer1 = self._layer(64, RESNET50_BLOCKS[0], 1)
            self.layer2 = self._layer(128, RESNET50_BLOCKS[1], 2)
            self.layer3 = self._layer(256, RESNET50_BLOCKS[2], 2)
            self.layer4 = self._layer(512, RESNET50_BLOCKS[3], 2)
            self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
            self.fc = nn.Linear(512 * Bottleneck.expansion, num_classes)
            for module in self.modules():
                if isinstance(module, nn.Conv2d):
                    nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
                elif isinstance(module, nn.BatchNorm2d):
                    nn.init.constant_(module.weight, 1)
                    nn.init.constant_(module.bias, 0)

        def _layer(self, planes, blocks, stride):
            downsample = None
            if stride != 1 or self.inplanes != planes * Bottleneck.expansion:
                downsample = nn.Sequential(
                    nn.Conv2d(self.inplanes, planes * Bottleneck.expansion, 1, stride=stride, bias=False),
                    nn.BatchNorm2d(planes * Bottleneck.expansion),
                )
            layers = [Bottleneck(self.inplanes, planes, stride, downsample)]
            self.inplanes = planes * Bottleneck.expansion
            layers += [Bottleneck(self.inplanes, planes) for _ in range(1, blocks)]
            return nn.Sequential(*layers)

        def forward(self, x):
            x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
            x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
            return self.fc(self.avgpool(x).flatten(1))

    return ResNet50()


def torch_resnet50(source: str):
    """(model, "torchvision"|"dlbench")."""
    if source in ("auto", "torchvision"):
        try:
            import torchvision  # pylint: disable=import-outside-toplevel

            return torchvision.models.resnet50(weights=None), "torchvision"
        except Exception as err:  # pylint: disable=broad-except
            # A missing torchvision, or one built for another torch, raises on import.
            if source == "torchvision":
                raise RuntimeError(f"--model-source torchvision, but torchvision does not import ({err})") from err
            log(f"torchvision does not import ({type(err).__name__}); using dlbench's ResNet-50 v1.5")
    return build_resnet50_torch(), "dlbench"


def torch_dtype(precision: str):
    import torch  # pylint: disable=import-outside-toplevel

    return {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}[precision]


def torch_steps(model, opts: dict[str, Any], device) -> list[float]:
    """Run warm-up + measured steps; return the measured steps' seconds."""
    import torch  # pylint: disable=import-outside-toplevel

    memory_format = torch.channels_last if opts["memory_format"] == "channels_last" else torch.contiguous_format
    generator = torch.Generator().manual_seed(0)
    images = torch.randn(opts["batch"], 3, opts["image_size"], opts["image_size"], generator=generator)
    images = images.to(device).contiguous(memory_format=memory_format)
    labels = torch.randint(0, NUM_CLASSES, (opts["batch"],), generator=generator).to(device)
    dtype = torch_dtype(opts["precision"])
    cuda = device.type == "cuda"

    def autocast():
        if dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(device_type=device.type, dtype=dtype)

    def sync():
        if cuda:
            torch.cuda.synchronize(device)

    if opts["mode"] == "train":
        model.train()
        criterion = torch.nn.CrossEntropyLoss()
        optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
        scaler = torch.amp.GradScaler("cuda") if cuda and opts["precision"] == "fp16" else None

        def step():
            optimizer.zero_grad(set_to_none=True)
            with autocast():
                loss = criterion(model(images), labels)
            if scaler is not None:
                scaler.scale(loss).backward()
                scaler.step(optimizer)
                scaler.update()
            else:
                loss.backward()
                optimizer.step()
    else:
        model.eval()

        def step():
            with torch.inference_mode(), autocast():
                model(images)

    seconds = []
    for index in range(opts["warmup"] + opts["steps"]):
        sync()
        start = time.perf_counter()
        step()
        sync()
        if index >= opts["warmup"]:
            seconds.append(time.perf_counter() - start)
    return seconds


def _torch_setup(opts: dict[str, Any]):
    """Threads and oneDNN, right after import (inter-op threads cannot change later)."""
    import torch  # pylint: disable=import-outside-toplevel

    if opts["interop"] is not None:
        torch.set_num_interop_threads(opts["interop"])
    if opts["threads"] is not None:
        torch.set_num_threads(opts["threads"])
    if opts["onednn"] is not None:
        torch.backends.mkldnn.enabled = opts["onednn"] == "on"
    torch.manual_seed(0)
    return torch


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _ddp_worker(rank: int, world: int, port: int, opts: dict[str, Any], queue,
                device_type: str = "cuda") -> None:
    """One rank of a single-node DDP run (torch.multiprocessing.spawn target).

    device_type "cuda" (NCCL, RCCL on ROCm) is what `resnet --gpus K` runs;
    "cpu" (gloo) exists so the spawn/gather plumbing can be exercised without a GPU."""
    # pylint: disable=import-outside-toplevel
    import datetime

    torch = _torch_setup(opts)
    import torch.distributed as dist
    from torch.nn.parallel import DistributedDataParallel

    os.environ["MASTER_ADDR"] = "127.0.0.1"
    os.environ["MASTER_PORT"] = str(port)
    if device_type == "cuda":
        torch.cuda.set_device(rank)
        torch.backends.cudnn.benchmark = True
        device, backend, device_ids = torch.device("cuda", rank), "nccl", [rank]
    else:
        device, backend, device_ids = torch.device("cpu"), "gloo", None
    dist.init_process_group(backend, rank=rank, world_size=world,
                            timeout=datetime.timedelta(seconds=600))
    try:
        model, _ = torch_resnet50(opts["model_source"])
        if opts["memory_format"] == "channels_last":
            model = model.to(memory_format=torch.channels_last)
        model = DistributedDataParallel(model.to(device), device_ids=device_ids)
        seconds = torch_steps(model, opts, device)
        gathered: list = [None] * world
        dist.all_gather_object(gathered, seconds)
        if rank == 0:
            queue.put(gathered)
    finally:
        dist.destroy_process_group()


def ddp_step_seconds(opts: dict[str, Any], gpus: int, device_type: str = "cuda") -> list[float]:
    """Spawn one process per GPU; each measured step's seconds is its slowest rank's
    (DDP steps are synchronous)."""
    import torch.multiprocessing as mp  # pylint: disable=import-outside-toplevel

    queue = mp.get_context("spawn").Queue()
    mp.spawn(_ddp_worker, args=(gpus, _free_port(), opts, queue, device_type), nprocs=gpus, join=True)
    per_rank = queue.get(timeout=60)
    return [max(rank[i] for rank in per_rank) for i in range(len(per_rank[0]))]


def run_resnet_pytorch(args: argparse.Namespace, cpu: dict[str, Any]) -> dict[str, Any]:
    opts = {key: getattr(args, key) for key in (
        "batch", "image_size", "warmup", "steps", "precision", "mode", "threads",
        "interop", "onednn", "model_source")}
    opts["memory_format"] = "channels_last" if args.memory_format == "auto" else args.memory_format
    torch = _torch_setup(opts)
    result: dict[str, Any] = {"framework_version": torch.__version__}

    if args.device == "cuda":
        if not torch.cuda.is_available():
            raise RuntimeError("--device cuda was asked for, but torch.cuda.is_available() is false "
                               f"on this host (torch {torch.__version__})")
        available = torch.cuda.device_count()
        if args.gpus > available:
            raise Refused(f"--gpus {args.gpus} is more than the {available} GPU(s) torch sees on this host.")
        if args.precision == "bf16" and not torch.cuda.is_bf16_supported():
            raise Refused(f"--precision bf16 is not supported by {torch.cuda.get_device_name(0)}; use fp16.")
        torch.backends.cudnn.benchmark = True
        result["device_name"] = torch.cuda.get_device_name(0)
        result["gpu_runtime"] = (f"hip {torch.version.hip}" if torch.version.hip
                                 else f"cuda {torch.version.cuda}")
    else:
        result["device_name"] = cpu["model_name"]

    # Which model: decided here (also for DDP ranks, which follow the same source).
    model, source = torch_resnet50(opts["model_source"])
    opts["model_source"] = source
    result["model"] = "resnet50_v1.5"
    result["model_source"] = source
    result["parameters"] = sum(p.numel() for p in model.parameters())

    if args.device == "cuda" and args.gpus > 1:
        del model
        seconds = ddp_step_seconds(opts, args.gpus)
        result["distributed"] = "DistributedDataParallel (nccl, one process per GPU)"
    else:
        device = torch.device("cuda", 0) if args.device == "cuda" else torch.device("cpu")
        if opts["memory_format"] == "channels_last":
            model = model.to(memory_format=torch.channels_last)
        model = model.to(device)
        seconds = torch_steps(model, opts, device)

    result.update({
        "threads": torch.get_num_threads(),
        "interop": torch.get_num_interop_threads(),
        "onednn": "on" if torch.backends.mkldnn.enabled else "off",
        "memory_format": opts["memory_format"],
        "step_seconds": seconds,
    })
    return result


# ------------------------------------------------------- ResNet-50 (keras) --


def run_resnet_keras(args: argparse.Namespace, cpu: dict[str, Any]) -> dict[str, Any]:
    # pylint: disable=import-outside-toplevel
    os.environ.setdefault("KERAS_BACKEND", "tensorflow")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    if args.onednn is not None:
        # Read by TensorFlow when it loads: must be set before the import.
        os.environ["TF_ENABLE_ONEDNN_OPTS"] = "1" if args.onednn == "on" else "0"
    try:
        import tensorflow as tf
        import keras
    except ImportError as err:
        raise RuntimeError(f"--framework keras needs TensorFlow and Keras in this env ({err})") from err
    import numpy as np

    if args.threads is not None:
        tf.config.threading.set_intra_op_parallelism_threads(args.threads)
    if args.interop is not None:
        tf.config.threading.set_inter_op_parallelism_threads(args.interop)
    gpus = tf.config.list_physical_devices("GPU")
    if args.device == "cpu":
        tf.config.set_visible_devices([], "GPU")
        device_name = cpu["model_name"]
    else:
        if not gpus:
            raise RuntimeError("--device cuda was asked for, but TensorFlow sees no GPU on this host")
        details = tf.config.experimental.get_device_details(gpus[0])
        device_name = details.get("device_name", gpus[0].name)

    policy = {"fp32": "float32", "bf16": "mixed_bfloat16", "fp16": "mixed_float16"}[args.precision]
    keras.mixed_precision.set_global_policy(policy)
    keras.utils.set_random_seed(0)
    size = args.image_size
    model = keras.applications.ResNet50(weights=None, input_shape=(size, size, 3), classes=NUM_CLASSES)
    rng = np.random.default_rng(0)
    with tf.device("/GPU:0" if args.device == "cuda" else "/CPU:0"):
        images = tf.constant(rng.standard_normal((args.batch, size, size, 3), dtype=np.float32))
        labels = tf.constant(rng.integers(0, NUM_CLASSES, size=(args.batch,)), dtype=tf.int32)

    if args.mode == "train":
        model.compile(optimizer=keras.optimizers.SGD(learning_rate=0.01, momentum=0.9),
                      loss="sparse_categorical_crossentropy")

        def step():
            model.train_on_batch(images, labels)  # returns numpy: the step has finished
    else:
        def step():
            model.predict_on_batch(images)  # returns numpy: the step has finished

    seconds = []
    for index in range(args.warmup + args.steps):
        start = time.perf_counter()
        step()
        if index >= args.warmup:
            seconds.append(time.perf_counter() - start)
    onednn_env = os.environ.get("TF_ENABLE_ONEDNN_OPTS")
    return {
        "framework_version": keras.__version__,
        "tensorflow_version": tf.__version__,
        # Keras' ResNet50 is v1: the stride is on the block's first 1x1 convolution,
        # and its convolutions have biases (25,636,712 parameters).
        "model": "resnet50_v1",
        "model_source": "keras.applications",
        "device_name": device_name,
        "parameters": int(model.count_params()),
        "threads": tf.config.threading.get_intra_op_parallelism_threads() or None,
        "interop": tf.config.threading.get_inter_op_parallelism_threads() or None,
        "onednn": None if onednn_env is None else ("off" if onednn_env == "0" else "on"),
        "xla": bool(getattr(model, "jit_compile", False)),
        "step_seconds": seconds,
    }


def cmd_resnet(args: argparse.Namespace) -> dict[str, Any]:
    cpu = read_cpuinfo()
    validate_resnet(args, cpu)
    log(f"resnet50 {args.framework} {args.device} {args.precision} {args.mode} batch {args.batch} "
        f"size {args.image_size}: {args.warmup} warm-up + {args.steps} measured steps")
    runner = run_resnet_pytorch if args.framework == "pytorch" else run_resnet_keras
    measured = runner(args, cpu)
    seconds = measured.pop("step_seconds")
    gpus = args.gpus if args.device == "cuda" else 0
    stats = throughput(seconds, args.batch, max(gpus, 1))
    result = {
        "kind": "resnet", "ok": True,
        "framework": args.framework,
        "framework_version": measured.pop("framework_version"),
        "model": measured.pop("model"),
        "model_source": measured.pop("model_source"),
        "device": args.device,
        "device_name": measured.pop("device_name"),
        "gpus": gpus,
        "precision": args.precision, "mode": args.mode, "batch": args.batch,
        "image_size": args.image_size, "warmup": args.warmup, "steps": args.steps,
        "threads": measured.pop("threads"), "interop": measured.pop("interop"),
        "onednn": measured.pop("onednn"),
        "images_per_second": round(stats["images_per_second"], 3),
        "ms_per_step": round(stats["ms_per_step"], 3),
        "ms_per_step_median": round(stats["ms_per_step_median"], 3),
        "ms_per_image": round(stats["ms_per_image"], 4),
        "step_ms": [round(1000.0 * s, 3) for s in seconds],
        "host": socket.gethostname(),
    }
    result.update(measured)  # parameters, memory_format / tensorflow_version, ...
    return result


# -------------------------------------------------------------- allreduce --


def cmd_allreduce(args: argparse.Namespace) -> dict[str, Any]:
    # pylint: disable=import-outside-toplevel
    env = validate_allreduce(args)
    import datetime

    import torch
    import torch.distributed as dist

    device_kind = args.device
    if device_kind == "auto":
        device_kind = "cuda" if torch.cuda.is_available() else "cpu"
    if device_kind == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("--device cuda was asked for, but torch.cuda.is_available() is false")
    backend = args.backend or ("nccl" if device_kind == "cuda" else "gloo")
    if device_kind == "cuda":
        torch.cuda.set_device(env["local_rank"])
        device = torch.device("cuda", env["local_rank"])
    else:
        device = torch.device("cpu")
    dist.init_process_group(backend, rank=env["rank"], world_size=env["world_size"],
                            timeout=datetime.timedelta(seconds=args.timeout))
    try:
        world = dist.get_world_size()
        rank = dist.get_rank()
        dtype = getattr(torch, args.dtype)
        element = ALLREDUCE_DTYPES[args.dtype]

        def sync():
            if device.type == "cuda":
                torch.cuda.synchronize(device)

        rows = []
        for nbytes in message_sizes(args.min_bytes, args.max_bytes, args.factor):
            count = nbytes // element
            tensor = torch.empty(count, dtype=dtype, device=device)
            times = []
            for index in range(args.warmup + args.iters):
                tensor.fill_(1)
                sync()
                dist.barrier()
                start = time.perf_counter()
                dist.all_reduce(tensor)
                sync()
                if index >= args.warmup:
                    times.append(time.perf_counter() - start)
            if float(tensor[0].item()) != float(world) or float(tensor[-1].item()) != float(world):
                raise RuntimeError(f"all_reduce of {nbytes} bytes gave {tensor[0].item()}, not {world}")
            rows.append((nbytes, count, statistics.fmean(times)))
            if rank == 0:
                log(f"all_reduce {nbytes} B: {1e6 * rows[-1][2]:.1f} us")

        hosts: list = [None] * world
        dist.all_gather_object(hosts, socket.gethostname())
        # The collective is as slow as its slowest rank: take each size's largest mean.
        means: list = [None] * world
        dist.all_gather_object(means, [row[2] for row in rows])
    finally:
        dist.destroy_process_group()

    if rank != 0:
        return {"kind": "allreduce", "ok": True, "rank": rank}
    table = []
    for index, (nbytes, count, _) in enumerate(rows):
        seconds = max(rank_means[index] for rank_means in means)
        algbw = algorithm_bandwidth(nbytes, seconds)
        table.append({
            "bytes": nbytes, "count": count,
            "time_us": round(seconds * 1e6, 2),
            "algbw_gbps": round(algbw, 6),
            "busbw_gbps": round(bus_bandwidth(algbw, world), 6),
        })
    return {
        "kind": "allreduce", "ok": True, "backend": backend, "device": device_kind,
        "dtype": args.dtype, "world_size": world, "warmup": args.warmup, "iters": args.iters,
        "torch": torch.__version__, "hosts": hosts, "rows": table,
    }


# --------------------------------------------------------------- versions --


def cmd_versions(_args: argparse.Namespace) -> dict[str, Any]:
    cpu = read_cpuinfo()
    result: dict[str, Any] = {
        "kind": "versions", "ok": True,
        "python": platform.python_version(),
        "torch": None, "torch_cuda": None, "torch_hip": None, "cudnn": None,
        # Distribution metadata, not an import: TensorFlow takes seconds to load.
        "tensorflow": dist_version("tensorflow", "tensorflow-cpu", "tensorflow-rocm",
                                   "tensorflow-intel", "tf-nightly"),
        "keras": dist_version("keras"),
        "numpy": dist_version("numpy"),
        "nvidia_driver": nvidia_driver(),
        "rocm": rocm_version(),
        "cpu_model": cpu["model_name"],
        "cpu_flags_bf16": cpu_supports_bf16(cpu["flags"]),
        "host": socket.gethostname(),
    }
    try:
        import torch  # pylint: disable=import-outside-toplevel

        result["torch"] = torch.__version__
        result["torch_cuda"] = torch.version.cuda
        result["torch_hip"] = getattr(torch.version, "hip", None)
        cudnn = torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None
        result["cudnn"] = str(cudnn) if cudnn is not None else None
    except Exception as err:  # pylint: disable=broad-except
        # Not installed, or installed but broken: null, and a word on stderr.
        if not isinstance(err, ImportError):
            log(f"torch does not import: {one_sentence(err)}")
        result["torch"] = result["torch"] or None
    return result


# ------------------------------------------------------------------- main --

COMMANDS = {"resnet": cmd_resnet, "allreduce": cmd_allreduce, "versions": cmd_versions}


def main(argv: list[str] | None = None) -> int:
    # Keep fd 1 for the one JSON object; everything else (print, C libraries,
    # child processes) writes to stderr.
    argv = sys.argv[1:] if argv is None else argv
    parser = build_parser()
    if "-h" in argv or "--help" in argv:
        parser.parse_args(argv)  # prints the help on stdout and exits 0
    sys.stdout.flush()
    json_out = os.fdopen(os.dup(1), "w", encoding="utf-8")
    os.dup2(2, 1)
    kind = "dlbench"
    status = EXIT_OK
    try:
        kind = argv[0] if argv and argv[0] in COMMANDS else kind
        args = parser.parse_args(argv)
        result = COMMANDS[args.command](args)
    except Refused as err:
        status = EXIT_REFUSED
        result = {"kind": kind, "ok": False, "error": one_sentence(err)}
    except BaseException as err:  # pylint: disable=broad-except
        status = EXIT_FAILED
        result = {"kind": kind, "ok": False, "error": one_sentence(err)}
        import traceback  # pylint: disable=import-outside-toplevel

        traceback.print_exc(file=sys.stderr)
    if not result["ok"]:
        log(result["error"])
    json_out.write(json.dumps(result) + "\n")
    json_out.flush()
    return status


if __name__ == "__main__":
    sys.exit(main())
