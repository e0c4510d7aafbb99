"""The ASGI application: the web processes serve /v1/ (the gateway), /api/v1/ and the admin from it.

Run by ``scripts/web.sh`` (uvicorn workers). Settings that only make sense in these processes are
set here, before Django reads its settings: a database connection pool (``ROUTERHUB_DB_POOL``) and
single-threaded numerical libraries (each request is small; threads fighting over 2 cores were slower).
"""

import gc
import os

from routerhub import config, tracing

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "routerhub.settings")
os.environ.setdefault("ROUTERHUB_DB_POOL", "1")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")
# One compute thread per embedding call: a web process embeds several requests at once (the gateway's
# thread pool), and each call spreading over every core would only make them fight.
os.environ.setdefault("ROUTERHUB_EMBED_THREADS", "1")

from django.core.asgi import get_asgi_application  # noqa: E402 (after the environment above)

django_application = get_asgi_application()

from routerhub.handlers import ApiKeyHandler, called_with_api_key  # noqa: E402 (needs Django set up)
from routerhub.request_bodies import capped_bodies  # noqa: E402 (needs Django set up)

api_key_application = ApiKeyHandler()


async def _handler_of_the_call(scope, receive, send):
    """Calls made with a tenant's API key (the gateway /v1/, bearer calls under /api/) to the handler
    without Django's per-request thread hops (``routerhub/handlers.py``); the rest to Django's own."""
    if called_with_api_key(scope):
        return await api_key_application(scope, receive, send)
    if scope["type"] == "lifespan":
        return await _lifespan(receive, send)
    return await django_application(scope, receive, send)


# Every request body is capped while it is read, whichever handler reads it (routerhub/request_bodies.py);
# each request is a trace's server span when tracing is on (routerhub/tracing.py).
application = tracing.traced(capped_bodies(_handler_of_the_call))


async def _lifespan(receive, send) -> None:
    """At start, refuse an embedder service that disagrees with the routing state (uvicorn then stops
    with the message). On shutdown, write the gateway's queued decisions and give its budget leases
    back (a process stopped without it leaves them to expire and be swept: counted, never lost)."""
    import asyncio

    from routing.gateway import settlement

    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            refusal = await asyncio.to_thread(_embedder_refusal)
            if refusal:
                await send({"type": "lifespan.startup.failed", "message": refusal})
                return
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await asyncio.to_thread(settlement.shutdown)
            await send({"type": "lifespan.shutdown.complete"})
            return


def _embedder_refusal() -> str | None:
    from django.db import connections

    from routing.selectors.embeddings import remote_embedder_refusal

    try:
        return remote_embedder_refusal()
    finally:
        connections.close_all()  # this thread's, opened for the check


def _warm_up() -> None:
    """Load the embedding model before the first request rather than during it (it takes seconds)."""
    from registry.embedders import get_embedder

    embedder = get_embedder()
    if embedder.remote:
        return  # nothing to load; the lifespan start-up asks it
    if embedder.uses_torch:  # only PyTorch embedders import it: the ONNX default never loads torch
        import torch
        from django.conf import settings

        torch.set_num_threads(settings.ROUTERHUB_EMBED_THREADS)
    embedder.embed_one("warm-up")


if config.get("ROUTERHUB_WARM_UP"):
    _warm_up()
    # Everything loaded so far (Django, the embedder, their modules) lives as long as the process: out
    # of the collector's sight, a full collection does not walk it, and so does not hold up every call
    # in flight of the process while it would.
    gc.freeze()
