"""Sphinx configuration for the kzr_wsgi manual.

Build it (no warnings allowed, references checked, no network needed)::

    python -m sphinx -n -W --keep-going -b html docs docs/_build/html
"""

from __future__ import annotations

import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
# The package from this checkout (not an installed copy), and the local extension.
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE / "_ext"))

import kzr_wsgi  # noqa: E402

project = "kzr_wsgi"
author = "the kzr_wsgi authors"
copyright = "the kzr_wsgi authors"  # noqa: A001
release = kzr_wsgi.__version__
version = release

extensions = [
    "myst_parser",
    "sphinx.ext.autodoc",
    "sphinx_click",
    "kzr_docs",
]

source_suffix = {".md": "markdown"}
root_doc = "index"
exclude_patterns = ["_build", "Thumbs.db", ".DS_Store"]

# MyST: ``:::`` fences for directives, ``{#id}`` heading anchors, definition lists;
# heading anchors so ``[text](page.md#a-heading)`` links resolve (and are checked).
myst_enable_extensions = ["colon_fence", "attrs_inline", "deflist", "fieldlist"]
myst_heading_anchors = 3

# The API reference comes from the docstrings; types are shown where they belong.
autodoc_member_order = "bysource"
autodoc_typehints = "signature"
autodoc_default_options = {"members": True, "show-inheritance": False}
autodoc_class_signature = "mixed"
# A method that overrides a library's (``click.ParamType.convert``) would otherwise show
# the library's docstring, with references into the library.
autodoc_inherit_docstrings = False
# Optional extras the reference still documents (boto3 is the ``s3`` extra).
autodoc_mock_imports: list[str] = []

# Every internal reference must resolve (``-n``); the machines that build this have no
# internet, so there is no intersphinx. Types from other projects that cannot resolve
# offline are listed here, and nothing of kzr_wsgi's own.
nitpicky = True
_STDLIB = "|".join(sorted(sys.stdlib_module_names | {"typing_extensions", "_typeshed"}))
nitpick_ignore_regex = [
    # the standard library and typing (no intersphinx offline)
    (r"py:.*", rf"({_STDLIB})(\..*)?"),
    (r"py:.*", r"(Any|Callable|Iterator|Iterable|Mapping|Sequence|IO|Protocol|Self|TypeVar"
               r"|Literal|ClassVar|Optional|Union)"),
    # the standard library's, unqualified, as a signature shows them when a
    # TYPE_CHECKING-only import (a store module's store type, imported there to avoid
    # an import cycle) keeps the hints unevaluated
    (r"py:.*", r"(Path|timedelta|EntryPoint)"),
    (r"py:.*", r"(str|bytes|int|float|bool|dict|list|tuple|set|frozenset|object|type|None"
               r"|Exception|BaseException|ValueError|OSError|RuntimeError|KeyError"
               r"|bytearray|memoryview)"),
    (r"py:.*", r"(WSGIApplication|WSGIEnvironment|StartResponse|IPAddress|IPNetwork|F|T)"),
    # werkzeug's, unqualified, in those same unevaluated signatures (the UI's routes)
    (r"py:.*", r"(Request|Response)"),
    # private names, which the reference leaves out (a docstring may still name one)
    (r"py:.*", r"(.*\.)?_\w+"),
    # third-party libraries (no intersphinx offline)
    (r"py:.*", r"(click|werkzeug|flask|Flask|blinker|boto3|botocore|mypy_boto3_s3|S3Client"
               r"|CompletedPartTypeDef|psycopg|prometheus_client|gunicorn|mutagen"
               r"|numpy|np|npt|urllib3|pocketsphinx|soundfile|soxr|webrtcvad)(\..*)?"),
]

# Straight quotes: option help, commands and JSON are copied from this manual.
smartquotes = False

html_theme = "alabaster"
html_title = f"kzr_wsgi {release}"
html_static_path: list[str] = []
html_theme_options = {"description": "A safe receiver for Kazoo call recordings"}
