// Package redisstore reads the blocklist that flask-jwt-extended's Redis
// example writes: one key per revoked jti (optionally under a prefix), any
// value, with a TTL equal to the token's remaining life. The entry's exp is
// the key's absolute expiry time (PEXPIRETIME), so repeated reads agree to
// the second instead of drifting with TTL arithmetic.
//
// Changes are followed through keyspace notifications; the syncer's periodic
// reconciliation (a bounded SCAN) repairs anything a notification missed, as
// pub/sub delivery is at-most-once.
package redisstore

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"strings"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"

	rs "github.com/jtiguard/jtiguard/revocationsource"
)

// ErrResubscribed makes Follow return after the pub/sub connection was
// re-established: notifications sent in between are lost, so the caller
// must reconcile.
var ErrResubscribed = errors.New("keyspace notification subscription was re-established")

// Config configures the store.
type Config struct {
	Client *redis.Client
	// KeyPrefix is put before each jti ("" when the database holds only
	// the blocklist, as in flask-jwt-extended's example).
	KeyPrefix string
	// CutoffsKey is the hash holding subject cutoffs: field is the JSON
	// array [iss, sub], value the JSON object {"revoked_before":..,"exp":..}.
	CutoffsKey string
	// ClaimsPrefix, when set, turns on claim entries (a sid logged out,
	// other claims): one string key per entry, named ClaimsPrefix followed
	// by the JSON array [iss, claim, value], whose value is the entry's exp
	// in Unix seconds ("0": none) and whose TTL ends at exp + ExpiryGrace.
	// Off ("") by default. Keys under it are never read as jtis.
	ClaimsPrefix string
	// ExpiryGrace is how long a claim entry's key outlives its exp (0:
	// revocationsource.DefaultExpiryGrace). Give the index the same value.
	ExpiryGrace time.Duration
	// ConfigureNotifications turns on the keyspace events the follower
	// needs with CONFIG SET (managed Redis may forbid CONFIG: then set
	// notify-keyspace-events to include "Kg$xeh" yourself, or rely on
	// reconciliation only).
	ConfigureNotifications bool
	MaxEntries             int   // bound on keys read by Load; default 2,000,000
	ScanCount              int64 // SCAN COUNT hint; default 1000
	Logger                 *slog.Logger
	// OnNotifications, when set, is told whether keyspace notifications
	// are known to be on (for a metric).
	OnNotifications func(on bool)
}

// Store is a Redis-backed revocationsource.Store.
type Store struct {
	c   *redis.Client
	cfg Config
	db  int

	// runID is the Redis server's run_id when notifications were last
	// checked: a new one means Redis restarted and forgot a CONFIG SET.
	mu    sync.Mutex
	runID string
}

