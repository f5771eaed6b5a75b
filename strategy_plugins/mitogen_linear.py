"""The strategy every dlcluster play runs with: mitogen's linear strategy where mitogen is installed (`make venv`
pins it), Ansible's own linear strategy otherwise.

mitogen keeps one Python interpreter per host and runs the modules in it instead of copying and starting each module
over SSH: a converged 3-host lab re-runs site.yml in about half the time (README, "Warm re-runs"). The plays behave
the same either way; `ANSIBLE_STRATEGY=linear` turns mitogen off for one run.

CPU pinning. mitogen pins its processes to CPUs (ansible_mitogen/affinity.py): its connection multiplexer to CPU 0,
and, on a controller with fewer than 4 CPUs, Ansible's top-level process, every task worker and every SSH client to
CPU 1. On a 2-CPU controller the whole of Ansible then runs on one CPU while the other serves only the multiplexer:
a warm site.yml of the 3-host lab took 127 s pinned and 91 s unpinned (README, "Warm re-runs"). So below 4 usable
CPUs this strategy leaves the scheduler to place the processes; from 4 CPUs up, where mitogen gives the top-level
process a CPU of its own and spreads the workers over the rest, its placement is kept.
"""

import os

#: Below this many usable CPUs, mitogen's pinning puts every task worker on one CPU: it is left off.
PINNING_MIN_CPUS = 4


def usable_cpus():
    """The CPUs this process may run on (a container's or a cgroup's cpuset, not the machine's count)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # no sched_getaffinity on this platform
        return os.cpu_count() or 1


def affinity_policy(affinity, cpus):
    """The mitogen affinity policy to use on `cpus` usable CPUs: mitogen's own, or its no-op base `Policy`."""
    if cpus < PINNING_MIN_CPUS:
        return affinity.Policy()
    return affinity.policy


try:
    import ansible_mitogen.affinity
    import ansible_mitogen.loaders
    import ansible_mitogen.strategy
except ImportError:  # mitogen not installed: Ansible's own linear strategy, same behaviour, slower.
    from ansible.plugins.strategy.linear import StrategyModule  # noqa: F401  (the plugin loader's entry point)
else:
    # Before any play starts: the multiplexer, the top-level process and every worker read it when they start.
    ansible_mitogen.affinity.policy = affinity_policy(ansible_mitogen.affinity, usable_cpus())

    class StrategyModule(ansible_mitogen.strategy.StrategyMixin,
                         ansible_mitogen.loaders.strategy_loader.get("linear", class_only=True)):
        """mitogen's linear strategy, as its own plugins/strategy/mitogen_linear.py defines it."""
