package main

import (
	"encoding/json"
	"fmt"
	"os"
	"reflect"
	"strings"
	"sync"
	"testing"

	"github.com/timed-project/timed/control"
	"github.com/timed-project/timed/sources"
)

func fabricatedSourceStats() control.SourceStatsReply {
	return control.SourceStatsReply{Sources: []control.SourceStats{
		{Name: "192.0.2.1:123", Kind: "ntp", Samples: 40, Window: 16, Span: 960, Outliers: 1, Valid: true,
			Offset: -11e-6, StdDev: 4e-6, Noise: 20e-6, Frequency: 12.5, FrequencyUncertainty: 0.021, MinDelay: 0.0009, Poll: 6},
		{Name: "127.0.0.1:11123", Kind: "ntp", Runtime: true, Samples: 1, Window: 1, Poll: -2, Restarts: 0},
	}}
}

func fabricatedNTS() control.NTSReply {
	return control.NTSReply{
		Clients: []control.NTSClientStatus{
			{Name: "nts.example:123", KEServer: "nts.example:4460", KEState: "ok", LastKEAgo: 300, KEs: 1,
				AEAD: "AEAD_AES_SIV_CMAC_256", NTPServer: "ntp1.example:123", Cookies: 8, MaxCookies: 8, NAKs: 1},
			{Name: "bad.example:123", KEServer: "bad.example:4460", KEState: "failed",
				KEError: "x509: certificate signed by unknown authority", RetryIn: 32, MaxCookies: 8, AuthFailures: 2},
		},
		Server: &control.NTSServerStatus{
			NTSServerStats: control.NTSServerStats{Listen: []string{"[::]:4460"}, Answered: 900, NAKs: 3,
				Accepted: 12, Refused: 1, Handshakes: 10, Exchanges: 10, TLSErrors: 1, Timeouts: 1},
			KeyID: "0a1b2c3d", KeyRotatesIn: 3600, CookiesIssued: 80, CookiesAccepted: 900, CookiesRejected: 3,
		},
	}
}

func (b *backend) SourceStats() control.SourceStatsReply    { return fabricatedSourceStats() }
func (b *backend) NTS() control.NTSReply                    { return fabricatedNTS() }
func (b *backend) Burst(string) (control.BurstReply, error) { return control.BurstReply{}, nil }
func (b *backend) AddSource(control.AddArgs) (control.AddReply, error) {
	return control.AddReply{}, nil
}
func (b *backend) RemoveSource(string) error { return nil }

// recorder is a backend that records the source changes it is asked for.
type recorder struct {
	backend
	mu      sync.Mutex
	added   []control.AddArgs
	removed []string
	bursts  []string
}

func (r *recorder) Burst(source string) (control.BurstReply, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.bursts = append(r.bursts, source)
	if source == "" {
		return control.BurstReply{Sources: []string{"192.0.2.1:123", "192.0.2.2:123"}}, nil
	}
	return control.BurstReply{Sources: []string{source}}, nil
}

func (r *recorder) AddSource(a control.AddArgs) (control.AddReply, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.added = append(r.added, a)
	port := a.Port
	if port == 0 {
		port = 123
	}
	return control.AddReply{Name: fmt.Sprintf("%s:%d", a.Address, port)}, nil
}

func (r *recorder) RemoveSource(s string) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.removed = append(r.removed, s)
	return nil
}

func TestSourceStatsAndNTSOutput(t *testing.T) {
	sock := serveControl(t, &backend{})
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"sourcestats"}, `NAME               SAMPLES   SPAN   OFFSET      STD DEV   NOISE      FREQUENCY            MIN DELAY   POLL   OUTLIERS  RESTARTS
192.0.2.1:123      16 of 40  16m0s  -11.000 µs  4.000 µs  20.000 µs  +12.500 ± 0.021 ppm  900.000 µs  1m4s   1         0
127.0.0.1:11123 +  1 of 1    -      -           -         -          -                    -           250ms  0         0

SAMPLES: held by the filter of all taken; SPAN: from the oldest held to the newest;
NOISE: the typical error of one measurement; FREQUENCY: the oscillator's error as the source sees it.
+ added with timectl add: kept across reloads, forgotten at a restart
`},
		{[]string{"nts"}, `NAME             KE SERVER         KEY EXCHANGE  COOKIES  AEAD                   NTP SERVER        LAST KE   NAKS  AUTH FAILURES
nts.example:123  nts.example:4460  ok            8 of 8   AEAD_AES_SIV_CMAC_256  ntp1.example:123  5m0s ago  1     0
bad.example:123  bad.example:4460  failed        0 of 8   -                      -                 never     0     2

Failed key exchanges:
  bad.example:123: x509: certificate signed by unknown authority; next try in 32s

NTS-KE server:   on [::]:4460: 12 connections (1 refused, 0 active)
Handshakes:      10 TLS, 10 key exchanges answered
Failures:        1 TLS, 1 timed out, 0 bad requests, 0 unsupported, 0 internal, 0 writes
Cookie key:      id 0a1b2c3d, next one in 1h0m0s
Cookies:         80 issued by NTS-KE, 900 accepted, 3 rejected
NTS responses:   900 authenticated, 3 NTS NAKs
`},
	} {
		code, out, errOut := runArgs(t, append([]string{"-s", sock}, tc.args...)...)
		if code != 0 || out != tc.want {
			t.Errorf("%v: exit %d %s\ngot:\n%s\nwant:\n%s", tc.args, code, errOut, out, tc.want)
		}
	}
	for _, tc := range []struct {
		cmd  string
		got  any
		want any
	}{
		{"sourcestats", &control.SourceStatsReply{}, fabricatedSourceStats()},
		{"nts", &control.NTSReply{}, fabricatedNTS()},
	} {
		code, out, errOut := runArgs(t, "-s", sock, "-o", "json", tc.cmd)
		if code != 0 {
			t.Fatalf("%s -o json: %d %s", tc.cmd, code, errOut)
		}
		if err := json.Unmarshal([]byte(out), tc.got); err != nil {
			t.Fatalf("%s: JSON does not parse: %v\n%s", tc.cmd, err, out)
		}
		if got := reflect.ValueOf(tc.got).Elem().Interface(); !reflect.DeepEqual(got, tc.want) {
			t.Errorf("%s: JSON round trip:\ngot  %+v\nwant %+v", tc.cmd, got, tc.want)
		}
	}
	// The JSON member names are pinned: they are the protocol.
	_, out, _ := runArgs(t, "-s", sock, "-o", "json", "nts")
	for _, key := range []string{`"ke_state": "failed"`, `"cookies": 8`, `"max_cookies": 8`, `"aead": "AEAD_AES_SIV_CMAC_256"`,
		`"retry_in_s": 32`, `"key_id": "0a1b2c3d"`, `"cookies_rejected": 3`, `"ke_accepted": 12`} {
		if !strings.Contains(out, key) {
			t.Errorf("nts -o json lacks %s:\n%s", key, out)
		}
	}
}