// Open checks the connection and, if asked, configures notifications.
func Open(ctx context.Context, cfg Config) (*Store, error) {
	if cfg.CutoffsKey == "" {
		cfg.CutoffsKey = "jtiguard:cutoffs"
	}
	if cfg.MaxEntries <= 0 {
		cfg.MaxEntries = 2_000_000
	}
	if cfg.ScanCount <= 0 {
		cfg.ScanCount = 1000
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.ExpiryGrace <= 0 {
		cfg.ExpiryGrace = rs.DefaultExpiryGrace
	}
	if err := CheckPrefixes(cfg.KeyPrefix, cfg.ClaimsPrefix); err != nil {
		return nil, err
	}
	s := &Store{c: cfg.Client, cfg: cfg, db: cfg.Client.Options().DB}
	if err := s.ensureNotifications(ctx); err != nil {
		return nil, err
	}
	return s, nil
}

// ensureNotifications checks that keyspace notifications are on, turning
// them on when configured to: at the first contact, at every full read, and
// when the follower (re)subscribes. Redis forgets CONFIG SET at a restart
// (its run_id changes, which is logged) unless its config file has the
// setting, and another client may change the flags at any time. Off, changes
// are seen only at the next full reconciliation, which is logged at error
// level. It fails only when Redis cannot be reached at all.
func (s *Store) ensureNotifications(ctx context.Context) error {
	if err := s.c.Ping(ctx).Err(); err != nil {
		return fmt.Errorf("redis ping: %w", err)
	}
	runID := "unknown"
	if info, err := s.c.Info(ctx, "server").Result(); err == nil {
		runID = orDefault(infoField(info, "run_id"), runID)
	}
	s.mu.Lock()
	prev := s.runID
	s.runID = runID
	s.mu.Unlock()
	log := s.cfg.Logger
	if prev != "" && prev != runID && runID != "unknown" {
		log.Warn("Redis restarted (new run_id): checking keyspace notifications again", "run_id", runID)
	}
	on, err := s.notificationsOn(ctx)
	if err == nil && !on && s.cfg.ConfigureNotifications {
		if err = s.configureNotifications(ctx); err == nil {
			on = true
			log.Info("enabled keyspace notifications", "notify-keyspace-events", neededEvents)
		}
	}
	if s.cfg.OnNotifications != nil {
		s.cfg.OnNotifications(on)
	}
	switch {
	case on:
	case err != nil && prev == runID:
		// Cannot tell (CONFIG denied, as on managed Redis), and said so
		// already for this server.
	case err != nil:
		log.Warn("cannot check keyspace notifications (CONFIG GET or CONFIG SET refused): make sure notify-keyspace-events includes \""+
			neededEvents+"\", or revocations reach the feed only at each full reconciliation", "err", err)
	default:
		s.mu.Lock()
		s.runID = "" // check again at the next read
		s.mu.Unlock()
		log.Error("KEYSPACE NOTIFICATIONS ARE OFF: revocations written to Redis reach the feed only at the next full reconciliation (--reconcile-interval). " +
			"Set notify-keyspace-events to include \"" + neededEvents + "\" in redis.conf, or allow CONFIG SET and leave --redis-configure-notifications on")
	}
	return nil
}

func orDefault(v, d string) string {
	if v == "" {
		return d
	}
	return v
}

// notificationsOn reports whether notify-keyspace-events has every class
// the follower needs.
func (s *Store) notificationsOn(ctx context.Context) (bool, error) {
	cur, err := s.c.ConfigGet(ctx, "notify-keyspace-events").Result()
	if err != nil {
		return false, err
	}
	flags := cur["notify-keyspace-events"]
	return mergeFlags(flags) == flags, nil
}

func infoField(info, name string) string {
	for _, line := range strings.Split(info, "\n") {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), name+":"); ok {
			return strings.TrimSpace(v)
		}
	}
	return ""
}

// needed keyspace event classes: K keyspace channel, g generic (del, expire,
// rename), $ strings, x expired, e evicted, h hashes (the cutoffs key).
const neededEvents = "Kg$xeh"

func (s *Store) configureNotifications(ctx context.Context) error {
	cur, err := s.c.ConfigGet(ctx, "notify-keyspace-events").Result()
	if err != nil {
		return err
	}
	flags := cur["notify-keyspace-events"]
	merged := mergeFlags(flags)
	if merged == flags {
		return nil
	}
	return s.c.ConfigSet(ctx, "notify-keyspace-events", merged).Err()
}

// mergeFlags adds the needed event classes to flags.
func mergeFlags(flags string) string {
	merged := flags
	for _, f := range neededEvents {
		if strings.ContainsRune(merged, f) {
			continue
		}
		if strings.ContainsRune(merged, 'A') && strings.ContainsRune("g$xeh", f) {
			continue // A is an alias for g$lshzxe
		}
		merged += string(f)
	}
	return merged
}

// Close closes the client.
func (s *Store) Close() error { return s.c.Close() }

func (s *Store) key(jti string) string { return s.cfg.KeyPrefix + jti }

