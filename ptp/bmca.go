package ptp

import (
	"errors"
	"fmt"
	"time"

	"github.com/facebook/time/ptp/protocol"
)

// Comparison is the outcome of the dataset comparison algorithm of clause
// 9.3.4 (figures 34 and 35) applied to two candidates A and B.
type Comparison int8

// The outcomes of Compare.
const (
	// BBetter: B is better than A by its grandmaster's attributes or by a
	// difference of more than one in stepsRemoved.
	BBetter Comparison = -2
	// BBetterByTopology: both describe the same grandmaster and B is better
	// only by its position in the network.
	BBetterByTopology Comparison = -1
	// ABetterByTopology: both describe the same grandmaster and A is better
	// only by its position in the network.
	ABetterByTopology Comparison = 1
	// ABetter: A is better than B.
	ABetter Comparison = 2
	// Error1: the message was sent and received by the same port (the
	// receiver and sender identities of the candidate with more steps are
	// equal).
	Error1 Comparison = 10
	// Error2: A and B are the same message, or duplicates of it.
	Error2 Comparison = 11
)

// String names the outcome as the standard does.
func (c Comparison) String() string {
	switch c {
	case BBetter:
		return "B better than A"
	case BBetterByTopology:
		return "B better by topology than A"
	case ABetterByTopology:
		return "A better by topology than B"
	case ABetter:
		return "A better than B"
	case Error1:
		return "error-1 (message received by its sender)"
	case Error2:
		return "error-2 (same message)"
	}
	return fmt.Sprintf("Comparison(%d)", int8(c))
}

// AWins reports whether A is better than B, by attributes or by topology.
func (c Comparison) AWins() bool { return c == ABetter || c == ABetterByTopology }

// cmpUint returns ABetter when a < b (lower wins), BBetter when a > b, 0 when equal.
func cmpUint[T ~uint8 | ~uint16 | ~uint64](a, b T) Comparison {
	switch {
	case a < b:
		return ABetter
	case a > b:
		return BBetter
	}
	return 0
}

// Compare is the dataset comparison algorithm of IEEE 1588-2019 clause 9.3.4.
//
// When A and B describe different grandmasters the one with the lower
// priority1, clock class, clock accuracy, offsetScaledLogVariance, priority2
// and finally grandmaster identity wins, in that order (figure 34). When they
// describe the same grandmaster, the topology decides (figure 35): a
// candidate with at least two fewer steps removed is better; with one step
// fewer it is better, or better by topology when the other candidate's
// receiver identity is greater than its sender's (the other one has passed
// through this clock); with equal steps the lower sender identity, then the
// lower receiver port number, is better by topology.
func Compare(a, b ForeignMaster) Comparison {
	if a.GrandmasterIdentity != b.GrandmasterIdentity {
		qa, qb := a.GrandmasterClockQuality, b.GrandmasterClockQuality
		for _, c := range []Comparison{
			cmpUint(a.GrandmasterPriority1, b.GrandmasterPriority1),
			cmpUint(qa.ClockClass, qb.ClockClass),
			cmpUint(qa.ClockAccuracy, qb.ClockAccuracy),
			cmpUint(qa.OffsetScaledLogVariance, qb.OffsetScaledLogVariance),
			cmpUint(a.GrandmasterPriority2, b.GrandmasterPriority2),
		} {
			if c != 0 {
				return c
			}
		}
		return cmpUint(a.GrandmasterIdentity, b.GrandmasterIdentity)
	}
	sa, sb := int(a.StepsRemoved), int(b.StepsRemoved)
	switch {
	case sa > sb+1:
		return BBetter
	case sa+1 < sb:
		return ABetter
	case sa > sb:
		switch a.ReceiverPortIdentity.Compare(a.SenderPortIdentity) {
		case -1:
			return BBetter
		case 1:
			return BBetterByTopology
		}
		return Error1
	case sa < sb:
		switch b.ReceiverPortIdentity.Compare(b.SenderPortIdentity) {
		case -1:
			return ABetter
		case 1:
			return ABetterByTopology
		}
		return Error1
	}
	switch a.SenderPortIdentity.Compare(b.SenderPortIdentity) {
	case -1:
		return ABetterByTopology
	case 1:
		return BBetterByTopology
	}
	switch {
	case a.ReceiverPortIdentity.PortNumber < b.ReceiverPortIdentity.PortNumber:
		return ABetterByTopology
	case a.ReceiverPortIdentity.PortNumber > b.ReceiverPortIdentity.PortNumber:
		return BBetterByTopology
	}
	return Error2
}

