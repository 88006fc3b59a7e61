package config

import (
	"os"
	"reflect"
	"strings"
	"testing"
	"time"
)

func TestRefclockExample(t *testing.T) {
	c, err := Load("testdata/refclocks.yaml")
	if err != nil {
		t.Fatal(err)
	}
	want := []Refclock{
		{Kind: "gpsd", Name: "gnss", Address: "127.0.0.1:2947", Device: "/dev/ttyS0", MinMode: 2, PPS: true,
			Offset: 120 * time.Millisecond, Delay: 200 * time.Millisecond, RefID: "GPS", NoSelect: true},
		{Kind: "sock", Name: "sock:/run/chrony.ttyS0.sock", Path: "/run/chrony.ttyS0.sock", RefID: "SOCK"},
		{Kind: "shm", Name: "shm:1", Unit: 1, Precision: time.Microsecond, RefID: "GPS", Poll: 2},
		{Kind: "pps", Name: "pps0", Device: "/dev/pps0", Edge: "clear", Lock: "gnss", Offset: -20 * time.Microsecond,
			Delay: time.Microsecond, RefID: "PPS", Prefer: true, Trust: true, Require: true},
		{Kind: "pps", Name: "pps:/dev/pps1", Device: "/dev/pps1", Edge: "assert", Lock: "192.0.2.1", RefID: "PPS"},
	}
	if !reflect.DeepEqual(c.Refclocks, want) {
		t.Errorf("refclocks\n%+v\nwant\n%+v", c.Refclocks, want)
	}
	checkConfig(t, c)
}

func TestRefclockValues(t *testing.T) {
	tests := []struct {
		in   string
		want Refclock
	}{
		{"refclocks: [{kind: gpsd}]", Refclock{Kind: "gpsd", Name: "gpsd:127.0.0.1:2947", Address: DefaultGpsdAddress, MinMode: 3, RefID: "GPS"}},
		{"refclocks: [{kind: gpsd, address: /run/gpsd.sock}]", Refclock{Kind: "gpsd", Name: "gpsd:/run/gpsd.sock", Address: "/run/gpsd.sock", MinMode: 3, RefID: "GPS"}},
		{"refclocks: [{kind: gpsd, address: '[::1]:2947', device: /dev/ttyACM0}]", Refclock{Kind: "gpsd", Name: "gpsd:/dev/ttyACM0", Address: "[::1]:2947", Device: "/dev/ttyACM0", MinMode: 3, RefID: "GPS"}},
		{"refclocks: [{kind: shm}]", Refclock{Kind: "shm", Name: "shm:0", RefID: "GPS"}},
		{"refclocks: [{kind: shm, unit: 7, refid: SHM, poll: -6}]", Refclock{Kind: "shm", Name: "shm:7", Unit: 7, RefID: "SHM", Poll: -6}},
		{"refclocks: [{kind: pps, device: /dev/pps0}]", Refclock{Kind: "pps", Name: "pps:/dev/pps0", Device: "/dev/pps0", Edge: "assert", RefID: "PPS"}},
		{"refclocks: [{kind: pps, device: /dev/pps0, offset: 0.5}]", Refclock{Kind: "pps", Name: "pps:/dev/pps0", Device: "/dev/pps0", Edge: "assert", RefID: "PPS", Offset: 500 * time.Millisecond}},
		{"refclocks: [{kind: sock, path: /run/chrony.ttyS0.sock, offset: -1h}]", Refclock{Kind: "sock", Name: "sock:/run/chrony.ttyS0.sock", Path: "/run/chrony.ttyS0.sock", RefID: "GPS", Offset: -time.Hour}},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			c, err := Parse("timed.yaml", []byte(tt.in))
			if err != nil {
				t.Fatal(err)
			}
			if len(c.Refclocks) != 1 || !reflect.DeepEqual(c.Refclocks[0], tt.want) {
				t.Errorf("got %+v\nwant %+v", c.Refclocks, tt.want)
			}
			checkConfig(t, c)
		})
	}
	// A lock may name an NTP server by address:port too, and a pool is
	// not a server.
	c, err := Parse("timed.yaml", []byte("ntp: {servers: [{address: a.example, port: 1123}]}\nrefclocks: [{kind: pps, device: /dev/pps0, lock: 'a.example:1123'}]\n"))
	if err != nil || c.Refclocks[0].Lock != "a.example:1123" {
		t.Errorf("lock by address:port: %v", err)
	}
}

