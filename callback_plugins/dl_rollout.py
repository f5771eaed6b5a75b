"""Tells the canary plays which hosts a change reaches.

A canary rollout (1 host, then 10 %, then the rest) is only worth its batches where a host would change. The plays
that roll out ssh_hardening, the firewall and the notebook services therefore start with a probe play: the same roles
on every host at once, in check mode. This callback watches that play (the one whose vars set `dl_rollout_probe` to
the rollout's name, e.g. `firewall`) and gives every host that would change, failed, or could not be reached the fact
`dl_rollout_would_change_<name>: true`. The probe play then puts those hosts into the group `dl_rollout_<name>`,
and only that group goes through the batches. A converged cluster thus pays one parallel check pass instead of
three batches that change nothing.

Ansible's own callbacks see every result; tasks do not. That is why this is a callback and not a task: the fact covers
every task of the role, including the ones that notify nothing and register nothing.
"""

from ansible.plugins.callback import CallbackBase

DOCUMENTATION = """
  name: dl_rollout
  type: aggregate
  short_description: marks the hosts a canary play's check-mode probe would change
  description:
    - In a play whose vars set C(dl_rollout_probe) to a rollout's name, every host with a changed, failed or
      unreachable result gets the fact C(dl_rollout_would_change_<name>=true).
  requirements:
    - the repository's callback_plugins directory in the callback path (ansible.cfg sets it)
"""

FACT_PREFIX = "dl_rollout_would_change_"


class CallbackModule(CallbackBase):
    """Records, per host, whether the probe play of a canary rollout found anything to change."""

    CALLBACK_VERSION = 2.0
    CALLBACK_TYPE = "aggregate"
    CALLBACK_NAME = "dl_rollout"
    # Always on where the directory is in the callback path: the canary plays rely on it.
    CALLBACK_NEEDS_ENABLED = False

    def __init__(self):
        super().__init__()
        self._variable_manager = None
        self._fact = None

    def v2_playbook_on_play_start(self, play):
        self._variable_manager = play.get_variable_manager()
        probe = play.vars.get("dl_rollout_probe")
        self._fact = f"{FACT_PREFIX}{probe}" if probe else None

    def _mark(self, result):
        if self._fact and self._variable_manager is not None:
            self._variable_manager.set_nonpersistent_facts(result._host.get_name(), {self._fact: True})

    def v2_runner_on_ok(self, result):
        if result.is_changed():
            self._mark(result)

    def v2_runner_on_failed(self, result, ignore_errors=False):
        self._mark(result)

    def v2_runner_on_unreachable(self, result):
        self._mark(result)
