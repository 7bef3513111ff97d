package jwkssync

import (
	"encoding/binary"
	"errors"
	"fmt"
	"time"

	"github.com/tetratelabs/proxy-wasm-go-sdk/proxywasm/types"

	"github.com/jtiguard/jtiguard/blocklistsync"
)

// The lease chooses the one worker VM that fetches the JWKS, with blocklistsync's rules (see
// blocklistsync/lease.go): every VM reads it on its tick and writes itself in with CAS when it
// is free, expired or its own; a holder that stops ticking loses it after the lease TTL, and
// the next holder keeps the schedule and the backoff stored in it. It also carries the time
// of the last early fetch, so a kid miss on any VM of the proxy moves the schedule forward at
// most once per MissGap.
//
//	<prefix>jwks.lease  40 bytes
//	    0  "JTKL"  magic
//	    4  u32     consecutive failures
//	    8  u64     holder id (random per VM)
//	   16  i64     lease expiry, Unix milliseconds
//	   24  i64     next fetch due, Unix milliseconds
//	   32  i64     last early fetch asked by a kid miss, Unix milliseconds

const (
	leaseMagic = "JTKL"
	leaseSize  = 40
)

// ErrBadLease marks a lease record that cannot be decoded; it is then treated as free.
var ErrBadLease = errors.New("malformed JWKS lease record")

type lease struct {
	holder    uint64
	expires   time.Time
	nextDue   time.Time
	lastEarly time.Time
	failures  uint32
}

func (l lease) marshal() []byte {
	b := make([]byte, leaseSize)
	copy(b, leaseMagic)
	binary.LittleEndian.PutUint32(b[4:], l.failures)
	binary.LittleEndian.PutUint64(b[8:], l.holder)
	binary.LittleEndian.PutUint64(b[16:], uint64(l.expires.UnixMilli()))
	binary.LittleEndian.PutUint64(b[24:], uint64(l.nextDue.UnixMilli()))
	binary.LittleEndian.PutUint64(b[32:], uint64(l.lastEarly.UnixMilli()))
	return b
}

func parseLease(b []byte) (lease, error) {
	if len(b) != leaseSize || string(b[:4]) != leaseMagic {
		return lease{}, fmt.Errorf("%w: %d bytes", ErrBadLease, len(b))
	}
	return lease{
		failures:  binary.LittleEndian.Uint32(b[4:]),
		holder:    binary.LittleEndian.Uint64(b[8:]),
		expires:   time.UnixMilli(int64(binary.LittleEndian.Uint64(b[16:]))),
		nextDue:   time.UnixMilli(int64(binary.LittleEndian.Uint64(b[24:]))),
		lastEarly: time.UnixMilli(int64(binary.LittleEndian.Uint64(b[32:]))),
	}, nil
}

// readLease returns the lease and its CAS; an absent or broken record is a free lease (CAS 0
// when absent).
func readLease(store blocklistsync.SharedData, key string) (lease, uint32, error) {
	raw, cas, err := store.GetSharedData(key)
	switch {
	case errors.Is(err, types.ErrorStatusNotFound):
		return lease{}, 0, nil
	case err != nil:
		return lease{}, 0, err
	}
	l, err := parseLease(raw)
	if err != nil {
		return lease{}, cas, nil // a broken record is a free lease
	}
	return l, cas, nil
}

// acquire takes or renews the lease for id at now. It returns the lease as written and true,
// or the other holder's lease and false.
func acquire(store blocklistsync.SharedData, key string, id uint64, now time.Time, ttl time.Duration) (lease, bool, error) {
	cur, cas, err := readLease(store, key)
	if err != nil {
		return lease{}, false, err
	}
	if cur.holder != 0 && cur.holder != id && now.Before(cur.expires) {
		return cur, false, nil
	}
	next := cur
	next.holder, next.expires = id, now.Add(ttl)
	if err := store.SetSharedData(key, next.marshal(), cas); err != nil {
		if errors.Is(err, types.ErrorStatusCasMismatch) {
			return cur, false, nil // another VM moved first; look again next tick
		}
		return lease{}, false, err
	}
	return next, true, nil
}

// updateSchedule writes the fetch schedule into the lease if id still holds it.
func updateSchedule(store blocklistsync.SharedData, key string, id uint64, nextDue time.Time, failures uint32) error {
	cur, cas, err := readLease(store, key)
	if err != nil {
		return err
	}
	if cur.holder != id {
		return nil
	}
	cur.nextDue, cur.failures = nextDue, failures
	return store.SetSharedData(key, cur.marshal(), cas)
}

// Outcomes of askEarly.
type earlyResult int

const (
	earlyAsked       earlyResult = iota // the schedule now says "due"
	earlyNotNeeded                      // already due, or no holder yet (the first holder fetches at once)
	earlyRateLimited                    // an early fetch was asked less than gap ago
	earlyRetry                          // another VM wrote the lease meanwhile
)

// askEarly moves the holder's next fetch to now, unless an early fetch was asked less than gap
// ago by any VM. Any VM may call it; it does not take the lease.
func askEarly(store blocklistsync.SharedData, key string, now time.Time, gap time.Duration) (earlyResult, error) {
	cur, cas, err := readLease(store, key)
	if err != nil {
		return earlyRetry, err
	}
	switch {
	case cur.holder == 0 || !now.Before(cur.nextDue):
		return earlyNotNeeded, nil
	case now.Sub(cur.lastEarly) < gap:
		return earlyRateLimited, nil
	}
	cur.nextDue, cur.lastEarly = now, now
	if err := store.SetSharedData(key, cur.marshal(), cas); err != nil {
		if errors.Is(err, types.ErrorStatusCasMismatch) {
			return earlyRetry, nil
		}
		return earlyRetry, err
	}
	return earlyAsked, nil
}
