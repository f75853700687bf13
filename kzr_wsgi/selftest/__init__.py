"""``kzr-wsgi check``: the self-test and the Kazoo-shaped client it talks with.

:mod:`~kzr_wsgi.selftest.check` runs the steps; :mod:`~kzr_wsgi.selftest.wire` sends
Kazoo's URL forms as byte-exact requests over raw sockets.
"""
