"""A PostgreSQL database backend that starts the embedded server on the first connection.

Settings only describe the database (``ENGINE = "routerhub.embedded_db"``, ``DATA_DIR``); nothing
starts when they are imported. The first process that opens a connection — the run script, a
test session, a ``manage.py`` command that touches the database, a worker — starts (or attaches
to) the server in ``DATA_DIR``; commands that never connect (``collectstatic``, ``check`` without
``--database``) never start it.
"""
