"""The dashboard's pages, at the site root (``/`` is the overview; login first). ``routerhub/urls.py``
serves them, with evaluation's (``evaluation/urls.py``), in the namespace "dashboard"."""

from django.contrib.auth import views as auth_views
from django.urls import path

from routing.views import decisions, llms, overview, router, shadow, tryit
from routing.views.login import throttled_login

urlpatterns = [
    path("", overview.overview, name="overview"),
    path("router/", router.router, name="router"),
    path("llms/", llms.llm_list, name="llms"),
    path("llms/<int:llm_id>/", llms.llm_detail, name="llm"),
    path("decisions/", decisions.decision_list, name="decisions"),
    path("decisions/<uuid:decision_id>/", decisions.decision_detail, name="decision"),
    path("try/", tryit.try_page, name="try"),
    path("shadow/", shadow.shadow, name="shadow"),
    path("try/rank", tryit.RoutePreviewApi.as_view(), name="try-rank"),
    path("login/", throttled_login(auth_views.LoginView.as_view(redirect_authenticated_user=True)), name="login"),
    path("logout/", auth_views.LogoutView.as_view(), name="logout"),
]
