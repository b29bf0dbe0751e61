"""The command line (``txetcd`` / ``python -m txetcd``) and the twistd plugin's options.

Private: the public surface is the commands themselves. ``_flags`` holds etcdctl's global
flags, shared by the CLI and the ``etcd-mirror`` twistd plugin."""
