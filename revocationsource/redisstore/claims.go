package redisstore

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/redis/go-redis/v9"

	rs "github.com/jtiguard/jtiguard/revocationsource"
)

// Claim entries are keys of their own, as jtis are, so that Redis expires
// them, keyspace notifications report each one, and a write touches one key:
// a hash holding every logged-out session would be read whole at each change.
// The value is the exp, because the TTL runs to exp + grace (the filter may
// still accept a token until exp plus its leeway) and the feed carries the
// true exp.

// ErrPrefixes: the claims prefix and the jti prefix overlap so that jti keys
// would be read as claim entries.
var ErrPrefixes = errors.New("redis key prefixes overlap")

// CheckPrefixes reports whether a claims prefix can sit beside the jti
// prefix: every jti key starting with the claims prefix would be read as a
// claim entry (the other way round, claim keys under the jti prefix, is
// fine: they are never read as jtis).
func CheckPrefixes(keyPrefix, claimsPrefix string) error {
	if claimsPrefix != "" && strings.HasPrefix(keyPrefix, claimsPrefix) {
		return fmt.Errorf("%w: the claims prefix %q begins the jti key prefix %q, so every jti key would be read as a claim entry; use another claims prefix",
			ErrPrefixes, claimsPrefix, keyPrefix)
	}
	return nil
}

func (s *Store) isClaimKey(k string) bool {
	return s.cfg.ClaimsPrefix != "" && strings.HasPrefix(k, s.cfg.ClaimsPrefix)
}

// HasClaims reports whether claim entries are on (a claims prefix is set).
func (s *Store) HasClaims() bool { return s.cfg.ClaimsPrefix != "" }

// claimKey names a claim entry's key: the prefix and the JSON array [iss,
// claim, value], which no choice of the three can make ambiguous.
func (s *Store) claimKey(k rs.EntryKey) string {
	b, _ := json.Marshal([3]string{k.Iss, k.Claim, k.JTI})
	return s.cfg.ClaimsPrefix + string(b)
}

// parseClaimKey is claimKey's inverse.
func (s *Store) parseClaimKey(key string) (rs.EntryKey, bool) {
	var parts []string
	if json.Unmarshal([]byte(strings.TrimPrefix(key, s.cfg.ClaimsPrefix)), &parts) != nil || len(parts) != 3 || parts[1] == "" {
		return rs.EntryKey{}, false
	}
	return rs.EntryKey{Iss: parts[0], Claim: parts[1], JTI: parts[2]}, true
}

// parseClaimValue reads a claim key's value: its exp in Unix seconds.
func parseClaimValue(v string) (int64, bool) {
	n, err := strconv.ParseInt(v, 10, 64)
	return n, err == nil && n >= 0
}

// claimEntries turns claim keys and their values (nil: the key is gone)
// into changes. A key that is not one of ours is skipped, and logged once
// per read.
func (s *Store) claimEntries(keys []string, values []any) []rs.Change {
	out := make([]rs.Change, 0, len(keys))
	malformed := 0
	for i, key := range keys {
		k, ok := s.parseClaimKey(key)
		if !ok {
			malformed++
			continue
		}
		v, present := values[i].(string)
		if !present {
			// Gone: deleted (an unrevoke) or past exp + grace (its TTL).
			out = append(out, rs.Change{Op: rs.OpRemoveEntry, Entry: k.Entry(0)})
			continue
		}
		exp, ok := parseClaimValue(v)
		if !ok {
			malformed++
			exp = 0 // kept, without an expiry: a revocation is never dropped for its form
		}
		out = append(out, rs.Change{Op: rs.OpPutEntry, Entry: k.Entry(exp)})
	}
	if malformed > 0 {
		s.cfg.Logger.Warn("claim keys that are not claim entries: a name that is not [iss, claim, value] is skipped, a value that is not Unix seconds is served without an expiry",
			"prefix", s.cfg.ClaimsPrefix, "count", malformed)
	}
	return out
}

