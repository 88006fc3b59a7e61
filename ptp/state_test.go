package ptp

import (
	"errors"
	"strings"
	"testing"

	"github.com/facebook/time/ptp/protocol"
)

const localClock = 0x50

func portConfig(class protocol.ClockClass) PortConfig {
	return PortConfig{
		Identity: pid(localClock, 1),
		Clock: DefaultDataset{
			ClockIdentity: localClock,
			Priority1:     128,
			ClockQuality:  protocol.ClockQuality{ClockClass: class, ClockAccuracy: protocol.ClockAccuracyUnknown, OffsetScaledLogVariance: 0xffff},
			Priority2:     128,
		},
		LogAnnounceInterval: 0, // 1 s; receipt timeout 3 s
		TimeProperties:      TimeProperties{CurrentUTCOffset: 37, PTPTimescale: true, TimeSource: protocol.TimeSourceInternalOscillator},
	}
}

func newPort(t *testing.T, cfg PortConfig) *Port {
	t.Helper()
	p, err := NewPort(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if p.State() != protocol.PortStateInitializing {
		t.Fatalf("new port in %v", p.State())
	}
	p.Initialize(at(0))
	if p.State() != protocol.PortStateListening {
		t.Fatalf("initialized port in %v", p.State())
	}
	return p
}

// step is one thing that happens to a port in a scenario.
type step struct {
	at        float64
	announce  *protocol.Announce // fed before Tick when set
	event     string             // "selected", "syncfault", "fault", "cleared", "disable", "enable", "" (Tick)
	want      protocol.PortState
	reason    string // substring of Reason(), when set
	changed   *bool
	wantError error
}

func yes() *bool { b := true; return &b }
func no() *bool  { b := false; return &b }

func runSteps(t *testing.T, p *Port, steps []step) {
	t.Helper()
	for i, s := range steps {
		now := at(s.at)
		var changed bool
		switch s.event {
		case "selected":
			changed = p.MasterClockSelected(now)
		case "syncfault":
			changed = p.SynchronizationFault(now, "offset jumped")
		case "fault":
			changed = p.Fault(now, "link down")
		case "cleared":
			changed = p.FaultCleared(now)
		case "disable":
			changed = p.Disable(now)
		case "enable":
			changed = p.Enable(now)
		case "":
			if s.announce != nil {
				err := p.HandleAnnounce(s.announce, now)
				if !errors.Is(err, s.wantError) {
					t.Fatalf("step %d: HandleAnnounce error %v, want %v", i, err, s.wantError)
				}
			}
			changed = p.Tick(now)
		default:
			t.Fatalf("step %d: unknown event %q", i, s.event)
		}
		if p.State() != s.want {
			t.Fatalf("step %d at %.1fs: state %v (%s), want %v", i, s.at, p.State(), p.Reason(), s.want)
		}
		if s.reason != "" && !strings.Contains(p.Reason(), s.reason) {
			t.Fatalf("step %d: reason %q, want it to contain %q", i, p.Reason(), s.reason)
		}
		if s.changed != nil && changed != *s.changed {
			t.Fatalf("step %d: changed = %t, want %t", i, changed, *s.changed)
		}
	}
}

func TestPortStateMachine(t *testing.T) {
	gm := pid(0x70, 1)   // a class 6 grandmaster
	gm2 := pid(0x10, 1)  // another class 6 grandmaster with a lower identity
	poor := pid(0x90, 1) // a class 248 clock with a higher identity than ours
	slaveOnly := func(c *PortConfig) { c.Clock.SlaveOnly = true }
	masterOnly := func(c *PortConfig) { c.MasterOnly = true }
	tests := []struct {
		name  string
		class protocol.ClockClass
		mods  []func(*PortConfig)
		steps []step
	}{
		{
			name: "alone: listening until the announce receipt timeout, then master", class: 248,
			steps: []step{
				{at: 1, want: protocol.PortStateListening, reason: "listening: initialized", changed: no()},
				{at: 2.9, want: protocol.PortStateListening},
				{at: 3, want: protocol.PortStateMaster, reason: "master: announce receipt timeout: no announce from a master for 3s", changed: yes()},
				{at: 10, want: protocol.PortStateMaster, changed: no()},
			},
		},
		{
			name: "slave-only alone stays listening and says why", class: 248, mods: []func(*PortConfig){slaveOnly},
			steps: []step{
				{at: 3, want: protocol.PortStateListening, reason: "listening: announce receipt timeout: no announce from a master for 3s"},
				{at: 100, want: protocol.PortStateListening, reason: "no announce from a master for 3s"},
			},
		},
		{
			name: "better master: uncalibrated, slave, synchronization fault, master lost", class: 248,
			steps: []step{
				{at: 0.5, announce: announce(gm, 0x70, 6, 1), want: protocol.PortStateListening},
				{at: 1.5, announce: announce(gm, 0x70, 6, 2), want: protocol.PortStateUncalibrated, reason: "new master 000000.0000.000070-1", changed: yes()},
				{at: 1.6, event: "selected", want: protocol.PortStateSlave, reason: "slave: synchronizing to master", changed: yes()},
				{at: 2.5, announce: announce(gm, 0x70, 6, 3), want: protocol.PortStateSlave, changed: no()},
				{at: 3, event: "syncfault", want: protocol.PortStateUncalibrated, reason: "synchronization fault: offset jumped"},
				{at: 3.5, announce: announce(gm, 0x70, 6, 4), want: protocol.PortStateUncalibrated, changed: no()},
				{at: 3.6, event: "selected", want: protocol.PortStateSlave},
				{at: 6.4, want: protocol.PortStateSlave},
				{at: 6.5, want: protocol.PortStateMaster, reason: "master: announce receipt timeout: no announce from master 000000.0000.000070-1 (grandmaster 000000.0000.000070) for 3s", changed: yes()},
			},
		},
		{
			name: "one announce does not qualify a master", class: 248,
			steps: []step{
				{at: 0.5, announce: announce(gm, 0x70, 6, 1), want: protocol.PortStateListening},
				{at: 3.4, want: protocol.PortStateListening},
				{at: 3.5, want: protocol.PortStateMaster},
			},
		},
		{
			name: "slave-only loses its master: listening", class: 248, mods: []func(*PortConfig){slaveOnly},
			steps: []step{
				{at: 0.5, announce: announce(poor, 0x90, 248, 1), want: protocol.PortStateListening},
				{at: 1.5, announce: announce(poor, 0x90, 248, 2), want: protocol.PortStateUncalibrated},
				{at: 1.6, event: "selected", want: protocol.PortStateSlave},
				{at: 4.5, want: protocol.PortStateListening, reason: "listening: announce receipt timeout: no announce from master 000000.0000.000090-1 (grandmaster 000000.0000.000090) for 3s", changed: yes()},
				// Later timeouts keep naming the master that was lost.
				{at: 7.5, want: protocol.PortStateListening, reason: "no announce from master 000000.0000.000090-1", changed: no()},
				{at: 100, want: protocol.PortStateListening, reason: "no announce from master 000000.0000.000090-1", changed: no()},
				// Another master: followed, and the reason says so.
				{at: 100.5, announce: announce(gm, 0x70, 6, 1), want: protocol.PortStateListening},
				{at: 101, announce: announce(gm, 0x70, 6, 2), want: protocol.PortStateUncalibrated, reason: "new master 000000.0000.000070-1", changed: yes()},
				{at: 101.1, event: "selected", want: protocol.PortStateSlave},
				{at: 104.1, want: protocol.PortStateListening, reason: "no announce from master 000000.0000.000070-1", changed: yes()},
			},
		},
		{
			name: "slave-only restarted after a fault says why it waits anew", class: 248, mods: []func(*PortConfig){slaveOnly},
			steps: []step{
				{at: 0.5, announce: announce(gm, 0x70, 6, 1), want: protocol.PortStateListening},
				{at: 1.5, announce: announce(gm, 0x70, 6, 2), want: protocol.PortStateUncalibrated},
				{at: 4.5, want: protocol.PortStateListening, reason: "no announce from master 000000.0000.000070-1"},
				{at: 5, event: "fault", want: protocol.PortStateFaulty},
				{at: 6, event: "cleared", want: protocol.PortStateListening, reason: "listening: fault cleared"},
				{at: 8.9, want: protocol.PortStateListening, reason: "listening: fault cleared"},
				{at: 9, want: protocol.PortStateListening, reason: "listening: announce receipt timeout: no announce from a master for 3s"},
			},
		},
		{
			name: "worse foreign master: pre-master for one interval, then master", class: 248,
			steps: []step{
				{at: 0.5, announce: announce(poor, 0x90, 248, 1), want: protocol.PortStateListening},
				{at: 1, announce: announce(poor, 0x90, 248, 2), want: protocol.PortStatePreMaster, reason: "pre_master: M2: local clock better"},
				{at: 1.9, want: protocol.PortStatePreMaster, changed: no()},
				{at: 2, want: protocol.PortStateMaster, reason: "master: M2", changed: yes()},
				// The foreign master improves: the port follows it.
				{at: 2.5, announce: announce(poor, 0x90, 6, 3), want: protocol.PortStateUncalibrated},
			},
		},
		{
			name: "class 6 clock facing a better class 6 grandmaster: passive, then master when it goes", class: 6,
			steps: []step{
				{at: 0.5, announce: announce(gm2, 0x10, 6, 1), want: protocol.PortStateListening},
				{at: 1.5, announce: announce(gm2, 0x10, 6, 2), want: protocol.PortStatePassive, reason: "passive: P1: foreign master 000000.0000.000010-1"},
				{at: 2.5, announce: announce(gm2, 0x10, 6, 3), want: protocol.PortStatePassive, changed: no()},
				{at: 5.5, want: protocol.PortStateMaster, reason: "no announce from a master"},
			},
		},
		{
			name: "master-only never follows a better master", class: 248, mods: []func(*PortConfig){masterOnly},
			steps: []step{
				{at: 0.5, announce: announce(gm, 0x70, 6, 1), want: protocol.PortStateListening},
				{at: 1.5, announce: announce(gm, 0x70, 6, 2), want: protocol.PortStatePreMaster, reason: "master-only"},
				{at: 2.5, announce: announce(gm, 0x70, 6, 3), want: protocol.PortStateMaster},
				{at: 3.5, announce: announce(gm, 0x70, 6, 4), want: protocol.PortStateMaster},
			},
		},
		{
			name: "a better master appears: the slave changes master", class: 248,
			steps: []step{
				{at: 0.5, announce: announce(gm, 0x70, 6, 1), want: protocol.PortStateListening},
				{at: 1.5, announce: announce(gm, 0x70, 6, 2), want: protocol.PortStateUncalibrated},
				{at: 1.6, event: "selected", want: protocol.PortStateSlave},
				{at: 2.0, announce: announce(gm2, 0x10, 6, 1), want: protocol.PortStateSlave, changed: no()},
				{at: 2.5, announce: announce(gm, 0x70, 6, 3), want: protocol.PortStateSlave},
				{at: 3.0, announce: announce(gm2, 0x10, 6, 2), want: protocol.PortStateUncalibrated, reason: "new master 000000.0000.000010-1", changed: yes()},
				// A change of master within UNCALIBRATED is reported too.
				{at: 3.1, announce: announce(pid(0x01, 1), 0x01, 6, 1), want: protocol.PortStateUncalibrated},
				{at: 3.2, announce: announce(pid(0x01, 1), 0x01, 6, 2), want: protocol.PortStateUncalibrated, reason: "new master 000000.0000.000001-1", changed: yes()},
			},
		},
		{
			name: "fault, fault cleared, disable, enable", class: 248,
			steps: []step{
				{at: 0.5, announce: announce(gm, 0x70, 6, 1), want: protocol.PortStateListening},
				{at: 1.5, announce: announce(gm, 0x70, 6, 2), want: protocol.PortStateUncalibrated},
				{at: 2, event: "fault", want: protocol.PortStateFaulty, reason: "faulty: link down", changed: yes()},
				{at: 2.5, announce: announce(gm, 0x70, 6, 3), want: protocol.PortStateFaulty, wantError: ErrPortNotRunning},
				{at: 9, want: protocol.PortStateFaulty, changed: no()},
				{at: 10, event: "cleared", want: protocol.PortStateListening, reason: "fault cleared", changed: yes()},
				{at: 11, event: "disable", want: protocol.PortStateDisabled, changed: yes()},
				{at: 12, event: "fault", want: protocol.PortStateDisabled, changed: no()},
				{at: 20, want: protocol.PortStateDisabled},
				{at: 21, event: "enable", want: protocol.PortStateListening, changed: yes()},
				{at: 24, want: protocol.PortStateMaster},
			},
		},
		{
			name: "announces that are not used", class: 248,
			steps: []step{
				{at: 0.5, announce: func() *protocol.Announce { a := announce(gm, 0x70, 6, 1); a.DomainNumber = 1; return a }(),
					want: protocol.PortStateListening, wantError: ErrWrongDomain},
				{at: 0.6, announce: announce(pid(localClock, 2), localClock, 6, 1), want: protocol.PortStateListening, wantError: ErrFromSelf},
				{at: 0.7, announce: func() *protocol.Announce { a := announce(gm, 0x70, 6, 1); a.StepsRemoved = 255; return a }(),
					want: protocol.PortStateListening, wantError: ErrStepsRemoved},
				{at: 0.8, announce: announce(gm, 0x70, 6, 7), want: protocol.PortStateListening},
				{at: 0.9, announce: announce(gm, 0x70, 6, 7), want: protocol.PortStateListening, wantError: ErrDuplicateAnnounce},
				{at: 3.8, want: protocol.PortStateMaster},
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := portConfig(tt.class)
			for _, m := range tt.mods {
				m(&cfg)
			}
			runSteps(t, newPort(t, cfg), tt.steps)
		})
	}
}

func TestPortParentAndTimeProperties(t *testing.T) {
	p := newPort(t, portConfig(248))
	if got := p.Parent(); got.GrandmasterIdentity != localClock || got.StepsRemoved != 0 {
		t.Fatalf("parent before any master: %+v", got)
	}
	if tp := p.TimeProperties(); tp.TimeSource != protocol.TimeSourceInternalOscillator {
		t.Fatalf("time properties before any master: %+v", tp)
	}
	gm := pid(0x70, 3)
	a := announce(gm, 0x77, 6, 1)
	a.StepsRemoved = 2
	a.FlagField |= protocol.FlagLeap61
	if err := p.HandleAnnounce(a, at(0.5)); err != nil {
		t.Fatal(err)
	}
	a.SequenceID = 2
	if err := p.HandleAnnounce(a, at(1.5)); err != nil {
		t.Fatal(err)
	}
	if !p.Tick(at(1.5)) || p.State() != protocol.PortStateUncalibrated {
		t.Fatalf("state %v", p.State())
	}
	parent := p.Parent()
	if parent.ParentPortIdentity != gm || parent.GrandmasterIdentity != 0x77 || parent.StepsRemoved != 3 ||
		parent.GrandmasterClockQuality.ClockClass != 6 {
		t.Fatalf("parent %+v", parent)
	}
	tp := p.TimeProperties()
	if !tp.Leap61 || tp.Leap59 || !tp.CurrentUTCOffsetValid || tp.CurrentUTCOffset != 37 || !tp.PTPTimescale || tp.TimeSource != protocol.TimeSourceGNSS {
		t.Fatalf("time properties %+v", tp)
	}
	m, ok := p.Master()
	if !ok || m.SenderPortIdentity != gm || m.ReceiverPortIdentity != pid(localClock, 1) {
		t.Fatalf("master %+v %t", m, ok)
	}
	fms := p.ForeignMasters(at(1.5))
	if len(fms) != 1 || !fms[0].Qualified || !fms[0].LastAnnounce.Equal(at(1.5)) {
		t.Fatalf("foreign masters %+v", fms)
	}
	if d := p.LastDecision(); d.Code != "S1" {
		t.Fatalf("last decision %+v", d)
	}
}

func TestNewPortRejects(t *testing.T) {
	tests := []struct {
		name string
		mod  func(*PortConfig)
		want string
	}{
		{"port number 0", func(c *PortConfig) { c.Identity.PortNumber = 0 }, "port number"},
		{"port number 0xffff", func(c *PortConfig) { c.Identity.PortNumber = 0xffff }, "port number"},
		{"clock identity mismatch", func(c *PortConfig) { c.Identity.ClockIdentity = 1 }, "clock identity"},
		{"master-only and slave-only", func(c *PortConfig) { c.MasterOnly = true; c.Clock.SlaveOnly = true }, "master-only and slave-only"},
		{"announce interval", func(c *PortConfig) { c.LogAnnounceInterval = 9 }, "logAnnounceInterval"},
		{"receipt timeout", func(c *PortConfig) { c.AnnounceReceiptTimeout = 1 }, "announceReceiptTimeout"},
		{"capacity", func(c *PortConfig) { c.ForeignMasterCapacity = -1 }, "capacity"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := portConfig(248)
			tt.mod(&cfg)
			_, err := NewPort(cfg)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("err = %v, want one mentioning %q", err, tt.want)
			}
		})
	}
}

