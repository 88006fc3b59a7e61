package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/timed-project/timed/control"
	"github.com/timed-project/timed/internal/testenv"
	"github.com/timed-project/timed/sources"
)

// goldenDir holds the golden files: CMD.txt and CMD.json, the output of
// `timectl CMD` and `timectl -o json CMD` against goldenBackend. They are
// documentation too: what an operator sees. `make golden` rewrites them.
const goldenDir = "testdata/golden"

// goldenTime is the time of day watch and waitsync read in the golden
// tests.
var goldenTime = time.Date(2026, 3, 14, 15, 9, 26, 0, time.UTC)

// goldenBackend answers every control command with a fabricated but
// realistic reply: a host following an NTP server, with a combined NTS
// source, a falseticker, a GNSS receiver and its PPS, a source added at
// runtime; an NTP server with NTS-KE and a CSPTP responder; three PTP
// ports (a unicast slave, a gPTP port, a unicast master).
type goldenBackend struct{}

func goldenStatus() control.StatusReply {
	return control.StatusReply{
		Engine: sources.Status{
			Synchronized: true, Reference: "192.0.2.10:123", RefID: 0xc000020a, Stratum: 2,
			Offset: 8.4e-6, Uncertainty: 2.1e-6, Frequency: -17.342, FrequencyUncertainty: 0.008,
			RootDelay: 0.00182, RootDispersion: 0.000311, LastUpdateAgo: 12.7, Updates: 1342, Steps: 1,
			Message: "tracking 192.0.2.10:123 with 2 combined of 7 sources",
			Sources: []sources.SourceStatus{
				{Name: "192.0.2.10:123", Kind: "ntp", Address: "192.0.2.10:123", State: sources.StateSelected,
					Reason: "the best of 3 agreeing sources", Stratum: 1, RefID: 0x47505300, Reach: 0o377, Poll: 6,
					Samples: 212, LastSampleAgo: 12.7, Offset: 8.1e-6, Uncertainty: 2.4e-6, LastOffset: 9.3e-6,
					Delay: 0.00118, MinDelay: 0.00102, RootDelay: 0, RootDispersion: 0.000015, Frequency: -17.338,
					FrequencyUncertainty: 0.011, Window: 16, Span: 960, Outliers: 1, Noise: 4.2e-6},
				{Name: "nts.example.net:123", Kind: "ntp", Address: "198.51.100.4:123", State: sources.StateCombined,
					Reason: "agrees with 192.0.2.10:123; averaged in", Stratum: 2, RefID: 0xc6336401, Authenticated: true,
					Reach: 0o377, Poll: 7, Samples: 104, LastSampleAgo: 71.2, Offset: 23.5e-6, Uncertainty: 11.8e-6,
					Delay: 0.0213, MinDelay: 0.0208, RootDelay: 0.0004, RootDispersion: 0.00021, Frequency: -17.29,
					FrequencyUncertainty: 0.05, Window: 12, Span: 1408, Noise: 18e-6},
				{Name: "203.0.113.7:123", Kind: "ntp", Address: "203.0.113.7:123", State: sources.StateFalseticker,
					Reason:  "its interval [+41.900, +42.300] ms misses the majority's [-0.004, +0.021] ms by 41.879 ms",
					Stratum: 2, RefID: 0xcb00710a, Reach: 0o377, Poll: 6, Samples: 96, LastSampleAgo: 33.9,
					Offset: 0.0421, Uncertainty: 0.0002, Delay: 0.00431, MinDelay: 0.00402, Frequency: -17.9,
					FrequencyUncertainty: 0.4, Window: 16, Span: 960, Noise: 0.00011},
				{Name: "gps", Kind: "gpsd", State: sources.StateCandidate,
					Reason:  "agrees, but its distance is larger than the selected source's",
					Stratum: 0, RefID: 0x47505300, Reach: 0o377, Poll: 4, Samples: 880, LastSampleAgo: 0.6,
					Offset: -0.0321, Uncertainty: 0.045, Frequency: -16.8, FrequencyUncertainty: 2.5, Window: 16, Span: 240, Noise: 0.021},
				{Name: "pps", Kind: "pps", State: sources.StateInitial, Reason: "2 of the 4 samples needed",
					RefID: 0x50505300, Reach: 0o3, Poll: 4, Samples: 2, LastSampleAgo: 1.5,
					Offset: 2.1e-7, Uncertainty: 5e-7, Window: 2, Span: 16},
				{Name: "time.example.org:123", Kind: "ntp", State: sources.StateUnreachable,
					Reason: "no answer to the last 8 polls (DNS: time.example.org: no such host)", Poll: 10},
				{Name: "127.0.0.1:11123", Kind: "ntp", Address: "127.0.0.1:11123", State: sources.StateNoSelect,
					Reason: "added with noselect; only measured", Stratum: 3, RefID: 0x7f000001, Reach: 0o17, Poll: -2,
					Samples: 4, LastSampleAgo: 0.21, Offset: -3.05e-6, Uncertainty: 0.9e-6, Delay: 0.000052,
					MinDelay: 0.000049, Frequency: -12.4, FrequencyUncertainty: 9.1, Window: 4, Span: 0.75, Noise: 1.1e-6, Runtime: true},
			},
		},
		Clock: control.ClockInfo{Driver: "virtual", OffsetFromSystem: -0.0001873, Frequency: -17.342},
		Refclocks: []control.RefclockInfo{
			{Name: "gps", Kind: "gpsd", Device: "127.0.0.1:2947 /dev/ttyACM0", Connected: true, Samples: 880,
				LastSampleAgo: 0.6, Mode: 3, Satellites: 11, Dropped: map[string]uint64{"no fix": 3, "stale": 1}},
			{Name: "pps", Kind: "pps", Device: "/dev/pps0", Connected: true, Reason: "waiting for the gps source to be selected",
				Samples: 2, LastSampleAgo: 1.5},
		},
	}
}

