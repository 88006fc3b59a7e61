package config

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// FuzzParse checks that Parse never panics, that every failure is a list of
// *Error values with a message, and that every config it accepts obeys the
// schema's limits.
func FuzzParse(f *testing.F) {
	f.Add(DefaultYAML)
	files, _ := filepath.Glob("testdata/*.yaml")
	for _, name := range files {
		data, err := os.ReadFile(name)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data)
	}
	for _, tt := range errorCases {
		f.Add([]byte(tt.in))
	}
	for _, tt := range refclockErrorCases {
		f.Add([]byte(tt.in))
	}
	f.Add([]byte(""))
	f.Add([]byte("a: &a [*a]\n"))
	f.Add([]byte("ntp:\n  servers: &s\n    - {address: a.example}\n  pools: *s\n"))

	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := Parse("fuzz.yaml", data)
		if err != nil {
			if c != nil {
				t.Fatal("a config was returned with an error")
			}
			checkErrors(t, err)
			// The same input gives the same report.
			if _, err2 := Parse("fuzz.yaml", data); err2 == nil || err2.Error() != err.Error() {
				t.Fatalf("second parse differs: %v\nvs\n%v", err, err2)
			}
			return
		}
		checkConfig(t, c)
	})
}

func checkErrors(t *testing.T, err error) {
	t.Helper()
	j, ok := err.(interface{ Unwrap() []error })
	if !ok {
		t.Fatalf("error %T is not a joined list", err)
	}
	if len(j.Unwrap()) == 0 {
		t.Fatal("empty error list")
	}
	for _, e := range j.Unwrap() {
		var ce *Error
		if !errors.As(e, &ce) {
			t.Fatalf("%q is a %T, not a *Error", e, e)
		}
		if ce.File != "fuzz.yaml" || ce.Msg == "" || ce.Line < 0 || ce.Column < 0 {
			t.Fatalf("bad error %#v", ce)
		}
		if !strings.HasPrefix(ce.Error(), "fuzz.yaml") {
			t.Fatalf("error %q does not name the file", ce)
		}
	}
}

// checkConfig checks that an accepted config is within the schema.
func checkConfig(t *testing.T, c *Config) {
	t.Helper()
	in := func(s string, set ...string) bool {
		for _, x := range set {
			if s == x {
				return true
			}
		}
		return false
	}
	if !in(c.Clock.Driver, "system", "virtual", "none") {
		t.Fatalf("driver %q", c.Clock.Driver)
	}
	if c.Clock.Simulate != (SimulateConfig{}) && c.Clock.Driver != "virtual" {
		t.Fatalf("simulate with driver %q", c.Clock.Driver)
	}
	e := c.Engine
	if e.MinAgreeingSources < 1 || e.StepThreshold < 0 || e.StepLimit < -1 || e.PanicThreshold < 0 ||
		!(e.MaxSlewRatePPM >= 1) || !(e.MaxFrequencyPPM >= 1) {
		t.Fatalf("engine %+v", e)
	}
	type key struct {
		host string
		port int
	}
	seen := map[key]bool{}
	check := func(addr string, port, minPoll, maxPoll int) {
		if p := hostProblem(addr); p != "" {
			t.Fatalf("address %q accepted: %s", addr, p)
		}
		if port < 1 || port > 65535 || minPoll < -6 || maxPoll > 17 || minPoll > maxPoll {
			t.Fatalf("%s: port %d poll %d..%d", addr, port, minPoll, maxPoll)
		}
		k := key{hostKey(addr), port}
		if seen[k] {
			t.Fatalf("duplicate %v accepted", k)
		}
		seen[k] = true
	}
	for _, s := range c.NTP.Servers {
		check(s.Address, s.Port, s.MinPoll, s.MaxPoll)
	}
	for _, p := range c.NTP.Pools {
		check(p.Address, p.Port, p.MinPoll, p.MaxPoll)
		if p.MaxSources < 1 || p.MaxSources > 64 {
			t.Fatalf("pool %+v", p)
		}
	}
	if c.DriftFile != "" && !filepath.IsAbs(c.DriftFile) {
		t.Fatalf("drift file %q", c.DriftFile)
	}
	if !filepath.IsAbs(c.Control.Socket) || len(c.Control.Socket) > maxSocketPath {
		t.Fatalf("socket %q", c.Control.Socket)
	}
	if c.Metrics.Listen != "" && loopbackListenProblem(c.Metrics.Listen) != "" {
		t.Fatalf("metrics %q", c.Metrics.Listen)
	}
	checkRefclocks(t, c)
	if !in(c.Log.Level, "debug", "info", "warn", "error") || !in(c.Log.Format, "auto", "console", "json") {
		t.Fatalf("log %+v", c.Log)
	}
}
