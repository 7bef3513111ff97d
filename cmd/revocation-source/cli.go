package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"
	"unicode"

	rs "github.com/jtiguard/jtiguard/revocationsource"
	"github.com/jtiguard/jtiguard/revocationsource/adminclient"
)

// Exit statuses of the subcommands. Scripts rely on them: keep them.
const (
	exitOK          = 0
	exitRefused     = 1 // the source answered and said no (status: it is not ready)
	exitUsage       = 2 // bad flags or arguments, no admin token, an unusable --url
	exitUnreachable = 3 // no answer from the source at --url
)

const defaultURL = "http://127.0.0.1:8081"

// subcommands talk to a running source's admin API; without one the
// program serves.
var subcommands = map[string]string{
	"revoke":   "revoke a jti (--jti) or a subject's tokens issued before a time (--sub)",
	"unrevoke": "remove a jti's revocation (--jti) or a subject's cutoff (--sub)",
	"list":     "list revocations, a page at a time, with filters",
	"status":   "show the source's list version, counts and readiness",
}

func isSubcommand(arg string) bool { _, ok := subcommands[arg]; return ok }

// cliFlags are the flags every subcommand takes, and its own.
type cliFlags struct {
	fs        *flag.FlagSet
	url       string
	tokenFile string
	timeout   time.Duration
	json      bool

	jti, sub, iss, exp, before string
	limit                      int
	cursor, jtiPrefix, only    string
	anyIss                     bool
}

func newCLIFlags(name string) *cliFlags {
	f := &cliFlags{fs: flag.NewFlagSet("revocation-source "+name, flag.ContinueOnError)}
	fs := f.fs
	fs.SetOutput(io.Discard)
	fs.StringVar(&f.url, "url", defaultURL, "the source's address [REVOCATION_SOURCE_URL]")
	fs.StringVar(&f.tokenFile, "admin-token-file", "", "file with the admin token [REVOCATION_SOURCE_ADMIN_TOKEN_FILE]; the variable REVOCATION_SOURCE_ADMIN_TOKEN wins")
	fs.DurationVar(&f.timeout, "timeout", 10*time.Second, "for each request to the source")
	fs.BoolVar(&f.json, "json", false, "print the admin API's JSON")
	switch name {
	case "revoke", "unrevoke":
		fs.StringVar(&f.jti, "jti", "", "the token's jti")
		fs.StringVar(&f.sub, "sub", "", "the subject (its tokens issued before --revoked-before)")
		fs.StringVar(&f.iss, "iss", "", "the issuer, when the list is kept per issuer")
		if name == "revoke" {
			fs.StringVar(&f.exp, "exp", "", "when the revocation may be forgotten (the token's exp, or for --sub the longest token lifetime): Unix seconds, an RFC 3339 time, or a time from now such as 15m or 30d; none = until unrevoked")
			fs.StringVar(&f.before, "revoked-before", "", "with --sub: tokens issued before this are revoked: Unix seconds, an RFC 3339 time, or now (the default)")
		}
	case "list":
		fs.IntVar(&f.limit, "limit", rs.DefaultListLimit, "most items to print, fetched by pages of up to 1000; 0 = all")
		fs.StringVar(&f.cursor, "cursor", "", "continue after the last item a previous list printed (its next cursor)")
		fs.StringVar(&f.jtiPrefix, "jti-prefix", "", "only jtis starting with this")
		fs.StringVar(&f.sub, "sub", "", "only this subject's cutoff(s)")
		fs.StringVar(&f.iss, "iss", "", "only this issuer (with --iss= and nothing after it: only items without one)")
		fs.StringVar(&f.only, "only", "", "entries or cutoffs")
	}
	return f
}

