"""Work that runs beside serving: verify, retention (prune, holds, audit trail), sweeps.

It uses the stores and the catalog, never the WSGI edges.
"""
