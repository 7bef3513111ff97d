package blocklistsync

// Revocation keys are 64-bit hashes, not the jti strings themselves: a worker VM then holds
// 12 bytes per entry whatever the jti's length, and the request path compares integers.
// The hash is FNV-1a over a domain byte, the issuer and the value, finished with the
// splitmix64 mixer so that the top bits (which pick a bucket in Set) are well spread.
//
// A collision between two different jtis can only ever deny a token, never admit one, and
// the chance that any given token collides with one of 1M entries is about 5e-14.

const (
	domainToken   byte = 't'
	domainSubject byte = 's'
)

// TokenKey is the blocklist key of a token's (iss, jti). iss is empty when the deployment
// does not key by issuer, and for feed entries that match the jti from any issuer.
func TokenKey(iss, jti string) uint64 { return hashKey(domainToken, iss, jti) }

// SubjectKey is the key of a subject cutoff for (iss, sub); iss empty as for TokenKey.
func SubjectKey(iss, sub string) uint64 { return hashKey(domainSubject, iss, sub) }

func hashKey[T string | []byte](domain byte, iss, value T) uint64 {
	const (
		offset = 14695981039346656037
		prime  = 1099511628211
	)
	h := uint64(offset)
	h = (h ^ uint64(domain)) * prime
	for i := 0; i < len(iss); i++ {
		h = (h ^ uint64(iss[i])) * prime
	}
	// 0xff never occurs in UTF-8, so ("ab","c") and ("a","bc") differ.
	h = (h ^ 0xff) * prime
	for i := 0; i < len(value); i++ {
		h = (h ^ uint64(value[i])) * prime
	}
	h ^= uint64(len(value)) << 32
	h ^= h >> 30
	h *= 0xbf58476d1ce4e5b9
	h ^= h >> 27
	h *= 0x94d049bb133111eb
	h ^= h >> 31
	if h == 0 {
		h = 1 // 0 is never a key: it keeps "no key" representable
	}
	return h
}
