package jwtverify

import "errors"

// Sentinel errors, in golang-jwt's style: every failure of Verify is an *Error that wraps
// exactly one of them, so callers branch with errors.Is and show Error() to clients.
var (
	ErrTokenMalformed            = errors.New("token is malformed")
	ErrTokenUnverifiable         = errors.New("token is unverifiable")
	ErrAlgorithmNotAllowed       = errors.New("token algorithm is not allowed")
	ErrTokenSignatureInvalid     = errors.New("token signature is invalid")
	ErrInvalidType               = errors.New("invalid type for claim")
	ErrTokenRequiredClaimMissing = errors.New("token is missing required claim")
	ErrTokenInvalidIssuer        = errors.New("token has invalid issuer")
	ErrTokenInvalidAudience      = errors.New("token has invalid audience")
	ErrTokenExpired              = errors.New("token is expired")
	ErrTokenNotValidYet          = errors.New("token is not valid yet")
	ErrTokenUsedBeforeIssued     = errors.New("token used before issued")
)

// FlaskExpiredMessage is what flask-jwt-extended answers (401) for an expired token, where
// PyJWT's own message (Error() of an ErrTokenExpired failure) is "Signature has expired".
// Every other failure flask answers with 422 and the PyJWT message.
const FlaskExpiredMessage = "Token has expired"

// Error is a verification failure. Its message is the one PyJWT raises for the same case, which
// flask-jwt-extended sends in its 422 body; it never contains the token or a claim value (the
// one exception is the name of an unsupported critical extension, as PyJWT prints it).
//
// Failures on the paths hostile input reaches most are package-level values, so returning
// them allocates nothing.
type Error struct {
	kind   error
	msg    string
	reason reason
}

func (e *Error) Error() string { return e.msg }

// Unwrap gives the sentinel, for errors.Is.
func (e *Error) Unwrap() error { return e.kind }

// reason names the check that failed. The differential fuzz test uses it to prove that a token
// golang-jwt accepts and we refuse falls under one of the deliberate differences.
type reason uint8

const (
	reasonNone reason = iota
	reasonTooLarge
	reasonSegments
	reasonBase64
	reasonJSON      // not JSON, or JSON golang-jwt refuses too
	reasonNotObject // valid JSON that is not an object (golang-jwt accepts a payload of null)
	reasonUTF8      // not UTF-8 (PyJWT refuses; encoding/json substitutes U+FFFD)
	reasonSurrogate // a lone surrogate escape in a string we read
	reasonDepth     // nested deeper than maxDepth
	reasonDuplicate // a member we read given twice
	reasonKidType
	reasonCrit
	reasonB64
	reasonAlg
	reasonSignature
	reasonDateType
	reasonDateRange
	reasonExpZero // exp of 0: golang-jwt's MapClaims reads it as absent
	reasonIat
	reasonNbf
	reasonIssuer
	reasonAudience
	reasonSubType
	reasonJTIType
	reasonJTILength
	reasonExpired
)

func newErr(kind error, r reason, msg string) *Error { return &Error{kind: kind, msg: msg, reason: r} }

