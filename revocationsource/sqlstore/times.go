package sqlstore

import (
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"

	rs "github.com/jtiguard/jtiguard/revocationsource"
)

// Time values in an app's table come in every form: PostgreSQL timestamps
// with or without a time zone, Unix seconds, and in SQLite text that
// SQLAlchemy wrote ("2006-01-02 15:04:05.999999", no zone) or that
// CURRENT_TIMESTAMP wrote ("2006-01-02 15:04:05", UTC).
//
// A timestamp without a zone is ambiguous, and reading it in the wrong zone
// moves an expiry: too early lets a revoked token through. What is really
// stored (checked against Flask-SQLAlchemy 3.0 with psycopg2 and SQLite):
//   - PostgreSQL, a "timestamp without time zone" column: an aware datetime
//     (flask-jwt-extended's example writes datetime.now(timezone.utc)) and a
//     server_default=func.now() are both converted to the wall clock of the
//     writing session's TimeZone setting, which is the server's default
//     unless the app sets one.
//   - SQLite: SQLAlchemy drops the zone of an aware datetime and stores its
//     wall clock (UTC for the example); CURRENT_TIMESTAMP is UTC.
//   - An app that writes naive datetime.now() stores its host's local time.
//
// So a naive value is read as the later of UTC and the naive zone (the
// PostgreSQL session's TimeZone, which the source shares with the app when
// neither sets one, or the source's local zone for SQLite): the expiry may
// come late, never early.

var timeLayouts = []string{
	"2006-01-02 15:04:05.999999999Z07:00",
	"2006-01-02T15:04:05.999999999Z07:00",
	"2006-01-02 15:04:05.999999999-07",
	"2006-01-02T15:04:05.999999999-07",
	"2006-01-02 15:04:05.999999999 -0700",
}

var naiveLayouts = []string{
	"2006-01-02 15:04:05.999999999",
	"2006-01-02T15:04:05.999999999",
	"2006-01-02 15:04",
	"2006-01-02T15:04",
	"2006-01-02",
}

// ceilUnix rounds up so a revocation never ends before the token does.
func ceilUnix(t time.Time) int64 {
	u := t.Unix()
	if t.Nanosecond() > 0 {
		u++
	}
	return u
}

// naiveLater reads the wall clock of t (its location is ignored) as the later
// of UTC and zone.
func naiveLater(t time.Time, zone *time.Location) time.Time {
	y, mo, d := t.Date()
	h, mi, sec := t.Clock()
	utc := time.Date(y, mo, d, h, mi, sec, t.Nanosecond(), time.UTC)
	if zone == nil {
		return utc
	}
	local := time.Date(y, mo, d, h, mi, sec, t.Nanosecond(), zone)
	if local.After(utc) {
		return local
	}
	return utc
}

// latestZone is used when the naive zone cannot be known: UTC-12 is the
// latest any wall clock can mean.
var latestZone = time.FixedZone("UTC-12", -12*3600)

// toUnix reads a time value as Unix seconds, rounded up. present is false for
// NULL; an error means the value cannot be read at all.
func toUnix(v any, zone *time.Location) (unix int64, present bool, err error) {
	switch x := v.(type) {
	case nil:
		return 0, false, nil
	case int64:
		return x, true, nil
	case int32:
		return int64(x), true, nil
	case float64:
		if math.IsNaN(x) || math.IsInf(x, 0) {
			return 0, true, fmt.Errorf("%w: %v", ErrBadTime, x)
		}
		return int64(math.Ceil(x)), true, nil
	case time.Time:
		return ceilUnix(x), true, nil
	case []byte:
		return toUnix(string(x), zone)
	case string:
		s := strings.TrimSpace(x)
		if s == "" {
			return 0, false, nil
		}
		if n, err := strconv.ParseInt(s, 10, 64); err == nil {
			return n, true, nil
		}
		if f, err := strconv.ParseFloat(s, 64); err == nil && !math.IsNaN(f) && !math.IsInf(f, 0) {
			return int64(math.Ceil(f)), true, nil
		}
		for _, l := range timeLayouts {
			if t, err := time.Parse(l, s); err == nil {
				return ceilUnix(t), true, nil
			}
		}
		for _, l := range naiveLayouts {
			if t, err := time.ParseInLocation(l, s, time.UTC); err == nil {
				return ceilUnix(naiveLater(t, zone)), true, nil
			}
		}
		return 0, true, fmt.Errorf("%w: %q", ErrBadTime, truncate(s, 64))
	}
	return 0, true, fmt.Errorf("%w: a value of type %T", ErrBadTime, v)
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}

// clampExp maps an expiry the feed cannot carry (at or after 2^32 seconds,
// or before 1970) to "no expiry": keeping a revocation too long is safe,
// dropping it is not.
func clampExp(v int64) int64 {
	if v <= 0 || v > rs.MaxUnixSeconds {
		return 0
	}
	return v
}

// durSeconds rounds a lifetime up to whole seconds.
func durSeconds(d time.Duration) int64 {
	return int64((d + time.Second - 1) / time.Second)
}
