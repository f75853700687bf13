"""The catalog's database backends: :mod:`~kzr_wsgi.catalog.backends.sqlite` (the
embedded default) and :mod:`~kzr_wsgi.catalog.backends.postgres` (extra ``postgres``),
both a :class:`~kzr_wsgi.catalog.backends.base.Backend`."""
