"""The options every dlcluster devpi module shares: where the server is and which user logs in."""


class ModuleDocFragment:  # pylint: disable=too-few-public-methods
    """`extends_documentation_fragment: [dl_devpi]` in library/dl_devpi_*.py."""

    DOCUMENTATION = r"""
options:
  url:
    description: Base URL of the server, e.g. http://127.0.0.1:13141 (devpi on loopback, behind nginx).
    type: str
    required: true
  user:
    description: devpi user (root owns dlcluster's indexes).
    type: str
    default: root
"""
