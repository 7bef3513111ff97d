// Package differential is the differential end-to-end suite of jtiguard's one promise: a
// revoked token never reaches the app, whatever shape the request takes.
//
// A real flask-jwt-extended app (Flask, werkzeug and PyJWT from Debian's packages; see
// app/diffapp.py) that checks nothing itself sits behind the local proxy (localproxy: the
// real module in the wazero harness). Every request of a generated corpus of request shapes,
// and of a seeded random composition of them, goes once straight to the app (what flask
// does) and once through the proxy (what the filter lets through). Whenever the app,
// reached through the proxy, authenticates a token whose jti is revoked or whose subject has
// a cutoff it falls under, that is a violation; the suite passes with none.
//
// The suite is black-box: it does not know how the filter finds tokens. It only knows the
// plugin configuration (taken from envoy.yaml and varied), the revoked set it publishes into
// shared data, and what the app answers.
//
//	go test ./e2e/differential/                          the suite (about a minute)
//	go test ./e2e/differential/ -update                  also rewrite table.md
//	go test ./e2e/differential/ -diff.seed=7 -diff.random=2000   more random shapes
//
// It needs Debian's /usr/bin/python3 with python3-python-flask-jwt-extended, python3-flask
// and python3-jwt (scripts/install-differential.sh installs them); without them it fails
// under CI=true and skips, loudly, elsewhere.
package differential