func (goldenBackend) Status() control.StatusReply { return goldenStatus() }
func (goldenBackend) Reload() error               { return nil }
func (goldenBackend) MakeStep() error             { return nil }

func (goldenBackend) ServerStats() control.ServerStatsReply {
	return control.ServerStatsReply{Enabled: true, Listen: []string{"0.0.0.0:123", "[::]:123"}, Workers: 4, Uptime: 86461,
		Received: 1843220, Answered: 1838007, Interleaved: 20412, KissRate: 3110, KissDeny: 12,
		Dropped:      map[string]uint64{"rate limited": 1890, "denied": 12, "malformed": 189, "not a request": 12},
		UserRxStamps: 0, TxStamps: 20418, Clients: 2281, ClientTableSize: 65536, Stratum: 2, RefID: 0xc000020a,
		NTS: &control.NTSServerStats{Listen: []string{"0.0.0.0:4460"}, Answered: 402113, NAKs: 27,
			Accepted: 5301, Refused: 2, Handshakes: 5280, Exchanges: 5277, TLSErrors: 19, Timeouts: 2, BadRequests: 3, Active: 1},
		CSPTP: &control.CSPTPServerStats{Listen: []string{"0.0.0.0:319"}, Answered: map[string]uint64{"csptp": 8640, "sptp": 86400},
			Dropped: map[string]uint64{"malformed": 4, "rate limited": 0}},
	}
}

func (goldenBackend) Clients(limit int) control.ClientsReply {
	cs := []control.ClientInfo{
		{Address: "192.0.2.77", Requests: 86410, Served: 84500, Kissed: 1800, Dropped: 110, Rate: 1.02, LastSeenAgo: 0.4},
		{Address: "2001:db8:4::1b", Requests: 1350, Served: 1350, Rate: 0.0156, LastSeenAgo: 47, Interleaved: true},
		{Address: "198.51.100.200", Requests: 12, Served: 11, Dropped: 1, Rate: 0.0009, LastSeenAgo: 3605},
	}
	return control.ClientsReply{Enabled: true, Clients: cs[:min(limit, len(cs))]}
}

