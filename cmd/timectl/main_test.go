package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap/zaptest"

	"github.com/timed-project/timed/control"
	"github.com/timed-project/timed/sources"
)

func fabricated() control.StatusReply {
	return control.StatusReply{
		Engine: sources.Status{
			Synchronized: true, Reference: "192.0.2.1:123", RefID: 0xc000027e, Stratum: 3,
			Offset: -12e-6, Uncertainty: 3e-6, Frequency: 12.5, FrequencyUncertainty: 0.02,
			RootDelay: 0.0015, RootDispersion: 0.0004, LastUpdateAgo: 2.04, Updates: 40, Steps: 1,
			Message: "tracking 1 of 3 sources",
			Sources: []sources.SourceStatus{
				{Name: "192.0.2.1:123", Kind: "ntp", State: sources.StateSelected, Reach: 0o377, Poll: 6,
					Samples: 8, LastSampleAgo: 3.2, Offset: -11e-6, Uncertainty: 4e-6, Delay: 0.0009, Stratum: 2},
				{Name: "192.0.2.2:123", Kind: "ntp", State: sources.StateFalseticker, Reason: "its interval misses the majority's by 249 ms",
					Reach: 0o17, Poll: -2, Samples: 4, LastSampleAgo: 0.25, Offset: 0.25, Uncertainty: 1e-3, Delay: 0.002},
				{Name: "time.example:123", Kind: "ntp", State: sources.StateUnreachable, Reach: 0, Poll: 10},
			},
		},
		Clock: control.ClockInfo{Driver: "virtual", OffsetFromSystem: -0.0002, Frequency: 12.5},
	}
}

// phcStatus is an unsynchronized status with the PHC driver and tie.
func phcStatus(tie *control.TieInfo) control.StatusReply {
	return control.StatusReply{Engine: sources.Status{Holdover: true, Uncertainty: 0.5},
		Clock: control.ClockInfo{Driver: "phc", Device: "/dev/ptp0", Frequency: 1.25, Tie: tie}}
}

func TestRenderStatus(t *testing.T) {
	unsync := control.StatusReply{Engine: sources.Status{Holdover: true, Uncertainty: 0.5}, Clock: control.ClockInfo{Driver: "system"}}
	for _, tc := range []struct {
		name string
		r    control.StatusReply
		want string
	}{
		{"synchronized", fabricated(), `Synchronized:    yes
Reference:       192.0.2.1:123 (stratum 3, refid 192.0.2.126)
Offset:          -12.000 ± 3.000 µs (the local clock is ahead)
Frequency:       +12.500 ± 0.020 ppm
Root delay:      1.500 ms
Root dispersion: 400.000 µs
Leap:            none
Last update:     2s ago (40 updates, 1 step)
Engine:          tracking 1 of 3 sources
Clock:           virtual, 200.000 µs behind the system clock, frequency correction +12.500 ppm
`},
		{"holdover", unsync, `Synchronized:    no (holdover: every source is lost; running on the last frequency)
Reference:       none
Offset:          +0.000 ± 500.000 ms
Frequency:       +0.000 ± 0.000 ppm
Root delay:      0.000 s
Root dispersion: 0.000 s
Leap:            none
Last update:     never (0 updates, 0 steps)
Clock:           system, frequency correction +0.000 ppm
`},
		{"phc tied", phcStatus(&control.TieInfo{Clock: "system", Offset: -1.5e-6, Delay: 2e-6, Frequency: -3.25,
			Updates: 80, Dropped: 2, Steps: 1}), `Synchronized:    no (holdover: every source is lost; running on the last frequency)
Reference:       none
Offset:          +0.000 ± 500.000 ms
Frequency:       +0.000 ± 0.000 ppm
Root delay:      0.000 s
Root dispersion: 0.000 s
Leap:            none
Last update:     never (0 updates, 0 steps)
Clock:           phc /dev/ptp0, frequency correction +1.250 ppm
Tied clock:      system, 1.500 µs behind the PHC, frequency correction -3.250 ppm (80 updates, 2 dropped, 1 step)
`},
		{"phc tie waiting", phcStatus(&control.TieInfo{Clock: "virtual", Waiting: true}), `Synchronized:    no (holdover: every source is lost; running on the last frequency)
Reference:       none
Offset:          +0.000 ± 500.000 ms
Frequency:       +0.000 ± 0.000 ppm
Root delay:      0.000 s
Root dispersion: 0.000 s
Leap:            none
Last update:     never (0 updates, 0 steps)
Clock:           phc /dev/ptp0, frequency correction +1.250 ppm
Tied clock:      virtual, waiting for the PHC's first synchronization
`},
	} {
		var b bytes.Buffer
		renderStatus(&b, tc.r, false)
		if b.String() != tc.want {
			t.Errorf("%s:\ngot:\n%s\nwant:\n%s", tc.name, b.String(), tc.want)
		}
	}
}

