"""The REST API under /api/v1/ (``routing/urls.py``): one thin view per use-case, one module per concept."""
