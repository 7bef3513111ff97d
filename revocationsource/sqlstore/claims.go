package sqlstore

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"time"

	rs "github.com/jtiguard/jtiguard/revocationsource"
)

// The claims table holds claim entries (revocations by sid or another
// claim; docs/feed.md). It is this server's own, like the cutoffs table:
// used when it exists, created only by CreateTables. Rows have an increasing
// id, so a follower reads new ones by id as it does the blocklist's, and a
// revocation that changes a row's expiry deletes it and inserts it anew,
// under a new id, so that followers on other replicas see the change too.
//
//	CREATE TABLE jtiguard_claim_revocations (
//	  id      BIGSERIAL PRIMARY KEY,            -- SQLite: INTEGER PRIMARY KEY AUTOINCREMENT
//	  iss     VARCHAR(512) NOT NULL DEFAULT '',
//	  claim   VARCHAR(64)  NOT NULL,            -- "sid", or another claim
//	  value   VARCHAR(256) NOT NULL,
//	  expires BIGINT NULL,                      -- Unix seconds; NULL = until deleted
//	  UNIQUE (iss, claim, value));

// claimsColumns are the columns the claims table must have.
var claimsColumns = []string{"id", "iss", "claim", "value", "expires"}

type claimQueries struct {
	load, poll, take, insert, delete, prune string
}

// claimsTableName is the configured (or default) claims table; "" for none.
func (s *Store) claimsTableName() string {
	if s.cfg.ClaimsTable.Set {
		return s.cfg.ClaimsTable.Name
	}
	return defaultClaimsTable
}

func checkClaimsColumns(name string, t tableInfo) error {
	for _, c := range claimsColumns {
		if _, ok := t.col(c); !ok {
			return &SchemaError{Table: name, Column: c, Setting: "ClaimsTable",
				Problem: fmt.Sprintf("no such column (the table has %s); is it a claim entries table?", t.names())}
		}
	}
	return nil
}

// resolveClaims checks the claims table, t as the catalog describes it (nil:
// missing).
func (s *Store) resolveClaims(t tableInfo) error {
	name := s.claimsTableName()
	s.r.claimsTable = name
	switch {
	case name == "":
		return nil
	case t == nil && s.cfg.ClaimsTable.Set:
		return &SchemaError{Table: name, Setting: "ClaimsTable",
			Problem: "does not exist; create it (see the docs, or let the source create it), or set the name to \"\" to run without claim entries"}
	case t == nil:
		return nil
	}
	if err := checkClaimsColumns(name, t); err != nil {
		return err
	}
	s.r.claims = true
	return nil
}

func (s *Store) buildClaimQueries() claimQueries {
	t := s.qi(s.r.claimsTable)
	id, iss, claim, value, exp := s.qi("id"), s.qi("iss"), s.qi("claim"), s.qi("value"), s.qi("expires")
	cols := fmt.Sprintf("CAST(%s AS BIGINT), %s, %s, %s, %s", id, iss, claim, value, exp)
	key := fmt.Sprintf("%s = %s AND %s = %s AND %s = %s", iss, s.ph(1), claim, s.ph(2), value, s.ph(3))
	return claimQueries{
		// Rows past exp + grace are left out by the database: the table is
		// ours, its expiry a plain integer.
		load: fmt.Sprintf("SELECT %s FROM %s WHERE %s IS NULL OR %s <= 0 OR %s > %s", cols, t, exp, exp, exp, s.ph(1)),
		poll: fmt.Sprintf("SELECT %s FROM %s WHERE %s > %s ORDER BY %s LIMIT %s", cols, t, id, s.ph(1), id, s.ph(2)),
		// take deletes a row and returns its expiry: the first statement of
		// a revocation's transaction is a write, so SQLite takes its write
		// lock at once, and PostgreSQL locks the row.
		take:   fmt.Sprintf("DELETE FROM %s WHERE %s RETURNING %s", t, key, exp),
		insert: fmt.Sprintf("INSERT INTO %s (%s, %s, %s, %s) VALUES (%s, %s, %s, %s)", t, iss, claim, value, exp, s.ph(1), s.ph(2), s.ph(3), s.ph(4)),
		delete: fmt.Sprintf("DELETE FROM %s WHERE %s", t, key),
		prune:  fmt.Sprintf("DELETE FROM %s WHERE %s IS NOT NULL AND %s > 0 AND %s <= %s", t, exp, exp, exp, s.ph(1)),
	}
}