// runCLI runs subcommand name and returns the exit status. Results go to
// stdout, errors to stderr, each naming what failed.
func runCLI(ctx context.Context, name string, args []string, lookupEnv func(string) (string, bool), stdout, stderr io.Writer) int {
	f := newCLIFlags(name)
	fail := func(code int, format string, a ...any) int {
		fmt.Fprintf(stderr, "revocation-source %s: %s\n", name, fmt.Sprintf(format, a...))
		return code
	}
	usage := func(format string, a ...any) int {
		fail(exitUsage, format, a...)
		fmt.Fprintf(stderr, "see revocation-source %s --help\n", name)
		return exitUsage
	}
	if err := f.fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			printCLIHelp(stdout, name, f.fs)
			return exitOK
		}
		if n, ok := strings.CutPrefix(err.Error(), "flag provided but not defined: "); ok {
			return usage("unknown flag --%s", strings.TrimLeft(n, "-"))
		}
		return usage("%v", err)
	}
	if f.fs.NArg() > 0 {
		return usage("unexpected argument %q (flags are --name=value)", f.fs.Arg(0))
	}
	set := map[string]bool{}
	f.fs.Visit(func(fl *flag.Flag) { set[fl.Name] = true })
	urlFrom := "--url"
	if !set["url"] {
		urlFrom = "the default --url"
		if v, ok := lookupEnv(envPrefix + "URL"); ok && v != "" {
			f.url, urlFrom = v, envPrefix+"URL"
		}
	}
	fileFrom := "--admin-token-file"
	if !set["admin-token-file"] {
		if v, ok := lookupEnv(envPrefix + "ADMIN_TOKEN_FILE"); ok && v != "" {
			f.tokenFile, fileFrom = v, envPrefix+"ADMIN_TOKEN_FILE"
		}
	}
	token, err := secret(lookupEnv, envPrefix+"ADMIN_TOKEN", fileFrom, f.tokenFile)
	if err != nil {
		return usage("%v", strings.TrimPrefix(err.Error(), ErrConfig.Error()+": "))
	}
	if token == "" {
		return usage("no admin token: set %sADMIN_TOKEN or --admin-token-file (the server's own)", envPrefix)
	}
	if f.timeout <= 0 {
		return usage("--timeout=%s: must be above 0, e.g. 10s", f.timeout)
	}
	c := &adminclient.Client{BaseURL: f.url, Token: token, Timeout: f.timeout}

	// failed says what went wrong with the source, with the exit status a
	// script can act on.
	failed := func(err error) int {
		var apiErr *adminclient.APIError
		switch {
		case errors.Is(err, adminclient.ErrBadURL):
			return usage("%s (from %s)", err, urlFrom)
		case errors.Is(err, adminclient.ErrUnreachable):
			return fail(exitUnreachable, "cannot reach the source at %s (from %s): %v", f.url, urlFrom, unwrapUnreachable(err))
		case errors.As(err, &apiErr):
			hint := ""
			switch apiErr.Status {
			case 401:
				hint = fmt.Sprintf(" (the token comes from %sADMIN_TOKEN or --admin-token-file, and must be the server's)", envPrefix)
			case 404, 405:
				hint = " (the admin API is off on a source started without an admin token; or is --url a revocation source?)"
			}
			return fail(exitRefused, "the source at %s %v%s", f.url, apiErr, hint)
		}
		return fail(exitRefused, "%v", err)
	}

	switch name {
	case "revoke", "unrevoke":
		req, code := f.adminRequest(name, usage)
		if code != exitOK {
			return code
		}
		call := c.Revoke
		if name == "unrevoke" {
			call = c.Unrevoke
		}
		version, err := call(ctx, req)
		if err != nil {
			return failed(err)
		}
		if f.json {
			return writeJSON(stdout, map[string]string{"version": version})
		}
		fmt.Fprintf(stdout, "%s %s; list version %s\n", pastTense(name), describe(req), version)
		return exitOK
	case "list":
		return f.list(ctx, c, stdout, stderr, usage, failed, set["iss"])
	default: // status
		st, err := c.Status(ctx)
		if err != nil {
			return failed(err)
		}
		if f.json {
			writeJSON(stdout, st)
		} else {
			tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
			fmt.Fprintf(tw, "version\t%s\nready\t%v\nentries\t%d\ncutoffs\t%d\nheld\t%d\nwatchers\t%d\n",
				st.Version, st.Ready, st.Entries, st.Cutoffs, st.Held, st.Watchers)
			tw.Flush()
		}
		if !st.Ready {
			return fail(exitRefused, "the source at %s is not ready: its store has not answered a full read, or cannot be read (see its log)", f.url)
		}
		return exitOK
	}
}

// adminRequest builds a revoke or unrevoke from the flags.
func (f *cliFlags) adminRequest(name string, usage func(string, ...any) int) (rs.AdminRequest, int) {
	req := rs.AdminRequest{JTI: f.jti, Sub: f.sub, Iss: f.iss}
	if (f.jti == "") == (f.sub == "") {
		return req, usage("give exactly one of --jti and --sub")
	}
	if name == "unrevoke" {
		return req, exitOK
	}
	now := time.Now()
	if f.exp != "" {
		t, err := parseWhen(f.exp, now, true)
		if err != nil {
			return req, usage("--exp=%q: %v", f.exp, err)
		}
		req.Exp = t
	}
	if f.before != "" {
		if f.jti != "" {
			return req, usage("--revoked-before applies to --sub only")
		}
		t, err := parseWhen(f.before, now, false)
		if err != nil {
			return req, usage("--revoked-before=%q: %v", f.before, err)
		}
		req.RevokedBefore = &t
	}
	return req, exitOK
}

// parseWhen reads a time flag: Unix seconds, RFC 3339, "now", or (when
// fromNow) a duration from now.
func parseWhen(s string, now time.Time, fromNow bool) (int64, error) {
	if n, err := strconv.ParseInt(s, 10, 64); err == nil && n >= 0 {
		return n, nil
	}
	if s == "now" {
		return now.Unix(), nil
	}
	if t, err := time.Parse(time.RFC3339, s); err == nil {
		return t.Unix(), nil
	}
	if fromNow {
		var d time.Duration
		if err := (durVal{&d}).Set(s); err == nil && d > 0 {
			// Round up: a revocation must not end before the token does.
			return now.Add(d).Unix() + 1, nil
		}
		return 0, errors.New("want Unix seconds (1767225600), an RFC 3339 time (2026-01-01T00:00:00Z) or a time from now (15m, 24h, 30d)")
	}
	return 0, errors.New("want Unix seconds (1767225600), an RFC 3339 time (2026-01-01T00:00:00Z) or now")
}

