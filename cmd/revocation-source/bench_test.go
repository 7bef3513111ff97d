package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	rs "github.com/jtiguard/jtiguard/revocationsource"
)

// benchChildEnv makes the test binary the program itself (see TestMain):
// the benchmark measures the source's memory in a process of its own.
const benchChildEnv = "REVOCATION_SOURCE_BENCH_CHILD_ARGS"

func TestMain(m *testing.M) {
	if args := os.Getenv(benchChildEnv); args != "" {
		err := run(context.Background(), strings.Split(args, "\x1f"), os.LookupEnv, os.Stdout, os.Stderr)
		if err != nil {
			fmt.Fprintln(os.Stderr, "revocation-source:", err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// procStatus reads a "VmRSS:  1234 kB" style field of /proc/pid/status, in bytes.
func procStatus(pid int, field string) int64 {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(sc.Text(), field+":"); ok {
			kb, _ := strconv.ParseInt(strings.Fields(rest)[0], 10, 64)
			return kb << 10
		}
	}
	return 0
}

// cpuTime is the process's user + system time (/proc/pid/stat, clock ticks
// of 10 ms).
func cpuTime(pid int) time.Duration {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	s := string(b)
	fields := strings.Fields(s[strings.LastIndexByte(s, ')')+2:])
	ut, _ := strconv.ParseInt(fields[11], 10, 64)
	st, _ := strconv.ParseInt(fields[12], 10, 64)
	return time.Duration(ut+st) * 10 * time.Millisecond
}

// gauge reads an unlabelled metric from /metrics.
func gauge(b *testing.B, base, name string) float64 {
	resp, err := http.Get(base + "/metrics")
	if err != nil {
		b.Fatal(err)
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(sc.Text(), name+" "); ok {
			v, _ := strconv.ParseFloat(rest, 64)
			return v
		}
	}
	b.Fatalf("no %s in /metrics", name)
	return 0
}

// BenchmarkLongPoll: one source (the real program, in a process of its
// own, SQLite store) holds 1,000 or 10,000 long polls on 127.0.0.1, each on
// its own connection. It reports the source's memory per held request (RSS,
// and Go heap + stacks), its CPU use while nothing changes, and, per round
// (b.N; use -benchtime=3x), the time from an admin revoke to each answer:
// p50, p99 and max over all rounds, and the source's CPU time per round.
// (Issue 11 §2.)
func BenchmarkLongPoll(b *testing.B) {
	for _, n := range []int{1_000, 10_000} {
		b.Run(fmt.Sprintf("watchers=%d", n), func(b *testing.B) { benchLongPoll(b, n) })
	}
}

func benchLongPoll(b *testing.B, watchers int) {
	exe, err := os.Executable()
	if err != nil {
		b.Fatal(err)
	}
	dir := b.TempDir()
	port := freePort(b)
	base := "http://127.0.0.1:" + port
	args := []string{"--listen=127.0.0.1:" + port, "--sqlite-path=" + filepath.Join(dir, "r.db"), "--sql-create-tables",
		"--max-watchers=20000", "--max-wait=5m", "--log-level=warn"}
	cmd := exec.Command(exe)
	cmd.Env = append(os.Environ(), benchChildEnv+"="+strings.Join(args, "\x1f"), "REVOCATION_SOURCE_ADMIN_TOKEN=bench")
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	defer func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		t := time.AfterFunc(30*time.Second, func() { _ = cmd.Process.Kill() })
		_ = cmd.Wait()
		t.Stop()
	}()
	pid := cmd.Process.Pid
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		if resp, err := http.Get(base + "/readyz"); err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				break
			}
		}
		if time.Now().After(deadline) {
			b.Fatal("the source did not become ready")
		}
	}

	client := &http.Client{Transport: &http.Transport{
		MaxIdleConnsPerHost: watchers, DisableCompression: true, IdleConnTimeout: 10 * time.Minute,
	}}
	type arrival struct {
		at      time.Time
		version string
		err     error
	}
	// poll holds one long poll from version v and reports its answer.
	poll := func(v string, out chan<- arrival) {
		req, _ := http.NewRequest("GET", base+rs.FeedPath+"?since="+v+"&wait=4m", nil)
		req.Header.Set("If-None-Match", `"`+v+`"`)
		resp, err := client.Do(req)
		if err != nil {
			out <- arrival{err: err}
			return
		}
		body, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		at := time.Now()
		var d rs.Delta
		if err == nil && (resp.StatusCode != 200 || json.Unmarshal(body, &d) != nil || d.Kind != "delta" || d.Base != v) {
			err = fmt.Errorf("answer %d %.100s", resp.StatusCode, body)
		}
		out <- arrival{at: at, version: d.Version, err: err}
	}
	version := func() string {
		resp, err := http.Get(base + rs.FeedPath)
		if err != nil {
			b.Fatal(err)
		}
		defer resp.Body.Close()
		var snap rs.Snapshot
		if err := json.NewDecoder(resp.Body).Decode(&snap); err != nil {
			b.Fatal(err)
		}
		return snap.Version
	}
	waitHeld := func(n int) {
		for deadline := time.Now().Add(2 * time.Minute); gauge(b, base, "revocation_source_watchers") != float64(n); time.Sleep(20 * time.Millisecond) {
			if time.Now().After(deadline) {
				b.Fatalf("%v long polls held, want %d", gauge(b, base, "revocation_source_watchers"), n)
			}
		}
	}

	runtimeMem := func() float64 {
		return gauge(b, base, "go_memstats_heap_inuse_bytes") + gauge(b, base, "go_memstats_stack_inuse_bytes")
	}
	rss0, mem0 := procStatus(pid, "VmRSS"), runtimeMem()
	v := version()
	arrivals := make(chan arrival, watchers)
	// Open them in steps, so that the listen backlog never overflows.
	for i := 0; i < watchers; i += 500 {
		step := min(500, watchers-i)
		for range step {
			go poll(v, arrivals)
		}
		waitHeld(i + step)
	}
	time.Sleep(time.Second) // let the process settle
	rss1, mem1 := procStatus(pid, "VmRSS"), runtimeMem()
	cpu0, quiet0 := cpuTime(pid), time.Now()
	time.Sleep(5 * time.Second)
	idleCPU := float64(cpuTime(pid)-cpu0) / float64(time.Since(quiet0))

	var lats []time.Duration
	var roundCPU time.Duration
	b.ResetTimer()
	for round := range b.N {
		if round > 0 {
			for range watchers {
				go poll(v, arrivals)
			}
			waitHeld(watchers)
		}
		req, _ := http.NewRequest("POST", base+rs.AdminPath, strings.NewReader(fmt.Sprintf(`{"jti":"bench-%d-%d"}`, b.N, round)))
		req.Header.Set("Authorization", "Bearer bench")
		cpuStart := cpuTime(pid)
		start := time.Now()
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			b.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 200 {
			b.Fatalf("revoke: %d", resp.StatusCode)
		}
		var next string
		for range watchers {
			a := <-arrivals
			if a.err != nil {
				b.Fatal(a.err)
			}
			lats = append(lats, a.at.Sub(start))
			next = a.version
		}
		roundCPU += cpuTime(pid) - cpuStart
		v = next
	}
	b.StopTimer()
	sort.Slice(lats, func(i, j int) bool { return lats[i] < lats[j] })
	ms := func(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
	b.ReportMetric(ms(lats[len(lats)/2]), "p50-ms")
	b.ReportMetric(ms(lats[len(lats)*99/100]), "p99-ms")
	b.ReportMetric(ms(lats[len(lats)-1]), "max-ms")
	b.ReportMetric(ms(roundCPU)/float64(b.N), "source-cpu-ms/round")
	b.ReportMetric(float64(rss1-rss0)/float64(watchers), "rss-B/watcher")
	b.ReportMetric((mem1-mem0)/float64(watchers), "heap+stack-B/watcher")
	b.ReportMetric(idleCPU*100, "idle-cpu-%")
	b.Logf("source RSS %d MiB with no watchers, %d MiB with %d; Go heap+stacks %.0f -> %.0f MiB; idle CPU %.2f%% of one core",
		rss0>>20, rss1>>20, watchers, mem0/(1<<20), mem1/(1<<20), idleCPU*100)
}
