package daemon

import (
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/timed-project/timed/config"
	"github.com/timed-project/timed/control"
	"github.com/timed-project/timed/ntp"
)

// runtimeFlags maps each source of the status to whether it is marked as
// added at runtime.
func runtimeFlags(d *Daemon) map[string]bool {
	out := map[string]bool{}
	for _, s := range d.Status().Engine.Sources {
		out[s.Name] = s.Runtime
	}
	return out
}

func TestAddRemoveAtRuntime(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "timed.yaml")
	writeFile(t, path, "clock: {driver: virtual}\ndrift_file: \"\"\nntp: {servers: [{address: 192.0.2.1}]}\n")
	cfg, err := config.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	w := newWorld()
	d, fe := testDaemon(t, cfg, path, w, nil, nil)
	start(t, d)
	eventually(t, "the configured server", func() bool { return reflect.DeepEqual(fe.names(), []string{"192.0.2.1:123"}) })

	two := 2
	for _, tc := range []struct {
		args control.AddArgs
		name string
	}{
		{control.AddArgs{Type: control.AddServer, Address: "192.0.2.9", Port: 1123, IBurst: true, MinPoll: &two}, "192.0.2.9:1123"},
		{control.AddArgs{Type: control.AddPool, Address: "pool.example", NTS: true}, "pool.example:123"},
	} {
		r, err := d.AddSource(tc.args)
		if err != nil || r.Name != tc.name {
			t.Fatalf("AddSource(%+v) = %+v, %v; want %s", tc.args, r, err, tc.name)
		}
	}
	// The pool's default max_sources (4) gives four members.
	want := []string{"192.0.2.1:123", "192.0.2.9:1123", "pool.example#0", "pool.example#1", "pool.example#2", "pool.example#3"}
	eventually(t, "the added sources", func() bool { return reflect.DeepEqual(fe.names(), want) })
	fe.mu.Lock()
	opts := fe.opts["192.0.2.9:1123"]
	fe.mu.Unlock()
	if opts.MinPoll != 2 || opts.MaxPoll != config.DefaultMaxPoll {
		t.Errorf("added server's options %+v: want minpoll 2 and the default maxpoll", opts)
	}
	flags := runtimeFlags(d)
	if flags["192.0.2.1:123"] || !flags["192.0.2.9:1123"] || !flags["pool.example#2"] {
		t.Errorf("runtime marks %v", flags)
	}
	if st := d.SourceStats(); len(st.Sources) != len(want) {
		t.Errorf("sourcestats has %d sources, want %d", len(st.Sources), len(want))
	}

	for _, tc := range []struct {
		args control.AddArgs
		want string
	}{
		{control.AddArgs{Type: control.AddServer, Address: "192.0.2.9", Port: 1123}, "192.0.2.9:1123 is a source already"},
		{control.AddArgs{Type: control.AddServer, Address: "192.0.2.1"}, "192.0.2.1:123 is a source already"},
		{control.AddArgs{Type: control.AddPool, Address: "p.example", Prefer: true}, "prefer applies to servers only"},
		{control.AddArgs{Type: control.AddServer, Address: "192.0.2.7", MinPoll: new(int(30))}, "minpoll"},
	} {
		if _, err := d.AddSource(tc.args); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("AddSource(%+v): %v, want %q", tc.args, err, tc.want)
		}
	}

	// A reload keeps the runtime sources running (not restarted) and
	// applies the file: .1 goes, .3 comes.
	writeFile(t, path, "clock: {driver: virtual}\ndrift_file: \"\"\nntp: {servers: [{address: 192.0.2.3}]}\n")
	if err := d.Reload(); err != nil {
		t.Fatal(err)
	}
	want = []string{"192.0.2.3:123", "192.0.2.9:1123", "pool.example#0", "pool.example#1", "pool.example#2", "pool.example#3"}
	eventually(t, "the reloaded sources", func() bool { return reflect.DeepEqual(fe.names(), want) })
	if n := w.count("192.0.2.9:1123"); n != 1 {
		t.Errorf("the runtime server was made %d times across the reload, want 1", n)
	}

	for _, tc := range []struct{ source, want string }{
		{"192.0.2.200", `no NTP server or pool "192.0.2.200"`},
		{"pool.example#1", "is not an NTP server or pool of its own"},
	} {
		if err := d.RemoveSource(tc.source); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("RemoveSource(%q): %v, want %q", tc.source, err, tc.want)
		}
	}
	// By name, by address alone, and a configured one (back at reload).
	for _, s := range []string{"192.0.2.9:1123", "pool.example", "192.0.2.3"} {
		if err := d.RemoveSource(s); err != nil {
			t.Fatalf("RemoveSource(%q): %v", s, err)
		}
	}
	eventually(t, "every source removed", func() bool { return len(fe.names()) == 0 })
	if err := d.Reload(); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the file's server back", func() bool { return reflect.DeepEqual(fe.names(), []string{"192.0.2.3:123"}) })
}