// Decision is the outcome of the state decision algorithm (clause 9.3.3).
type Decision struct {
	// State is the recommended state: PortStateMaster, PortStatePassive,
	// PortStateSlave or PortStateListening.
	State protocol.PortState
	// Code is the name of the decision in figure 33 ("M1", "M2", "P1",
	// "S1") or "LISTENING" when there is nothing to decide on.
	Code string
	// Why says in a few words why this state was recommended.
	Why string
}

// DecisionOptions are the port options that change the state decision.
type DecisionOptions struct {
	// MasterOnly keeps the port out of the SLAVE state (portDS.masterOnly,
	// clause 9.2.2.2): its Erbest is not used as Ebest.
	MasterOnly bool
}

// StateDecision is the state decision algorithm of clause 9.3.3 (figure 33)
// for an ordinary clock with one port, so that Ebest is Erbest (unless the
// port is master-only). d0 is the local clock, erbest the best qualified
// foreign master of the port (nil when there is none) and current the
// port's state.
//
// A slave-only clock (d0.SlaveOnly) is never recommended MASTER or PASSIVE:
// it gets LISTENING instead (clause 9.2.2.1).
func StateDecision(d0 DefaultDataset, erbest *ForeignMaster, current protocol.PortState, opts DecisionOptions) Decision {
	if erbest == nil && current == protocol.PortStateListening {
		return Decision{State: protocol.PortStateListening, Code: "LISTENING", Why: "no qualified foreign master"}
	}
	local := d0.Candidate()
	dec := decide(local, erbest, opts)
	if d0.SlaveOnly && dec.State != protocol.PortStateSlave {
		why := "slave-only and no qualified foreign master"
		if erbest != nil {
			why = fmt.Sprintf("slave-only and foreign master %s not better than the local clock", erbest.SenderPortIdentity)
		}
		return Decision{State: protocol.PortStateListening, Code: "LISTENING", Why: why}
	}
	return dec
}

func decide(local ForeignMaster, erbest *ForeignMaster, opts DecisionOptions) Decision {
	class := local.GrandmasterClockQuality.ClockClass
	if class >= 1 && class <= 127 {
		if erbest == nil || Compare(local, *erbest).AWins() {
			return Decision{State: protocol.PortStateMaster, Code: "M1",
				Why: fmt.Sprintf("local clock (class %d) better than every foreign master", class)}
		}
		return Decision{State: protocol.PortStatePassive, Code: "P1",
			Why: fmt.Sprintf("foreign master %s (grandmaster %s) better than the local clock of class %d",
				erbest.SenderPortIdentity, erbest.GrandmasterIdentity, class)}
	}
	ebest := erbest
	if opts.MasterOnly {
		ebest = nil // clause 9.3.2.3: Erbest of a master-only port is not a candidate for Ebest
	}
	if ebest == nil || Compare(local, *ebest).AWins() {
		why := "local clock better than every foreign master"
		if opts.MasterOnly && erbest != nil {
			why = "master-only port"
		}
		return Decision{State: protocol.PortStateMaster, Code: "M2", Why: why}
	}
	return Decision{State: protocol.PortStateSlave, Code: "S1",
		Why: fmt.Sprintf("foreign master %s (grandmaster %s, class %d) is the best",
			ebest.SenderPortIdentity, ebest.GrandmasterIdentity, ebest.GrandmasterClockQuality.ClockClass)}
}

// The foreign master qualification rule of clause 9.3.2.4.5: a foreign
// master counts only after ForeignMasterThreshold Announce messages within
// ForeignMasterTimeWindow announce intervals. The interval is the one the
// master announces in its messages' logMessageInterval (the local port's
// when that is outside 2^-8..2^8 s), so that a master announcing more
// slowly than this port is configured for still qualifies. A master also
// stops counting announceReceiptTimeout of its intervals after its last
// Announce.
const (
	ForeignMasterThreshold  = 2
	ForeignMasterTimeWindow = 4
)

