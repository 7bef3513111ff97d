package jwtverify

// Reason names the check that refused a token (for the differential tests).
func Reason(err error) string {
	e, ok := err.(*Error)
	if !ok {
		return ""
	}
	return reasonNames[e.reason]
}

var reasonNames = map[reason]string{
	reasonNone: "", reasonTooLarge: "too-large", reasonSegments: "segments", reasonBase64: "base64",
	reasonJSON: "json", reasonNotObject: "not-object", reasonUTF8: "utf8", reasonSurrogate: "surrogate",
	reasonDepth: "depth", reasonDuplicate: "duplicate", reasonKidType: "kid-type", reasonCrit: "crit",
	reasonB64: "b64", reasonAlg: "alg", reasonSignature: "signature", reasonDateType: "date-type",
	reasonDateRange: "date-range", reasonExpZero: "exp-zero", reasonIat: "iat", reasonNbf: "nbf",
	reasonIssuer: "issuer", reasonAudience: "audience", reasonSubType: "sub-type", reasonJTIType: "jti-type",
	reasonJTILength: "jti-length", reasonExpired: "expired",
}

var (
	ParsePublicKeyPEM = parsePublicKeyPEM
	ParsePKIX         = parsePKIX
	ParsePKCS1        = func(der []byte) (any, error) { return parsePKCS1(der) }
)
