from django.apps import AppConfig


class RoutingConfig(AppConfig):
    name = "routing"
    verbose_name = "Routing"

    def ready(self):
        from routing import api_checks  # noqa: F401  registers the route API's system checks
