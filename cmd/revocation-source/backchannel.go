package main

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	rs "github.com/jtiguard/jtiguard/revocationsource"
	"github.com/jtiguard/jtiguard/revocationsource/redisstore"
	"github.com/jtiguard/jtiguard/revocationsource/sqlstore"
)

// newBackchannel builds the back-channel logout endpoint and reads the
// provider's keys once: a JWKS file that cannot be read or used ends the
// program (a configuration error); a jwks_uri that does not answer yet is
// read again at the first logout.
func newBackchannel(ctx context.Context, c config, log *slog.Logger) (*rs.Backchannel, error) {
	keys := &rs.JWKSKeys{File: c.bcJWKSFile, URL: c.bcJWKSURL, Algorithms: c.algorithms()}
	leeway := c.bcLeeway
	if leeway == 0 {
		leeway = -1 // the flag's 0 means none; the library's 0 is its default
	}
	b, err := rs.NewBackchannel(rs.BackchannelConfig{
		Issuer: c.bcIssuer, Audiences: c.audiences(), Keys: keys, SessionLifetime: c.bcLifetime,
		MaxAge: c.bcMaxAge, Leeway: leeway, RequireType: c.bcRequireType, AnyIssuer: c.bcAnyIssuer,
	}, nil)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrConfig, err)
	}
	rctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	ks, err := keys.KeySet(rctx)
	switch {
	case err != nil && c.bcJWKSFile != "":
		return nil, fmt.Errorf("%w: %s=%s: %v", ErrConfig, c.where("backchannel-jwks-file"), c.bcJWKSFile, err)
	case err != nil:
		log.Warn("the provider's JWKS cannot be read yet; back-channel logouts answer 400 temporarily_unavailable until it can",
			"url", c.bcJWKSURL, "err", err)
	default:
		log.Info("back-channel logout on", "path", rs.BackchannelPath, "issuer", c.bcIssuer, "algorithms", ks.Algorithms())
	}
	return b, nil
}

// checkLogoutStore makes sure the store can keep what a logout writes: a
// claim entry for a sid, a cutoff for a subject.
func checkLogoutStore(c config, st rs.Store) error {
	switch s := st.(type) {
	case *sqlstore.Store:
		if !s.HasClaims() {
			return fmt.Errorf("%w: %s needs the claims table (%s, created by --sql-create-tables; see docs/revocation-source.md)",
				ErrConfig, c.where("backchannel-issuer"), c.sqlClaims.Name)
		}
		if !s.HasCutoffs() {
			return fmt.Errorf("%w: %s needs the subject cutoffs table (%s, created by --sql-create-tables)",
				ErrConfig, c.where("backchannel-issuer"), c.sqlCutoffs.Name)
		}
	case *redisstore.Store:
		if !s.HasClaims() {
			return fmt.Errorf("%w: %s needs --redis-claims-prefix", ErrConfig, c.where("backchannel-issuer"))
		}
	}
	return nil
}
