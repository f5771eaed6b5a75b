"""The lab's tests. The marker `full` keeps a test out of CI's 45-minute budget: each such test is a variant of
behaviour that another test in CI proves, and `make test-full` runs it (.config/molecule/config.yml reads
DL_LAB_TESTS, default "not full"). README.md, "Tests", lists them."""


def pytest_configure(config):
    config.addinivalue_line(
        "markers", "full: runs only in make test-full (a variant of what a test in CI proves; README lists them)")
