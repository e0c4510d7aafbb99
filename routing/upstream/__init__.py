"""Calling an LLM's OpenAI-compatible API: one client for the gateway and for profiling.

- ``addresses.py``   which hosts may be called (SSRF rules) and the IP each call is pinned to
- ``credentials.py`` an LLM's API key: its encrypted field or a ``ROUTERHUB_LLM_KEY_…`` variable
- ``http.py``        pooled httpx clients (sync and async), timeouts, no redirects, failure classes,
                     redaction of what an upstream sends back
- ``streams.py``     Server-Sent Events of a streamed chat completion: relay, rewrite, meter
"""