func (s *Store) createClaims(ctx context.Context, name string) error {
	idType := "INTEGER PRIMARY KEY AUTOINCREMENT" // AUTOINCREMENT: ids never reused
	if s.pg {
		idType = "BIGSERIAL PRIMARY KEY"
	}
	stmt := fmt.Sprintf(`CREATE TABLE IF NOT EXISTS %s (%s %s, %s VARCHAR(512) NOT NULL DEFAULT '', %s VARCHAR(64) NOT NULL,
%s VARCHAR(256) NOT NULL, %s BIGINT NULL, UNIQUE (%s, %s, %s))`, s.qi(name), s.qi("id"), idType, s.qi("iss"), s.qi("claim"),
		s.qi("value"), s.qi("expires"), s.qi("iss"), s.qi("claim"), s.qi("value"))
	if _, err := s.db.ExecContext(ctx, stmt); err != nil {
		return fmt.Errorf("create table %s: %w", name, err)
	}
	s.cfg.Logger.Info("created the claim entries table", "table", name)
	return nil
}

// HasClaims reports whether a claims table is in use.
func (s *Store) HasClaims() bool { return s.r.claims }

func (s *Store) noClaims() error {
	return fmt.Errorf("%w: no claim entries table (create %s, or let the source create it)", rs.ErrClaimsUnsupported,
		orDefault(s.r.claimsTable, defaultClaimsTable))
}

// scanClaim reads one row of the claims table.
func scanClaim(rows *sql.Rows) (id int64, e rs.Entry, err error) {
	var exp sql.NullInt64
	if err := rows.Scan(&id, &e.Iss, &e.Claim, &e.JTI, &exp); err != nil {
		return 0, rs.Entry{}, err
	}
	e.Exp = max(exp.Int64, 0)
	return id, e, nil
}

// loadClaims appends every live claim entry to entries, bounded with them by
// MaxEntries.
func (s *Store) loadClaims(ctx context.Context, entries []rs.Entry) ([]rs.Entry, error) {
	if !s.r.claims {
		return entries, nil
	}
	rows, err := s.db.QueryContext(ctx, s.q.claims.load, s.cfg.Now().Unix()-s.grace)
	if err != nil {
		return nil, s.classify(ctx, fmt.Errorf("load claim entries: %w", err))
	}
	defer rows.Close()
	var maxID int64
	for rows.Next() {
		id, e, err := scanClaim(rows)
		if err != nil {
			return nil, fmt.Errorf("load claim entries: %w", err)
		}
		maxID = max(maxID, id)
		if len(entries) == s.cfg.MaxEntries {
			return nil, fmt.Errorf("%w: more than %d unexpired rows in %s and %s", rs.ErrTooManyEntries, s.cfg.MaxEntries, s.cfg.Table, s.r.claimsTable)
		}
		entries = append(entries, e)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("load claim entries: %w", err)
	}
	for {
		cur := s.claimsMaxID.Load()
		if maxID <= cur || s.claimsMaxID.CompareAndSwap(cur, maxID) {
			break
		}
	}
	return entries, nil
}