func (f *cliFlags) list(ctx context.Context, c *adminclient.Client, stdout, stderr io.Writer,
	usage func(string, ...any) int, failed func(error) int, issSet bool) int {
	if f.limit < 0 {
		return usage("--limit=%d: want 0 (all) or more", f.limit)
	}
	if f.only != "" && f.only != "entries" && f.only != "cutoffs" {
		return usage("--only=%q: want entries or cutoffs", f.only)
	}
	lq := adminclient.ListQuery{Cursor: f.cursor, JTIPrefix: f.jtiPrefix, Sub: f.sub, Only: f.only}
	if issSet {
		iss := f.iss
		lq.Iss = &iss
	}
	all := rs.AdminList{Entries: []rs.WireEntry{}, Cutoffs: []rs.WireCutoff{}}
	for n := 0; f.limit == 0 || n < f.limit; {
		lq.Limit = rs.MaxListLimit
		if f.limit > 0 {
			lq.Limit = min(f.limit-n, rs.MaxListLimit)
		}
		page, err := c.List(ctx, lq)
		if err != nil {
			return failed(err)
		}
		all.Version, all.NextCursor = page.Version, page.NextCursor
		all.Entries = append(all.Entries, page.Entries...)
		all.Cutoffs = append(all.Cutoffs, page.Cutoffs...)
		n += len(page.Entries) + len(page.Cutoffs)
		if page.NextCursor == "" {
			break
		}
		lq.Cursor = page.NextCursor
	}
	if f.json {
		return writeJSON(stdout, all)
	}
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "KIND\tJTI/SUB\tISS\tEXP\tREVOKED BEFORE")
	for _, e := range all.Entries {
		fmt.Fprintf(tw, "jti\t%s\t%s\t%s\t-\n", printable(e.JTI), orDash(e.Iss), unixTime(e.Exp, "never"))
	}
	for _, c := range all.Cutoffs {
		fmt.Fprintf(tw, "sub\t%s\t%s\t%s\t%s\n", printable(c.Sub), orDash(c.Iss), unixTime(c.Exp, "never"), unixTime(c.RevokedBefore, "-"))
	}
	tw.Flush()
	if all.NextCursor != "" {
		fmt.Fprintf(stderr, "more: continue with --cursor=%s\n", all.NextCursor)
	}
	return exitOK
}

func writeJSON(w io.Writer, v any) int {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
	return exitOK
}

// printable quotes a value that holds blanks or control characters, so
// that a hostile jti cannot forge table rows or drive the terminal.
func printable(s string) string {
	for _, r := range s {
		if !unicode.IsGraphic(r) || unicode.IsSpace(r) {
			return strconv.Quote(s)
		}
	}
	return s
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return printable(s)
}

func unixTime(v int64, zero string) string {
	if v == 0 {
		return zero
	}
	return time.Unix(v, 0).UTC().Format(time.RFC3339)
}

func pastTense(name string) string { return name + "d" }

func describe(req rs.AdminRequest) string {
	var b strings.Builder
	if req.JTI != "" {
		fmt.Fprintf(&b, "jti %s", printable(req.JTI))
	} else {
		fmt.Fprintf(&b, "sub %s", printable(req.Sub))
	}
	if req.Iss != "" {
		fmt.Fprintf(&b, " of %s", printable(req.Iss))
	}
	if req.RevokedBefore != nil {
		fmt.Fprintf(&b, ", tokens issued before %s", unixTime(*req.RevokedBefore, "-"))
	}
	if req.Exp != 0 {
		fmt.Fprintf(&b, ", until %s", unixTime(req.Exp, "-"))
	}
	return b.String()
}

// unwrapUnreachable drops the sentinel's own words from the message.
func unwrapUnreachable(err error) string {
	return strings.TrimPrefix(err.Error(), adminclient.ErrUnreachable.Error()+": ")
}

func printCLIHelp(w io.Writer, name string, fs *flag.FlagSet) {
	fmt.Fprintf(w, `Usage: revocation-source %s [--flag=value ...]

%s.
A client of the admin API of a running revocation source
(docs/revocation-source.md, "Revocation CLI").

The admin token comes from %sADMIN_TOKEN, or from the file that
--admin-token-file names, as for the server.
Exit status: 0 done; 1 the source said no (status: it is not ready);
2 bad usage or no token; 3 the source could not be reached.

Flags:
`, name, strings.ToUpper(subcommands[name][:1])+subcommands[name][1:], envPrefix)
	fs.VisitAll(func(fl *flag.Flag) {
		def := fl.DefValue
		if def == "" {
			def = `""`
		}
		fmt.Fprintf(w, "  --%s=%s\n        %s\n", fl.Name, def, fl.Usage)
	})
}
