package config

import (
	"errors"
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

// configErrors returns every *Error in err.
func configErrors(t *testing.T, err error) []*Error {
	t.Helper()
	var out []*Error
	var walk func(error)
	walk = func(err error) {
		if j, ok := err.(interface{ Unwrap() []error }); ok {
			for _, e := range j.Unwrap() {
				walk(e)
			}
			return
		}
		var ce *Error
		if !errors.As(err, &ce) {
			t.Fatalf("error %q (%T) is not a *config.Error", err, err)
		}
		out = append(out, ce)
	}
	walk(err)
	return out
}

func TestDefault(t *testing.T) {
	c := Default()
	want := defaults()
	for _, host := range []string{"time.cloudflare.com", "nts.netnod.se", "ptbtime1.ptb.de", "ntppool1.time.nl"} {
		s := defaultServer()
		s.Address = host
		s.IBurst = true
		s.NTS = NTSClient{Enabled: true, Port: DefaultNTSKEPort}
		want.NTP.Servers = append(want.NTP.Servers, s)
	}
	if !reflect.DeepEqual(*c, want) {
		t.Errorf("Default() =\n%+v\nwant\n%+v", *c, want)
	}
	checkConfig(t, c)
	// Each call returns a fresh copy.
	c.NTP.Servers[0].Address = "changed.example"
	if Default().NTP.Servers[0].Address != "time.cloudflare.com" {
		t.Error("Default() returns shared state")
	}
}

// TestDefaultYAMLDocumentsEveryKey checks that the embedded file mentions
// every key of the schema, so it stays the reference it claims to be.
func TestDefaultYAMLDocumentsEveryKey(t *testing.T) {
	keys := []string{"clock", "driver", "simulate", "offset", "frequency_ppm", "drift_file", "engine",
		"min_agreeing_sources", "step_threshold", "step_limit", "panic_threshold", "max_slew_rate_ppm",
		"max_frequency_ppm", "require_authenticated", "ntp", "servers", "address", "port", "iburst", "xleave", "minpoll", "maxpoll", "prefer",
		"noselect", "trust", "require", "bounded_by", "pools", "max_sources", "control", "socket", "metrics", "listen",
		"log", "level", "format", "server", "workers", "interleaved", "allow", "deny", "deny_response",
		"client_table_size", "rate_limit", "interval", "burst", "kiss_every", "prefix_ipv4", "prefix_ipv6",
		"prefix_interval", "prefix_burst", "local", "stratum", "nts", "ca", "certificate_dates",
		"certificate", "key", "key_file", "key_rotation", "keys_kept", "max_connections", "timeout",
		"ptp", "domain", "priority1", "priority2", "ports", "interface", "transport", "delay_mechanism", "role", "timestamping",
		"announce_interval", "sync_interval", "delay_req_interval", "announce_receipt_timeout", "delay_asymmetry", "unicast_masters", "unicast_listen",
		"csptp", "protocol", "pad", "refuse_amplification",
		"gptp", "profile", "neighbor_prop_delay_thresh", "pdelay_interval", "oper_sync_interval", "oper_pdelay_interval",
		"sync_receipt_timeout", "seccomp"}
	doc, err := os.ReadFile("../docs/CONFIG.md")
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range keys {
		if !strings.Contains(string(DefaultYAML), k+":") {
			t.Errorf("default.yaml does not mention %s", k)
		}
		if !strings.Contains(string(doc), "`"+k) && !strings.Contains(string(doc), "."+k+"`") {
			t.Errorf("docs/CONFIG.md does not mention %s", k)
		}
	}
}

func TestEmptyFileIsAllDefaults(t *testing.T) {
	for _, in := range []string{"", "# only a comment\n", "---\n", "{}\n", "\n\n", "clock:\nengine:\nntp:\n  servers:\n"} {
		c, err := Parse("timed.yaml", []byte(in))
		if err != nil {
			t.Errorf("Parse(%q): %v", in, err)
			continue
		}
		if want := defaults(); !reflect.DeepEqual(*c, want) {
			t.Errorf("Parse(%q) = %+v, want %+v", in, *c, want)
		}
		if len(c.NTP.Servers)+len(c.NTP.Pools) != 0 {
			t.Errorf("Parse(%q) has sources; an empty file must have none", in)
		}
	}
}

func TestFullExample(t *testing.T) {
	c, err := Load("testdata/full.yaml")
	if err != nil {
		t.Fatal(err)
	}
	want := Config{
		Clock:     ClockConfig{Driver: "virtual", Simulate: SimulateConfig{Offset: -200 * time.Millisecond, FrequencyPPM: 50}},
		DriftFile: "/tmp/timed/drift",
		Engine: EngineConfig{
			MinAgreeingSources:   2,
			StepThreshold:        500 * time.Millisecond,
			StepLimit:            -1,
			PanicThreshold:       time.Hour,
			MaxSlewRatePPM:       1000,
			MaxFrequencyPPM:      100.5,
			RequireAuthenticated: true,
		},
		NTP: NTPConfig{
			Servers: []NTPServer{
				{Address: "127.0.0.1", Port: 11123, IBurst: true, MinPoll: -2, MaxPoll: 0, Prefer: true, Trust: true},
				{Address: "::1", Port: 123, MinPoll: 6, MaxPoll: 10, NoSelect: true, Require: true},
				{Address: "time.example.com.", Port: 123, MinPoll: 4, MaxPoll: 4},
			},
			Pools: []NTPPool{
				{Address: "pool.ntp.org", Port: 1123, MaxSources: 8, IBurst: true, MinPoll: 4, MaxPoll: 12},
				{Address: "2.pool.ntp.org", Port: 123, MaxSources: 4, MinPoll: 6, MaxPoll: 10},
			},
		},
		Server: ServerConfig{
			Listen: []netip.AddrPort{
				netip.MustParseAddrPort("0.0.0.0:123"), netip.MustParseAddrPort("[::]:123"), netip.MustParseAddrPort("192.0.2.1:1123"),
			},
			Workers:         4,
			Allow:           []netip.Prefix{netip.MustParsePrefix("192.0.2.0/24"), netip.MustParsePrefix("2001:db8::/32"), netip.MustParsePrefix("198.51.100.7/32")},
			Deny:            []netip.Prefix{netip.MustParsePrefix("192.0.2.128/25")},
			DenyResponse:    "kiss",
			ClientTableSize: 1024,
			RateLimit:       RateLimitConfig{Interval: 2 * time.Second, Burst: 8, PrefixIPv4: 16, PrefixIPv6: 56, PrefixBurst: 64},
			LocalStratum:    10,
			NTS: NTSServerConfig{
				Listen:      []netip.AddrPort{netip.MustParseAddrPort("127.0.0.1:4460"), netip.MustParseAddrPort("[::1]:14460")},
				Certificate: "/etc/timed/nts.crt", Key: "/etc/timed/nts.key", KeyFile: "/tmp/timed/nts-keys",
				KeyRotation: 12 * time.Hour, KeysKept: 3, MaxConnections: 16, Timeout: 2 * time.Second,
			},
		},
		PTP: PTPConfig{Domain: 24, Priority1: 10, Priority2: 20, Ports: []PTPPort{
			{Interface: "eth0", Transport: "l2", DelayMechanism: "p2p", Role: "slave_only", Timestamping: "hardware",
				LogAnnounceInterval: 0, LogSyncInterval: -3, LogMinDelayReqInterval: -2, AnnounceReceiptTimeout: 4,
				DelayAsymmetry: -150 * time.Nanosecond, BoundedByAuthenticated: true},
			{Interface: "eth1", Transport: "udp4", DelayMechanism: "e2e", Role: "auto", Timestamping: "software",
				LogAnnounceInterval: 1, AnnounceReceiptTimeout: 3, UnicastMasters: []netip.Addr{netip.MustParseAddr("192.0.2.7")},
				UnicastListen: true},
		}},
		Control: ControlConfig{Socket: "/tmp/timed/timed.sock"},
		Metrics: MetricsConfig{Listen: "[::1]:9123"},
		Log:     LogConfig{Level: "debug", Format: "json"},
	}
	if !reflect.DeepEqual(*c, want) {
		t.Errorf("got\n%+v\nwant\n%+v", *c, want)
	}
	checkConfig(t, c)
}

func TestValues(t *testing.T) {
	tests := []struct {
		in    string
		check func(c *Config) bool
	}{
		{"engine: {step_threshold: 200ms}", func(c *Config) bool { return c.Engine.StepThreshold == 200*time.Millisecond }},
		{"engine: {step_threshold: 2}", func(c *Config) bool { return c.Engine.StepThreshold == 2*time.Second }},
		{"engine: {step_threshold: 0.001}", func(c *Config) bool { return c.Engine.StepThreshold == time.Millisecond }},
		{"engine: {step_threshold: 0}", func(c *Config) bool { return c.Engine.StepThreshold == 0 }},
		{"engine: {panic_threshold: 1h30m}", func(c *Config) bool { return c.Engine.PanicThreshold == 90*time.Minute }},
		{"engine: {panic_threshold: 0}", func(c *Config) bool { return c.Engine.PanicThreshold == 0 }},
		{"engine: {step_limit: 0}", func(c *Config) bool { return c.Engine.StepLimit == 0 }},
		{"engine: {max_slew_rate_ppm: 500}", func(c *Config) bool { return c.Engine.MaxSlewRatePPM == 500 }},
		{"clock: {driver: virtual, simulate: {offset: -1.5}}", func(c *Config) bool { return c.Clock.Simulate.Offset == -1500*time.Millisecond }},
		{"clock: {driver: none}", func(c *Config) bool { return c.Clock.Driver == "none" }},
		{`drift_file: ""`, func(c *Config) bool { return c.DriftFile == "" }},
		{"seccomp: false", func(c *Config) bool { return !c.Seccomp }},
		{"seccomp: true", func(c *Config) bool { return c.Seccomp }},
		{"log: {level: debug}", func(c *Config) bool { return c.Seccomp }}, // on by default
		{`metrics: {listen: "127.0.0.1:9123"}`, func(c *Config) bool { return c.Metrics.Listen == "127.0.0.1:9123" }},
		{`metrics: {listen: "localhost:9123"}`, func(c *Config) bool { return c.Metrics.Listen == "localhost:9123" }},
		{`metrics: {listen: "127.8.9.10:1"}`, func(c *Config) bool { return c.Metrics.Listen == "127.8.9.10:1" }},
		{"ntp: {servers: [{address: 192.0.2.1, port: 0x7b}]}", func(c *Config) bool { return c.NTP.Servers[0].Port == 123 }},
		// Only minpoll given: maxpoll's default gives way.
		{"ntp: {servers: [{address: a.example, minpoll: 12}]}", func(c *Config) bool {
			return c.NTP.Servers[0].MinPoll == 12 && c.NTP.Servers[0].MaxPoll == 12
		}},
		{"ntp: {servers: [{address: a.example, maxpoll: -6}]}", func(c *Config) bool {
			return c.NTP.Servers[0].MinPoll == -6 && c.NTP.Servers[0].MaxPoll == -6
		}},
		{"ntp: {pools: [{address: a.example, minpoll: 17, maxpoll: 17}]}", func(c *Config) bool {
			return c.NTP.Pools[0].MinPoll == 17 && c.NTP.Pools[0].MaxPoll == 17 && c.NTP.Pools[0].MaxSources == 4
		}},
		// The same host on another port is another server.
		{"ntp: {servers: [{address: a.example}, {address: a.example, port: 124}]}", func(c *Config) bool { return len(c.NTP.Servers) == 2 }},
		{"csptp: {servers: [{address: \"2001:db8::1\", protocol: csptp, pad: true, bounded_by: authenticated}], listen: [\"0.0.0.0:319\"]}", func(c *Config) bool {
			s := c.CSPTP.Servers[0]
			return s.String() == "[2001:db8::1]:319" && s.Protocol == "csptp" && s.Pad && s.BoundedByAuthenticated && s.MinPoll == 0 && s.MaxPoll == 4 &&
				len(c.CSPTP.Listen) == 1 && c.CSPTP.Listen[0].Port() == 319
		}},
		// One server may be asked in both protocols.
		{"csptp: {servers: [{address: 192.0.2.1}, {address: 192.0.2.1, protocol: csptp}]}", func(c *Config) bool { return len(c.CSPTP.Servers) == 2 }},
		// Aliases are followed.
		{"log: &l {level: warn}\n", func(c *Config) bool { return c.Log.Level == "warn" }},
		{"ntp:\n  servers:\n    - {address: a.example, iburst: &t true}\n    - {address: b.example, iburst: *t}\n", func(c *Config) bool {
			return c.NTP.Servers[1].IBurst
		}},
		{"clock: {driver: !!str virtual}", func(c *Config) bool { return c.Clock.Driver == "virtual" }},
		{"ntp: {servers: [{address: 'fe80::1%eth0'}]}", func(c *Config) bool { return c.NTP.Servers[0].Address == "fe80::1%eth0" }},
		{"ntp: {servers: [{address: _ntp.example.com}]}", func(c *Config) bool { return c.NTP.Servers[0].Address == "_ntp.example.com" }},
		{"ntp: {servers: [{address: localhost}]}", func(c *Config) bool { return c.NTP.Servers[0].Address == "localhost" }},
		// NTS: true, false, or a mapping with optional keys.
		{"ntp: {servers: [{address: a.example, nts: true}]}", func(c *Config) bool {
			return c.NTP.Servers[0].NTS == NTSClient{Enabled: true, Port: 4460}
		}},
		{"ntp: {servers: [{address: a.example, nts: false}]}", func(c *Config) bool { return !c.NTP.Servers[0].NTS.Enabled }},
		{"ntp: {servers: [{address: a.example}]}", func(c *Config) bool { return !c.NTP.Servers[0].NTS.Enabled }},
		{"ntp: {servers: [{address: a.example, nts: {}}]}", func(c *Config) bool {
			return c.NTP.Servers[0].NTS == NTSClient{Enabled: true, Port: 4460}
		}},
		{"ntp: {servers: [{address: a.example, nts: {server: ke.example, port: 14460, ca: /etc/ca.pem}}]}", func(c *Config) bool {
			return c.NTP.Servers[0].NTS == NTSClient{Enabled: true, Server: "ke.example", Port: 14460, CA: "/etc/ca.pem"}
		}},
		{"ntp: {servers: [{address: a.example, nts: {certificate_dates: ignore_until_synchronized}}]}", func(c *Config) bool {
			return c.NTP.Servers[0].NTS == NTSClient{Enabled: true, Port: 4460, IgnoreDatesUntilSynced: true}
		}},
		{"ntp: {servers: [{address: a.example, nts: {certificate_dates: check}}]}", func(c *Config) bool {
			return c.NTP.Servers[0].NTS == NTSClient{Enabled: true, Port: 4460}
		}},
		{"ntp: {servers: [{address: a.example, bounded_by: authenticated}, {address: b.example, bounded_by: none}]}", func(c *Config) bool {
			return c.NTP.Servers[0].BoundedByAuthenticated && !c.NTP.Servers[1].BoundedByAuthenticated
		}},
		{"ntp: {pools: [{address: pool.example, nts: {ca: /etc/ca.pem}}]}", func(c *Config) bool {
			return c.NTP.Pools[0].NTS == NTSClient{Enabled: true, Port: 4460, CA: "/etc/ca.pem"}
		}},
	}
	for _, tt := range tests {
		c, err := Parse("t.yaml", []byte(tt.in))
		if err != nil {
			t.Errorf("Parse(%q): %v", tt.in, err)
			continue
		}
		if !tt.check(c) {
			t.Errorf("Parse(%q) = %+v", tt.in, *c)
		}
	}
}

// errorCases are bad files and the mistake each must be reported as. They
// also seed FuzzParse.
var errorCases = []struct {
	name, in string
	// The first error's position, path and a fragment of its message.
	line, col int
	path, msg string
	// count is how many errors there are (1 when zero).
	count int
}{
	// The file as a whole.
	{"list at top", "- a\n- b\n", 1, 1, "", "must be a mapping of sections", 0},
	{"scalar at top", "hello\n", 1, 1, "", "not the string \"hello\"", 0},
	{"two documents", "clock: {driver: none}\n---\nlog: {level: info}\n", 2, 1, "", "second YAML document", 0},
	{"empty second document", "clock: {driver: none}\n---\n", 2, 1, "", "second YAML document", 0},
	{"syntax", "engine:\n  step_limit: [1\n", 2, 0, "", "invalid YAML", 0},
	{"bad indentation", "engine:\n  step_limit: 1\n step_threshold: 1s\n", 3, 0, "", "invalid YAML", 0},
	{"tab", "engine:\n\tstep_limit: 1\n", 2, 0, "", "invalid YAML", 0},
	{"bad indentation later", "log:\n  level: info\nengine:\n  step_limit: 1\n  step_threshold: 1s\n   panic_threshold: 1s\nntp: {}\n", 6, 0, "", "invalid YAML", 0},
	{"unclosed quote", "log:\n  level: info\n  format: \"json\nntp: {}\n", 3, 0, "", "invalid YAML", 0},
	{"mapping in value", "log:\n  level: info: debug\n", 2, 0, "", "invalid YAML: mapping values are not allowed", 0},
	{"unknown anchor", "log: {}\nengine: {}\nntp: *nope\n", 3, 0, "", "invalid YAML: unknown anchor 'nope'", 0},
	{"dash in mapping", "engine:\n  step_limit: 1\n  - 2\n", 3, 0, "", "invalid YAML", 0},
	{"merge key", "engine:\n  <<: {step_limit: 1}\n", 2, 3, "engine", "merge keys", 0},
	{"non-string key", "engine:\n  1: 2\n", 2, 3, "engine", "a key must be a name", 0},

	// Unknown and duplicate keys.
	{"unknown top", "clok: {}\n", 1, 1, "clok", "unknown key; did you mean clock?", 0},
	{"unknown no suggestion", "colour: blue\n", 1, 1, "colour", "unknown key (the keys allowed at the top level are clock,", 0},
	{"unknown nested", "engine:\n  step_treshold: 1s\n", 2, 3, "engine.step_treshold", "did you mean step_threshold?", 0},
	{"unknown camel", "engine:\n  stepThreshold: 1s\n", 2, 3, "engine.stepThreshold", "did you mean step_threshold?", 0},
	{"unknown hyphen", "drift-file: /x\n", 1, 1, "drift-file", "did you mean drift_file?", 0},
	{"unknown in server", "ntp:\n  servers:\n    - address: a.example\n      burst: true\n", 4, 7, "ntp.servers[0].burst", "did you mean iburst?", 0},
	{"unknown lists allowed", "log:\n  colour: true\n", 2, 3, "log.colour", "allowed in log are level, format", 0},
	{"odd key", "\"a\\tb\": 1\n", 1, 1, `"a\tb"`, "unknown key", 0},
	{"duplicate key", "log:\n  level: info\n  level: debug\n", 3, 3, "log.level", "duplicate key (first given at line 2)", 0},
	{"duplicate section", "log: {}\nengine: {}\nlog: {}\n", 3, 1, "log", "duplicate key (first given at line 1)", 0},

	// Wrong types.
	{"string for number", "engine:\n  min_agreeing_sources: \"3\"\n", 2, 25, "engine.min_agreeing_sources", `expected a whole number, got the string "3"`, 0},
	{"float for int", "engine:\n  step_limit: 1.5\n", 2, 15, "engine.step_limit", `expected a whole number, got the number "1.5"`, 0},
	{"list for map", "engine: [1, 2]\n", 1, 9, "engine", "expected a mapping with the keys min_agreeing_sources,", 0},
	{"string for map", "clock: system\n", 1, 8, "clock", `expected a mapping with the keys driver, simulate, got the string "system"`, 0},
	{"map for list", "ntp:\n  servers:\n    address: a.example\n", 3, 5, "ntp.servers", "expected a list", 0},
	{"string for list item", "ntp:\n  servers:\n    - a.example\n", 3, 7, "ntp.servers[0]", "expected a mapping with the keys address,", 0},
	{"string for bool", "ntp:\n  servers:\n    - {address: a.example, iburst: yes}\n", 3, 36, "ntp.servers[0].iburst", `expected true or false, got the string "yes"`, 0},
	{"number for bool", "ntp:\n  servers:\n    - {address: a.example, prefer: 1}\n", 3, 36, "ntp.servers[0].prefer", "expected true or false", 0},
	{"number for string", "clock:\n  driver: 5\n", 2, 11, "clock.driver", `expected a string, got the number "5"; use one of system, virtual, none`, 0},
	{"null value", "clock:\n  driver:\n", 2, 10, "clock.driver", "expected a string, got no value", 0},
	{"bool for duration", "engine: {step_threshold: true}\n", 1, 26, "engine.step_threshold", "expected a duration, got true", 0},
	{"list for duration", "engine: {step_threshold: [1]}\n", 1, 26, "engine.step_threshold", "expected a duration, got a list", 0},
	{"unknown tag", "clock: {driver: !weird system}\n", 1, 17, "clock.driver", "a value tagged !weird", 0},
	{"timestamp", "drift_file: 2001-12-14\n", 1, 13, "drift_file", "expected a string, got the timestamp", 0},

	// Impossible values.
	{"negative step", "engine:\n  step_threshold: -1s\n", 2, 19, "engine.step_threshold", "-1s is negative; use a duration such as 1s, or 0 to never step", 0},
	{"negative seconds", "engine:\n  panic_threshold: -5\n", 2, 20, "engine.panic_threshold", "-5 is negative", 0},
	{"bad duration", "engine:\n  step_threshold: 1 second\n", 2, 19, "engine.step_threshold", `"1 second" is not a duration`, 0},
	{"duration no unit", "engine:\n  step_threshold: \"10\"\n", 2, 19, "engine.step_threshold", "is not a duration", 0},
	{"huge duration", "engine:\n  panic_threshold: 1e300\n", 2, 20, "engine.panic_threshold", "too long", 0},
	{"inf duration", "engine:\n  panic_threshold: .inf\n", 2, 20, "engine.panic_threshold", "not a finite number", 0},
	{"min agreeing 0", "engine:\n  min_agreeing_sources: 0\n", 2, 25, "engine.min_agreeing_sources", "0 is out of range; use a count of at least 1", 0},
	{"step limit -2", "engine:\n  step_limit: -2\n", 2, 15, "engine.step_limit", "-1 to allow steps at any time", 0},
	{"negative slew", "engine:\n  max_slew_rate_ppm: -10\n", 2, 22, "engine.max_slew_rate_ppm", "-10 is out of range", 0},
	{"zero frequency", "engine:\n  max_frequency_ppm: 0\n", 2, 22, "engine.max_frequency_ppm", "0 is out of range", 0},
	{"nan", "engine:\n  max_frequency_ppm: .nan\n", 2, 22, "engine.max_frequency_ppm", "not a finite number", 0},
	{"huge int", "engine:\n  step_limit: 99999999999999999999999\n", 2, 15, "engine.step_limit", "expected a whole number", 0},
	{"unknown driver", "clock:\n  driver: phc\n", 2, 11, "clock.driver", `unknown clock driver "phc"; use one of system, virtual, none`, 0},
	{"simulate with system", "clock:\n  driver: system\n  simulate: {offset: 200ms}\n", 3, 3, "clock.simulate", "only the virtual clock can simulate an error, and the driver is system;", 0},
	{"simulate with default", "clock:\n  simulate: {offset: 200ms}\n", 2, 3, "clock.simulate", "the driver is system (the default)", 0},
	{"simulate frequency", "clock:\n  driver: virtual\n  simulate: {frequency_ppm: 1e6}\n", 3, 29, "clock.simulate.frequency_ppm", "out of range", 0},
	{"simulate unknown", "clock:\n  driver: virtual\n  simulate: {freq: 1}\n", 3, 14, "clock.simulate.freq", "unknown key", 0},
	{"unknown level", "log:\n  level: verbose\n", 2, 10, "log.level", `unknown log level "verbose"; use one of debug, info, warn, error`, 0},
	{"unknown format", "log:\n  format: text\n", 2, 11, "log.format", "use one of auto, console, json", 0},
	{"relative drift", "drift_file: drift\n", 1, 13, "drift_file", `"drift" is a relative path; use an absolute path`, 0},
	{"drift dir", "drift_file: /var/lib/timed/\n", 1, 13, "drift_file", "ends in /", 0},
	{"empty socket", "control:\n  socket: \"\"\n", 2, 11, "control.socket", `"" is empty; use an absolute path`, 0},
	{"long socket", "control:\n  socket: /" + strings.Repeat("s", 110) + "\n", 2, 11, "control.socket", "at most 103", 0},
	{"metrics all", "metrics:\n  listen: \":9123\"\n", 2, 11, "metrics.listen", "listens on every interface", 0},
	{"metrics public", "metrics:\n  listen: 192.0.2.1:9123\n", 2, 11, "metrics.listen", "not a loopback address", 0},
	{"metrics no port", "metrics:\n  listen: 127.0.0.1\n", 2, 11, "metrics.listen", "is not a host:port", 0},
	{"metrics port", "metrics:\n  listen: 127.0.0.1:70000\n", 2, 11, "metrics.listen", "port", 0},
	{"metrics name", "metrics:\n  listen: example.com:80\n", 2, 11, "metrics.listen", "not an IP address or localhost", 0},

	// NTP sources.
	{"port 0", "ntp:\n  servers:\n    - address: a.example\n      port: 0\n", 4, 13, "ntp.servers[0].port", "0 is out of range; use a port from 1 to 65535", 0},
	{"port big", "ntp:\n  pools:\n    - address: a.example\n      port: 65536\n", 4, 13, "ntp.pools[0].port", "out of range", 0},
	{"poll low", "ntp:\n  servers:\n    - {address: a.example, minpoll: -7}\n", 3, 37, "ntp.servers[0].minpoll", "-7 is out of range; use a power of two in seconds from -6 (1/64 s) to 17 (36 h)", 0},
	{"poll high", "ntp:\n  servers:\n    - {address: a.example, maxpoll: 18}\n", 3, 37, "ntp.servers[0].maxpoll", "18 is out of range", 0},
	{"minpoll above maxpoll", "ntp:\n  servers:\n    - address: a.example\n      minpoll: 8\n      maxpoll: 4\n", 4, 16, "ntp.servers[0].minpoll", "minpoll 8 is greater than maxpoll 4", 0},
	{"pool minpoll above maxpoll", "ntp:\n  pools:\n    - {address: a.example, minpoll: 3, maxpoll: 2}\n", 3, 37, "ntp.pools[0].minpoll", "minpoll 3 is greater than maxpoll 2", 0},
	{"max_sources 0", "ntp:\n  pools:\n    - {address: a.example, max_sources: 0}\n", 3, 41, "ntp.pools[0].max_sources", "0 is out of range; use a count from 1 to 64", 0},
	{"no address", "ntp:\n  servers:\n    - iburst: true\n", 3, 7, "ntp.servers[0]", "address is missing", 0},
	{"null server", "ntp:\n  servers:\n    -\n", 3, 6, "ntp.servers[0]", "address is missing", 0},
	{"duplicate server", "ntp:\n  servers:\n    - address: a.example\n    - address: A.Example.\n", 4, 16, "ntp.servers[1].address", "A.Example. (port 123) is already listed at line 3", 0},
	{"duplicate ip", "ntp:\n  servers:\n    - address: \"::1\"\n    - address: \"0:0::1\"\n", 4, 16, "ntp.servers[1].address", "already listed at line 3", 0},
	{"server and pool", "ntp:\n  servers:\n    - address: a.example\n  pools:\n    - address: a.example\n", 5, 16, "ntp.pools[0].address", "already listed at line 3", 0},
	{"alias duplicate", "ntp:\n  servers:\n    - &s {address: a.example}\n  pools:\n    - *s\n", 3, 20, "ntp.pools[0].address", "already listed at line 3", 0},
	{"url", "ntp:\n  servers:\n    - address: ntp://x\n", 3, 16, "ntp.servers[0].address", `"ntp://x" is a URL; use a host name such as time.example.com or an IP address`, 0},
	{"space", "ntp:\n  servers:\n    - address: time example.com\n", 3, 16, "ntp.servers[0].address", "contains white space", 0},
	{"empty address", "ntp:\n  servers:\n    - address: \"\"\n", 3, 16, "ntp.servers[0].address", `"" is empty`, 0},
	{"bad char", "ntp:\n  servers:\n    - address: time!.example.com\n", 3, 16, "ntp.servers[0].address", `contains "!"`, 0},
	{"empty label", "ntp:\n  servers:\n    - address: time..example.com\n", 3, 16, "ntp.servers[0].address", "empty label", 0},
	{"long label", "ntp:\n  servers:\n    - address: " + strings.Repeat("a", 64) + ".com\n", 3, 16, "ntp.servers[0].address", "label of 64 characters", 0},
	{"hyphen label", "ntp:\n  servers:\n    - address: -a.example\n", 3, 16, "ntp.servers[0].address", "starts or ends with a hyphen", 0},
	{"with port", "ntp:\n  servers:\n    - address: a.example:123\n", 3, 16, "ntp.servers[0].address", "includes a port (give the port as port: 123)", 0},
	{"bad ipv4", "ntp:\n  servers:\n    - address: 300.1.2.3\n", 3, 16, "ntp.servers[0].address", "not a valid IPv4 address", 0},
	{"bad ipv6", "ntp:\n  servers:\n    - address: \"fe80::1::2\"\n", 3, 16, "ntp.servers[0].address", "not a valid IPv6 address", 0},
	{"brackets", "ntp:\n  servers:\n    - address: \"[::1]\"\n", 3, 16, "ntp.servers[0].address", "in brackets", 0},
	{"listen no port", "server:\n  listen: [192.0.2.1]\n", 2, 12, "server.listen[0]", `"192.0.2.1" is not an IP address and port`, 0},
	{"listen name", "server:\n  listen: [\"localhost:123\"]\n", 2, 12, "server.listen[0]", "is not an IP address and port", 0},
	{"listen twice", "server:\n  listen: [\"0.0.0.0:123\", \"0.0.0.0:123\"]\n", 2, 27, "server.listen[1]", "already listed at line 2", 0},
	{"allow host bits", "server:\n  allow: [192.0.2.1/24]\n", 2, 11, "server.allow[0]", "write 192.0.2.0/24", 0},
	{"deny garbage", "server:\n  deny: [everyone]\n", 2, 10, "server.deny[0]", `"everyone" is not a network`, 0},
	{"deny response", "server:\n  deny_response: drop\n", 2, 18, "server.deny_response", "ignore", 0},
	{"table too small", "server:\n  client_table_size: 10\n", 2, 22, "server.client_table_size", "from 64 to 16777216", 0},
	{"negative interval", "server:\n  rate_limit: {interval: -1s}\n", 2, 26, "server.rate_limit.interval", "0 to turn the limit off", 0},
	{"burst zero", "server:\n  rate_limit: {burst: 0}\n", 2, 23, "server.rate_limit.burst", "from 1 to 1048576", 0},
	{"prefix too long", "server:\n  rate_limit: {prefix_ipv4: 33}\n", 2, 29, "server.rate_limit.prefix_ipv4", "from 1 to 32", 0},
	{"local stratum", "server:\n  local: {stratum: 16}\n", 2, 20, "server.local.stratum", "from 1 to 15", 0},
	{"number address", "ntp:\n  servers:\n    - address: 5\n", 3, 16, "ntp.servers[0].address", `expected a string, got the number "5"`, 0},
	{"server nts without certificate", "server:\n  listen: [\"127.0.0.1:123\"]\n  nts:\n    listen: [\"127.0.0.1:4460\"]\n", 4, 5, "server.nts", "certificate is missing", 2},
	{"server nts without NTP", "server:\n  nts: {listen: [\"127.0.0.1:4460\"], certificate: /c, key: /k}\n", 2, 3, "server.nts", "NTS needs the NTP server", 0},
	{"server nts listen", "server:\n  listen: [\"127.0.0.1:123\"]\n  nts: {listen: [\":4460\"], certificate: /c, key: /k}\n", 3, 18, "server.nts.listen[0]", "not an IP address and port", 0},
	{"server nts relative key", "server:\n  listen: [\"127.0.0.1:123\"]\n  nts: {listen: [\"127.0.0.1:4460\"], certificate: /c, key: k.pem}\n", 3, 59, "server.nts.key", "is a relative path", 0},
	{"server nts rotation", "server:\n  nts: {key_rotation: 1s}\n", 2, 23, "server.nts.key_rotation", "at least 1m", 0},
	{"server nts keys kept", "server:\n  nts: {keys_kept: 1}\n", 2, 20, "server.nts.keys_kept", "from 2 to 1000", 0},
	{"server nts timeout", "server:\n  nts: {timeout: 0s}\n", 2, 18, "server.nts.timeout", "would end every connection", 0},
	{"bounded_by", "ntp:\n  servers:\n    - address: a.example\n      bounded_by: nts\n", 4, 19, "ntp.servers[0].bounded_by", "authenticated", 0},
	{"ptp port without interface", "ptp:\n  ports:\n    - transport: udp4\n", 3, 7, "ptp.ports[0]", "needs its interface", 0},
	{"ptp interface twice", "ptp:\n  ports:\n    - interface: eth0\n    - interface: eth0\n", 4, 18, "ptp.ports[1].interface", "has a PTP port already", 0},
	{"ptp interface name", "ptp:\n  ports:\n    - interface: eth0/1\n", 3, 18, "ptp.ports[0].interface", "cannot have", 0},
	{"ptp transport", "ptp:\n  ports:\n    - {interface: eth0, transport: udp}\n", 3, 36, "ptp.ports[0].transport", "udp4, udp6, l2", 0},
	{"ptp interval", "ptp:\n  ports:\n    - {interface: eth0, sync_interval: 9}\n", 3, 40, "ptp.ports[0].sync_interval", "from -7 (1/128 s) to 6", 0},
	{"ptp domain", "ptp:\n  domain: 200\n", 2, 11, "ptp.domain", "from 0 to 127", 0},
	{"ptp unicast family", "ptp:\n  ports:\n    - {interface: eth0, unicast_masters: [\"2001:db8::1\"]}\n", 3, 25, "ptp.ports[0].unicast_masters", "does not fit transport udp4", 0},
	{"ptp unicast l2", "ptp:\n  ports:\n    - {interface: eth0, transport: l2, unicast_masters: [192.0.2.1]}\n", 3, 40, "ptp.ports[0].unicast_masters", "UDP only", 0},
	{"ptp unicast_listen l2", "ptp:\n  ports:\n    - {interface: eth0, transport: l2, unicast_listen: true}\n", 3, 40, "ptp.ports[0].unicast_listen", "UDP only", 0},
	{"ptp unicast_listen slave_only", "ptp:\n  ports:\n    - {interface: eth0, role: slave_only, unicast_listen: true}\n", 3, 43, "ptp.ports[0].unicast_listen", "serves no one", 0},
	{"ptp unicast master_only", "ptp:\n  ports:\n    - {interface: eth0, role: master_only, unicast_masters: [192.0.2.1]}\n", 3, 44, "ptp.ports[0].unicast_masters", "master_only", 0},
	{"nts certificate dates", "ntp:\n  servers:\n    - address: a.example\n      nts: {certificate_dates: never}\n", 4, 32, "ntp.servers[0].nts.certificate_dates", "ignore_until_synchronized", 0},
	{"nts string", "ntp:\n  servers:\n    - address: a.example\n      nts: yes please\n", 4, 12, "ntp.servers[0].nts", "expected true, false or a mapping", 0},
	{"nts unknown key", "ntp:\n  servers:\n    - address: a.example\n      nts: {sever: b.example}\n", 4, 13, "ntp.servers[0].nts.sever", "did you mean server?", 0},
	{"nts bad server", "ntp:\n  servers:\n    - address: a.example\n      nts: {server: \"b.example:4460\"}\n", 4, 21, "ntp.servers[0].nts.server", "includes a port", 0},
	{"nts port", "ntp:\n  pools:\n    - address: a.example\n      nts: {port: 0}\n", 4, 19, "ntp.pools[0].nts.port", "from 1 to 65535", 0},
	{"nts relative ca", "ntp:\n  servers:\n    - address: a.example\n      nts:\n        ca: ca.pem\n", 5, 13, "ntp.servers[0].nts.ca", "is a relative path", 0},
	{"gptp shares a ptp interface", "ptp:\n  ports:\n    - {interface: eth0}\ngptp:\n  ports:\n    - {interface: eth1}\n    - {interface: eth0}\n", 7, 7, "gptp.ports[1].interface", "cannot share an interface", 0},
	{"gptp automotive auto", "gptp:\n  ports:\n    - {interface: eth0, profile: automotive, role: auto}\n", 3, 46, "gptp.ports[0].role", "static roles", 0},
	{"gptp automotive no role", "gptp:\n  ports:\n    - {interface: eth0, profile: automotive}\n", 3, 7, "gptp.ports[0]", "needs its role", 0},
	{"gptp oper on gptp", "gptp:\n  ports:\n    - {interface: eth0, oper_sync_interval: 0}\n", 3, 25, "gptp.ports[0].oper_sync_interval", "automotive profile", 0},
	{"gptp announce on automotive", "gptp:\n  ports:\n    - {interface: eth0, profile: automotive, role: slave, announce_interval: 1}\n", 3, 59, "gptp.ports[0].announce_interval", "no Announce", 0},
	{"csptp host name", "csptp:\n  servers:\n    - {address: ptp.example}\n", 3, 17, "csptp.servers[0].address", "not an IP address", 0},
	{"csptp no address", "csptp:\n  servers:\n    - {port: 319}\n", 3, 7, "csptp.servers[0]", "needs its address", 0},
	{"csptp protocol", "csptp:\n  servers:\n    - {address: 192.0.2.1, protocol: ptp}\n", 3, 38, "csptp.servers[0].protocol", "use one of sptp, csptp", 0},
	{"csptp poll order", "csptp:\n  servers:\n    - {address: 192.0.2.1, minpoll: 5, maxpoll: 2}\n", 3, 37, "csptp.servers[0].minpoll", "greater than maxpoll", 0},
	{"csptp duplicate", "csptp:\n  servers:\n    - {address: 192.0.2.1}\n    - {address: 192.0.2.1, port: 319, protocol: sptp}\n", 4, 7, "csptp.servers[1]", "already listed at line 3", 0},
	{"csptp listen", "csptp:\n  listen: [\"ptp.example:319\"]\n", 2, 12, "csptp.listen[0]", "", 0},
}

func TestErrors(t *testing.T) {
	for _, tt := range errorCases {
		t.Run(tt.name, func(t *testing.T) {
			c, err := Parse("timed.yaml", []byte(tt.in))
			if err == nil {
				t.Fatalf("no error; config %+v", *c)
			}
			if c != nil {
				t.Errorf("a config was returned with the error")
			}
			errs := configErrors(t, err)
			want := tt.count
			if want == 0 {
				want = 1
			}
			if len(errs) != want {
				t.Errorf("%d errors, want %d:\n%v", len(errs), want, err)
			}
			e := errs[0]
			if e.File != "timed.yaml" || e.Line != tt.line || e.Column != tt.col || e.Path != tt.path || !strings.Contains(e.Msg, tt.msg) {
				t.Errorf("got %d:%d path %q msg %q\nwant %d:%d path %q msg containing %q", e.Line, e.Column, e.Path, e.Msg, tt.line, tt.col, tt.path, tt.msg)
			}
			if !strings.HasPrefix(err.Error(), "timed.yaml:") {
				t.Errorf("error %q does not start with the file name", err)
			}
		})
	}
}

// TestAllErrorsCollected checks that every mistake is reported, in the order
// of the file, not only the first.
func TestAllErrorsCollected(t *testing.T) {
	in := `clok: 1
engine:
  step_threshold: -1s
  min_agreeing_sources: "3"
ntp:
  servers:
    - address: ntp://x
      port: 70000
    - {address: b.example, minpoll: 9, maxpoll: 7}
log: {level: verbose, format: json}
`
	_, err := Parse("timed.yaml", []byte(in))
	errs := configErrors(t, err)
	want := []string{
		"timed.yaml:1:1: clok: unknown key; did you mean clock?",
		"timed.yaml:3:19: engine.step_threshold: -1s is negative; use a duration such as 1s, or 0 to never step",
		`timed.yaml:4:25: engine.min_agreeing_sources: expected a whole number, got the string "3"`,
		`timed.yaml:7:16: ntp.servers[0].address: "ntp://x" is a URL`,
		"timed.yaml:8:13: ntp.servers[0].port: 70000 is out of range",
		"timed.yaml:9:37: ntp.servers[1].minpoll: minpoll 9 is greater than maxpoll 7",
		`timed.yaml:10:14: log.level: unknown log level "verbose"`,
	}
	if len(errs) != len(want) {
		t.Fatalf("%d errors, want %d:\n%v", len(errs), len(want), err)
	}
	for i, e := range errs {
		if !strings.HasPrefix(e.Error(), want[i]) {
			t.Errorf("error %d = %q\nwant prefix %q", i, e.Error(), want[i])
		}
	}
	if lines := strings.Split(err.Error(), "\n"); len(lines) != len(want) {
		t.Errorf("the joined error has %d lines, want one per mistake", len(lines))
	}
}

// TestLargeBadFile checks that a large broken file is reported quickly.
func TestLargeBadFile(t *testing.T) {
	for _, in := range []string{
		"ntp:\n  servers:\n" + strings.Repeat("    - {address: a.example, port: 1}\n", 20000) + "  pools: [\n",
		strings.Repeat("# comment\n", 100000) + "a: b: c\n",
		"log:\n" + strings.Repeat("  level: info\n", 20000),
		"ntp:\n  servers:\n" + strings.Repeat("    - {address: a.example, port: 1}\n", 20000),
	} {
		start := time.Now()
		_, err := Parse("big.yaml", []byte(in))
		if err == nil {
			t.Fatal("no error")
		}
		t.Logf("%d bytes: %v, %d bytes of errors", len(in), time.Since(start), len(err.Error()))
		if errs := configErrors(t, err); len(errs) > maxErrors+1 {
			t.Errorf("%d errors; want at most %d and a count of the rest", len(errs), maxErrors+1)
		} else if len(errs) == maxErrors+1 && !strings.HasSuffix(errs[maxErrors].Msg, "more mistakes not shown") {
			t.Errorf("the last error is %q, want a count of the mistakes not shown", errs[maxErrors])
		}
	}
}

func TestErrorFormat(t *testing.T) {
	tests := []struct {
		e    Error
		want string
	}{
		{Error{File: "a.yaml", Line: 12, Column: 5, Path: "engine.step_threshold", Msg: "bad"}, "a.yaml:12:5: engine.step_threshold: bad"},
		{Error{File: "a.yaml", Line: 3, Msg: "invalid YAML: x"}, "a.yaml:3: invalid YAML: x"},
		{Error{File: "a.yaml", Msg: "invalid YAML: x"}, "a.yaml: invalid YAML: x"},
		{Error{File: "a.yaml", Line: 1, Column: 1, Msg: "m"}, "a.yaml:1:1: m"},
	}
	for _, tt := range tests {
		if got := tt.e.Error(); got != tt.want {
			t.Errorf("Error() = %q, want %q", got, tt.want)
		}
	}
}

func TestLoad(t *testing.T) {
	dir := t.TempDir()
	if _, err := Load(filepath.Join(dir, "missing.yaml")); !errors.Is(err, os.ErrNotExist) || !strings.Contains(err.Error(), "missing.yaml") {
		t.Errorf("Load(missing) = %v; want a not-exist error naming the file", err)
	}
	path := filepath.Join(dir, "timed.yaml")
	if err := os.WriteFile(path, []byte("log:\n  level: loud\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	_, err := Load(path)
	if err == nil || !strings.HasPrefix(err.Error(), path+":2:10: log.level:") {
		t.Errorf("Load(bad) = %v; want an error at %s:2:10", err, path)
	}
	if err := os.WriteFile(path, DefaultYAML, 0o644); err != nil {
		t.Fatal(err)
	}
	c, err := Load(path)
	if err != nil || !reflect.DeepEqual(c, Default()) {
		t.Errorf("Load(default.yaml) = %+v, %v", c, err)
	}
}

func TestHostProblem(t *testing.T) {
	good := []string{"a", "time.example.com", "time.example.com.", "192.0.2.1", "::1", "2001:db8::123",
		"fe80::1%eth0", "x-1.example", "_ntp._udp.example", "1a.example", "a.b.c.d.e.f", "0.pool.ntp.org",
		strings.Repeat("a", 63) + ".com"}
	for _, s := range good {
		if p := hostProblem(s); p != "" {
			t.Errorf("hostProblem(%q) = %q, want none", s, p)
		}
	}
	bad := []string{"", " a", "a b", "ntp://a", "[::1]", "a:123", "1.2.3", "1.2.3.4.5", "256.0.0.1", "a..b", ".a",
		"a.-b", "a-.b", strings.Repeat("a", 64), strings.Repeat("a.", 127) + "aa", "a/b", "a@b", "ä.example",
		"::1::2", "a\x00b", "."}
	for _, s := range bad {
		if p := hostProblem(s); p == "" {
			t.Errorf("hostProblem(%q) = none, want a problem", s)
		}
	}
}

func TestClosest(t *testing.T) {
	fields := []field{{key: "step_threshold"}, {key: "step_limit"}, {key: "panic_threshold"}, {key: "log"}}
	tests := map[string]string{
		"step_treshold":  "step_threshold",
		"StepThreshold":  "step_threshold",
		"step-limit":     "step_limit",
		"steplimit":      "step_limit",
		"panic_treshold": "panic_threshold",
		"lg":             "log",
		"logs":           "log",
		"color":          "",
		"threshold":      "",
		"x":              "",
	}
	for in, want := range tests {
		if got := closest(in, fields); got != want {
			t.Errorf("closest(%q) = %q, want %q", in, got, want)
		}
	}
}
