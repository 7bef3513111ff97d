package e2e

import (
	"testing"
	"time"

	"github.com/tetratelabs/proxy-wasm-go-sdk/proxywasm/proxytest"
	"github.com/tetratelabs/proxy-wasm-go-sdk/proxywasm/types"

	"github.com/jtiguard/jtiguard/filter"
	"github.com/jtiguard/jtiguard/harness"
	"github.com/jtiguard/jtiguard/hosttest"
	"github.com/jtiguard/jtiguard/internal/abi"
	"github.com/jtiguard/jtiguard/localproxy/localproxytest"
)

// abiStore is the native build's shared data: internal/abi forwards to the SDK's emulator.
type abiStore struct{}

func (abiStore) GetSharedData(key string) ([]byte, uint32, error) { return abi.GetSharedData(key) }
func (abiStore) SetSharedData(key string, v []byte, cas uint32) error {
	return abi.SetSharedData(key, v, cas)
}

// decisionList is the list both hosts hold: one revoked jti and one subject cutoff ten
// minutes ago (tokens issued 20 and 1 minutes ago fall either side of it).
func decisionList() localproxytest.List {
	return localproxytest.List{JTIs: []string{"revoked-jti"}, Cutoffs: map[string]time.Time{"cut-user": time.Now().Add(-10 * time.Minute)}}
}

// decisionCase is one request and the answer it must get.
type decisionCase struct {
	name  string
	token string // "" for none
	want  outcome
}

func decisionCases() []decisionCase {
	now := time.Now().Unix()
	expired := claims("expired-jti", "user-1")
	expired["iat"], expired["nbf"], expired["exp"] = now-7200, now-7200, now-3600
	return []decisionCase{
		{"no token", "", allowed},
		{"valid token", token("valid-jti"), allowed},
		{"revoked jti", token("revoked-jti"), revoked},
		{"subject cutoff", localproxyHS256("cut-jti", "cut-user", -1200), revoked},
		{"issued after the cutoff", localproxyHS256("cut-jti-2", "cut-user", -60), allowed},
		{"expired token", localproxytest.HS256(secret, expired), outcome{Status: 401, Body: `{"msg":"Token has expired"}`}},
		{"malformed token", "not-a-jwt", outcome{Status: 422}},
		{"alg none", noneToken(), outcome{Status: 422}},
		{"bad signature", localproxytest.HS256(otherSecret, claims("valid-jti", "user-1")), outcome{Status: 422}},
	}
}

// noneToken is an unsigned token (alg none), as an attacker would send it.
func noneToken() string {
	t := localproxytest.Sign("", map[string]any{"alg": "none", "typ": "JWT"}, claims("valid-jti", "user-1"))
	return t[:len(t)-43] // keep "header.claims." and drop the signature
}

// TestDecisionsNativeAndModule runs one scenario table through the filter compiled natively
// (the SDK's proxytest emulator) and through the real module in both hosts (the wazero
// harness and V8 under Node.js), on both WASI surfaces, and requires the same answer from all: the host, the ABI glue and the wasm
// build must not change a decision. 422 answers are compared in full between hosts; their
// wording (flask-jwt-extended's) is the filter's unit tests' business.
func TestDecisionsNativeAndModule(t *testing.T) {
	cases := decisionCases()
	native := nativeDecisions(t, cases)
	for i, c := range cases {
		got := native[i]
		if c.want.Body == "" && !c.want.Continue {
			got.Body = "" // status only
		}
		if got != c.want {
			t.Errorf("native, %s: %v; want %v", c.name, native[i], c.want)
		}
	}
	for _, e := range hosttest.Engines {
		for _, g := range []harness.WASIGeneration{harness.WASICurrent, harness.WASIEnvoy133} {
			t.Run(string(e)+"/"+g.String(), func(t *testing.T) {
				h := startHost(t, e, harness.NewConfig().WithWorkers(2).WithWASI(g).
					WithPluginConfig(pluginConfig(cfgOpts{noSync: true})).WithTimers(false))
				if err := localproxytest.Publish(hosttest.Store{H: h}, prefix, decisionList()); err != nil {
					t.Fatal(err)
				}
				for i, c := range cases {
					for vm := range h.Workers() {
						if got := doHost(t, h, vm, c.token); got != native[i] {
							t.Errorf("%s on VM %d: module %v; native %v", c.name, vm, got, native[i])
						}
					}
				}
			})
		}
	}
}

func nativeDecisions(t *testing.T, cases []decisionCase) []outcome {
	opt := proxytest.NewEmulatorOption().WithVMContext(filter.NewVMContext()).
		WithPluginConfiguration(pluginConfig(cfgOpts{noSync: true}))
	host, reset := proxytest.NewHostEmulator(opt)
	defer reset()
	if st := host.StartPlugin(); st != types.OnPluginStartStatusOK {
		t.Fatalf("native start: %v %q", st, host.GetCriticalLogs())
	}
	if err := localproxytest.Publish(abiStore{}, prefix, decisionList()); err != nil {
		t.Fatal(err)
	}
	out := make([]outcome, len(cases))
	for i, c := range cases {
		out[i] = nativeDo(host, c.token)
	}
	return out
}

func nativeDo(host proxytest.HostEmulator, tok string) outcome {
	id := host.InitializeHttpContext()
	defer host.CompleteHttpContext(id)
	hs := harness.RequestHeadersFor(harness.Request{Path: "/api"})
	if tok != "" {
		hs = append(hs, [2]string{"authorization", "Bearer " + tok})
	}
	action := host.CallOnRequestHeaders(id, hs, true)
	if lr := host.GetSentLocalResponse(id); lr != nil {
		return outcome{Status: lr.StatusCode, Body: string(lr.Data)}
	}
	if action != types.ActionContinue {
		return outcome{Status: 0, Body: "paused without a reply"}
	}
	return allowed
}
