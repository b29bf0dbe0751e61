# txetcd's fixtures: memory_etcd, memory_client, etcd_server, etcd_client, etcd_prefix, ...
pytest_plugins = ["txetcd.testing.pytest_plugin"]

# The trial tests run under trial (python -m twisted.trial test_announce_trial): pytest-twisted
# runs the reactor itself, and a trial test that returns a Deferred cannot wait on it there.
collect_ignore = ["test_announce_trial.py"]
