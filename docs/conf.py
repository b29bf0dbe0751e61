"""Sphinx configuration for the txetcd documentation.

Build with ``python -m sphinx -W -b html docs docs/_build/html`` from the repository root.
Nothing here touches the network: no intersphinx, the built-in alabaster theme only.
"""

from __future__ import annotations

import os
import re
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, ROOT)  # import txetcd from this checkout, installed or not


def _read_version() -> str:
    """``__version__`` from txetcd/_version.py, read as text (nothing is imported)."""
    with open(os.path.join(ROOT, "txetcd", "_version.py"), encoding="utf-8") as f:
        match = re.search(r"^__version__ = [\"']([^\"']+)[\"']", f.read(), re.MULTILINE)
    if match is None:
        raise RuntimeError("no __version__ in txetcd/_version.py")
    return match.group(1)


project = "txetcd"
author = "the txetcd authors"
copyright = "the txetcd authors, MIT License"
release = _read_version()
version = ".".join(release.split(".")[:2])

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.viewcode",
]

exclude_patterns = ["_build", "Thumbs.db", ".DS_Store"]
templates_path: list[str] = []
html_static_path: list[str] = []
root_doc = "index"
language = "en"
pygments_style = "sphinx"

html_theme = "alabaster"
html_title = f"txetcd {release}"
html_theme_options = {
    "description": "The etcd client for Twisted",
    "fixed_sidebar": True,
}

# -- autodoc -------------------------------------------------------------------------------------
autodoc_member_order = "bysource"
autodoc_typehints = "signature"
autodoc_typehints_format = "short"
autodoc_preserve_defaults = True
python_use_unqualified_type_names = True
add_module_names = False


def _public_base(app: object, name: str, obj: object, options: object, bases: list) -> None:
    """Show bases by their public name (``txetcd.ClientError``, not ``txetcd._errors...``; the
    same for ``txetcd.testing`` and ``txetcd.v2``)."""
    import txetcd
    import txetcd.testing
    import txetcd.v2

    for i, base in enumerate(bases):
        module = getattr(base, "__module__", "") or ""
        qualname = getattr(base, "__qualname__", "")
        for package in (txetcd, txetcd.testing, txetcd.v2):
            if (
                module.startswith(package.__name__ + "._")
                and getattr(package, qualname, None) is base
            ):
                bases[i] = f":py:class:`{package.__name__}.{qualname}`"
                break


def setup(app: object) -> None:
    app.connect("autodoc-process-bases", _public_base)  # type: ignore[attr-defined]
