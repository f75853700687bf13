"""The pipeline: a queue of work on stored recordings, done off the request path.

Each stored recording gets an ``analyse`` job in the catalog
(:mod:`kzr_wsgi.catalog.jobs`), written with its row. Workers
(:mod:`~kzr_wsgi.pipeline.worker`; ``kzr-wsgi worker``, or the background workers of
``kzr-wsgi serve``) claim jobs, decode each recording once
(:mod:`kzr_wsgi.analysis`), and keep what they found beside the recording in every store
that holds it and in the catalog. :mod:`~kzr_wsgi.pipeline.settings` reads the config
file's ``[analysis]`` table. See the manual's analysis page.

Nothing is imported here: ``kzr_wsgi.pipeline.settings`` (the config reader's need) loads
no decoder.
"""
