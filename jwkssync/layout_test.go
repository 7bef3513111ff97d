package jwkssync

import (
	"bytes"
	"errors"
	"strings"
	"testing"
	"time"
)

func TestRecordsRoundTrip(t *testing.T) {
	g := Generation{Number: 7, BuildID: 0xdeadbeef, LastSuccess: time.UnixMilli(1_767_000_000_123)}
	got, err := ParseGeneration(g.MarshalBinary())
	if err != nil || got != g {
		t.Fatalf("generation round trip = %+v, %v", got, err)
	}
	r := KeyRecord{Number: 7, BuildID: 9, Fetched: time.UnixMilli(1_767_000_000_456), Keys: 2, ETag: `"v1"`, Doc: []byte(`{"keys":[]}`)}
	back, err := ParseKeyRecord(r.MarshalBinary())
	if err != nil || back.Number != 7 || back.BuildID != 9 || !back.Fetched.Equal(r.Fetched) || back.Keys != 2 || back.ETag != r.ETag || !bytes.Equal(back.Doc, r.Doc) {
		t.Fatalf("key record round trip = %+v, %v", back, err)
	}
	r.ETag = strings.Repeat("e", maxETagLen+1)
	if back, _ := ParseKeyRecord(r.MarshalBinary()); back.ETag != "" || !bytes.Equal(back.Doc, r.Doc) {
		t.Fatalf("an over-long ETag is dropped: %+v", back)
	}
	l := lease{holder: 3, expires: time.UnixMilli(1), nextDue: time.UnixMilli(2), lastEarly: time.UnixMilli(3), failures: 4}
	if back, err := parseLease(l.marshal()); err != nil || back != l {
		t.Fatalf("lease round trip = %+v, %v", back, err)
	}
}

func TestMalformedRecords(t *testing.T) {
	good := KeyRecord{Number: 1, BuildID: 1, Doc: []byte("{}")}.MarshalBinary()
	for name, b := range map[string][]byte{
		"empty":          nil,
		"short":          good[:keysHeader-1],
		"bad magic":      append([]byte("XXXX"), good[4:]...),
		"format 2":       func() []byte { c := bytes.Clone(good); c[4] = 2; return c }(),
		"doc length off": append(bytes.Clone(good), 'x'),
		"etag too long":  func() []byte { c := bytes.Clone(good); c[6] = 200; return c }(),
		"build ID 0":     KeyRecord{Number: 1, Doc: []byte("{}")}.MarshalBinary(),
		"truncated doc":  good[:len(good)-1],
	} {
		if _, err := ParseKeyRecord(b); !errors.Is(err, ErrBadKeyRecord) {
			t.Errorf("key record %s: %v; want ErrBadKeyRecord", name, err)
		}
	}
	g := Generation{Number: 1}.MarshalBinary()
	for name, b := range map[string][]byte{"short": g[:31], "magic": append([]byte("JTIG"), g[4:]...), "format": func() []byte { c := bytes.Clone(g); c[4] = 9; return c }()} {
		if _, err := ParseGeneration(b); !errors.Is(err, ErrBadGeneration) {
			t.Errorf("generation %s: %v; want ErrBadGeneration", name, err)
		}
	}
	if _, err := parseLease(make([]byte, leaseSize)); !errors.Is(err, ErrBadLease) {
		t.Errorf("zero lease: %v", err)
	}
}

// TestBrokenSharedDataKeepsTheKeySet: records damaged in shared data (another writer, an
// older module) are logged, never adopted, and the key set held stays.
func TestBrokenSharedDataKeepsTheKeySet(t *testing.T) {
	r := newRig(t)
	a, b := r.vm(1), r.vm(2)
	k := testKeys()
	a.sync.Tick()
	a.host.answer(200, jsonHeaders, jwks(jwkEC("k1", "ES256", &k.ec1.PublicKey)))
	b.sync.Tick()
	keys := KeysFor("jtiguard.")
	tok := esToken(t, k.ec1, "k1", "j")
	for i, bad := range []struct{ key, val string }{
		{keys.Generation, "garbage"},
		{keys.KeySet, "garbage"},
		{keys.KeySet, string(KeyRecord{Number: 5, BuildID: 5, Doc: []byte(`{"keys":"x"}`)}.MarshalBinary())},
	} {
		if err := r.store.SetSharedData(bad.key, []byte(bad.val), 0); err != nil {
			t.Fatal(err)
		}
		if bad.key == keys.KeySet { // make the readers look
			if err := r.store.SetSharedData(keys.Generation, Generation{Number: uint64(5 + i), BuildID: uint64(5 + i)}.MarshalBinary(), 0); err != nil {
				t.Fatal(err)
			}
		}
		r.advance(time.Minute)
		b.sync.Tick()
		if !b.verifies(tok) {
			t.Fatalf("after a broken %s: key set lost", bad.key)
		}
	}
	if len(b.host.logs) != 3 {
		t.Fatalf("logs = %q; want one per broken record", b.host.logs)
	}
	// The holder replaces them with its next fetch.
	r.advance(r.cfg.RefreshInterval.D())
	a.sync.Tick()
	a.host.answer(200, jsonHeaders, jwks(jwkEC("k2", "ES256", &k.ec2.PublicKey)))
	b.sync.Tick()
	if !b.verifies(esToken(t, k.ec2, "k2", "j")) {
		t.Fatal("the next publication did not repair shared data")
	}
}