// refclockErrorCases are mistakes in refclocks, with where and what the
// first error says.
var refclockErrorCases = []struct {
	name      string
	in        string
	line, col int
	path, msg string
	count     int
}{
	{"not a list", "refclocks: {kind: shm}\n", 1, 12, "refclocks", "expected a list", 0},
	{"empty entry", "refclocks:\n  -\n  - kind: shm\n", 2, 4, "refclocks[0]", "the entry is empty; every refclock needs at least its kind", 0},
	{"not a mapping", "refclocks:\n  - shm\n", 2, 5, "refclocks[0]", "expected a mapping", 0},
	{"no kind", "refclocks:\n  - unit: 1\n", 2, 5, "refclocks[0]", "kind is missing; every refclock needs one of kind: gpsd, sock, shm, pps", 0},
	{"wrong kind", "refclocks:\n  - kind: nmea\n", 2, 11, "refclocks[0].kind", `unknown refclock kind "nmea"; use one of gpsd, sock, shm, pps`, 0},
	{"key of another kind", "refclocks:\n  - kind: gpsd\n    unit: 2\n", 3, 11, "refclocks[0].unit", "unit is a key of shm refclocks, and this one is kind gpsd", 0},
	{"device with shm", "refclocks:\n  - kind: shm\n    device: /dev/pps0\n", 3, 13, "refclocks[0].device", "device is a key of gpsd and pps refclocks, and this one is kind shm", 0},
	{"lock with gpsd", "refclocks:\n  - {kind: gpsd, lock: x}\n", 2, 24, "refclocks[0].lock", "lock is a key of pps refclocks", 0},
	{"unknown key", "refclocks:\n  - {kind: shm, units: 1}\n", 2, 17, "refclocks[0].units", "unknown key; did you mean unit?", 0},
	{"unit out of range", "refclocks:\n  - kind: shm\n    unit: 8\n", 3, 11, "refclocks[0].unit", "8 is out of range; use an SHM unit from 0 to 7", 0},
	{"negative unit", "refclocks:\n  - {kind: shm, unit: -1}\n", 2, 23, "refclocks[0].unit", "out of range", 0},
	{"sock without path", "refclocks:\n  - kind: sock\n", 2, 5, "refclocks[0]", "a sock refclock needs path, such as path: /run/chrony.ttyS0.sock", 0},
	{"pps without device", "refclocks:\n  - kind: pps\n    edge: clear\n", 2, 5, "refclocks[0]", "a pps refclock needs device, such as device: /dev/pps0", 0},
	{"relative device", "refclocks:\n  - {kind: pps, device: pps0}\n", 2, 25, "refclocks[0].device", `"pps0" is a relative path`, 0},
	{"bad edge", "refclocks:\n  - {kind: pps, device: /dev/pps0, edge: rising}\n", 2, 42, "refclocks[0].edge", `unknown PPS edge "rising"; use one of assert, clear`, 0},
	{"min_mode 1", "refclocks:\n  - {kind: gpsd, min_mode: 1}\n", 2, 28, "refclocks[0].min_mode", "use 2 (a 2D fix is enough) or 3", 0},
	{"gpsd address without port", "refclocks:\n  - {kind: gpsd, address: localhost}\n", 2, 27, "refclocks[0].address", `"localhost" is neither a host:port nor an absolute path`, 0},
	{"gpsd address bad port", "refclocks:\n  - {kind: gpsd, address: 'localhost:0'}\n", 2, 27, "refclocks[0].address", `has the port "0"`, 0},
	{"refid too long", "refclocks:\n  - {kind: shm, refid: GNSSX}\n", 2, 24, "refclocks[0].refid", `"GNSSX" is not 1 to 4 ASCII letters`, 0},
	{"refid digits", "refclocks:\n  - {kind: shm, refid: GP5}\n", 2, 24, "refclocks[0].refid", "not 1 to 4 ASCII letters", 0},
	{"negative delay", "refclocks:\n  - {kind: shm, delay: -1ms}\n", 2, 24, "refclocks[0].delay", "is negative", 0},
	{"pps offset a second", "refclocks:\n  - {kind: pps, device: /dev/pps0, offset: 1s}\n", 2, 44, "refclocks[0].offset", "a PPS offset must be less than a second", 0},
	{"poll out of range", "refclocks:\n  - {kind: shm, poll: 18}\n", 2, 23, "refclocks[0].poll", "out of range", 0},
	{"duplicate name", "refclocks:\n  - {kind: shm, name: gnss}\n  - {kind: gpsd, name: gnss}\n", 3, 24, "refclocks[1].name", `the name "gnss" is already used by the refclock at line 2`, 0},
	{"duplicate default name", "refclocks:\n  - {kind: gpsd}\n  - {kind: gpsd}\n", 3, 5, "refclocks[1]", `the name "gpsd:127.0.0.1:2947" is already used`, 0},
	{"same unit twice", "refclocks:\n  - {kind: shm, unit: 2, name: a}\n  - {kind: shm, unit: 2, name: b}\n", 3, 5, "refclocks[1]", "SHM unit 2 is already read by the refclock at line 2", 0},
	{"name with space", "refclocks:\n  - {kind: shm, name: 'a b'}\n", 2, 23, "refclocks[0].name", "contains white space", 0},
	{"lock names nothing", "refclocks:\n  - {kind: shm, name: gnss}\n  - {kind: pps, device: /dev/pps0, lock: gps}\n", 3, 42, "refclocks[1].lock", `lock "gps" names no refclock or NTP server (the candidates are gnss)`, 0},
	{"lock names itself", "refclocks:\n  - kind: pps\n    name: p\n    device: /dev/pps0\n    lock: p\n", 5, 11, "refclocks[0].lock", "lock names this refclock itself", 0},
	{"lock names itself by default name", "refclocks:\n  - {kind: pps, device: /dev/pps0, lock: 'pps:/dev/pps0'}\n", 2, 42, "refclocks[0].lock", "lock names this refclock itself", 0},
	{"lock names a pps", "refclocks:\n  - {kind: pps, device: /dev/pps0, name: a}\n  - {kind: pps, device: /dev/pps1, lock: a}\n", 3, 42, "refclocks[1].lock", `lock names the pps refclock "a"`, 0},
	{"lock names a pool", "ntp: {pools: [{address: pool.ntp.org}]}\nrefclocks:\n  - {kind: pps, device: /dev/pps0, lock: pool.ntp.org}\n", 3, 42, "refclocks[0].lock", "there are none in this file", 0},
	{"empty lock", "refclocks:\n  - {kind: pps, device: /dev/pps0, lock: ''}\n", 2, 42, "refclocks[0].lock", "lock is empty", 0},
	{"two mistakes", "refclocks:\n  - {kind: shm, unit: 9}\n  - {kind: sock}\n", 2, 23, "refclocks[0].unit", "out of range", 2},
}

