package credentials

// PeekClaims reads a candidate's claims into the Scanner's own Peeked, with the string and
// number values of the named claims (sid, and those an operator revokes by) in Peeked.Claims; valid until the
// next Peek.
func (s *Scanner) PeekClaims(payload string, names []string) *Peeked {
	s.peek.PeekClaims(payload, names)
	return &s.peek
}
