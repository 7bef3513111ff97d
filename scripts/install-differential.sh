#!/usr/bin/env bash
# Installs what the differential suite (e2e/differential) needs: Debian's /usr/bin/python3
# with flask-jwt-extended, Flask, werkzeug and PyJWT from Debian's packages (the reference
# the suite compares the filter with). Idempotent: nothing happens when they import. All
# output goes to stderr, because scripts/test-services.sh, which calls this, is eval'd.
set -euo pipefail

PY=/usr/bin/python3
PACKAGES=(python3-python-flask-jwt-extended python3-flask python3-jwt)
imports() { [ -x "$PY" ] && "$PY" -c 'import flask, werkzeug, jwt, flask_jwt_extended' 2>/dev/null; }

if imports; then
  exit 0
fi
echo "install-differential: installing ${PACKAGES[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq >&2
apt-get install -y -qq -o DPkg::Lock::Timeout=300 "${PACKAGES[@]}" >&2
imports || { echo "install-differential: $PY still cannot import flask_jwt_extended" >&2; exit 1; }
