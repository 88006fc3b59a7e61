package main

import (
	"bytes"
	"strings"
	"testing"

	"github.com/timed-project/timed/control"
	"github.com/timed-project/timed/sources"
)

// TestRenderLostMaster: after a PTP port loses its master, `timectl ptp`
// says why and marks the figures as the last master's, and `timectl
// sources` gives the source's own reason with a legend that says it is not
// used.
func TestRenderLostMaster(t *testing.T) {
	const why = "listening: announce receipt timeout: no announce from master 0a0a0a.fffe.000020-1 (grandmaster 0a0a0a.fffe.000020) for 3s"
	lost := control.PTPPortStatus{Interface: "lan2", Transport: "udp4", Role: "slave_only", State: "LISTENING", Reason: why,
		SinceAgo: 12, Offset: 11.8e-6, MeanPathDelay: 6.4e-6, Timestamps: "kernel", LastMeasurementAgo: 15, Measurements: 24}
	following := lost
	following.State, following.Reason = "SLAVE", "slave: synchronizing to master 0a0a0a.fffe.000010-1"
	following.Parent, following.Grandmaster, following.LastMeasurementAgo = "0a0a0a.fffe.000010-1", "0a0a0a.fffe.000010", 0.2
	tests := []struct {
		name   string
		port   control.PTPPortStatus
		want   []string
		absent []string
	}{
		{"master lost", lost,
			[]string{"LISTENING for 12s: " + why, "Last offset:      +11.800 µs (local − the last master, measured 15s ago)"},
			[]string{"Grandmaster:", "Parent:"}},
		{"following", following,
			[]string{"SLAVE for 12s", "Offset:           +11.800 µs (local − master, last measurement 200ms ago)", "Grandmaster:"},
			[]string{"Last offset"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var b bytes.Buffer
			renderPTP(&b, control.PTPReply{Ports: []control.PTPPortStatus{tt.port}})
			for _, w := range tt.want {
				if !strings.Contains(b.String(), w) {
					t.Errorf("output lacks %q:\n%s", w, b.String())
				}
			}
			for _, w := range tt.absent {
				if strings.Contains(b.String(), w) {
					t.Errorf("output has %q:\n%s", w, b.String())
				}
			}
		})
	}

	var b bytes.Buffer
	renderSources(&b, []sources.SourceStatus{{Name: "ptp lan2", Kind: "ptp", State: sources.StateFault, Reason: why,
		Poll: -2, Samples: 24, LastSampleAgo: 15}}, nil, false)
	for _, w := range []string{"ptp lan2  ptp   fault", "fault        cannot be used now, as the source itself reports",
		"Not selected:\n  ptp lan2: fault: " + why} {
		if !strings.Contains(b.String(), w) {
			t.Errorf("sources output lacks %q:\n%s", w, b.String())
		}
	}
}
