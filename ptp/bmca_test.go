package ptp

import (
	"errors"
	"testing"
	"time"

	"github.com/facebook/time/ptp/protocol"
)

func pid(clock uint64, port uint16) protocol.PortIdentity {
	return protocol.PortIdentity{ClockIdentity: protocol.ClockIdentity(clock), PortNumber: port}
}

// candidate is a foreign master with default attributes: priority 128,
// class 248, accuracy unknown, variance 0xffff.
func candidate(gm uint64, mods ...func(*ForeignMaster)) ForeignMaster {
	f := ForeignMaster{
		GrandmasterIdentity:  protocol.ClockIdentity(gm),
		GrandmasterPriority1: 128,
		GrandmasterClockQuality: protocol.ClockQuality{
			ClockClass:              248,
			ClockAccuracy:           protocol.ClockAccuracyUnknown,
			OffsetScaledLogVariance: 0xffff,
		},
		GrandmasterPriority2: 128,
		SenderPortIdentity:   pid(gm, 1),
		ReceiverPortIdentity: pid(0x99, 1),
	}
	for _, m := range mods {
		m(&f)
	}
	return f
}

func TestCompare(t *testing.T) {
	p1 := func(v uint8) func(*ForeignMaster) { return func(f *ForeignMaster) { f.GrandmasterPriority1 = v } }
	p2 := func(v uint8) func(*ForeignMaster) { return func(f *ForeignMaster) { f.GrandmasterPriority2 = v } }
	class := func(v protocol.ClockClass) func(*ForeignMaster) {
		return func(f *ForeignMaster) { f.GrandmasterClockQuality.ClockClass = v }
	}
	acc := func(v protocol.ClockAccuracy) func(*ForeignMaster) {
		return func(f *ForeignMaster) { f.GrandmasterClockQuality.ClockAccuracy = v }
	}
	variance := func(v uint16) func(*ForeignMaster) {
		return func(f *ForeignMaster) { f.GrandmasterClockQuality.OffsetScaledLogVariance = v }
	}
	steps := func(v uint16) func(*ForeignMaster) { return func(f *ForeignMaster) { f.StepsRemoved = v } }
	sender := func(c uint64, n uint16) func(*ForeignMaster) {
		return func(f *ForeignMaster) { f.SenderPortIdentity = pid(c, n) }
	}
	receiver := func(c uint64, n uint16) func(*ForeignMaster) {
		return func(f *ForeignMaster) { f.ReceiverPortIdentity = pid(c, n) }
	}
	tests := []struct {
		name string
		a, b ForeignMaster
		want Comparison
	}{
		{"priority1 lower wins", candidate(2, p1(127)), candidate(1), ABetter},
		{"priority1 higher loses", candidate(1, p1(129)), candidate(2), BBetter},
		{"priority1 before class", candidate(1, p1(100), class(248)), candidate(2, class(6)), ABetter},
		{"class lower wins", candidate(2, class(6)), candidate(1, class(7)), ABetter},
		{"class higher loses", candidate(1, class(135)), candidate(2, class(6)), BBetter},
		{"class before accuracy", candidate(2, class(6), acc(0x31)), candidate(1, class(7), acc(0x20)), ABetter},
		{"accuracy lower wins", candidate(2, acc(0x21)), candidate(1, acc(0x22)), ABetter},
		{"accuracy higher loses", candidate(1, acc(0x30)), candidate(2, acc(0x21)), BBetter},
		{"accuracy before variance", candidate(2, acc(0x21), variance(0xffff)), candidate(1, acc(0x22), variance(1)), ABetter},
		{"variance lower wins", candidate(2, variance(0x4000)), candidate(1, variance(0x4100)), ABetter},
		{"variance higher loses", candidate(1, variance(0x4100)), candidate(2, variance(0x4000)), BBetter},
		{"variance before priority2", candidate(2, variance(1), p2(200)), candidate(1, variance(2), p2(1)), ABetter},
		{"priority2 lower wins", candidate(2, p2(1)), candidate(1, p2(2)), ABetter},
		{"priority2 higher loses", candidate(1, p2(3)), candidate(2, p2(2)), BBetter},
		{"identity tie-break lower wins", candidate(1), candidate(2), ABetter},
		{"identity tie-break higher loses", candidate(3), candidate(2), BBetter},
		{"different grandmaster ignores steps", candidate(1, steps(10)), candidate(2, steps(0)), ABetter},

		// Same grandmaster: figure 35.
		{"A two steps more: B better", candidate(5, steps(3)), candidate(5, steps(1)), BBetter},
		{"B two steps more: A better", candidate(5, steps(0)), candidate(5, steps(2)), ABetter},
		{"A one step more, receiver < sender: B better",
			candidate(5, steps(2), receiver(0x10, 1), sender(0x20, 1)), candidate(5, steps(1), sender(0x30, 1)), BBetter},
		{"A one step more, receiver > sender: B better by topology",
			candidate(5, steps(2), receiver(0x20, 1), sender(0x10, 1)), candidate(5, steps(1), sender(0x30, 1)), BBetterByTopology},
		{"A one step more, receiver = sender: error-1",
			candidate(5, steps(2), receiver(0x20, 1), sender(0x20, 1)), candidate(5, steps(1), sender(0x30, 1)), Error1},
		{"B one step more, receiver < sender: A better",
			candidate(5, steps(1), sender(0x30, 1)), candidate(5, steps(2), receiver(0x10, 1), sender(0x20, 1)), ABetter},
		{"B one step more, receiver > sender: A better by topology",
			candidate(5, steps(1), sender(0x30, 1)), candidate(5, steps(2), receiver(0x20, 2), sender(0x20, 1)), ABetterByTopology},
		{"B one step more, receiver = sender: error-1",
			candidate(5, steps(1), sender(0x30, 1)), candidate(5, steps(2), receiver(0x20, 1), sender(0x20, 1)), Error1},
		{"equal steps, lower sender: A better by topology",
			candidate(5, steps(1), sender(0x10, 1)), candidate(5, steps(1), sender(0x11, 1)), ABetterByTopology},
		{"equal steps, lower sender port: A better by topology",
			candidate(5, steps(1), sender(0x10, 1)), candidate(5, steps(1), sender(0x10, 2)), ABetterByTopology},
		{"equal steps, higher sender: B better by topology",
			candidate(5, steps(1), sender(0x12, 1)), candidate(5, steps(1), sender(0x11, 1)), BBetterByTopology},
		{"equal senders, lower receiver port: A better by topology",
			candidate(5, receiver(0x99, 1)), candidate(5, receiver(0x99, 2)), ABetterByTopology},
		{"equal senders, higher receiver port: B better by topology",
			candidate(5, receiver(0x99, 3)), candidate(5, receiver(0x99, 2)), BBetterByTopology},
		{"same message: error-2", candidate(5), candidate(5), Error2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := Compare(tt.a, tt.b)
			if got != tt.want {
				t.Fatalf("Compare(A, B) = %v, want %v", got, tt.want)
			}
			if tt.want == Error1 || tt.want == Error2 {
				return
			}
			// The comparison is antisymmetric.
			if back := Compare(tt.b, tt.a); back != -tt.want {
				t.Errorf("Compare(B, A) = %v, want %v", back, -tt.want)
			}
		})
	}
}

