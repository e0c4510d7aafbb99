"""The OpenAI-compatible gateway (``/v1/``): route, call the chosen LLM, stream, fall back, meter.

- ``urls.py``, ``views.py`` the async views: ``POST /v1/chat/completions``, ``GET /v1/models``
- ``requests.py`` a chat-completions body, validated into what routing and the upstream need
- ``errors.py``   errors in OpenAI's shape, and the domain errors they come from
- ``threads.py``  the thread pool that keeps database work and embeddings off the event loop
- ``calls.py``    one call: plan (thread), attempts with fallbacks (async), relay, finish (thread)
- ``settlement.py`` the decisions and budget leases written on the writer thread

Rate limits are ``routing/throttling.py`` (shared with /api/); the database writes
``routing/services/gateway.py``; HTTP to the LLMs ``routing/upstream/``.
"""
