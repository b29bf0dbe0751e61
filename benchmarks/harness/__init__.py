"""The harness behind ``benchmarks/run.py``: clients, venvs, etcd, workers, h2load, report."""
