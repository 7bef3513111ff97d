"""The reference app of the differential suite: real Flask, flask-jwt-extended, werkzeug and
PyJWT (Debian's packages), checking nothing itself.

It revokes nothing and loads no blocklist: whatever it authenticates is what a real
flask-jwt-extended app would accept from that request. Every answer says so in headers
(X-Diffapp-Auth, -Jti, -Type, -Sub, -Iat; HEAD requests have no body) and in a JSON body.

Apps are selected by the first path segment, one letter per JWT_TOKEN_LOCATION entry in
order: h=headers, c=cookies, q=query_string, j=json. /hcqj/protected is @jwt_required() on
an app whose locations are headers, cookies, query_string, json. Routes of each app:
  /protected  @jwt_required()              access tokens
  /refresh    @jwt_required(refresh=True)  refresh tokens
  /optional   @jwt_required(optional=True)
POST /mint {"type": "access"|"refresh", "identity": ..., "claims": {...}} returns a token made
by create_access_token / create_refresh_token, so tokens are exactly what an app issues.

Usage: python3 diffapp.py SECRET   (prints "PORT <n>" once listening on 127.0.0.1:0; exits
when its standard input closes, so it never outlives the test that started it).
"""

import json
import logging
import os
import sys
import threading

from flask import Flask, jsonify, request
from flask_jwt_extended import (
    JWTManager,
    create_access_token,
    create_refresh_token,
    get_jwt,
    jwt_required,
)
from werkzeug.serving import make_server

LOCATIONS = {"h": "headers", "c": "cookies", "q": "query_string", "j": "json"}


def make_app(secret, letters):
    app = Flask("diffapp_" + letters)
    app.config.update(
        JWT_SECRET_KEY=secret,
        JWT_TOKEN_LOCATION=[LOCATIONS[c] for c in letters],
        # CSRF off: the app accepts as much as it can.
        JWT_COOKIE_CSRF_PROTECT=False,
    )
    JWTManager(app)

    def answer():
        claims = get_jwt()
        if not claims:
            return jsonify(auth=False)
        return jsonify(auth=True, jti=claims.get("jti"), type=claims.get("type"),
                       sub=claims.get("sub"), iat=claims.get("iat"))

    methods = ["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD"]

    @app.route("/protected", methods=methods)
    @jwt_required()
    def protected():
        return answer()

    @app.route("/refresh", methods=methods)
    @jwt_required(refresh=True)
    def refresh():
        return answer()

    @app.route("/optional", methods=methods)
    @jwt_required(optional=True)
    def optional():
        return answer()

    @app.route("/mint", methods=["POST"])
    def mint():
        spec = request.get_json()
        make = create_refresh_token if spec["type"] == "refresh" else create_access_token
        return jsonify(token=make(identity=spec["identity"], expires_delta=False,
                                  additional_claims=spec.get("claims") or {}))

    @app.after_request
    def mark(resp):
        resp.headers["X-Diffapp"] = letters
        try:
            claims = get_jwt()
        except RuntimeError:  # no decorator ran (404, mint)
            claims = {}
        if claims:
            resp.headers["X-Diffapp-Auth"] = "1"
            resp.headers["X-Diffapp-Jti"] = json.dumps(claims.get("jti"))
            resp.headers["X-Diffapp-Type"] = json.dumps(claims.get("type"))
            resp.headers["X-Diffapp-Sub"] = json.dumps(claims.get("sub"))
            resp.headers["X-Diffapp-Iat"] = json.dumps(claims.get("iat"))
        return resp

    return app


class Dispatcher:
    """Routes /<letters>/<rest> to the app of those locations (made on first use)."""

    def __init__(self, secret):
        self.secret = secret
        self.apps = {}
        self.lock = threading.Lock()

    def app_for(self, letters):
        with self.lock:
            if letters not in self.apps:
                self.apps[letters] = make_app(self.secret, letters)
            return self.apps[letters]

    def __call__(self, environ, start_response):
        path = environ.get("PATH_INFO", "")
        first, _, rest = path.lstrip("/").partition("/")
        if not first or any(c not in LOCATIONS for c in first) or len(set(first)) != len(first):
            start_response("404 Not Found", [("Content-Type", "text/plain"), ("X-Diffapp", "-")])
            return [b"no such app\n"]
        environ["SCRIPT_NAME"] = environ.get("SCRIPT_NAME", "") + "/" + first
        environ["PATH_INFO"] = "/" + rest
        return self.app_for(first)(environ, start_response)


def main():
    if len(sys.argv) != 2:
        sys.exit("usage: diffapp.py SECRET")
    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    server = make_server("127.0.0.1", 0, Dispatcher(sys.argv[1]), threaded=True)
    print("PORT", server.server_port, flush=True)

    def watch_stdin():
        sys.stdin.read()
        os._exit(0)

    threading.Thread(target=watch_stdin, daemon=True).start()
    server.serve_forever()


if __name__ == "__main__":
    main()
