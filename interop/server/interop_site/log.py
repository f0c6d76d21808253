"""One JSON line per request to the file named by INTEROP_LOG: what the
tests count (refresh grants, invalid_grant answers, API statuses). Lines are
appended with a single write, so both server processes can share the file.
No token is ever written."""

import json
import os


class RequestLog:
    def __init__(self, get_response):
        self.get_response = get_response
        self.path = os.environ.get("INTEROP_LOG")
        self.role = os.environ.get("INTEROP_ROLE", "server")

    def __call__(self, request):
        grant = None
        if request.path == "/o/token/" and request.method == "POST":
            grant = request.POST.get("grant_type")
        response = self.get_response(request)
        if self.path:
            error = None
            if response.status_code >= 400 and response.get("Content-Type", "").startswith(
                "application/json"
            ):
                try:
                    error = json.loads(response.content).get("error")
                except (ValueError, AttributeError):
                    error = "unparsable"
            line = json.dumps(
                {
                    "role": self.role,
                    "method": request.method,
                    "path": request.path,
                    "grant": grant,
                    "status": response.status_code,
                    "error": error,
                    "authorization": "HTTP_AUTHORIZATION" in request.META,
                }
            )
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
            try:
                os.write(fd, (line + "\n").encode())
            finally:
                os.close(fd)
        return response
