"""``python -m kzr_wsgi serve``: the same as ``kzr-wsgi serve``."""

from .cli import main

main()