// globEscape escapes glob metacharacters so a prefix matches literally.
func globEscape(p string) string {
	var b strings.Builder
	for _, r := range p {
		if strings.ContainsRune(`*?[]\`, r) {
			b.WriteByte('\\')
		}
		b.WriteRune(r)
	}
	return b.String()
}

// expOf turns PEXPIRETIME's answer into feed exp; ok is false for a key that
// does not exist.
func expOf(ms int64) (exp int64, ok bool) {
	switch {
	case ms == -2:
		return 0, false
	case ms < 0:
		return 0, true
	}
	return (ms + 999) / 1000, true
}

// Load SCANs string keys under the prefix (bounded by MaxEntries) and reads
// their expiry times in pipelines.
func (s *Store) Load(ctx context.Context) (rs.State, error) {
	if err := s.ensureNotifications(ctx); err != nil {
		return rs.State{}, err
	}
	var st rs.State
	var cursor uint64
	match := globEscape(s.cfg.KeyPrefix) + "*"
	for {
		keys, next, err := s.c.ScanType(ctx, cursor, match, s.cfg.ScanCount, "string").Result()
		if err != nil {
			return rs.State{}, fmt.Errorf("scan: %w", err)
		}
		entries, err := s.lookup(ctx, keys, nil)
		if err != nil {
			return rs.State{}, err
		}
		for _, e := range entries {
			if e.Op == rs.OpPutEntry {
				st.Entries = append(st.Entries, e.Entry)
			}
		}
		if len(st.Entries) > s.cfg.MaxEntries {
			return rs.State{}, fmt.Errorf("%w: more than %d keys", rs.ErrTooManyEntries, s.cfg.MaxEntries)
		}
		cursor = next
		if cursor == 0 {
			break
		}
	}
	cs, err := s.loadCutoffs(ctx)
	if err != nil {
		return rs.State{}, err
	}
	st.Cutoffs = cs
	if st.Entries, err = s.loadClaims(ctx, st.Entries); err != nil {
		return rs.State{}, err
	}
	return st, nil
}

// removedOnPurpose are the keyspace events of a key deleted by a client (the
// app unrevoking); any other reason for a key to vanish (expired, evicted)
// means its time came, and the index holds it until exp + grace.
var removedOnPurpose = map[string]bool{"del": true, "rename_from": true, "move_from": true}

// lookup turns keys into puts (the key exists) or removals (it does not);
// events is the last keyspace event seen for each key (nil: none).
func (s *Store) lookup(ctx context.Context, keys []string, events map[string]string) ([]rs.Change, error) {
	if len(keys) == 0 {
		return nil, nil
	}
	pipe := s.c.Pipeline()
	cmds := make([]*redis.DurationCmd, len(keys))
	for i, k := range keys {
		cmds[i] = pipe.PExpireTime(ctx, k)
	}
	if _, err := pipe.Exec(ctx); err != nil && !errors.Is(err, redis.Nil) {
		return nil, fmt.Errorf("pexpiretime: %w", err)
	}
	out := make([]rs.Change, 0, len(keys))
	for i, k := range keys {
		if k == s.cfg.CutoffsKey || !strings.HasPrefix(k, s.cfg.KeyPrefix) || s.isClaimKey(k) {
			continue
		}
		jti := k[len(s.cfg.KeyPrefix):]
		d, err := cmds[i].Result()
		if err != nil {
			return nil, fmt.Errorf("pexpiretime %q: %w", k, err)
		}
		// go-redis reports PEXPIRETIME's -1/-2 as those many nanoseconds;
		// anything else is milliseconds since the epoch.
		ms := int64(d)
		if ms >= 0 {
			ms = d.Milliseconds()
		}
		exp, ok := expOf(ms)
		if !ok {
			out = append(out, rs.Change{Op: rs.OpRemoveEntry, Entry: rs.Entry{JTI: jti}, Expired: !removedOnPurpose[events[k]]})
			continue
		}
		out = append(out, rs.Change{Op: rs.OpPutEntry, Entry: rs.Entry{JTI: jti, Exp: exp}})
	}
	return out, nil
}

type cutoffValue struct {
	RevokedBefore int64 `json:"revoked_before"`
	Exp           int64 `json:"exp,omitempty"`
}

func cutoffField(k rs.CutoffKey) string {
	b, _ := json.Marshal([2]string{k.Iss, k.Sub})
	return string(b)
}

func (s *Store) loadCutoffs(ctx context.Context) ([]rs.Cutoff, error) {
	n, err := s.c.HLen(ctx, s.cfg.CutoffsKey).Result()
	if err != nil {
		return nil, fmt.Errorf("hlen cutoffs: %w", err)
	}
	if n > int64(s.cfg.MaxEntries) {
		return nil, fmt.Errorf("%w: %d cutoffs", rs.ErrTooManyEntries, n)
	}
	m, err := s.c.HGetAll(ctx, s.cfg.CutoffsKey).Result()
	if err != nil {
		return nil, fmt.Errorf("hgetall cutoffs: %w", err)
	}
	out := make([]rs.Cutoff, 0, len(m))
	for f, v := range m {
		var key [2]string
		if json.Unmarshal([]byte(f), &key) != nil {
			// No subject to revoke by: nothing can be kept for it.
			s.cfg.Logger.Warn("skipping a cutoff field that names no [iss, sub]", "key", s.cfg.CutoffsKey)
			continue
		}
		before, exp, ok := parseCutoffValue(v)
		if !ok {
			// The subject was logged out, but when is unreadable: every token of it stays
			// revoked (as the SQL store keeps an unreadable time revoked), until the value is
			// fixed. Skipping it would un-revoke them.
			s.cfg.Logger.Warn("unreadable cutoff value: revoking every token of the subject until it is fixed", "key", s.cfg.CutoffsKey)
			before, exp = rs.MaxUnixSeconds, 0
		}
		out = append(out, rs.Cutoff{Iss: key[0], Sub: key[1], RevokedBefore: before, Exp: exp})
	}
	return out, nil
}

// parseCutoffValue reads {"revoked_before": …, "exp": …}. Times may be written with a fraction
// (Python's json.dumps(time.time())): revoked_before is rounded up, so that a token issued in
// the second of the logout stays revoked, and exp up, so that the cutoff lasts its last second.
func parseCutoffValue(v string) (before, exp int64, ok bool) {
	var val struct {
		RevokedBefore *json.Number `json:"revoked_before"`
		Exp           *json.Number `json:"exp"`
	}
	d := json.NewDecoder(strings.NewReader(v))
	d.UseNumber()
	if d.Decode(&val) != nil || val.RevokedBefore == nil {
		return 0, 0, false
	}
	// up reads a time in seconds, a fraction rounded up; past what the feed carries (a time
	// in milliseconds, say) it is MaxUnixSeconds: for revoked_before every token of the
	// subject, for exp no expiry. Never less revoked than written.
	up := func(n json.Number) (int64, bool) {
		if i, err := n.Int64(); err == nil {
			return min(i, rs.MaxUnixSeconds), i >= 0
		}
		f, err := n.Float64()
		if err != nil || f < 0 || math.IsNaN(f) {
			return 0, false
		}
		return int64(min(math.Ceil(f), rs.MaxUnixSeconds)), true
	}
	if before, ok = up(*val.RevokedBefore); !ok {
		return 0, 0, false
	}
	if val.Exp != nil {
		if exp, ok = up(*val.Exp); !ok {
			return 0, 0, false
		}
		if exp == rs.MaxUnixSeconds {
			exp = 0
		}
	}
	return before, exp, true
}

// batchWindow gathers notifications for a moment so that a burst of writes
// costs one pipeline and one index version rather than one each.
const (
	batchWindow = 20 * time.Millisecond
	batchMax    = 1000
)

// Follow applies keyspace notifications until ctx ends or the subscription
// breaks.
func (s *Store) Follow(ctx context.Context, sink rs.Sink) error {
	// The syncer restarts Follow after the subscription broke (a Redis
	// restart among other things): check notifications again first.
	if err := s.ensureNotifications(ctx); err != nil {
		return err
	}
	prefix := fmt.Sprintf("__keyspace@%d__:", s.db)
	ps := s.c.PSubscribe(ctx, prefix+globEscape(s.cfg.KeyPrefix)+"*")
	defer ps.Close()
	// Receive blocks on the socket regardless of ctx; closing unblocks it.
	stop := context.AfterFunc(ctx, func() { _ = ps.Close() })
	defer stop()
	wanted := 1 // subscriptions made: each is confirmed once, and again only after a reconnect
	if s.cfg.KeyPrefix != "" && !strings.HasPrefix(s.cfg.CutoffsKey, s.cfg.KeyPrefix) {
		if err := ps.Subscribe(ctx, prefix+s.cfg.CutoffsKey); err != nil {
			return fmt.Errorf("subscribe: %w", err)
		}
		wanted++
	}
	if s.cfg.ClaimsPrefix != "" && !strings.HasPrefix(s.cfg.ClaimsPrefix, s.cfg.KeyPrefix) {
		if err := ps.PSubscribe(ctx, prefix+globEscape(s.cfg.ClaimsPrefix)+"*"); err != nil {
			return fmt.Errorf("psubscribe: %w", err)
		}
		wanted++
	}
	subscribed := 0
	// reread: every subscription is confirmed, so every change from now on is notified; what
	// changed between the last full read (the syncer's, before Follow) and this moment was
	// not, so the store is read whole once more and reconciled (a logout in that window, as
	// long as a SCAN of the database, was lost).
	reread := false
	for {
		msg, err := ps.Receive(ctx)
		if err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			return fmt.Errorf("receive: %w", err)
		}
		keys := map[string]string{} // key -> last event
		claimKeys := map[string]bool{}
		cutoffs := false
		handle := func(m any) error {
			switch m := m.(type) {
			case *redis.Subscription:
				if subscribed++; subscribed > wanted {
					return ErrResubscribed
				}
				reread = reread || subscribed == wanted
			case *redis.Message:
				switch k := strings.TrimPrefix(m.Channel, prefix); {
				case k == s.cfg.CutoffsKey:
					cutoffs = true
				case s.isClaimKey(k):
					claimKeys[k] = true
				default:
					keys[k] = m.Payload
				}
			}
			return nil
		}
		if err := handle(msg); err != nil {
			return err
		}
		// Drain what else arrives within the window.
		deadline := time.Now().Add(batchWindow)
		for len(keys)+len(claimKeys) < batchMax {
			wait := time.Until(deadline)
			if wait <= 0 {
				break
			}
			m, err := ps.ReceiveTimeout(ctx, wait)
			if err != nil {
				if ctx.Err() != nil {
					return ctx.Err()
				}
				var ne interface{ Timeout() bool }
				if errors.As(err, &ne) && ne.Timeout() {
					break
				}
				return fmt.Errorf("receive: %w", err)
			}
			if err := handle(m); err != nil {
				return err
			}
		}
		if len(keys) > 0 {
			list := make([]string, 0, len(keys))
			for k := range keys {
				list = append(list, k)
			}
			changes, err := s.lookup(ctx, list, keys)
			if err != nil {
				return err
			}
			sink.Apply(changes)
		}
		if len(claimKeys) > 0 {
			changes, err := s.lookupClaims(ctx, claimKeys)
			if err != nil {
				return err
			}
			sink.Apply(changes)
		}
		if cutoffs {
			since := sink.Seq()
			cs, err := s.loadCutoffs(ctx)
			if err != nil {
				return err
			}
			if err := sink.ReconcileCutoffs(cs, since); err != nil && !errors.Is(err, rs.ErrStaleReconcile) {
				return err
			}
		}
		if reread {
			reread = false
			// A read that fails (more keys than --max-entries, Redis slow) must not stop the
			// following: the list held stays, new changes keep coming, and the periodic
			// reconciliation tries the whole store again.
			since := sink.Seq()
			if st, err := s.Load(ctx); err != nil {
				s.cfg.Logger.Warn("reading the store after subscribing failed; keeping the list and following changes", "err", err)
			} else if err := sink.Reconcile(st, since); err != nil && !errors.Is(err, rs.ErrStaleReconcile) {
				s.cfg.Logger.Warn("reconciling after subscribing failed; keeping the list and following changes", "err", err)
			}
		}
	}
}

// RevokeToken writes the key as flask-jwt-extended does, but never shortens
// an existing revocation: NX creates it, EXPIREAT GT only extends it, and a
// key without TTL (revoked forever) is left alone.
func (s *Store) RevokeToken(ctx context.Context, e rs.Entry) error {
	if e.Claim != "" {
		return fmt.Errorf("%w: a claim entry is not a jti (RevokeClaim)", rs.ErrInvalid)
	}
	if e.Iss != "" {
		return rs.ErrIssuerUnsupported
	}
	k := s.key(e.JTI)
	_, err := s.c.TxPipelined(ctx, func(p redis.Pipeliner) error {
		if e.Exp == 0 {
			p.SetNX(ctx, k, "", 0)
			p.Persist(ctx, k)
			return nil
		}
		at := time.Unix(e.Exp, 0)
		p.SetArgs(ctx, k, "", redis.SetArgs{Mode: "NX", ExpireAt: at})
		p.Do(ctx, "EXPIREAT", k, e.Exp, "GT")
		return nil
	})
	// SET NX answers nil when the key exists; that is the expected case.
	if err != nil && !errors.Is(err, redis.Nil) {
		return fmt.Errorf("revoke: %w", err)
	}
	return nil
}

// UnrevokeToken deletes the key.
func (s *Store) UnrevokeToken(ctx context.Context, k rs.EntryKey) error {
	if k.Iss != "" {
		return rs.ErrIssuerUnsupported
	}
	if err := s.c.Del(ctx, s.key(k.JTI)).Err(); err != nil {
		return fmt.Errorf("unrevoke: %w", err)
	}
	return nil
}

// RevokeSubject sets a cutoff field.
func (s *Store) RevokeSubject(ctx context.Context, c rs.Cutoff) error {
	v, _ := json.Marshal(cutoffValue{RevokedBefore: c.RevokedBefore, Exp: c.Exp})
	if err := s.c.HSet(ctx, s.cfg.CutoffsKey, cutoffField(c.Key()), v).Err(); err != nil {
		return fmt.Errorf("revoke subject: %w", err)
	}
	return nil
}

// UnrevokeSubject deletes a cutoff field.
func (s *Store) UnrevokeSubject(ctx context.Context, k rs.CutoffKey) error {
	if err := s.c.HDel(ctx, s.cfg.CutoffsKey, cutoffField(k)).Err(); err != nil {
		return fmt.Errorf("unrevoke subject: %w", err)
	}
	return nil
}
