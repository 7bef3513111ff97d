//go:build reqprobe

package credentials

// With -tags reqprobe, the filter's probe times discovery's parts separately
// (filter/probehot_on.go); a real build has none of these.

// ProbeDiscover runs discovery alone over headers (Scan's first part).
func (s *Scanner) ProbeDiscover(headers [][2]string) {
	s.res.Candidates = s.res.Candidates[:0]
	s.discoverAll(headers, nil)
}

// ProbeSelect runs selection alone (Scan's second part), after ProbeDiscover.
func (s *Scanner) ProbeSelect(headers [][2]string) { s.selectAll(headers, nil) }

// ProbeRuns runs the scan of runs over text.
func (s *Scanner) ProbeRuns(text string) { s.runs(text) }

// ProbeScanRun reads one run from the start of text.
func ProbeScanRun(text string) int {
	end, _, _, _, _ := scanRun(text, 0)
	return end
}
