"""Django OAuth Toolkit as a strict authorization server, plus one protected
API route (Django REST framework), for refresh-machine's interop suite.

Everything that varies per test comes from the environment (set by serve.py).
Loopback only: DEBUG is off, ALLOWED_HOSTS is 127.0.0.1.
"""

import os

SECRET_KEY = "interop-only-not-a-secret"
DEBUG = False
ALLOWED_HOSTS = ["127.0.0.1", "localhost"]
USE_TZ = True
ROOT_URLCONF = "interop_site.urls"
WSGI_APPLICATION = "interop_site.wsgi.application"
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

INSTALLED_APPS = [
    "django.contrib.contenttypes",
    "django.contrib.auth",
    "oauth2_provider",
    "rest_framework",
]

MIDDLEWARE = [
    "interop_site.log.RequestLog",
]

DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": os.environ["INTEROP_DB"],
        "OPTIONS": {
            # Two server processes (authorization server and API) share it.
            "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
            "transaction_mode": "IMMEDIATE",
            "timeout": 30,
        },
    }
}

OAUTH2_PROVIDER = {
    "ACCESS_TOKEN_EXPIRE_SECONDS": int(os.environ.get("INTEROP_ACCESS_TTL", "3600")),
    # Rotation with reuse protection: presenting a spent refresh token revokes
    # the whole token family, as production servers are told to (RFC 9700 4.14.2).
    "ROTATE_REFRESH_TOKEN": True,
    "REFRESH_TOKEN_REUSE_PROTECTION": True,
    "REFRESH_TOKEN_GRACE_PERIOD_SECONDS": 0,
    "SCOPES": {"read": "read"},
    "DEFAULT_SCOPES": ["read"],
}

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "oauth2_provider.contrib.rest_framework.OAuth2Authentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "UNAUTHENTICATED_USER": None,
}

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"stderr": {"class": "logging.StreamHandler"}},
    # 401s on expired tokens are the point of the suite, not news; and the
    # bursts fill waitress's queue on purpose.
    "root": {"handlers": ["stderr"], "level": "ERROR"},
    "loggers": {"waitress": {"level": "ERROR"}, "django": {"level": "ERROR"}},
}