func TestRefclockErrors(t *testing.T) {
	for _, tt := range refclockErrorCases {
		t.Run(tt.name, func(t *testing.T) {
			c, err := Parse("timed.yaml", []byte(tt.in))
			if err == nil {
				t.Fatalf("no error; config %+v", c.Refclocks)
			}
			if c != nil {
				t.Errorf("a config was returned with the error")
			}
			errs := configErrors(t, err)
			want := max(tt.count, 1)
			if len(errs) != want {
				t.Errorf("%d errors, want %d:\n%v", len(errs), want, err)
			}
			e := errs[0]
			if e.File != "timed.yaml" || e.Line != tt.line || e.Column != tt.col || e.Path != tt.path || !strings.Contains(e.Msg, tt.msg) {
				t.Errorf("got %d:%d path %q msg %q\nwant %d:%d path %q msg containing %q", e.Line, e.Column, e.Path, e.Msg, tt.line, tt.col, tt.path, tt.msg)
			}
		})
	}
}

// TestRefclockDocumented checks that docs/CONFIG.md documents every key of
// a refclock entry and default.yaml mentions each.
func TestRefclockDocumented(t *testing.T) {
	doc, err := os.ReadFile("../docs/CONFIG.md")
	if err != nil {
		t.Fatal(err)
	}
	keys := []string{"kind", "name", "address", "device", "min_mode", "pps", "path", "unit", "edge", "lock",
		"offset", "delay", "precision", "refid", "poll", "prefer", "noselect", "trust", "require"}
	if !strings.Contains(string(doc), "### `refclocks`") || !strings.Contains(string(DefaultYAML), "# refclocks:") {
		t.Error("the refclocks section is missing from docs/CONFIG.md or default.yaml")
	}
	for _, k := range keys {
		if !strings.Contains(string(doc), "| `refclocks[]."+k+"`") {
			t.Errorf("docs/CONFIG.md does not document refclocks[].%s", k)
		}
		if !strings.Contains(string(DefaultYAML), k+":") {
			t.Errorf("default.yaml does not mention %s", k)
		}
	}
	// Every key the decoder knows is in the list above.
	for k := range refclockKeyKinds {
		found := false
		for _, x := range keys {
			found = found || x == k
		}
		if !found {
			t.Errorf("key %s is not in this test's list", k)
		}
	}
}