func TestPortAnnounceIntervalScalesTimeout(t *testing.T) {
	cfg := portConfig(248)
	cfg.LogAnnounceInterval = 1 // 2 s
	cfg.AnnounceReceiptTimeout = 4
	p := newPort(t, cfg)
	if p.Tick(at(7.9)) || p.State() != protocol.PortStateListening {
		t.Fatalf("at 7.9 s: %v", p.State())
	}
	if !p.Tick(at(8)) || p.Reason() != "master: announce receipt timeout: no announce from a master for 8s" {
		t.Fatalf("at 8 s: %v %q", p.State(), p.Reason())
	}
}

// SetClock: a clock of class 248 that follows a better class 248 master
// becomes master when its own quality turns to class 6, announcing the new
// quality and time properties; identity, domain and slave-only are fixed.
func TestPortSetClock(t *testing.T) {
	cfg := portConfig(248)
	p := newPort(t, cfg)
	better := pid(0x10, 1) // a lower identity wins among equals
	runSteps(t, p, []step{
		{at: 0.5, announce: announce(better, 0x10, 248, 1), want: protocol.PortStateListening},
		{at: 1.0, announce: announce(better, 0x10, 248, 2), want: protocol.PortStateUncalibrated},
	})
	synced := cfg.Clock
	synced.ClockQuality = protocol.ClockQuality{ClockClass: 6, ClockAccuracy: protocol.ClockAccuracyMicrosecond1, OffsetScaledLogVariance: 0xffff}
	tp := TimeProperties{CurrentUTCOffset: 37, CurrentUTCOffsetValid: true, PTPTimescale: true, TimeTraceable: true,
		FrequencyTraceable: true, TimeSource: protocol.TimeSourceNTP}
	if err := p.SetClock(synced, tp); err != nil {
		t.Fatal(err)
	}
	if got := p.Parent().GrandmasterIdentity; got != 0x10 {
		t.Errorf("a port following a master changed its parent at once: grandmaster %v", got)
	}
	runSteps(t, p, []step{
		{at: 1.5, announce: announce(better, 0x10, 248, 3), want: protocol.PortStatePreMaster, reason: "M1"},
		{at: 2.6, want: protocol.PortStateMaster},
	})
	if par := p.Parent(); par.GrandmasterIdentity != localClock || par.GrandmasterClockQuality != synced.ClockQuality {
		t.Errorf("parent %+v, want the local clock with class 6", par)
	}
	if got := p.TimeProperties(); got != tp {
		t.Errorf("time properties %+v, want %+v", got, tp)
	}
	// A master announces a changed quality at once.
	holdover := synced
	holdover.ClockQuality.ClockClass = 7
	if err := p.SetClock(holdover, tp); err != nil {
		t.Fatal(err)
	}
	if got := p.Parent().GrandmasterClockQuality.ClockClass; got != 7 {
		t.Errorf("master's parent class %d after SetClock, want 7", got)
	}

	for name, mod := range map[string]func(*DefaultDataset){
		"identity":   func(d *DefaultDataset) { d.ClockIdentity++ },
		"domain":     func(d *DefaultDataset) { d.DomainNumber++ },
		"slave-only": func(d *DefaultDataset) { d.SlaveOnly = true },
	} {
		ds := synced
		mod(&ds)
		if err := p.SetClock(ds, tp); err == nil {
			t.Errorf("SetClock accepted another %s", name)
		}
	}
}
