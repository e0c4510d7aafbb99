from django.apps import AppConfig


class RoutingConfig(AppConfig):
    name = "routing"
    verbose_name = "Routing"

    def ready(self):
        from routing import (
            checks,  # noqa: F401  registers routing's system checks
            signals,
            tasks,  # noqa: F401  registers the Celery tasks that jobs are sent to by name
        )

        signals.connect()  # changed keys, tenants, LLMs and presets reach the gateway's cached lookups