// checkRefclocks checks that accepted refclocks are within the schema.
func checkRefclocks(t *testing.T, c *Config) {
	t.Helper()
	names := map[string]bool{}
	for _, r := range c.Refclocks {
		if r.Name == "" || names[r.Name] || !refIDOK(r.RefID) || r.Delay < 0 || r.Precision < 0 || r.Poll < -6 || r.Poll > 17 {
			t.Fatalf("refclock %+v", r)
		}
		names[r.Name] = true
		switch r.Kind {
		case "gpsd":
			if gpsdAddressProblem(r.Address) != "" || r.MinMode < 2 || r.MinMode > 3 {
				t.Fatalf("gpsd refclock %+v", r)
			}
		case "sock":
			if !strings.HasPrefix(r.Path, "/") || len(r.Path) > maxSocketPath {
				t.Fatalf("sock refclock %+v", r)
			}
		case "shm":
			if r.Unit < 0 || r.Unit > 7 {
				t.Fatalf("shm refclock %+v", r)
			}
		case "pps":
			if !strings.HasPrefix(r.Device, "/") || (r.Edge != "assert" && r.Edge != "clear") || r.Lock == r.Name ||
				r.Offset <= -time.Second || r.Offset >= time.Second {
				t.Fatalf("pps refclock %+v", r)
			}
		default:
			t.Fatalf("refclock kind %q", r.Kind)
		}
		if r.Kind != "pps" && (r.Lock != "" || r.Edge != "") {
			t.Fatalf("pps keys on %+v", r)
		}
	}
}

// TestRefclockExamplesParse checks that the examples in default.yaml (once
// uncommented) and docs/CONFIG.md are valid.
func TestRefclockExamplesParse(t *testing.T) {
	doc, err := os.ReadFile("../docs/CONFIG.md")
	if err != nil {
		t.Fatal(err)
	}
	var fromDefault []string
	in := false
	for _, l := range strings.Split(string(DefaultYAML), "\n") {
		switch {
		case l == "# refclocks:":
			in = true
		case in && !strings.HasPrefix(l, "#  "):
			in = false
		}
		if in {
			fromDefault = append(fromDefault, strings.TrimPrefix(l, "# "))
		}
	}
	docText := string(doc)
	start := strings.Index(docText, "```yaml\nrefclocks:")
	if start < 0 || len(fromDefault) == 0 {
		t.Fatalf("examples not found (docs at %d, %d lines in default.yaml)", start, len(fromDefault))
	}
	docExample := docText[start+len("```yaml\n"):]
	docExample = docExample[:strings.Index(docExample, "```")]
	for name, example := range map[string]string{"default.yaml": strings.Join(fromDefault, "\n"), "CONFIG.md": docExample} {
		c, err := Parse(name, []byte(example))
		if err != nil {
			t.Errorf("%s example: %v\n%s", name, err, example)
			continue
		}
		if len(c.Refclocks) != 2 || c.Refclocks[1].Lock != "nmea" || c.Refclocks[0].Name != "nmea" {
			t.Errorf("%s example gives %+v", name, c.Refclocks)
		}
		checkConfig(t, c)
	}
}
