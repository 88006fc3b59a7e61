package gptp

import (
	"strings"
	"testing"
	"time"
)

func TestConfigCheck(t *testing.T) {
	tests := []struct {
		name string
		cfg  Config
		want string // error substring; "" for none
		ok   func(c Config) bool
	}{
		{"defaults", Config{Interface: "eth0"}, "", func(c Config) bool {
			return c.Profile == ProfileGPTP && c.Role == RoleAuto && c.Priority1 == 248 && c.Priority2 == 248 &&
				c.NeighborPropDelayThresh == 800*time.Nanosecond && c.LogSyncInterval == -3 && c.SyncReceiptTimeout == 3 &&
				c.AnnounceReceiptTimeout == 3 && c.AllowedLostResponses == 3
		}},
		{"automotive slave", Config{Interface: "eth0", Profile: ProfileAutomotive, Role: RoleSlave}, "", func(c Config) bool {
			return c.OperLogPdelayReqInterval == 2 && c.OperLogSyncInterval == 0
		}},
		{"no interface", Config{}, "no interface", nil},
		{"automotive without a role", Config{Interface: "eth0", Profile: ProfileAutomotive}, "static roles", nil},
		{"automotive auto", Config{Interface: "eth0", Profile: ProfileAutomotive, Role: RoleAuto}, "static roles", nil},
		{"unknown profile", Config{Interface: "eth0", Profile: "avb"}, "unknown profile", nil},
		{"unknown role", Config{Interface: "eth0", Role: "boss"}, "unknown role", nil},
		{"interval", Config{Interface: "eth0", LogSyncInterval: 9}, "outside -7..6", nil},
		{"negative threshold", Config{Interface: "eth0", NeighborPropDelayThresh: -1}, "negative", nil},
		{"timeout", Config{Interface: "eth0", SyncReceiptTimeout: 1}, "receipt timeouts", nil},
	}
	for _, tt := range tests {
		c := tt.cfg
		err := c.check()
		switch {
		case tt.want == "" && err != nil:
			t.Errorf("%s: %v", tt.name, err)
		case tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want)):
			t.Errorf("%s: error %v, want one containing %q", tt.name, err, tt.want)
		case tt.ok != nil && !tt.ok(c):
			t.Errorf("%s: config %+v", tt.name, c)
		}
	}
}

func TestParseLinkState(t *testing.T) {
	tests := []struct {
		in, want string
	}{
		{`{"interface":"eth0","mean_link_delay_ns":1500,"neighbor_rate_ratio":1.0000002,"saved":"2026-11-22T13:00:00Z"}`, ""},
		{`{"interface":"eth1","mean_link_delay_ns":1500}`, "interface"},
		{`{"interface":"eth0","mean_link_delay_ns":-5}`, "outside"},
		{`{"interface":"eth0","mean_link_delay_ns":2000000}`, "outside"},
		{`{"interface":"eth0","neighbor_rate_ratio":1.5}`, "1000 ppm"},
		{`{"interface":`, "unexpected end"},
		{strings.Repeat(" ", maxStateSize+1), "more than"},
	}
	for _, tt := range tests {
		s, err := parseLinkState([]byte(tt.in), "eth0")
		switch {
		case tt.want == "" && (err != nil || s.MeanLinkDelayNs != 1500 || s.NeighborRateRatio != 1.0000002):
			t.Errorf("%.40q: %+v %v", tt.in, s, err)
		case tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want)):
			t.Errorf("%.40q: error %v, want one containing %q", tt.in, err, tt.want)
		}
	}
}

func FuzzParseLinkState(f *testing.F) {
	f.Add([]byte(`{"interface":"eth0","mean_link_delay_ns":1500,"neighbor_rate_ratio":1.0000002}`))
	f.Add([]byte(`{}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		s, err := parseLinkState(b, "eth0")
		if err == nil && (s.MeanLinkDelayNs < 0 || s.Interface != "eth0") {
			t.Errorf("accepted %+v", s)
		}
	})
}
