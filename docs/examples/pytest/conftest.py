# Enable txetcd's fixtures: etcd_server, etcd_server_private, etcd_client, etcd_prefix.
pytest_plugins = ["txetcd.testing.pytest_plugin"]