func TestBurst(t *testing.T) {
	cfg := virtualConfig(0)
	cfg.NTP.Servers = []config.NTPServer{{Address: "192.0.2.1", Port: 123}, {Address: "192.0.2.2", Port: 123}}
	cfg.NTP.Pools = []config.NTPPool{{Address: "pool.example", Port: 123, MaxSources: 2}}
	w := newWorld()
	d, fe := testDaemon(t, cfg, "", w, nil, nil)
	start(t, d)
	eventually(t, "the sources", func() bool { return len(fe.names()) == 4 })
	for _, tc := range []struct {
		source string
		want   []string
		err    string
	}{
		{"", []string{"192.0.2.1:123", "192.0.2.2:123", "pool.example#0", "pool.example#1"}, ""},
		{"192.0.2.2:123", []string{"192.0.2.2:123"}, ""},
		{"pool.example:123", []string{"pool.example#0", "pool.example#1"}, ""},
		{"192.0.2.77:123", []string{}, `no NTP source "192.0.2.77:123"`},
	} {
		before := map[string]int32{}
		for _, n := range fe.names() {
			before[n] = w.source(n).bursts.Load()
		}
		r, err := d.Burst(tc.source)
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("Burst(%q): %v, want %q", tc.source, err, tc.err)
			}
			continue
		}
		if err != nil || !reflect.DeepEqual(r.Sources, tc.want) {
			t.Errorf("Burst(%q) = %v, %v; want %v", tc.source, r.Sources, err, tc.want)
		}
		for _, n := range fe.names() {
			got, want := w.source(n).bursts.Load()-before[n], int32(0)
			if slices.Contains(tc.want, n) {
				want = 1
			}
			if got != want {
				t.Errorf("Burst(%q): %s burst %d times, want %d", tc.source, n, got, want)
			}
		}
	}
}

func TestNTSClientStatus(t *testing.T) {
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	for _, tc := range []struct {
		name string
		in   ntp.NTSStatus
		want control.NTSClientStatus
	}{
		{"pending", ntp.NTSStatus{KEServer: "a:4460", MaxCookies: 8},
			control.NTSClientStatus{Name: "pending", KEServer: "a:4460", KEState: "pending", MaxCookies: 8}},
		{"ok", ntp.NTSStatus{KEServer: "a:4460", LastKE: now.Add(-90 * time.Second), AEAD: 15, NTPServer: "b:123",
			KEs: 2, Cookies: 7, MaxCookies: 8, NAKs: 1, AuthFailures: 3},
			control.NTSClientStatus{Name: "ok", KEServer: "a:4460", KEState: "ok", LastKEAgo: 90, KEs: 2,
				AEAD: "AEAD_AES_SIV_CMAC_256", NTPServer: "b:123", Cookies: 7, MaxCookies: 8, NAKs: 1, AuthFailures: 3}},
		{"failed", ntp.NTSStatus{KEServer: "a:4460", KEError: "connection refused", RetryAt: now.Add(16 * time.Second), MaxCookies: 8},
			control.NTSClientStatus{Name: "failed", KEServer: "a:4460", KEState: "failed", KEError: "connection refused",
				RetryIn: 16, MaxCookies: 8}},
		{"failed, retry due", ntp.NTSStatus{KEError: "timeout", RetryAt: now.Add(-time.Second), LastKE: now.Add(-time.Hour), AEAD: 30},
			control.NTSClientStatus{Name: "failed, retry due", KEState: "failed", KEError: "timeout", LastKEAgo: 3600, AEAD: "AEAD 30"}},
	} {
		if got := ntsClientStatus(tc.name, tc.in, now); !reflect.DeepEqual(got, tc.want) {
			t.Errorf("%s:\ngot  %+v\nwant %+v", tc.name, got, tc.want)
		}
	}
}

// Sources that do not speak NTS are not listed by NTS, and without an NTS
// server the server part is absent.
func TestNTSWithoutNTS(t *testing.T) {
	cfg := virtualConfig(0)
	cfg.NTP.Servers = []config.NTPServer{{Address: "192.0.2.1", Port: 123}}
	d, fe := testDaemon(t, cfg, "", newWorld(), nil, nil)
	start(t, d)
	eventually(t, "the source", func() bool { return len(fe.names()) == 1 })
	if r := d.NTS(); len(r.Clients) != 0 || r.Server != nil {
		t.Errorf("NTS() = %+v, want nothing", r)
	}
	if _, err := d.AddSource(control.AddArgs{Type: "server", Address: "192.0.2.1", Port: 123}); err == nil || !strings.Contains(err.Error(), "already") {
		t.Errorf("adding a configured server again: %v", err)
	}
}