func TestRenderSources(t *testing.T) {
	var b bytes.Buffer
	renderSources(&b, fabricated().Engine.Sources, nil, false)
	want := `NAME              KIND  STATE        REACH  POLL   LAST   OFFSET               DELAY
192.0.2.1:123     ntp   selected     377    1m4s   3.2s   -11.000 ± 4.000 µs   900.000 µs
192.0.2.2:123     ntp   falseticker  17     250ms  250ms  +250.000 ± 1.000 ms  2.000 ms
time.example:123  ntp   unreachable  0      17m4s  -      -                    -

States:
  selected     the clock follows this source
  falseticker  disagrees with the other sources; not used
  unreachable  did not answer recent polls

Not selected:
  192.0.2.2:123: falseticker: its interval misses the majority's by 249 ms
  time.example:123: unreachable: did not answer recent polls
`
	if b.String() != want {
		t.Errorf("got:\n%s\nwant:\n%s", b.String(), want)
	}

	b.Reset()
	renderSources(&b, fabricated().Engine.Sources, nil, true)
	if !strings.Contains(b.String(), ansiGreen+"selected") || !strings.Contains(b.String(), ansiRed+"falseticker") {
		t.Errorf("no state colours:\n%q", b.String())
	}
	b.Reset()
	renderSources(&b, nil, nil, false)
	if b.String() != "No sources.\n" {
		t.Errorf("empty: %q", b.String())
	}
}

func TestFormatters(t *testing.T) {
	for _, tc := range []struct{ got, want string }{
		{fmtSeconds(1.5e-9, true), "+1.500 ns"},
		{fmtSeconds(-2.5e-3, true), "-2.500 ms"},
		{fmtSeconds(12, false), "12.000 s"},
		{fmtOffset(0.2, 1e-6), "+200.000 ± 0.001 ms"},
		{fmtPoll(-6), "15.625ms"},
		{fmtPoll(0), "1s"},
		{fmtPoll(17), "36h24m32s"},
		{fmtAgo(0.0123), "12ms"},
		{fmtAgo(75.4), "1m15s"},
		{fmtRefID(0x47505300, 1), "GPS"},
		{fmtRefID(0x7f000001, 2), "127.0.0.1"},
		{fmtRefID(0x01020304, 1), "1.2.3.4"},
	} {
		if tc.got != tc.want {
			t.Errorf("got %q, want %q", tc.got, tc.want)
		}
	}
}

func runArgs(t *testing.T, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var o, e bytes.Buffer
	code = run(context.Background(), args, &o, &e, false)
	return code, o.String(), e.String()
}

func TestValidate(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "good.yaml")
	bad := filepath.Join(dir, "bad.yaml")
	os.WriteFile(good, []byte("clock: {driver: virtual}\nntp:\n  servers:\n    - address: 192.0.2.1\n"), 0o644)
	os.WriteFile(bad, []byte("clock: {driver: sundial}\nntp:\n  servers:\n    - address: 192.0.2.1\n      port: 70000\n"), 0o644)

	code, out, _ := runArgs(t, "validate", good)
	if code != 0 || out != good+": ok\n" {
		t.Errorf("good file: %d %q", code, out)
	}
	code, out, _ = runArgs(t, "validate", bad)
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if code != 1 || len(lines) != 2 || !strings.HasPrefix(lines[0], bad+":1:") || !strings.Contains(out, "port") {
		t.Errorf("bad file: %d\n%s", code, out)
	}
	code, out, _ = runArgs(t, "validate", filepath.Join(dir, "missing.yaml"))
	if code != 1 || !strings.Contains(out, "missing.yaml") {
		t.Errorf("missing file: %d %q", code, out)
	}
}

