"""The protected API and the test-control routes."""

import datetime
import os

from django.http import HttpResponseNotFound, JsonResponse
from django.utils import timezone
from django.views.decorators.csrf import csrf_exempt
from oauth2_provider.models import AccessToken
from rest_framework.decorators import api_view
from rest_framework.response import Response


@api_view(["GET"])
def me(request):
    """GET /api/me: who the bearer token belongs to (DRF + DOT authentication;
    a missing, expired or revoked token is a 401 with a Bearer challenge)."""
    return Response({"user": request.user.get_username()})


def healthz(request):
    return JsonResponse({"ok": True})


@csrf_exempt
def expire_access_tokens(request):
    """POST /control/expire-access: every access token expires now (refresh
    tokens stay valid), as a server-side expiry the client cannot see coming.
    Only when INTEROP_CONTROL=1."""
    if os.environ.get("INTEROP_CONTROL") != "1" or request.method != "POST":
        return HttpResponseNotFound()
    n = AccessToken.objects.update(expires=timezone.now() - datetime.timedelta(seconds=1))
    return JsonResponse({"expired": n})
