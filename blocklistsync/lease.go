package blocklistsync

import (
	"encoding/binary"
	"errors"
	"fmt"
	"time"

	"github.com/tetratelabs/proxy-wasm-go-sdk/proxywasm/types"
)

// The lease chooses the one worker VM that polls the revocation source. Every VM ticks; on
// each tick it reads the lease and, if the lease is free, expired or its own, writes itself
// in with CAS. A holder that dies or stalls stops renewing, and after LeaseTTL another VM
// takes over. The lease also carries the poll schedule (next due time, consecutive
// failures), so a new holder keeps the old one's pace and backoff.
//
// Envoy cannot create a key atomically (setting an absent key succeeds whatever the CAS), so
// two VMs starting at once may both believe they hold the lease for one tick; the CAS on the
// generation record keeps their writes from mixing, and the next tick settles the holder.
//
//	<prefix>lease  32 bytes
//	    0  "JTIL"  magic
//	    4  u32     consecutive failures
//	    8  u64     holder id (random per VM)
//	   16  i64     lease expiry, Unix milliseconds
//	   24  i64     next poll due, Unix milliseconds

const (
	leaseMagic = "JTIL"
	leaseSize  = 32
)

// ErrBadLease marks a lease record that cannot be decoded; it is then treated as free.
var ErrBadLease = errors.New("malformed lease record")

type lease struct {
	holder   uint64
	expires  time.Time
	nextDue  time.Time
	failures uint32
}

func (l lease) marshal() []byte {
	b := make([]byte, leaseSize)
	copy(b, leaseMagic)
	binary.LittleEndian.PutUint32(b[4:], l.failures)
	binary.LittleEndian.PutUint64(b[8:], l.holder)
	binary.LittleEndian.PutUint64(b[16:], uint64(l.expires.UnixMilli()))
	binary.LittleEndian.PutUint64(b[24:], uint64(l.nextDue.UnixMilli()))
	return b
}

func parseLease(b []byte) (lease, error) {
	if len(b) != leaseSize || string(b[:4]) != leaseMagic {
		return lease{}, fmt.Errorf("%w: %d bytes", ErrBadLease, len(b))
	}
	return lease{
		failures: binary.LittleEndian.Uint32(b[4:]),
		holder:   binary.LittleEndian.Uint64(b[8:]),
		expires:  time.UnixMilli(int64(binary.LittleEndian.Uint64(b[16:]))),
		nextDue:  time.UnixMilli(int64(binary.LittleEndian.Uint64(b[24:]))),
	}, nil
}

// acquire takes or renews the lease for id at now. It returns the lease as written (holding
// the schedule) and true, or the other holder's lease and false.
func acquire(store SharedData, key string, id uint64, now time.Time, ttl time.Duration) (lease, bool, error) {
	raw, cas, err := store.GetSharedData(key)
	var cur lease
	switch {
	case errors.Is(err, types.ErrorStatusNotFound):
		cas = 0
	case err != nil:
		return lease{}, false, err
	default:
		if cur, err = parseLease(raw); err != nil {
			cur = lease{} // a broken record is a free lease
		}
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

// updateSchedule writes the poll schedule into the lease if id still holds it.
func updateSchedule(store SharedData, key string, id uint64, nextDue time.Time, failures uint32) error {
	raw, cas, err := store.GetSharedData(key)
	if err != nil {
		return err
	}
	cur, err := parseLease(raw)
	if err != nil {
		return err
	}
	if cur.holder != id {
		return nil
	}
	cur.nextDue, cur.failures = nextDue, failures
	return store.SetSharedData(key, cur.marshal(), cas)
}