// PyJWT's and flask-jwt-extended's texts (PyJWT 2.6 as in Debian 12, which backports the crit
// check; "Subject must be a string" and "JWT ID must be a string" are PyJWT 2.10's).
var (
	errTooLarge      = newErr(ErrTokenMalformed, reasonTooLarge, "Token is too large")
	errSegments      = newErr(ErrTokenMalformed, reasonSegments, "Not enough segments")
	errTooManySegs   = newErr(ErrTokenMalformed, reasonSegments, "Invalid payload padding") // PyJWT's answer when a fourth segment is appended
	errHeaderPadding = newErr(ErrTokenMalformed, reasonBase64, "Invalid header padding")
	errPayloadPad    = newErr(ErrTokenMalformed, reasonBase64, "Invalid payload padding")
	errCryptoPadding = newErr(ErrTokenMalformed, reasonBase64, "Invalid crypto padding")
	errKidType       = newErr(ErrTokenUnverifiable, reasonKidType, "Key ID header parameter must be a string")
	errCritList      = newErr(ErrTokenUnverifiable, reasonCrit, "Invalid 'crit' header: must be a non-empty list")
	errCritStrings   = newErr(ErrTokenUnverifiable, reasonCrit, "Invalid 'crit' header: values must be strings")
	errCritB64       = newErr(ErrTokenUnverifiable, reasonCrit, "Critical extension 'b64' is missing from headers")
	errB64False      = newErr(ErrTokenUnverifiable, reasonB64, `It is required that you pass in a value for the "detached_payload" argument to decode a message having the b64 header set to false.`)
	errAlg           = newErr(ErrAlgorithmNotAllowed, reasonAlg, "The specified alg value is not allowed")
	errSignature     = newErr(ErrTokenSignatureInvalid, reasonSignature, "Signature verification failed")
	errNoKey         = newErr(ErrTokenUnverifiable, reasonSignature, "Signature verification failed")
	errIatType       = newErr(ErrInvalidType, reasonDateType, "Issued At claim (iat) must be an integer.")
	errIatRange      = newErr(ErrInvalidType, reasonDateRange, "Issued At claim (iat) is out of range")
	errIat           = newErr(ErrTokenUsedBeforeIssued, reasonIat, "The token is not yet valid (iat)")
	errNbfType       = newErr(ErrInvalidType, reasonDateType, "Not Before claim (nbf) must be an integer.")
	errNbfRange      = newErr(ErrInvalidType, reasonDateRange, "Not Before claim (nbf) is out of range")
	errNbf           = newErr(ErrTokenNotValidYet, reasonNbf, "The token is not yet valid (nbf)")
	errExpType       = newErr(ErrInvalidType, reasonDateType, "Expiration Time claim (exp) must be an integer.")
	errExpRange      = newErr(ErrInvalidType, reasonDateRange, "Expiration Time claim (exp) is out of range")
	errIssMissing    = newErr(ErrTokenRequiredClaimMissing, reasonIssuer, `Token is missing the "iss" claim`)
	errIss           = newErr(ErrTokenInvalidIssuer, reasonIssuer, "Invalid issuer")
	errAudMissing    = newErr(ErrTokenRequiredClaimMissing, reasonAudience, `Token is missing the "aud" claim`)
	errAudFormat     = newErr(ErrTokenInvalidAudience, reasonAudience, "Invalid claim format in token")
	errAud           = newErr(ErrTokenInvalidAudience, reasonAudience, "Invalid audience")
	errSubType       = newErr(ErrInvalidType, reasonSubType, "Subject must be a string")
	errJTIType       = newErr(ErrInvalidType, reasonJTIType, "JWT ID must be a string")
	errJTILength     = newErr(ErrInvalidType, reasonJTILength, "Invalid claim: jti is too long")
	errExpired       = newErr(ErrTokenExpired, reasonExpired, "Signature has expired")
	errExpZero       = newErr(ErrTokenExpired, reasonExpZero, "Signature has expired")
)

// JSON failures of the header and of the payload. PyJWT prefixes "Invalid header string: " or
// "Invalid payload string: " to the message of Python's json module, which names a line and
// column; ours names the problem only, so these messages match PyJWT up to the colon.
type jsonProblem uint8

const (
	jsonOK jsonProblem = iota
	jsonSyntax
	jsonNotObject
	jsonUTF8
	jsonSurrogate
	jsonDepth
	jsonNumberRange
	jsonDupAlg // duplicates: one per member we read, so each message is static
	jsonDupKid
	jsonDupCrit
	jsonDupB64
	jsonDupJTI
	jsonDupSub
	jsonDupIss
	jsonDupAud
	jsonDupExp
	jsonDupNbf
	jsonDupIat
	jsonDupType
	numJSONProblems
)

var jsonProblemText = [numJSONProblems]string{
	jsonSyntax:      "not valid JSON",
	jsonNotObject:   "must be a json object",
	jsonUTF8:        "not valid UTF-8",
	jsonSurrogate:   "a string holds an unpaired surrogate escape",
	jsonDepth:       "nested too deeply",
	jsonNumberRange: "a number is out of the range of a 64-bit float",
	jsonDupAlg:      `duplicate member "alg"`,
	jsonDupKid:      `duplicate member "kid"`,
	jsonDupCrit:     `duplicate member "crit"`,
	jsonDupB64:      `duplicate member "b64"`,
	jsonDupJTI:      `duplicate member "jti"`,
	jsonDupSub:      `duplicate member "sub"`,
	jsonDupIss:      `duplicate member "iss"`,
	jsonDupAud:      `duplicate member "aud"`,
	jsonDupExp:      `duplicate member "exp"`,
	jsonDupNbf:      `duplicate member "nbf"`,
	jsonDupIat:      `duplicate member "iat"`,
	jsonDupType:     `duplicate member "type"`,
}

func jsonReason(p jsonProblem) reason {
	switch {
	case p == jsonNotObject:
		return reasonNotObject
	case p == jsonUTF8:
		return reasonUTF8
	case p == jsonSurrogate:
		return reasonSurrogate
	case p == jsonDepth:
		return reasonDepth
	case p >= jsonDupAlg:
		return reasonDuplicate
	}
	return reasonJSON
}

var headerJSONErrors, payloadJSONErrors = func() (h, p [numJSONProblems]*Error) {
	for i := jsonSyntax; i < numJSONProblems; i++ {
		h[i] = newErr(ErrTokenMalformed, jsonReason(i), "Invalid header string: "+jsonProblemText[i])
		p[i] = newErr(ErrTokenMalformed, jsonReason(i), "Invalid payload string: "+jsonProblemText[i])
	}
	return h, p
}()
