"""Test configuration: real etcd fixtures from txetcd.testing, pytest-twisted's reactor."""

pytest_plugins = ["txetcd.testing.pytest_plugin"]
