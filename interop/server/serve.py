"""Start Django OAuth Toolkit on 127.0.0.1 for the interop suite.

    python serve.py --db PATH --port PORT --log PATH [--role auth|api]
                    [--access-ttl SECONDS] [--setup]

--setup migrates the database and creates the test user (alice / wonderland)
and the public client `interop-client` (password grant); run it on the first
server of a database only. Serves with waitress (one process, threads) until
killed; the suite stops it by PID.
"""

import argparse
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--db", required=True)
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--log", required=True)
    p.add_argument("--role", default="auth")
    p.add_argument("--access-ttl", type=int, default=3600)
    p.add_argument("--setup", action="store_true")
    a = p.parse_args()

    os.environ["INTEROP_DB"] = a.db
    os.environ["INTEROP_LOG"] = a.log
    os.environ["INTEROP_ROLE"] = a.role
    os.environ["INTEROP_ACCESS_TTL"] = str(a.access_ttl)
    os.environ["INTEROP_CONTROL"] = "1"
    os.environ["DJANGO_SETTINGS_MODULE"] = "interop_site.settings"
    sys.path.insert(0, HERE)

    import warnings

    # The password grant is used for the first login only (the suite has no
    # browser for an authorization-code flow); DOT warns on every use.
    warnings.filterwarnings("ignore", message=".*password credentials grant.*")

    import django

    django.setup()
    if a.setup:
        from django.contrib.auth import get_user_model
        from django.core.management import call_command
        from oauth2_provider.models import Application

        call_command("migrate", verbosity=0, interactive=False)
        User = get_user_model()
        user, created = User.objects.get_or_create(username="alice")
        if created:
            user.set_password("wonderland")
            user.save()
        Application.objects.get_or_create(
            client_id="interop-client",
            defaults=dict(
                name="refresh-machine interop",
                user=user,
                client_type=Application.CLIENT_PUBLIC,
                authorization_grant_type=Application.GRANT_PASSWORD,
                client_secret="",
            ),
        )

    from waitress import serve

    from interop_site.wsgi import application

    print(f"interop {a.role} server on http://127.0.0.1:{a.port}", flush=True)
    serve(application, host="127.0.0.1", port=a.port, threads=16, channel_timeout=30,
          connection_limit=1000, backlog=1024, ident="interop")


if __name__ == "__main__":
    main()
