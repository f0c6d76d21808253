from django.urls import include, path

from . import views

urlpatterns = [
    path("o/", include("oauth2_provider.urls", namespace="oauth2_provider")),
    path("api/me", views.me),
    path("healthz", views.healthz),
    path("control/expire-access", views.expire_access_tokens),
]