func TestStateDecision(t *testing.T) {
	local := func(class protocol.ClockClass, mods ...func(*DefaultDataset)) DefaultDataset {
		d := DefaultDataset{
			ClockIdentity: 0x50,
			Priority1:     128,
			ClockQuality:  protocol.ClockQuality{ClockClass: class, ClockAccuracy: protocol.ClockAccuracyUnknown, OffsetScaledLogVariance: 0xffff},
			Priority2:     128,
		}
		for _, m := range mods {
			m(&d)
		}
		return d
	}
	slaveOnly := func(d *DefaultDataset) { d.SlaveOnly = true }
	gmClass := func(c protocol.ClockClass) *ForeignMaster {
		f := candidate(0x70)
		f.GrandmasterClockQuality.ClockClass = c
		return &f
	}
	lowerID := func(c protocol.ClockClass) *ForeignMaster { // same class, wins on identity
		f := candidate(0x10)
		f.GrandmasterClockQuality.ClockClass = c
		return &f
	}
	var none *ForeignMaster
	tests := []struct {
		name       string
		d0         DefaultDataset
		erbest     *ForeignMaster
		current    protocol.PortState
		masterOnly bool
		want       protocol.PortState
		code       string
	}{
		{"no foreign master while listening", local(248), none, protocol.PortStateListening, false, protocol.PortStateListening, "LISTENING"},
		{"no foreign master while master, class 248: M2", local(248), none, protocol.PortStateMaster, false, protocol.PortStateMaster, "M2"},
		{"no foreign master while master, class 6: M1", local(6), none, protocol.PortStateMaster, false, protocol.PortStateMaster, "M1"},
		{"class 6 beats class 7: M1", local(6), gmClass(7), protocol.PortStateListening, false, protocol.PortStateMaster, "M1"},
		{"class 6 loses to class 6 with lower identity: P1", local(6), lowerID(6), protocol.PortStateListening, false, protocol.PortStatePassive, "P1"},
		{"class 127 loses to class 6: P1", local(127), gmClass(6), protocol.PortStateSlave, false, protocol.PortStatePassive, "P1"},
		{"class 248 beats class 250: M2", local(248), gmClass(250), protocol.PortStateListening, false, protocol.PortStateMaster, "M2"},
		{"class 248 loses to class 6: S1", local(248), gmClass(6), protocol.PortStateListening, false, protocol.PortStateSlave, "S1"},
		{"class 128 loses to class 127: S1", local(128), gmClass(127), protocol.PortStateMaster, false, protocol.PortStateSlave, "S1"},
		{"slave-only follows even a class 248 master", local(248, slaveOnly), gmClass(248), protocol.PortStateListening, false, protocol.PortStateSlave, "S1"},
		{"slave-only ignores its configured class 6", local(6, slaveOnly), gmClass(248), protocol.PortStateListening, false, protocol.PortStateSlave, "S1"},
		{"slave-only with no master left: listening", local(248, slaveOnly), none, protocol.PortStateSlave, false, protocol.PortStateListening, "LISTENING"},
		{"slave-only facing a slave-only with a higher identity: listening", local(248, slaveOnly), gmClass(255), protocol.PortStateListening, false, protocol.PortStateListening, "LISTENING"},
		{"master-only, class 248, better foreign: M2", local(248), gmClass(6), protocol.PortStateListening, true, protocol.PortStateMaster, "M2"},
		{"master-only, class 6, better foreign: P1", local(6), lowerID(6), protocol.PortStateMaster, true, protocol.PortStatePassive, "P1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := StateDecision(tt.d0, tt.erbest, tt.current, DecisionOptions{MasterOnly: tt.masterOnly})
			if got.State != tt.want || got.Code != tt.code {
				t.Fatalf("StateDecision = %v %s (%s), want %v %s", got.State, got.Code, got.Why, tt.want, tt.code)
			}
			if got.Why == "" {
				t.Error("no reason given")
			}
		})
	}
}

