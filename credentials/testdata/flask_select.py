"""Reference for the credentials package's tests: what the real flask-jwt-extended (Debian's
python3-python-flask-jwt-extended, with werkzeug) reads from a request.

Reads JSON lines {"config": {...}, "headers": [[name, value], ...], "path": str, "body": str|null}
in which every string carries bytes as latin-1 code points (as WSGI does),
and writes one JSON line per request: for each route kind, the token flask would decode, or
the error its search raised. Header handling follows werkzeug's development server: repeated
headers are joined with ',' in the WSGI environ.
"""
import io
import json
import sys

from flask import Flask
from flask_jwt_extended import JWTManager
from flask_jwt_extended import view_decorators as vd
from flask_jwt_extended.exceptions import NoAuthorizationError, InvalidHeaderError, InvalidQueryParamError


def make_app(cfg):
    app = Flask(__name__)
    app.config["JWT_SECRET_KEY"] = "x" * 32
    app.config["JWT_TOKEN_LOCATION"] = cfg["locations"]
    app.config["JWT_HEADER_NAME"] = cfg["header_name"]
    app.config["JWT_HEADER_TYPE"] = cfg["header_type"]
    app.config["JWT_ACCESS_COOKIE_NAME"] = cfg["cookie_name"]
    app.config["JWT_REFRESH_COOKIE_NAME"] = cfg["refresh_cookie_name"]
    app.config["JWT_QUERY_STRING_NAME"] = cfg["query_string_name"]
    app.config["JWT_QUERY_STRING_VALUE_PREFIX"] = cfg["query_string_value_prefix"]
    app.config["JWT_JSON_KEY"] = cfg["json_key"]
    app.config["JWT_REFRESH_JSON_KEY"] = cfg["refresh_json_key"]
    app.config["JWT_COOKIE_CSRF_PROTECT"] = False
    JWTManager(app)
    return app


def environ_for(req):
    path = req["path"]
    p, _, q = path.partition("?")
    body = (req.get("body") or "").encode("latin-1")
    env = {
        "REQUEST_METHOD": "POST" if req.get("body") is not None else "GET",
        "SCRIPT_NAME": "",
        "PATH_INFO": p,
        "QUERY_STRING": q,
        "SERVER_NAME": "localhost",
        "SERVER_PORT": "80",
        "SERVER_PROTOCOL": "HTTP/1.1",
        "wsgi.url_scheme": "http",
        "wsgi.input": io.BytesIO(body),
        "wsgi.errors": sys.stderr,
        "wsgi.multithread": False,
        "wsgi.multiprocess": False,
        "wsgi.run_once": False,
        "wsgi.version": (1, 0),
        "CONTENT_LENGTH": str(len(body)),
    }
    for name, value in req["headers"]:
        if name.startswith(":"):
            continue
        # As werkzeug's WSGIRequestHandler: latin-1 text, '-' as '_', repeats joined by ','.
        key = name.upper().replace("-", "_")
        if key in ("CONTENT_TYPE", "CONTENT_LENGTH"):
            env[key] = value
            continue
        key = "HTTP_" + key
        if key in env:
            value = env[key] + "," + value
        env[key] = value
    return env


def search(cfg, refresh):
    errors = []
    for loc in cfg["locations"]:
        try:
            if loc == "headers":
                tok, _ = vd._decode_jwt_from_headers()
            elif loc == "cookies":
                tok, _ = vd._decode_jwt_from_cookies(refresh)
            elif loc == "query_string":
                tok, _ = vd._decode_jwt_from_query_string()
            else:
                tok, _ = vd._decode_jwt_from_json(refresh)
            if not isinstance(tok, str):
                return {"bad": "Invalid token type. Token must be a <class 'bytes'>"}
            return {"token": tok, "location": loc}
        except NoAuthorizationError as e:
            errors.append(str(e))
        except (InvalidHeaderError, InvalidQueryParamError) as e:
            return {"bad": str(e)}
        except Exception as e:  # flask itself would answer 500: nothing is authenticated
            return {"crash": type(e).__name__}
    locs = cfg["locations"]
    if len(locs) > 1:
        msg = "Missing JWT in {} or {} ({})".format(", ".join(locs[:-1]), locs[-1], "; ".join(errors))
    else:
        msg = errors[0]
    return {"missing": msg}


def main():
    apps = {}
    for line in sys.stdin:
        req = json.loads(line)
        key = json.dumps(req["config"], sort_keys=True)
        app = apps.get(key) or apps.setdefault(key, make_app(req["config"]))
        out = {}
        with app.request_context(environ_for(req)):
            out["access"] = search(req["config"], False)
        with app.request_context(environ_for(req)):
            out["refresh"] = search(req["config"], True)
        sys.stdout.write(json.dumps(out) + "\n")
        sys.stdout.flush()


if __name__ == "__main__":
    main()
