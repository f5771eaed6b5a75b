"""Training filters of dlcluster: a job spec checked, and the hyper-parameter file a job's script reads.

The spec's fields, defaults and checks are in plugin_utils/dl_job_spec.py
(collections/ansible_collections/dlcluster/cluster), shared with dl_train_plan.py.
"""

from __future__ import annotations

from ansible_collections.dlcluster.cluster.plugins.plugin_utils.dl_job_spec import dl_job_spec


def dl_hparams_merge(file_text, hparams_text) -> str:
    """The hyper-parameter file handed to the script: the spec's hparams_file with the keys the
    spec's own hparams set removed, then those hparams (each key once, as the scripts require)."""
    overrides = {line.split("=", 1)[0].strip() for line in str(hparams_text or "").splitlines()
                 if "=" in line and not line.lstrip().startswith("#")}
    kept = [line for line in str(file_text or "").splitlines()
            if line.lstrip().startswith("#") or "=" not in line or line.split("=", 1)[0].strip() not in overrides]
    parts = ["\n".join(kept).rstrip()] if kept else []
    if overrides:
        parts.append("# hparams of the job spec\n" + str(hparams_text).rstrip())
    return "\n".join(parts) + "\n"


class FilterModule:
    """dlcluster training filters: the job spec and its hyper-parameters."""

    def filters(self):
        return {
            "dl_job_spec": dl_job_spec,
            "dl_hparams_merge": dl_hparams_merge,
        }