func TestRuntimeSourceMarked(t *testing.T) {
	srcs := []sources.SourceStatus{{Name: "127.0.0.1:11123", Kind: "ntp", State: sources.StateSelected, Runtime: true, Poll: 6}}
	var b strings.Builder
	renderSources(&b, srcs, nil, false)
	if !strings.Contains(b.String(), "127.0.0.1:11123 +  ntp") || !strings.Contains(b.String(), runtimeLegend) {
		t.Errorf("runtime source not marked:\n%s", b.String())
	}
}

func TestSourceChangeCommands(t *testing.T) {
	if os.Geteuid() != 0 {
		// The changing commands are refused to others (control tests that).
		sock := serveControl(t, &recorder{})
		if code, _, errOut := runArgs(t, "-s", sock, "burst"); code != 1 || !strings.Contains(errOut, "permission denied") {
			t.Errorf("burst as uid %d: %d %s", os.Geteuid(), code, errOut)
		}
		return
	}
	r := &recorder{}
	sock := serveControl(t, r)
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"add", "server", "127.0.0.1:11123", "--iburst", "--minpoll", "-2", "--maxpoll", "4"}, "added server 127.0.0.1:11123 (kept across reloads, forgotten at a restart)\n"},
		{[]string{"add", "pool", "pool.example", "--nts"}, "added pool pool.example:123 (kept across reloads, forgotten at a restart)\n"},
		{[]string{"add", "server", "[2001:db8::1]:1123", "--prefer"}, "added server 2001:db8::1:1123 (kept across reloads, forgotten at a restart)\n"},
		{[]string{"add", "server", "2001:db8::2"}, "added server 2001:db8::2:123 (kept across reloads, forgotten at a restart)\n"},
		{[]string{"burst"}, "burst started on 2 sources: 192.0.2.1:123, 192.0.2.2:123\n"},
		{[]string{"burst", "192.0.2.1:123"}, "burst started on 1 source: 192.0.2.1:123\n"},
		{[]string{"-o", "json", "burst"}, "{\n  \"sources\": [\n    \"192.0.2.1:123\",\n    \"192.0.2.2:123\"\n  ]\n}\n"},
		{[]string{"-o", "json", "add", "server", "192.0.2.9"}, "{\n  \"name\": \"192.0.2.9:123\"\n}\n"},
		{[]string{"remove", "127.0.0.1:11123"}, "removed 127.0.0.1:11123\n"},
		{[]string{"-o", "json", "remove", "pool.example"}, "{\"ok\": true}\n"},
	} {
		code, out, errOut := runArgs(t, append([]string{"-s", sock}, tc.args...)...)
		if code != 0 || out != tc.want {
			t.Errorf("%v: exit %d %s\ngot  %q\nwant %q", tc.args, code, errOut, out, tc.want)
		}
	}
	m2, m4 := -2, 4
	want := []control.AddArgs{
		{Type: "server", Address: "127.0.0.1", Port: 11123, IBurst: true, MinPoll: &m2, MaxPoll: &m4},
		{Type: "pool", Address: "pool.example", NTS: true},
		{Type: "server", Address: "2001:db8::1", Port: 1123, Prefer: true},
		{Type: "server", Address: "2001:db8::2"},
		{Type: "server", Address: "192.0.2.9"},
	}
	if !reflect.DeepEqual(r.added, want) {
		t.Errorf("added %+v, want %+v", r.added, want)
	}
	if !reflect.DeepEqual(r.removed, []string{"127.0.0.1:11123", "pool.example"}) || !reflect.DeepEqual(r.bursts, []string{"", "192.0.2.1:123", ""}) {
		t.Errorf("removed %q, bursts %q", r.removed, r.bursts)
	}
	for _, args := range [][]string{
		{"add"}, {"add", "server"}, {"add", "peer", "x"}, {"add", "server", "host:0"}, {"add", "server", "host:99999"},
		{"add", "server", "[::1"}, {"remove"}, {"remove", "a", "b"}, {"burst", "a", "b"}, {"add", "server", "x", "--minpoll", "z"},
	} {
		if code, _, errOut := runArgs(t, append([]string{"-s", sock}, args...)...); code != 2 {
			t.Errorf("%q: exit %d, want 2 (%s)", args, code, errOut)
		}
	}
}