// DefaultForeignMasterCapacity is the size of a port's foreign master table
// unless configured otherwise.
const DefaultForeignMasterCapacity = 16

// Reasons HandleAnnounce gives for not recording an Announce.
var (
	ErrWrongDomain       = errors.New("announce from another domain")
	ErrFromSelf          = errors.New("announce sent by this clock")
	ErrStepsRemoved      = errors.New("announce with stepsRemoved of 255 or more")
	ErrPortNotRunning    = errors.New("port does not take announces in this state")
	ErrDuplicateAnnounce = errors.New("announce repeats the last sequence id of its sender")
)

// foreignRecord is one entry of the foreign master table.
type foreignRecord struct {
	ds      ForeignMaster
	arrived [ForeignMasterThreshold]time.Time // most recent first
	lastSeq uint16
}

// interval is the sender's announce interval; a nonsensical one (outside
// 2^-8 .. 2^8 s, e.g. 0x7f) is replaced by the local one.
func (r *foreignRecord) interval(local time.Duration) time.Duration {
	l := r.ds.LogAnnounceInterval
	if l < -8 || l > 8 {
		return local
	}
	return l.Duration()
}

// qualified applies the qualification rule at now: ForeignMasterThreshold
// announces within ForeignMasterTimeWindow intervals, the last one less than
// receiptTimeout intervals ago.
func (r *foreignRecord) qualified(now time.Time, local time.Duration, receiptTimeout int) bool {
	iv := r.interval(local)
	oldest := r.arrived[ForeignMasterThreshold-1]
	if oldest.IsZero() || now.Sub(oldest) > ForeignMasterTimeWindow*iv {
		return false
	}
	return now.Sub(r.arrived[0]) < time.Duration(receiptTimeout)*iv
}

// foreignMasterTable is the bounded table of foreign masters of one port.
type foreignMasterTable struct {
	capacity int
	records  []*foreignRecord
}

// add records an announce. When the table is full, the record heard from
// least recently is dropped.
func (t *foreignMasterTable) add(ds ForeignMaster, seq uint16, now time.Time) error {
	for _, r := range t.records {
		if r.ds.SenderPortIdentity != ds.SenderPortIdentity {
			continue
		}
		// A repeated sequence id is a duplicate of the last message. Any
		// other id counts: a restarted master starts its sequence anew.
		if seq == r.lastSeq {
			return fmt.Errorf("ptp: %s seq %d: %w", ds.SenderPortIdentity, seq, ErrDuplicateAnnounce)
		}
		r.ds = ds
		r.lastSeq = seq
		copy(r.arrived[1:], r.arrived[:ForeignMasterThreshold-1])
		r.arrived[0] = now
		return nil
	}
	if len(t.records) >= t.capacity {
		oldest := 0
		for i, r := range t.records {
			if r.arrived[0].Before(t.records[oldest].arrived[0]) {
				oldest = i
			}
		}
		t.records = append(t.records[:oldest], t.records[oldest+1:]...)
	}
	r := &foreignRecord{ds: ds, lastSeq: seq}
	r.arrived[0] = now
	t.records = append(t.records, r)
	return nil
}

// expire drops records not heard from within the qualification window.
func (t *foreignMasterTable) expire(now time.Time, local time.Duration) {
	kept := t.records[:0]
	for _, r := range t.records {
		if now.Sub(r.arrived[0]) <= ForeignMasterTimeWindow*r.interval(local) {
			kept = append(kept, r)
		}
	}
	clear(t.records[len(kept):])
	t.records = kept
}

// remove drops the record of sender.
func (t *foreignMasterTable) remove(sender protocol.PortIdentity) {
	for i, r := range t.records {
		if r.ds.SenderPortIdentity == sender {
			t.records = append(t.records[:i], t.records[i+1:]...)
			return
		}
	}
}

// best returns Erbest: the best qualified record, or nil.
func (t *foreignMasterTable) best(now time.Time, local time.Duration, receiptTimeout int) *ForeignMaster {
	var best *ForeignMaster
	for _, r := range t.records {
		if !r.qualified(now, local, receiptTimeout) {
			continue
		}
		if best == nil || Compare(r.ds, *best).AWins() {
			ds := r.ds
			best = &ds
		}
	}
	return best
}
