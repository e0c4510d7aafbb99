"""The dashboard: server-rendered pages (templates in the project's ``templates/dashboard/``).

One module per page, each view thin: it reads through selectors (and, for "Try it", the scoring
service the route API uses), turns the figures into SVG charts (``charts.py``) and renders.
"""