func TestUsageErrors(t *testing.T) {
	for _, args := range [][]string{
		{},
		{"frobnicate"},
		{"validate"},
		{"validate", "a", "b"},
		{"status", "extra"},
		{"--bogus", "status"},
		{"-o", "yaml", "status"},
	} {
		code, _, stderr := runArgs(t, args...)
		if code != 2 || !strings.Contains(stderr, "timectl:") {
			t.Errorf("%q: exit %d, stderr %q; want 2", args, code, stderr)
		}
	}
	code, out, _ := runArgs(t, "--help")
	if code != 0 || !strings.Contains(out, "Exit status") {
		t.Errorf("--help: %d %q", code, out)
	}
}

// backend serves a fixed status and records changes.
type backend struct {
	reloads int
	fail    error
}

func (b *backend) Status() control.StatusReply { return fabricated() }
func (b *backend) Reload() error               { b.reloads++; return b.fail }
func (b *backend) MakeStep() error             { return errors.New("makestep: not supported yet") }
func (b *backend) ServerStats() control.ServerStatsReply {
	return control.ServerStatsReply{Enabled: true, Listen: []string{"127.0.0.1:123"}, Workers: 2, Uptime: 3600,
		Received: 1000, Answered: 950, Interleaved: 10, KissRate: 5, Dropped: map[string]uint64{"rate limited": 40, "denied": 10},
		Clients: 3, ClientTableSize: 65536, Stratum: 2}
}
func (b *backend) Clients(limit int) control.ClientsReply {
	return control.ClientsReply{Enabled: true, Clients: []control.ClientInfo{
		{Address: "192.0.2.1", Requests: 900, Served: 850, Kissed: 5, Dropped: 45, Rate: 12.5, LastSeenAgo: 0.1},
		{Address: "2001:db8::1", Requests: 100, Served: 100, Rate: 0.016, LastSeenAgo: 30, Interleaved: true},
	}[:min(limit, 2)]}
}

func (b *backend) PTP() control.PTPReply {
	return control.PTPReply{Ports: []control.PTPPortStatus{{
		Interface: "eth0", Transport: "udp4", Role: "slave_only", State: "SLAVE", Reason: "slave: synchronizing to master 0a1b2c.fffe.3d4e5f-1",
		SinceAgo: 42, Identity: "0a1b2c.fffe.000001-1", Parent: "0a1b2c.fffe.3d4e5f-1", Grandmaster: "0a1b2c.fffe.3d4e5f",
		GrandmasterClass: 6, GrandmasterAccuracy: 100e-9, UTCOffset: 37, UTCOffsetValid: true, PTPTimescale: true,
		Offset: -1.5e-6, MeanPathDelay: 2.1e-6, Timestamps: "kernel", LastMeasurementAgo: 0.4, Measurements: 1000,
		Dropped: map[string]uint64{"lost_response": 2},
		UnicastMasters: []control.PTPUnicastMaster{
			{Address: "192.0.2.7", Identity: "0a1b2c.fffe.3d4e5f-1", Selected: true, Grants: []control.PTPUnicastGrant{
				{Message: "announce", State: "granted", LogInterval: 1, Left: 42},
				{Message: "sync", State: "granted", LogInterval: 0, Left: 41},
				{Message: "delay_resp", State: "granted", LogInterval: 0, Left: 41}}},
			{Address: "192.0.2.8", Grants: []control.PTPUnicastGrant{{Message: "announce", State: "no answer", LogInterval: 1}}},
		},
	}, {Interface: "eth1", Transport: "l2", Role: "auto", State: "LISTENING", Reason: "listening: no announce from a master for 6s"},
		{Interface: "eth2", Transport: "udp4", Role: "master_only", State: "MASTER", Reason: "master: the local clock is the best",
			UnicastClients: []control.PTPUnicastClient{{Address: "192.0.2.9", Identity: "0a1b2c.fffe.000009-1", Grants: []control.PTPUnicastGrant{
				{Message: "announce", State: "granted", LogInterval: 1, Left: 299},
				{Message: "sync", State: "granted", LogInterval: -3, Left: 298}}}}}}}
}

func serveControl(t *testing.T, b control.Backend) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "timed.sock")
	ln, err := control.Listen(path)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { control.NewServer(b, zaptest.NewLogger(t), -1).Serve(ctx, ln); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
	return path
}

