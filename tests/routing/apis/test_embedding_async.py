"""Embedding in the gateway's threads never blocks an async process's other requests."""

import asyncio
import time

import numpy as np

from registry.embedders import HashingEmbedder
from routing.caches import reset_all
from routing.gateway.threads import in_thread
from routing.services import embeddings as embedding_cache


class SlowEmbedder(HashingEmbedder):
    name = "slow-test-embedder"

    def _embed_batch(self, texts):
        time.sleep(0.4)  # a long prompt on a busy machine; sleep releases the GIL as ONNX Runtime does
        return super()._embed_batch(texts)


def test_the_event_loop_keeps_running_while_a_prompt_is_embedded(monkeypatch, settings):
    settings.ROUTERHUB_SHARED_EMBEDDING_CACHE = "off"
    monkeypatch.setattr("registry.embedding_store.FLUSH_SECONDS", 3600)  # no hit counts written to the database here
    monkeypatch.setattr("routing.services.embeddings.get_embedder", lambda: SlowEmbedder())
    reset_all()

    async def scenario():
        ticks = 0

        async def other_requests():
            nonlocal ticks
            while True:
                await asyncio.sleep(0.01)
                ticks += 1

        ticker = asyncio.create_task(other_requests())
        started = time.monotonic()
        (first, source_a), (second, source_b) = await asyncio.gather(
            in_thread(embedding_cache.embed_cached, "What is the speed of light in vacuum?", tenant_id=1),
            in_thread(embedding_cache.embed_cached, "Who wrote the Critique of Pure Reason?", tenant_id=1),
        )
        elapsed = time.monotonic() - started
        ticker.cancel()
        return ticks, elapsed, first, second, (source_a, source_b)

    ticks, elapsed, first, second, sources = asyncio.run(scenario())
    assert sources == ("", "")
    assert first.shape == second.shape == (384,) and not np.allclose(first, second)
    # Both embeddings ran side by side (not 0.8 s in a row) and the loop ticked all along.
    assert elapsed < 0.75
    assert ticks >= 20
