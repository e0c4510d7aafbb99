"""Template filters of the dashboard: ``{{ value|usd }}``, ``{{ value|quality }}`` … (routing/views/formatting.py)."""

from django import template

from routing.views import formatting

register = template.Library()

register.filter("quality", formatting.quality)
register.filter("usd", formatting.usd)
register.filter("percent", formatting.percent)
register.filter("count", formatting.count)
register.filter("plain", formatting.plain)
register.filter("lam", formatting.lam)
register.filter("lam_input", formatting.lam_input)
register.filter("signed", formatting.signed)
register.filter("short", formatting.short)