// pollClaims reads the claim entries written since the last read, by id,
// with the blocklist's lookback. Deleted rows are seen at the next full
// reconciliation, as the blocklist's are.
func (s *Store) pollClaims(ctx context.Context, sink rs.Sink) error {
	if !s.r.claims {
		return nil
	}
	for {
		from := s.claimsMaxID.Load()
		rows, err := s.db.QueryContext(ctx, s.q.claims.poll, max(0, from-idLookback), pollBatch)
		if err != nil {
			return s.classify(ctx, fmt.Errorf("poll claim entries: %w", err))
		}
		var (
			changes []rs.Change
			maxID   = from
			n       int
		)
		for rows.Next() {
			id, e, err := scanClaim(rows)
			if err != nil {
				rows.Close()
				return fmt.Errorf("poll claim entries: %w", err)
			}
			n++
			maxID = max(maxID, id)
			changes = append(changes, rs.Change{Op: rs.OpPutEntry, Entry: e, Merge: true})
		}
		err = rows.Err()
		rows.Close()
		if err != nil {
			return fmt.Errorf("poll claim entries: %w", err)
		}
		if len(changes) > 0 {
			sink.Apply(changes)
		}
		s.claimsMaxID.CompareAndSwap(from, maxID)
		if n < pollBatch || maxID == from {
			return nil
		}
	}
}

// RevokeClaim stores a claim entry. Revoking one that is held never
// shortens it: the later exp wins, and none beats any.
func (s *Store) RevokeClaim(ctx context.Context, e rs.Entry) error {
	if !s.r.claims {
		return s.noClaims()
	}
	if e.Claim == "" {
		return fmt.Errorf("%w: not a claim entry", rs.ErrInvalid)
	}
	var err error
	// Revocations of one new entry at once: all find no row, one INSERT
	// wins and the others break the unique key. Each round at least one
	// commits, so a loser tried again finds the winner's row and merges;
	// with n writers at once that takes at most n rounds.
	for attempt := range maxClaimAttempts {
		if err = s.revokeClaimOnce(ctx, e); err == nil || ctx.Err() != nil || !isUniqueViolation(err) {
			break
		}
		select {
		case <-ctx.Done():
			return err
		case <-time.After(time.Duration(1+rand.IntN(1+attempt)) * time.Millisecond):
		}
	}
	return err
}

// maxClaimAttempts bounds the rounds one revocation takes against others
// of the same new entry at the same moment.
const maxClaimAttempts = 50

// isUniqueViolation reports a unique-key violation: SQLSTATE 23505 from
// PostgreSQL's drivers, SQLite's "UNIQUE constraint failed".
func isUniqueViolation(err error) bool {
	var coded interface{ SQLState() string }
	if errors.As(err, &coded) {
		return coded.SQLState() == "23505"
	}
	msg := err.Error()
	return strings.Contains(msg, "UNIQUE constraint failed") || strings.Contains(msg, "SQLSTATE 23505")
}

func (s *Store) revokeClaimOnce(ctx context.Context, e rs.Entry) error {
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("revoke claim entry: %w", err)
	}
	defer func() { _ = tx.Rollback() }()
	exp := e.Exp
	var old sql.NullInt64
	switch err := tx.QueryRowContext(ctx, s.q.claims.take, e.Iss, e.Claim, e.JTI).Scan(&old); {
	case errors.Is(err, sql.ErrNoRows):
	case err != nil:
		return fmt.Errorf("revoke claim entry: %w", err)
	case !old.Valid || old.Int64 <= 0 || exp == 0:
		exp = 0
	default:
		exp = max(exp, old.Int64)
	}
	var stored any
	if exp != 0 {
		stored = exp
	}
	if _, err := tx.ExecContext(ctx, s.q.claims.insert, e.Iss, e.Claim, e.JTI, stored); err != nil {
		return fmt.Errorf("revoke claim entry: %w", err)
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("revoke claim entry: %w", err)
	}
	return nil
}

// UnrevokeClaim deletes a claim entry.
func (s *Store) UnrevokeClaim(ctx context.Context, k rs.EntryKey) error {
	if !s.r.claims {
		return s.noClaims()
	}
	if _, err := s.db.ExecContext(ctx, s.q.claims.delete, k.Iss, k.Claim, k.JTI); err != nil {
		return fmt.Errorf("unrevoke claim entry: %w", err)
	}
	return nil
}
