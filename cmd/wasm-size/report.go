package main

import (
	"fmt"
	"io"
	"sort"
	"strings"

	"github.com/jtiguard/jtiguard/internal/wasmstub"
)

// goPackage is the package of a Go function's wasm name: the linker writes "/" and "." inside
// the path as "_" ("crypto_internal_fips140_nistec.p256Add", "github.com_jtiguard_jtiguard_filter.
// (*x).y"), so the package is everything before the first "." that follows the domain, if any.
func goPackage(name string) string {
	if name == "" {
		return "(unnamed)"
	}
	prefix, rest := "", name
	for _, domain := range []string{"github.com_", "golang.org_", "vendor_golang.org_", "google.golang.org_"} {
		if strings.HasPrefix(name, domain) {
			prefix, rest = domain, name[len(domain):]
			break
		}
	}
	if i := strings.IndexByte(rest, '.'); i >= 0 {
		rest = rest[:i]
	} else {
		return "(no package: " + name + ")"
	}
	return prefix + rest
}

// Analysis is one module's size broken down.
type Analysis struct {
	Path      string
	Layout    *wasmstub.Layout
	Packages  []Share // code by Go package, largest first
	Data      []dataUse
	DataError error // why the data section could not be split by Go region
}

// Share is a named number of bytes.
type Share struct {
	Name  string
	Bytes int
	Count int
}

func analyze(path string, module []byte) (*Analysis, error) {
	l, err := wasmstub.Inspect(module)
	if err != nil {
		return nil, err
	}
	a := &Analysis{Path: path, Layout: l}
	byPkg := map[string]*Share{}
	for _, f := range l.Funcs {
		p := goPackage(f.Name)
		s := byPkg[p]
		if s == nil {
			s = &Share{Name: p}
			byPkg[p] = s
		}
		s.Bytes += f.Size
		s.Count++
	}
	for _, s := range byPkg {
		a.Packages = append(a.Packages, *s)
	}
	sortShares(a.Packages)
	m := memImage(l.Data)
	rs, err := goRegions(m)
	if err != nil {
		a.DataError = err
		rs = nil
	}
	a.Data = attributeData(m, rs, func(s wasmstub.DataSegment) int { return s.EntrySize - len(s.Bytes) })
	sort.SliceStable(a.Data, func(i, j int) bool {
		return a.Data[i].bytes+a.Data[i].headers > a.Data[j].bytes+a.Data[j].headers
	})
	return a, nil
}

func sortShares(s []Share) {
	sort.Slice(s, func(i, j int) bool {
		if s[i].Bytes != s[j].Bytes {
			return s[i].Bytes > s[j].Bytes
		}
		return s[i].Name < s[j].Name
	})
}

// num writes n with thin groups of three digits, as the docs' tables do.
func num(n int) string {
	s := fmt.Sprint(n)
	neg := strings.HasPrefix(s, "-")
	s = strings.TrimPrefix(s, "-")
	var b strings.Builder
	for i, c := range s {
		if i > 0 && (len(s)-i)%3 == 0 {
			b.WriteByte(' ')
		}
		b.WriteRune(c)
	}
	if neg {
		return "-" + b.String()
	}
	return b.String()
}

func pct(part, whole int) string {
	if whole == 0 {
		return "-"
	}
	return fmt.Sprintf("%.1f%%", 100*float64(part)/float64(whole))
}

// write prints the breakdown: sections, code by package (top n), data by Go region, and the
// top n functions.
func (a *Analysis) write(w io.Writer, n int) {
	l := a.Layout
	fmt.Fprintf(w, "%s: %s bytes, %d functions (%d imported), %d data segments\n",
		a.Path, num(l.Size), len(l.Funcs), l.FuncImports, len(l.Data))
	fmt.Fprintln(w, "\nsections:")
	for _, s := range l.Sections {
		fmt.Fprintf(w, "  %-12s %11s  %6s\n", s.Name, num(s.Size), pct(s.Size, l.Size))
	}
	code := l.Section("code")
	fmt.Fprintf(w, "\ncode by Go package (of %s bytes of code):\n", num(code))
	rest, restN := 0, 0
	for i, p := range a.Packages {
		if i < n {
			fmt.Fprintf(w, "  %-56s %11s  %6s  %5d funcs\n", p.Name, num(p.Bytes), pct(p.Bytes, code), p.Count)
		} else {
			rest += p.Bytes
			restN++
		}
	}
	if restN > 0 {
		fmt.Fprintf(w, "  %-56s %11s  %6s\n", fmt.Sprintf("(%d more packages)", restN), num(rest), pct(rest, code))
	}
	data := l.Section("data")
	fmt.Fprintf(w, "\ndata by Go region (of %s bytes of data section; headers are the segments' own encoding):\n", num(data))
	if a.DataError != nil {
		fmt.Fprintf(w, "  (not split by region: %v)\n", a.DataError)
	}
	for _, d := range a.Data {
		switch {
		case d.bytes+d.headers > 0:
			fmt.Fprintf(w, "  %-48s %11s  %6s  (bytes %s, headers %s in %d segments)\n", d.name, num(d.bytes+d.headers),
				pct(d.bytes+d.headers, data), num(d.bytes), num(d.headers), d.segments)
		case d.extent > 0:
			// Nothing stored: zeros, or written at start (wasmstub.CompactData's start function).
			fmt.Fprintf(w, "  %-48s %11s  %6s  (%s bytes of memory, none stored in the data section)\n", d.name, "0", "0.0%",
				num(int(d.extent)))
		}
	}
	funcs := append([]wasmstub.Func(nil), l.Funcs...)
	sort.SliceStable(funcs, func(i, j int) bool { return funcs[i].Size > funcs[j].Size })
	fmt.Fprintf(w, "\nlargest functions:\n")
	for _, f := range funcs[:min(n, len(funcs))] {
		fmt.Fprintf(w, "  %-72s %9s\n", f.Name, num(f.Size))
	}
}
