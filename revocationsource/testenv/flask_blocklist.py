"""A flask-jwt-extended app with the database blocklist of its docs, run for real.

Used by the revocation source's tests (revocationsource/testenv/flask.go): it
creates the blocklist table with Flask-SQLAlchemy's db.create_all(), logs in,
revokes the tokens through the app's own logout route, checks that the app
itself now refuses them, and prints the tokens as JSON lines on stdout:

    {"jti": "...", "type": "access", "exp": 1767225600}

Variants, every version of the example in flask-jwt-extended's history:
    v1       examples/blocklist_database.py: id, jti, created_at (written
             by the app as datetime.now(timezone.utc)); access tokens only
    v2       docs/blocklist_and_token_revoking.rst: adds type and
             user_id (a foreign key, NOT NULL, filled by a Python default),
             created_at with server_default=func.now(); the logout route
             revokes access and refresh tokens (verify_type=False)
    v2-type  v2 without user_id ("Token type and user columns are not
             required and can be omitted")
    v2-server-default  v2-type whose logout leaves created_at to the
             database's server_default

Usage: flask_blocklist.py DATABASE_URL VARIANT TABLE
"""

import json
import sys
from datetime import datetime, timedelta, timezone

from flask import Flask, jsonify
from flask_sqlalchemy import SQLAlchemy
from sqlalchemy import func

from flask_jwt_extended import (
    JWTManager,
    create_access_token,
    create_refresh_token,
    decode_token,
    get_current_user,
    get_jwt,
    jwt_required,
)

url, variant, table = sys.argv[1], sys.argv[2], sys.argv[3]

ACCESS_EXPIRES = timedelta(hours=1)
REFRESH_EXPIRES = timedelta(days=30)

app = Flask(__name__)
app.config["JWT_SECRET_KEY"] = "test-only-secret"
app.config["JWT_ACCESS_TOKEN_EXPIRES"] = ACCESS_EXPIRES
app.config["JWT_REFRESH_TOKEN_EXPIRES"] = REFRESH_EXPIRES
app.config["SQLALCHEMY_DATABASE_URI"] = url
app.config["SQLALCHEMY_TRACK_MODIFICATIONS"] = False
jwt = JWTManager(app)
db = SQLAlchemy(app)


class Person(db.Model):
    __tablename__ = table + "_person"
    id = db.Column(db.Integer, primary_key=True)


if variant == "v1":

    class TokenBlocklist(db.Model):
        __tablename__ = table
        id = db.Column(db.Integer, primary_key=True)
        jti = db.Column(db.String(36), nullable=False, index=True)
        created_at = db.Column(db.DateTime, nullable=False)

elif variant == "v2":

    class TokenBlocklist(db.Model):
        __tablename__ = table
        id = db.Column(db.Integer, primary_key=True)
        jti = db.Column(db.String(36), nullable=False, index=True)
        type = db.Column(db.String(16), nullable=False)
        user_id = db.Column(
            db.ForeignKey(Person.id),
            default=lambda: get_current_user().id,
            nullable=False,
        )
        created_at = db.Column(
            db.DateTime,
            server_default=func.now(),
            nullable=False,
        )

else:

    class TokenBlocklist(db.Model):
        __tablename__ = table
        id = db.Column(db.Integer, primary_key=True)
        jti = db.Column(db.String(36), nullable=False, index=True)
        type = db.Column(db.String(16), nullable=False)
        created_at = db.Column(
            db.DateTime,
            server_default=func.now(),
            nullable=False,
        )


@jwt.user_lookup_loader
def user_lookup_callback(_jwt_header, jwt_data):
    return db.session.get(Person, int(jwt_data["sub"]))


@jwt.token_in_blocklist_loader
def check_if_token_revoked(jwt_header, jwt_payload: dict) -> bool:
    jti = jwt_payload["jti"]
    token = db.session.query(TokenBlocklist.id).filter_by(jti=jti).scalar()
    return token is not None


@app.route("/login", methods=["POST"])
def login():
    person = Person()
    db.session.add(person)
    db.session.commit()
    return jsonify(
        access_token=create_access_token(identity=str(person.id)),
        refresh_token=create_refresh_token(identity=str(person.id)),
    )


# The logout routes, as the docs write them.
if variant == "v1":

    @app.route("/logout", methods=["DELETE"])
    @jwt_required()
    def modify_token():
        jti = get_jwt()["jti"]
        now = datetime.now(timezone.utc)
        db.session.add(TokenBlocklist(jti=jti, created_at=now))
        db.session.commit()
        return jsonify(msg="JWT revoked")

elif variant == "v2-server-default":

    @app.route("/logout", methods=["DELETE"])
    @jwt_required(verify_type=False)
    def modify_token():
        token = get_jwt()
        db.session.add(TokenBlocklist(jti=token["jti"], type=token["type"]))
        db.session.commit()
        return jsonify(msg=f"{token['type'].capitalize()} token successfully revoked")

else:

    @app.route("/logout", methods=["DELETE"])
    @jwt_required(verify_type=False)
    def modify_token():
        token = get_jwt()
        jti = token["jti"]
        ttype = token["type"]
        now = datetime.now(timezone.utc)
        db.session.add(TokenBlocklist(jti=jti, type=ttype, created_at=now))
        db.session.commit()
        return jsonify(msg=f"{ttype.capitalize()} token successfully revoked")


@app.route("/protected", methods=["GET"])
@jwt_required(verify_type=False)
def protected():
    return jsonify(hello="world")


def main():
    with app.app_context():
        db.create_all()
    client = app.test_client()
    tokens = client.post("/login").get_json()
    kinds = ["access_token"] if variant == "v1" else ["access_token", "refresh_token"]
    out = []
    for kind in kinds:
        tok = tokens[kind]
        auth = {"Authorization": "Bearer " + tok}
        if client.get("/protected", headers=auth).status_code != 200:
            sys.exit("the app refused a fresh " + kind)
        resp = client.delete("/logout", headers=auth)
        if resp.status_code != 200:
            sys.exit("logout failed: %s %s" % (resp.status_code, resp.get_data(as_text=True)))
        if client.get("/protected", headers=auth).status_code != 401:
            sys.exit("the app still accepts a revoked " + kind)
        with app.app_context():
            claims = decode_token(tok, allow_expired=True)
        out.append({"jti": claims["jti"], "type": claims["type"], "exp": claims["exp"]})
    for o in out:
        print(json.dumps(o))


main()
