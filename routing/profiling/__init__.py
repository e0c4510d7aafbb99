"""Profiling an LLM: ask it the validation prompts, grade the answers, store Outcomes (source profiled).

- ``client.py``   an OpenAI-compatible chat client: timeouts, retries with backoff, bounded concurrency
- ``graders.py``  answer graders (multiple-choice letter, exact match) behind one small interface

The writes — ``llm_profile_run``: collect the missing outcomes, then compute Ψ, no refit — are
``routing/services/profiling.py``.
"""