// announce builds an Announce from sender about grandmaster gm.
func announce(sender protocol.PortIdentity, gm uint64, class protocol.ClockClass, seq uint16) *protocol.Announce {
	return &protocol.Announce{
		Header: protocol.Header{
			SdoIDAndMsgType:    protocol.NewSdoIDAndMsgType(protocol.MessageAnnounce, 0),
			Version:            protocol.Version,
			MessageLength:      64,
			FlagField:          protocol.FlagPTPTimescale | protocol.FlagCurrentUtcOffsetValid,
			SourcePortIdentity: sender,
			SequenceID:         seq,
			LogMessageInterval: 0,
		},
		AnnounceBody: protocol.AnnounceBody{
			CurrentUTCOffset:     37,
			GrandmasterPriority1: 128,
			GrandmasterClockQuality: protocol.ClockQuality{
				ClockClass: class, ClockAccuracy: protocol.ClockAccuracyUnknown, OffsetScaledLogVariance: 0xffff,
			},
			GrandmasterPriority2: 128,
			GrandmasterIdentity:  protocol.ClockIdentity(gm),
			TimeSource:           protocol.TimeSourceGNSS,
		},
	}
}

var t0 = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

func at(sec float64) time.Time { return t0.Add(time.Duration(sec * float64(time.Second))) }