func (goldenBackend) PTP() control.PTPReply {
	return control.PTPReply{Ports: []control.PTPPortStatus{
		{Interface: "eth0", Transport: "udp4", Role: "slave_only", State: "SLAVE",
			Reason: "slave: synchronizing to master 0a1b2c.fffe.3d4e5f-1", SinceAgo: 3721,
			Identity: "0a1b2c.fffe.000001-1", Parent: "0a1b2c.fffe.3d4e5f-1", Grandmaster: "0a1b2c.fffe.3d4e5f",
			GrandmasterClass: 6, GrandmasterAccuracy: 100e-9, StepsRemoved: 1, UTCOffset: 37, UTCOffsetValid: true,
			PTPTimescale: true, Offset: -412e-9, MeanPathDelay: 18.6e-6, Timestamps: "hardware", LastMeasurementAgo: 0.9,
			Measurements: 3702, Dropped: map[string]uint64{"lost_response": 4, "late_follow_up": 1},
			UnicastMasters: []control.PTPUnicastMaster{
				{Address: "192.0.2.50", Identity: "0a1b2c.fffe.3d4e5f-1", Selected: true, Grants: []control.PTPUnicastGrant{
					{Message: "announce", State: "granted", LogInterval: 1, Left: 212},
					{Message: "sync", State: "granted", LogInterval: 0, Left: 212},
					{Message: "delay_resp", State: "granted", LogInterval: 0, Left: 211}}},
				{Address: "192.0.2.51", Grants: []control.PTPUnicastGrant{
					{Message: "announce", State: "denied", LogInterval: 1}}},
			}},
		{Interface: "eth1", Transport: "l2", Role: "auto", State: "SLAVE",
			Reason: "slave: synchronizing to master 00a0c9.fffe.112233-1", SinceAgo: 58,
			Identity: "0a1b2c.fffe.000002-1", Parent: "00a0c9.fffe.112233-1", Grandmaster: "00a0c9.fffe.112233",
			GrandmasterClass: 248, StepsRemoved: 2, UTCOffset: 37, PTPTimescale: true,
			Offset: 35e-9, MeanPathDelay: 412e-9, Timestamps: "hardware", LastMeasurementAgo: 0.1, Measurements: 464,
			GPTP: &control.GPTPInfo{Profile: "gptp", ASCapable: true, Neighbor: "00a0c9.fffe.445566-3",
				NeighborRateRatio: 1.000000312, RateRatio: 0.999999871, LogSyncInterval: -3, PdelayExchanges: 58, FirstSync: 1.25}},
		{Interface: "eth2", Transport: "udp4", Role: "master_only", State: "MASTER",
			Reason: "master: the local clock is the best", SinceAgo: 3720, Identity: "0a1b2c.fffe.000003-1",
			Parent: "0a1b2c.fffe.000003-0", Grandmaster: "0a1b2c.fffe.000003", GrandmasterClass: 6,
			GrandmasterAccuracy: 250e-9, UTCOffset: 37, UTCOffsetValid: true, PTPTimescale: true,
			UnicastClients: []control.PTPUnicastClient{
				{Address: "192.0.2.90", Identity: "00163e.fffe.000090-1", Grants: []control.PTPUnicastGrant{
					{Message: "announce", State: "granted", LogInterval: 1, Left: 299},
					{Message: "sync", State: "granted", LogInterval: -4, Left: 298},
					{Message: "delay_resp", State: "granted", LogInterval: -4, Left: 298}}},
			}},
	}}
}

func (goldenBackend) SourceStats() control.SourceStatsReply {
	st := goldenStatus().Engine.Sources
	var r control.SourceStatsReply
	for _, s := range st {
		r.Sources = append(r.Sources, control.SourceStats{Name: s.Name, Kind: s.Kind, Runtime: s.Runtime,
			Samples: s.Samples, Window: s.Window, Span: s.Span, Outliers: s.Outliers, Valid: s.Window >= 4,
			Offset: s.Offset, StdDev: s.Uncertainty, Noise: s.Noise, Frequency: s.Frequency,
			FrequencyUncertainty: s.FrequencyUncertainty, MinDelay: s.MinDelay, Poll: s.Poll, Restarts: s.Restarts})
	}
	r.Sources[2].Restarts = 1
	return r
}