func TestQueries(t *testing.T) {
	b := &backend{}
	sock := serveControl(t, b)

	code, out, errOut := runArgs(t, "-s", sock, "-o", "json", "status")
	if code != 0 {
		t.Fatalf("status -o json: %d %s", code, errOut)
	}
	var got control.StatusReply
	if err := json.Unmarshal([]byte(out), &got); err != nil {
		t.Fatalf("JSON does not parse: %v\n%s", err, out)
	}
	if !reflect.DeepEqual(got, fabricated()) {
		t.Errorf("JSON round trip:\ngot  %+v\nwant %+v", got, fabricated())
	}

	code, out, _ = runArgs(t, "-s", sock, "sources")
	if code != 0 || !strings.Contains(out, "192.0.2.2:123     ntp   falseticker") {
		t.Errorf("sources: %d\n%s", code, out)
	}
	code, out, _ = runArgs(t, "status", "--socket", sock)
	if code != 0 || !strings.HasPrefix(out, "Synchronized:    yes") {
		t.Errorf("status: %d\n%s", code, out)
	}

	if os.Geteuid() == 0 {
		code, out, _ = runArgs(t, "-s", sock, "reload")
		if code != 0 || out != "configuration reloaded\n" || b.reloads != 1 {
			t.Errorf("reload: %d %q, %d reloads", code, out, b.reloads)
		}
		code, _, errOut = runArgs(t, "-s", sock, "makestep")
		if code != 1 || !strings.Contains(errOut, "not supported") {
			t.Errorf("makestep: %d %q", code, errOut)
		}
	}

	code, _, errOut = runArgs(t, "-s", filepath.Join(t.TempDir(), "none.sock"), "status")
	if code != 1 || !strings.Contains(errOut, "cannot reach timed") {
		t.Errorf("no timed: %d %q", code, errOut)
	}
	_ = time.Second
}

func TestServerCommands(t *testing.T) {
	sock := serveControl(t, &backend{})
	tests := []struct {
		args []string
		want []string
	}{
		{[]string{"serverstats"}, []string{"127.0.0.1:123 (2 sockets each)", "1000 (0.3/s on average)", "950 (10 responses in interleaved mode)",
			"5 RATE (slow down), 0 DENY (refused)", "Not answered:        50", "rate limited:      40", "3 of 65536 clients"}},
		{[]string{"clients"}, []string{"192.0.2.1", "12.5/s", "2001:db8::1", "0.96/min", "interleaved"}},
		{[]string{"clients", "-n", "1"}, []string{"192.0.2.1"}},
		{[]string{"ptp"}, []string{"eth0 (udp4, role slave_only)", "SLAVE for 42s: slave: synchronizing", "clock class 6, accuracy within 100.000 ns, 0 steps removed",
			"PTP (TAI), UTC offset 37 s, marked valid", "-1.500 µs (local − master", "Mean path delay:  2.100 µs", "lost_response:", "eth1 (l2, role auto)", "LISTENING",
			"Unicast masters:", "192.0.2.7, identity 0a1b2c.fffe.3d4e5f-1 (selected)", "announce     every 2^1 s: granted, 42s left",
			"sync         every 2^0 s: granted, 41s left", "delay_resp", "192.0.2.8", "announce     every 2^1 s: no answer",
			"Unicast clients:  1", "192.0.2.9, identity 0a1b2c.fffe.000009-1", "announce     every 2^1 s: granted, 4m59s left",
			"sync         every 2^-3 s: granted, 4m58s left"}},
	}
	for _, tt := range tests {
		code, out, errOut := runArgs(t, append([]string{"-s", sock}, tt.args...)...)
		if code != 0 {
			t.Errorf("%v: exit %d: %s", tt.args, code, errOut)
			continue
		}
		for _, w := range tt.want {
			if !strings.Contains(out, w) {
				t.Errorf("%v: output lacks %q:\n%s", tt.args, w, out)
			}
		}
	}
	if _, out, _ := runArgs(t, "-s", sock, "clients", "-n", "1"); strings.Contains(out, "2001:db8::1") {
		t.Errorf("clients -n 1 shows two clients:\n%s", out)
	}
	code, out, _ := runArgs(t, "-s", sock, "-o", "json", "ptp")
	var pr control.PTPReply
	if err := json.Unmarshal([]byte(out), &pr); code != 0 || err != nil || len(pr.Ports) != 3 || len(pr.Ports[0].UnicastMasters) != 2 ||
		pr.Ports[0].UnicastMasters[1].Grants[0].State != "no answer" || !strings.Contains(out, `"left_s": 42`) ||
		len(pr.Ports[2].UnicastClients) != 1 || pr.Ports[2].UnicastClients[0].Address != "192.0.2.9" ||
		!strings.Contains(out, `"unicast_clients": [`) || pr.Ports[2].UnicastClients[0].Grants[1].LogInterval != -3 {
		t.Errorf("ptp -o json: %d %v %s", code, err, out)
	}
	code, out, _ = runArgs(t, "-s", sock, "-o", "json", "clients")
	var cl control.ClientsReply
	if err := json.Unmarshal([]byte(out), &cl); code != 0 || err != nil || len(cl.Clients) != 2 || cl.Clients[0].Rate != 12.5 {
		t.Errorf("clients -o json: %d %v %s", code, err, out)
	}
	if code, _, errOut := runArgs(t, "-s", sock, "clients", "-n", "0"); code != 2 || !strings.Contains(errOut, "out of range") {
		t.Errorf("clients -n 0: exit %d %q, want a usage error", code, errOut)
	}
}

