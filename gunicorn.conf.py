"""gunicorn settings read from the project root (``gunicorn routerhub.wsgi``)."""

import os

# Web workers answer one small request at a time: single-threaded BLAS is steadier there (a
# multi-threaded call on a tiny matrix sometimes stalled ~12 ms on a busy 2-core machine, against a
# steady 0.2 ms on one thread). Set here, before any worker imports numpy.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")
# One embedding thread per web worker (ONNX Runtime and PyTorch alike): with one per core, workers
# embedding at the same time fight over the cores (a short prompt took ~500 ms instead of ~12 ms
# with 2 PyTorch workers on 2 cores).
os.environ.setdefault("ROUTERHUB_EMBED_THREADS", os.environ.get("ROUTERHUB_WEB_TORCH_THREADS", "1"))

bind = os.environ.get("GUNICORN_BIND", "127.0.0.1:8000")
workers = int(os.environ.get("WEB_CONCURRENCY", "2"))
timeout = 60


def post_worker_init(worker):
    from registry.embedders import get_embedder

    embedder = get_embedder()
    if embedder.remote:
        return  # a service: nothing to load
    if embedder.uses_torch:
        import torch

        torch.set_num_threads(int(os.environ["ROUTERHUB_EMBED_THREADS"]))
    # Load the embedding model before the first request instead of during it.
    embedder.embed_one("warm-up")
