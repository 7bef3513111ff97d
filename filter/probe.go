package filter

// The points of the request path, in the order a new token passes them.
const (
	ptStart       = iota // proxy_on_request_headers entered
	ptHeaders            // the header map read from the host
	ptScan               // discovery (credentials.Scanner.Scan)
	ptRoute              // upstream claims, route policy
	ptList               // the clock, the list snapshot
	ptCacheGet           // the payload looked up in the cache
	ptPeek               // its claims read leniently (PeekClaims)
	ptNewEntry           // its cache entry made
	ptPut                // and stored (an eviction when the cache is full)
	ptKeys               // its blocklist keys computed
	ptRevoked            // looked up in the list
	ptPreVerify          // the cache asked for a verification
	ptVerify             // jwtverify.Verify
	ptPutVerified        // the verification remembered
	ptDecided            // the rest of decide
	ptResponded          // respondTo
	numPoints
)
