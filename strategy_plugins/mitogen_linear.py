"""The strategy every dlcluster play runs with: mitogen's linear strategy where mitogen is installed (`make venv`
pins it), Ansible's own linear strategy otherwise.

mitogen keeps one Python interpreter per host and runs the modules in it instead of copying and starting each module
over SSH: a converged 3-host lab re-runs site.yml in about half the time (README, "Warm re-runs"). The plays behave
the same either way; `ANSIBLE_STRATEGY=linear` turns mitogen off for one run.
"""

try:
    import ansible_mitogen.loaders
    import ansible_mitogen.strategy
except ImportError:  # mitogen not installed: Ansible's own linear strategy, same behaviour, slower.
    from ansible.plugins.strategy.linear import StrategyModule  # noqa: F401  (the plugin loader's entry point)
else:
    class StrategyModule(ansible_mitogen.strategy.StrategyMixin,
                         ansible_mitogen.loaders.strategy_loader.get("linear", class_only=True)):
        """mitogen's linear strategy, as its own plugins/strategy/mitogen_linear.py defines it."""