func (goldenBackend) NTS() control.NTSReply {
	return control.NTSReply{
		Clients: []control.NTSClientStatus{
			{Name: "nts.example.net:123", KEServer: "nts.example.net:4460", KEState: "ok", LastKEAgo: 7260, KEs: 3,
				AEAD: "AEAD_AES_SIV_CMAC_256", NTPServer: "198.51.100.4:123", Cookies: 7, MaxCookies: 8, NAKs: 1},
			{Name: "nts2.example.net:123", KEServer: "nts2.example.net:4460", KEState: "failed",
				KEError: "tls: failed to verify certificate: x509: certificate has expired", RetryIn: 512, MaxCookies: 8},
			{Name: "nts3.example.net:123", KEServer: "nts3.example.net:4460", KEState: "pending", MaxCookies: 8},
		},
		Server: &control.NTSServerStatus{
			NTSServerStats: *goldenBackend{}.ServerStats().NTS,
			KeyID:          "5f1c0a9e", KeyRotatesIn: 41230, CookiesIssued: 42216, CookiesAccepted: 402140, CookiesRejected: 27,
		},
	}
}

func (goldenBackend) Burst(source string) (control.BurstReply, error) {
	if source != "" {
		return control.BurstReply{Sources: []string{source}}, nil
	}
	return control.BurstReply{Sources: []string{"192.0.2.10:123", "nts.example.net:123", "203.0.113.7:123", "time.example.org:123", "127.0.0.1:11123"}}, nil
}

func (goldenBackend) AddSource(a control.AddArgs) (control.AddReply, error) {
	return control.AddReply{Name: a.Address + ":123"}, nil
}

func (goldenBackend) RemoveSource(string) error { return nil }

// goldenCompare is a fabricated `timectl compare` reply: timed's status
// beside a chronyd following the same servers.
func goldenCompare() compareReply {
	return compareReply{Timed: goldenStatus(), Chronyd: chronydReport{
		Address: "/run/chrony/chronyd.sock",
		Tracking: chronydTracking{Reference: "192.0.2.10", RefID: 0xc000020a, Stratum: 2, Offset: 6.2e-6,
			LastOffset: 7.9e-6, RMSOffset: 11.4e-6, Frequency: 17.351, Skew: 0.012, RootDelay: 0.00179, RootDispersion: 0.000402},
		Sources: []chronydSource{
			{Address: "192.0.2.10:123", Mode: "client", State: "sync", Stratum: 1, Poll: 6, Reach: 0o377, LastSampleAgo: 20,
				Offset: 7.7e-6, Uncertainty: 0.6e-3, EstimatedOffset: 8e-6, EstimatedOffsetError: 3e-6, Samples: 12, Delay: 0.00121},
			{Address: "203.0.113.7:123", Mode: "client", State: "falseticker", Stratum: 2, Poll: 6, Reach: 0o377, LastSampleAgo: 40,
				Offset: 0.04209, Uncertainty: 2.2e-3, EstimatedOffset: 0.0421, EstimatedOffsetError: 40e-6, Samples: 10, Delay: 0.00440},
			{Address: "GPS", Mode: "reference clock", State: "candidate", Poll: 4, Reach: 0o377, LastSampleAgo: 1,
				Offset: -0.032, Uncertainty: 0.05, Samples: 16},
		},
	}}
}

// goldenCases are the commands the golden files pin: name is the golden
// file without its extension.
var goldenCases = []struct {
	name string
	args []string
	code int
	// change: the command changes timed, which only root may do.
	change bool
}{
	{"status.txt", []string{"status"}, 0, false},
	{"status.json", []string{"-o", "json", "status"}, 0, false},
	{"sources.txt", []string{"sources"}, 0, false},
	{"sources.json", []string{"-o", "json", "sources"}, 0, false},
	{"sourcestats.txt", []string{"sourcestats"}, 0, false},
	{"sourcestats.json", []string{"-o", "json", "sourcestats"}, 0, false},
	{"serverstats.txt", []string{"serverstats"}, 0, false},
	{"serverstats.json", []string{"-o", "json", "serverstats"}, 0, false},
	{"clients.txt", []string{"clients"}, 0, false},
	{"clients.json", []string{"-o", "json", "clients"}, 0, false},
	{"ptp.txt", []string{"ptp"}, 0, false},
	{"ptp.json", []string{"-o", "json", "ptp"}, 0, false},
	{"nts.txt", []string{"nts"}, 0, false},
	{"nts.json", []string{"-o", "json", "nts"}, 0, false},
	{"waitsync.txt", []string{"waitsync", "--max-error", "10ms"}, 0, false},
	{"waitsync.json", []string{"-o", "json", "waitsync", "--max-error", "10ms"}, 0, false},
	{"watch.txt", []string{"watch", "--count", "2", "--interval", "1ms"}, 0, false},
	{"watch.json", []string{"-o", "json", "watch", "--count", "2", "--interval", "1ms"}, 0, false},
	{"burst.txt", []string{"burst"}, 0, true},
	{"burst.json", []string{"-o", "json", "burst", "203.0.113.7:123"}, 0, true},
	{"add.txt", []string{"add", "server", "192.0.2.20", "--iburst"}, 0, true},
	{"add.json", []string{"-o", "json", "add", "pool", "pool.example.org", "--nts"}, 0, true},
	{"remove.txt", []string{"remove", "127.0.0.1:11123"}, 0, true},
	{"remove.json", []string{"-o", "json", "remove", "127.0.0.1:11123"}, 0, true},
	{"reload.txt", []string{"reload"}, 0, true},
	{"reload.json", []string{"-o", "json", "reload"}, 0, true},
	{"makestep.txt", []string{"makestep"}, 0, true},
	{"makestep.json", []string{"-o", "json", "makestep"}, 0, true},
	{"validate-good.txt", []string{"validate", goldenDir + "/validate-good.yaml"}, 0, false},
	{"validate-bad.txt", []string{"validate", goldenDir + "/validate-bad.yaml"}, 1, false},
}

