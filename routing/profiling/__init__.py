"""Profiling an LLM: ask it the validation prompts, grade the answers, store Outcomes (source profiled).

- ``client.py``   an OpenAI-compatible chat client: timeouts, retries with backoff, bounded concurrency
- ``graders.py``  answer graders (multiple-choice letter, exact match, judge) behind one small interface
- ``judges.py``   LLM-as-judge: prompt templates (``judge_prompts/``), strict verdict parsing, pairwise in
  both orders, a cache interface (docs/judges.md)

The writes — ``llm_profile_run``: collect the missing outcomes, then compute Ψ, no refit — are
``routing/services/profiling.py``.
"""
