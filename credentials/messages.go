package credentials

import "fmt"

// messages are the texts Scan reports, made once per configuration so that a hostile
// request costs no formatting.
type messages struct {
	badHeader   string // flask-jwt-extended's InvalidHeaderError
	queryPrefix string // flask-jwt-extended's InvalidQueryParamError

	tooMany, manyHeaders, headerVariant, bodyVariant, headerChars, schemeCase, severalSchemes string
	cookieHeaders, queryName, queryValue, queryDup                                            string
	cookieName, cookieValue, cookieDup, jsonDup, jsonValue                                    [2]string
}

func newMessages(c *Config) messages {
	m := messages{
		tooMany:       fmt.Sprintf("Ambiguous request: more than %d tokens", MaxCandidates),
		manyHeaders:   fmt.Sprintf("Ambiguous request: more than one %s header", c.HeaderName),
		headerVariant: fmt.Sprintf("Ambiguous request: a header name that matches %s only when '_' is read as '-'", c.HeaderName),
		bodyVariant:   "Ambiguous request: a Content-Type, Content-Length or Transfer-Encoding header named with '_' for '-'",
		headerChars:   fmt.Sprintf("Ambiguous request: control or non-ASCII characters in the %s header", c.HeaderName),
		schemeCase:    fmt.Sprintf("Ambiguous request: a %s scheme that matches '%s' only in another letter case", c.HeaderName, c.HeaderType),
		severalSchemes: fmt.Sprintf("Ambiguous request: more than one '%s' credential in the %s header",
			c.HeaderType, c.HeaderName),
		cookieHeaders: "Ambiguous request: more than one Cookie header",
		queryName:     fmt.Sprintf("Ambiguous request: a query parameter name that matches %q only after decoding, trimming or splitting on ';'", c.QueryStringName),
		queryValue:    fmt.Sprintf("Ambiguous request: control or non-ASCII characters in query parameter %q", c.QueryStringName),
		queryDup:      fmt.Sprintf("Ambiguous request: query parameter %q given twice with different values", c.QueryStringName),
		queryPrefix: fmt.Sprintf("Invalid value for query parameter '%s'. Expected the value to start with '%s'",
			c.QueryStringName, c.QueryStringValuePrefix),
	}
	if c.HeaderType == "" {
		m.badHeader = fmt.Sprintf("Bad %s header. Expected '%s: <JWT>'", c.HeaderName, c.HeaderName)
	} else {
		m.badHeader = fmt.Sprintf("Bad %s header. Expected '%s: %s <JWT>'", c.HeaderName, c.HeaderName, c.HeaderType)
	}
	for k, name := range [2]string{c.CookieName, c.RefreshCookieName} {
		m.cookieName[k] = fmt.Sprintf("Ambiguous request: a cookie name that matches %q only after trimming or decoding", name)
		m.cookieValue[k] = fmt.Sprintf("Ambiguous request: control, non-ASCII or escaped characters in cookie %q", name)
		m.cookieDup[k] = fmt.Sprintf("Ambiguous request: cookie %q given twice with different values", name)
	}
	for k, key := range [2]string{c.JSONKey, c.RefreshJSONKey} {
		m.jsonDup[k] = fmt.Sprintf("Ambiguous request: JSON key %q given twice with different values", key)
		m.jsonValue[k] = fmt.Sprintf("Ambiguous request: control or non-ASCII characters in JSON key %q", key)
	}
	return m
}