func TestRenderRefclocks(t *testing.T) {
	srcs := []sources.SourceStatus{
		{Name: "gps", Kind: "gpsd", State: sources.StateSelected, Reach: 0o377, Samples: 40, LastSampleAgo: 0.5, Offset: 2e-4, Uncertainty: 1e-3},
		{Name: "pps", Kind: "pps", State: sources.StateUnreachable},
	}
	refclocks := []control.RefclockInfo{
		{Name: "gps", Kind: "gpsd", Device: "127.0.0.1:2947 /dev/ttyS0", Connected: true, Samples: 40, LastSampleAgo: 0.5,
			Mode: 3, Satellites: 9, Dropped: map[string]uint64{"no fix": 2, "stale": 0}},
		{Name: "pps", Kind: "pps", Device: "/dev/pps0", Reason: "open /dev/pps0: no such file or directory"},
		{Name: "shm0", Kind: "shm", Device: "unit 0", Connected: true, Reason: "no samples for 10s", Samples: 1, LastSampleAgo: 12},
	}
	var b bytes.Buffer
	renderSources(&b, srcs, refclocks, false)
	for _, want := range []string{
		"Reference clocks:\n  NAME  KIND  DEVICE                     INPUT\n",
		"  gps   gpsd  127.0.0.1:2947 /dev/ttyS0  connected; 3D fix, 9 satellites; 40 samples (last 500ms ago); dropped: no fix 2\n",
		"  pps   pps   /dev/pps0                  not connected: open /dev/pps0: no such file or directory; 0 samples\n",
		"  shm0  shm   unit 0                     connected: no samples for 10s; 1 sample (last 12s ago)\n",
	} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("lacks %q:\n%s", want, b.String())
		}
	}
	b.Reset()
	renderSources(&b, srcs, refclocks, true)
	if !strings.Contains(b.String(), ansiRed+"not connected") {
		t.Errorf("a reference clock not connected is not red:\n%q", b.String())
	}
	b.Reset()
	renderSources(&b, srcs, nil, false)
	if strings.Contains(b.String(), "Reference clocks") {
		t.Errorf("a reference clock section without reference clocks:\n%s", b.String())
	}
}

func TestRenderCSPTPServerStats(t *testing.T) {
	c := &control.CSPTPServerStats{Listen: []string{"0.0.0.0:319"}, Answered: map[string]uint64{"sptp": 12, "csptp": 3},
		Dropped: map[string]uint64{"malformed": 2, "send failed": 0}}
	for _, tc := range []struct {
		name string
		r    control.ServerStatsReply
		want []string
		not  []string
	}{
		{"alone", control.ServerStatsReply{CSPTP: c},
			[]string{"CSPTP server on:     0.0.0.0:319\n", "CSPTP answered:      3 csptp, 12 sptp\n", "CSPTP not answered:  2\n", "  malformed:         2\n"},
			[]string{noServer, "send failed"}},
		{"with NTP", control.ServerStatsReply{Enabled: true, Listen: []string{"0.0.0.0:123"}, Workers: 1, CSPTP: c},
			[]string{"Listening on:", "\n\nCSPTP server on:     0.0.0.0:319\n"}, nil},
		{"none", control.ServerStatsReply{}, []string{noServer}, []string{"CSPTP"}},
	} {
		var b bytes.Buffer
		renderServerStats(&b, tc.r)
		for _, w := range tc.want {
			if !strings.Contains(b.String(), w) {
				t.Errorf("%s: lacks %q:\n%s", tc.name, w, b.String())
			}
		}
		for _, w := range tc.not {
			if strings.Contains(b.String(), w) {
				t.Errorf("%s: has %q:\n%s", tc.name, w, b.String())
			}
		}
	}
}