// loadClaims appends every claim entry to entries, bounded with them by
// MaxEntries.
func (s *Store) loadClaims(ctx context.Context, entries []rs.Entry) ([]rs.Entry, error) {
	if s.cfg.ClaimsPrefix == "" {
		return entries, nil
	}
	var cursor uint64
	match := globEscape(s.cfg.ClaimsPrefix) + "*"
	for {
		keys, next, err := s.c.ScanType(ctx, cursor, match, s.cfg.ScanCount, "string").Result()
		if err != nil {
			return nil, fmt.Errorf("scan claim keys: %w", err)
		}
		if len(keys) > 0 {
			values, err := s.c.MGet(ctx, keys...).Result()
			if err != nil {
				return nil, fmt.Errorf("mget claim keys: %w", err)
			}
			for _, ch := range s.claimEntries(keys, values) {
				if ch.Op == rs.OpPutEntry {
					entries = append(entries, ch.Entry)
				}
			}
			if len(entries) > s.cfg.MaxEntries {
				return nil, fmt.Errorf("%w: more than %d keys", rs.ErrTooManyEntries, s.cfg.MaxEntries)
			}
		}
		if cursor = next; cursor == 0 {
			return entries, nil
		}
	}
}

// lookupClaims reads the claim keys a notification named.
func (s *Store) lookupClaims(ctx context.Context, set map[string]bool) ([]rs.Change, error) {
	keys := make([]string, 0, len(set))
	for k := range set {
		keys = append(keys, k)
	}
	values, err := s.c.MGet(ctx, keys...).Result()
	if err != nil {
		return nil, fmt.Errorf("mget claim keys: %w", err)
	}
	return s.claimEntries(keys, values), nil
}

// revokeClaimScript writes a claim entry without ever shortening one held:
// the later exp wins, 0 (none) beats any, and a value that is not a number
// counts as none. ARGV: exp, grace in seconds.
var revokeClaimScript = redis.NewScript(`
local exp = tonumber(ARGV[1])
local old = redis.call('GET', KEYS[1])
if old then
  local o = tonumber(old)
  if o == nil or o <= 0 or exp == 0 then exp = 0 elseif o > exp then exp = o end
end
if exp == 0 then
  redis.call('SET', KEYS[1], '0')
else
  redis.call('SET', KEYS[1], string.format('%d', exp), 'EXAT', exp + tonumber(ARGV[2]))
end
return exp
`)

// RevokeClaim stores a claim entry (see rs.ClaimStore).
func (s *Store) RevokeClaim(ctx context.Context, e rs.Entry) error {
	if s.cfg.ClaimsPrefix == "" {
		return fmt.Errorf("%w: no claims prefix (--redis-claims-prefix)", rs.ErrClaimsUnsupported)
	}
	if e.Claim == "" {
		return fmt.Errorf("%w: not a claim entry", rs.ErrInvalid)
	}
	grace := int64((s.cfg.ExpiryGrace + 999_999_999) / 1_000_000_000)
	if err := revokeClaimScript.Run(ctx, s.c, []string{s.claimKey(e.Key())}, e.Exp, grace).Err(); err != nil && !errors.Is(err, redis.Nil) {
		return fmt.Errorf("revoke claim entry: %w", err)
	}
	return nil
}

// UnrevokeClaim deletes a claim entry's key.
func (s *Store) UnrevokeClaim(ctx context.Context, k rs.EntryKey) error {
	if s.cfg.ClaimsPrefix == "" {
		return fmt.Errorf("%w: no claims prefix (--redis-claims-prefix)", rs.ErrClaimsUnsupported)
	}
	if err := s.c.Del(ctx, s.claimKey(k)).Err(); err != nil {
		return fmt.Errorf("unrevoke claim entry: %w", err)
	}
	return nil
}
