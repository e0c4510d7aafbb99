from django.contrib import admin
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

from evaluation import urls as evaluation_pages
from routing.apis.metrics import metrics_view
from routing.views import urls as dashboard_pages
from routing.views.login import throttled_login

# The dashboard: routing's pages and evaluation's, in one namespace.
dashboard = (dashboard_pages.urlpatterns + evaluation_pages.urlpatterns, "dashboard")

urlpatterns = [
    # the admin's own log-in view, with failed attempts limited like the dashboard's (found before admin/)
    path("admin/login/", throttled_login(admin.site.login)),
    path("admin/", admin.site.urls),
    path("api/schema/", SpectacularAPIView.as_view(), name="schema"),
    path("api/docs/", SpectacularSwaggerView.as_view(url_name="schema"), name="api-docs"),
    path("api/v1/", include("routing.urls")),
    path("v1/", include("routing.gateway.urls")),
    path("metrics", metrics_view, name="metrics"),
    path("", include(dashboard)),  # / is its overview
]

# JSON under /api/, Django's pages elsewhere.
handler400 = "routerhub.error_views.bad_request"
handler403 = "routerhub.error_views.permission_denied"
handler404 = "routerhub.error_views.page_not_found"
handler500 = "routerhub.error_views.server_error"