// TestGolden runs each command of goldenCases against a control server
// with goldenBackend and compares its standard output byte for byte with
// testdata/golden/NAME; with -update it rewrites the files instead.
func TestGolden(t *testing.T) {
	sock := serveControl(t, goldenBackend{})
	clock := wallClock
	wallClock = func() time.Time { return goldenTime }
	t.Cleanup(func() { wallClock = clock })

	for _, tc := range goldenCases {
		t.Run(tc.name, func(t *testing.T) {
			if tc.change {
				testenv.RequireRoot(t)
			}
			args := tc.args
			if args[0] != "validate" {
				args = append([]string{"-s", sock}, args...)
			}
			code, out, errOut := runArgs(t, args...)
			if code != tc.code {
				t.Fatalf("timectl %s: exit %d, want %d: %s", strings.Join(tc.args, " "), code, tc.code, errOut)
			}
			if strings.HasSuffix(tc.name, ".json") {
				checkJSONLines(t, out)
			}
			compareGolden(t, tc.name, out)
		})
	}
	// compare needs a chronyd: its renderer is pinned on a fabricated reply.
	var text, js bytes.Buffer
	renderCompare(&text, goldenCompare())
	if err := writeJSON(&js, goldenCompare(), true); err != nil {
		t.Fatal(err)
	}
	compareGolden(t, "compare.txt", text.String())
	compareGolden(t, "compare.json", js.String())
}

// checkJSONLines fails unless out is JSON values, one after the other
// (indented, or JSON Lines).
func checkJSONLines(t *testing.T, out string) {
	t.Helper()
	dec := json.NewDecoder(strings.NewReader(out))
	n := 0
	for dec.More() {
		var v any
		if err := dec.Decode(&v); err != nil {
			t.Fatalf("output is not JSON: %v\n%s", err, out)
		}
		n++
	}
	if n == 0 {
		t.Fatalf("no JSON in the output: %q", out)
	}
}

// compareGolden compares got with the golden file name, or writes it
// with -update.
func compareGolden(t *testing.T, name, got string) {
	t.Helper()
	path := filepath.Join(goldenDir, name)
	if *updateSchema {
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (make golden writes it)", err)
	}
	if got != string(want) {
		t.Errorf("timectl output differs from %s (make golden rewrites it after a deliberate change):\n%s", path, lineDiff(string(want), got))
	}
}

// lineDiff shows the lines of want and got that differ, by line number.
func lineDiff(want, got string) string {
	w, g := strings.Split(want, "\n"), strings.Split(got, "\n")
	var b strings.Builder
	for i := range max(len(w), len(g)) {
		var wl, gl string
		if i < len(w) {
			wl = w[i]
		}
		if i < len(g) {
			gl = g[i]
		}
		if wl != gl {
			fmt.Fprintf(&b, "line %d:\n  want %q\n  got  %q\n", i+1, wl, gl)
		}
	}
	return b.String()
}
