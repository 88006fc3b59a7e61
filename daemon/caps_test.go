package daemon

import (
	"maps"
	"slices"
	"testing"

	"github.com/timed-project/timed/config"
)

func TestNeededCapabilities(t *testing.T) {
	port := func(transport, stamps string) config.PTPPort {
		return config.PTPPort{Interface: "eth0", Transport: transport, Timestamping: stamps}
	}
	tests := []struct {
		name        string
		cfg         config.Config
		systemClock bool
		want        []capability
	}{
		{"NTP with the virtual clock", config.Config{}, false, nil},
		{"NTP with the system clock", config.Config{}, true, []capability{capSysTime}},
		{"PTP over UDP", config.Config{PTP: config.PTPConfig{Ports: []config.PTPPort{port("udp4", "software")}}}, true,
			[]capability{capNetBindService, capSysTime}},
		{"PTP on Ethernet", config.Config{PTP: config.PTPConfig{Ports: []config.PTPPort{port("l2", "software")}}}, false,
			[]capability{capNetRaw}},
		{"PTP on Ethernet, hardware timestamps", config.Config{PTP: config.PTPConfig{Ports: []config.PTPPort{port("l2", "hardware")}}}, true,
			[]capability{capNetAdmin, capNetRaw, capSysTime}},
		{"PTP over UDPv6, hardware timestamps", config.Config{PTP: config.PTPConfig{Ports: []config.PTPPort{port("udp6", "hardware")}}}, false,
			[]capability{capNetBindService, capNetAdmin}},
		{"gPTP", config.Config{GPTP: config.GPTPConfig{Ports: []config.GPTPPort{{Interface: "eth0"}}}}, false,
			[]capability{capNetRaw}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			need := neededCapabilities(&tt.cfg, tt.systemClock)
			got := slices.SortedFunc(maps.Keys(need), func(a, b capability) int { return int(a.nr) - int(b.nr) })
			if !slices.Equal(got, tt.want) {
				t.Errorf("kept %v, want %v", got, tt.want)
			}
			for c, why := range need {
				if why == "" {
					t.Errorf("%s kept without a reason", c.name)
				}
			}
		})
	}
}