func TestForeignMasterQualification(t *testing.T) {
	const iv = time.Second
	sender := pid(0x70, 1)
	tests := []struct {
		name     string
		arrivals []float64 // seconds after t0
		logIv    protocol.LogInterval
		now      float64
		want     bool
	}{
		{"one announce is not enough", []float64{0}, 0, 0.5, false},
		{"two announces one interval apart", []float64{0, 1}, 0, 1, true},
		{"two announces exactly four intervals apart", []float64{0, 4}, 0, 4, true},
		{"two announces more than four intervals apart", []float64{0, 4.5}, 0, 4.5, false},
		{"window counts in the sender's interval (2 s)", []float64{0, 7}, 1, 7, true},
		{"window counts in the sender's interval (0.5 s)", []float64{0, 2.5}, -1, 2.5, false},
		{"nonsensical sender interval uses the local one", []float64{0, 3}, 0x7f, 3, true},
		{"three announces, last two close", []float64{0, 10, 11}, 0, 11, true},
		{"qualified until the receipt timeout", []float64{0, 1}, 0, 3.9, true},
		{"stale after the receipt timeout", []float64{0, 1}, 0, 4, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tab := foreignMasterTable{capacity: 4}
			for i, a := range tt.arrivals {
				msg := announce(sender, 0x70, 6, uint16(i))
				msg.LogMessageInterval = tt.logIv
				if err := tab.add(ForeignMasterFromAnnounce(msg, pid(0x50, 1)), uint16(i), at(a)); err != nil {
					t.Fatal(err)
				}
			}
			best := tab.best(at(tt.now), iv, DefaultAnnounceReceiptTimeout)
			if got := best != nil; got != tt.want {
				t.Fatalf("qualified = %t, want %t", got, tt.want)
			}
		})
	}
}

func TestForeignMasterTableBounds(t *testing.T) {
	tab := foreignMasterTable{capacity: DefaultForeignMasterCapacity}
	recv := pid(0x50, 1)
	for i := range DefaultForeignMasterCapacity + 1 {
		msg := announce(pid(uint64(0x100+i), 1), uint64(0x100+i), 248, 1)
		if err := tab.add(ForeignMasterFromAnnounce(msg, recv), 1, at(float64(i)/10)); err != nil {
			t.Fatal(err)
		}
	}
	if len(tab.records) != DefaultForeignMasterCapacity {
		t.Fatalf("%d records, want %d", len(tab.records), DefaultForeignMasterCapacity)
	}
	for _, r := range tab.records {
		if r.ds.SenderPortIdentity == pid(0x100, 1) {
			t.Fatal("the oldest record was kept")
		}
	}
	// A repeated sequence id is refused.
	err := tab.add(ForeignMasterFromAnnounce(announce(pid(0x101, 1), 0x101, 248, 1), recv), 1, at(5))
	if !errors.Is(err, ErrDuplicateAnnounce) {
		t.Fatalf("duplicate: err = %v", err)
	}
	// Records unheard for more than the window expire.
	tab.expire(at(2+ForeignMasterTimeWindow), time.Second)
	if len(tab.records) != 0 {
		t.Fatalf("%d records left after expiry", len(tab.records))
	}
}
