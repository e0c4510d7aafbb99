"""The evaluation pages of the dashboard; ``routerhub/urls.py`` serves them in its namespace."""

from django.urls import path

from evaluation import views

urlpatterns = [
    path("evaluations/", views.evaluation_list, name="evaluations"),
    path("evaluations/<int:run_id>/", views.evaluation_detail, name="evaluation"),
]
