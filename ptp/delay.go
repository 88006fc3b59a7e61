package ptp

import (
	"cmp"
	"errors"
	"fmt"
	"math"
	"slices"
	"time"

	"github.com/facebook/time/ptp/protocol"

	"github.com/timed-project/timed/internal/netstamp"
)

// Interval is a signed time interval with the resolution of a PTP
// correctionField: whole nanoseconds plus a fraction in units of 2^-16 ns.
// Its range is that of time.Duration; arithmetic saturates at the ends.
type Interval struct {
	ns   int64  // the value rounded down to whole nanoseconds
	frac uint16 // what is above ns, in 2^-16 ns
}

// IntervalOf returns d as an Interval.
func IntervalOf(d time.Duration) Interval { return Interval{ns: int64(d)} }

// IntervalFromCorrection returns a correctionField (or TimeInterval) value as
// an Interval. The value that means "too big to represent" is an error.
func IntervalFromCorrection(c protocol.Correction) (Interval, error) {
	if c.TooBig() {
		return Interval{}, fmt.Errorf("ptp: correction field 0x%x: %w", uint64(c), ErrCorrectionRange)
	}
	return Interval{ns: int64(c) >> 16, frac: uint16(int64(c) & 0xffff)}, nil
}

func satAdd(a, b int64) int64 {
	s := a + b
	switch {
	case a > 0 && b > 0 && s < 0:
		return math.MaxInt64
	case a < 0 && b < 0 && s >= 0:
		return math.MinInt64
	}
	return s
}

// Add returns a + b.
func (a Interval) Add(b Interval) Interval {
	f := uint32(a.frac) + uint32(b.frac)
	return Interval{ns: satAdd(satAdd(a.ns, b.ns), int64(f>>16)), frac: uint16(f)}
}

// Neg returns −a.
func (a Interval) Neg() Interval {
	if a.frac == 0 {
		if a.ns == math.MinInt64 {
			return Interval{ns: math.MaxInt64}
		}
		return Interval{ns: -a.ns}
	}
	return Interval{ns: -a.ns - 1, frac: uint16(65536 - uint32(a.frac))}
}

// Sub returns a − b.
func (a Interval) Sub(b Interval) Interval { return a.Add(b.Neg()) }

// Half returns a / 2, rounded down to 2^-16 ns.
func (a Interval) Half() Interval {
	h := Interval{ns: a.ns >> 1, frac: a.frac >> 1}
	if a.ns&1 != 0 {
		h.frac += 1 << 15
	}
	return h
}

// Duration returns a rounded to the nearest nanosecond.
func (a Interval) Duration() time.Duration {
	if a.frac >= 1<<15 {
		return time.Duration(satAdd(a.ns, 1))
	}
	return time.Duration(a.ns)
}

// Nanoseconds returns a in nanoseconds, as a float (exact below about 1.5 days).
func (a Interval) Nanoseconds() float64 { return float64(a.ns) + float64(a.frac)/65536 }

// Scaled returns a in units of 2^-16 ns, as correctionField holds it; ok is
// false when a does not fit (beyond about ±39 hours).
func (a Interval) Scaled() (v int64, ok bool) {
	if a.ns > math.MaxInt64>>16 || a.ns < math.MinInt64>>16 {
		return 0, false
	}
	return a.ns<<16 | int64(a.frac), true
}

// String formats a in nanoseconds with three decimals.
func (a Interval) String() string { return fmt.Sprintf("%.3fns", a.Nanoseconds()) }

// DelayMechanism is how the path delay to the master is measured.
type DelayMechanism uint8

// The delay mechanisms of clause 11.
const (
	// EndToEnd is the delay request-response mechanism (clause 11.3).
	EndToEnd DelayMechanism = iota + 1
	// PeerToPeer is the peer delay mechanism (clause 11.4); the mean link
	// delay comes from a PeerDelay and is given to the Slave.
	PeerToPeer
)

// Reasons the delay mechanisms drop a message.
var (
	ErrNilMessage         = errors.New("nil message")
	ErrWrongType          = errors.New("wrong message type")
	ErrNoMaster           = errors.New("no master selected")
	ErrNotFromMaster      = errors.New("message not from the current master")
	ErrUnmatched          = errors.New("no matching message")
	ErrWrongRequester     = errors.New("response to another port's request")
	ErrCorrectionRange    = errors.New("correction field too big")
	ErrTimestamp          = errors.New("unusable timestamp")
	ErrNoSync             = errors.New("no complete Sync before the Delay_Req")
	ErrOtherResponder     = errors.New("second responder to one Pdelay_Req")
	ErrMechanism          = errors.New("message of the other delay mechanism")
	ErrFollowUpNeverCame  = errors.New("two-step message replaced before its Follow_Up came")
	ErrResponseNeverCame  = errors.New("request replaced before its response came")
	ErrNegativeDelay      = errors.New("negative mean path delay")
	errNothingOutstanding = fmt.Errorf("nothing outstanding: %w", ErrUnmatched)
)

// Drops counts messages the delay mechanisms did not use, by reason.
type Drops struct {
	NilOrWrongType  uint64 // nil message or a message of another type
	NoMaster        uint64 // Sync, Follow_Up or Delay_Resp before a master was set
	NotFromMaster   uint64 // from a port other than the master
	Unmatched       uint64 // Follow_Up, Delay_Resp or Pdelay response matching nothing outstanding
	WrongRequester  uint64 // Delay_Resp or Pdelay response for another port
	BadCorrection   uint64 // correctionField too big
	BadTimestamp    uint64 // nanoseconds ≥ 10^9 or a zero local timestamp
	NoSync          uint64 // Delay_Resp whose Delay_Req was sent before any Sync
	OtherResponder  uint64 // Pdelay_Resp from a second responder
	WrongMechanism  uint64 // Delay_Resp on a peer-to-peer port
	MissingFollowUp uint64 // two-step Sync or Pdelay_Resp whose Follow_Up never came
	LostResponse    uint64 // Delay_Req or Pdelay_Req never answered
	NegativeDelay   uint64 // Delay_Req exchange whose mean path delay came out negative
}

// reasons lists each counter with the errors it counts and its name.
func (d *Drops) reasons() []struct {
	errs []error
	name string
	n    *uint64
} {
	return []struct {
		errs []error
		name string
		n    *uint64
	}{
		{[]error{ErrNilMessage, ErrWrongType}, "wrong_type", &d.NilOrWrongType},
		{[]error{ErrNoMaster}, "no_master", &d.NoMaster},
		{[]error{ErrNotFromMaster}, "not_from_master", &d.NotFromMaster},
		{[]error{ErrUnmatched}, "unmatched", &d.Unmatched},
		{[]error{ErrWrongRequester}, "wrong_requester", &d.WrongRequester},
		{[]error{ErrCorrectionRange}, "bad_correction", &d.BadCorrection},
		{[]error{ErrTimestamp}, "bad_timestamp", &d.BadTimestamp},
		{[]error{ErrNoSync}, "no_sync", &d.NoSync},
		{[]error{ErrOtherResponder}, "other_responder", &d.OtherResponder},
		{[]error{ErrMechanism}, "wrong_mechanism", &d.WrongMechanism},
		{[]error{ErrFollowUpNeverCame}, "missing_follow_up", &d.MissingFollowUp},
		{[]error{ErrResponseNeverCame}, "lost_response", &d.LostResponse},
		{[]error{ErrNegativeDelay}, "negative_delay", &d.NegativeDelay},
	}
}

// count adds err to the counter of its reason and returns it.
func (d *Drops) count(err error) error {
	if err == nil {
		return nil
	}
	for _, r := range d.reasons() {
		for _, e := range r.errs {
			if errors.Is(err, e) {
				*r.n++
				return err
			}
		}
	}
	return err
}

// byReason is d as counts by reason name, leaving out the zero ones.
func (d Drops) byReason() map[string]uint64 {
	out := map[string]uint64{}
	for _, r := range d.reasons() {
		if *r.n > 0 {
			out[r.name] = *r.n
		}
	}
	return out
}

// wireTime converts a PTP timestamp to a time.Time on the PTP timescale.
func wireTime(ts protocol.Timestamp) (time.Time, error) {
	if ts.Nanoseconds >= 1e9 {
		return time.Time{}, fmt.Errorf("ptp: timestamp nanoseconds %d: %w", ts.Nanoseconds, ErrTimestamp)
	}
	return time.Unix(int64(ts.Seconds.Seconds()), int64(ts.Nanoseconds)), nil
}

func localTime(t time.Time, what string) error {
	if t.IsZero() {
		return fmt.Errorf("ptp: %s: zero local timestamp: %w", what, ErrTimestamp)
	}
	return nil
}

// sub returns a − b as an Interval (time.Time.Sub saturates).
func sub(a, b time.Time) Interval { return IntervalOf(a.Sub(b)) }

// Measurement is one offset measurement against the master: what the caller
// turns into a sources.Measurement.
type Measurement struct {
	// Master is the port the Sync came from.
	Master protocol.PortIdentity
	// SequenceID is the Sync's sequence id.
	SequenceID uint16
	// TwoStep says t1 came from a Follow_Up.
	TwoStep bool
	// T1 is when the master sent the Sync, on the master's timescale.
	T1 time.Time
	// T2 is when the Sync arrived, by the local clock.
	T2 time.Time
	// T3 is when the Delay_Req used for Delay was sent, by the local clock
	// (zero with the peer delay mechanism).
	T3 time.Time
	// T4 is when the master received that Delay_Req, on the master's
	// timescale (zero with the peer delay mechanism).
	T4 time.Time
	// SyncCorrection is the sum of the correction fields of the Sync and
	// its Follow_Up.
	SyncCorrection Interval
	// DelayRespCorrection is the Delay_Resp's correction field.
	DelayRespCorrection Interval
	// Offset is offsetFromMaster: the local clock minus the master's.
	Offset Interval
	// Delay is meanPathDelay (end to end) or meanLinkDelay (peer to peer).
	Delay Interval
	// Timestamps says what kind of local timestamps T2 and T3 are.
	Timestamps netstamp.Stamping
}

// SlaveConfig configures a Slave.
type SlaveConfig struct {
	// Identity is the local port's identity, the requestingPortIdentity
	// of our Delay_Req messages.
	Identity protocol.PortIdentity
	// DomainNumber goes into the Delay_Req messages NewDelayReq builds.
	DomainNumber uint8
	// Mechanism is EndToEnd or PeerToPeer.
	Mechanism DelayMechanism
	// DelayAsymmetry is portDS.delayAsymmetry: how much longer the
	// master-to-slave path is than the mean path delay (clause 7.4.2:
	// tms = meanPathDelay + delayAsymmetry, tsm = meanPathDelay − delayAsymmetry).
	// Delay_Req messages are to be sent with correctionField 0; the
	// asymmetry is applied here.
	DelayAsymmetry time.Duration
	// Timestamps is the kind of local timestamps the caller passes in.
	Timestamps netstamp.Stamping
}

type syncHalf struct {
	valid   bool
	seq     uint16
	src     protocol.PortIdentity
	t       time.Time // t2 for a Sync, t1 for a Follow_Up
	corr    Interval
	twoStep bool
}

type completeSync struct {
	valid    bool
	seq      uint16
	twoStep  bool
	t1, t2   time.Time
	corr     Interval
	received time.Time
}

// Slave is the receiving side of the Sync/Follow_Up and Delay_Req/Delay_Resp
// exchanges of one port (clause 11.3): it matches the messages and computes
// the offset from the master and the mean path delay. It does no I/O and is
// not safe for concurrent use.
type Slave struct {
	cfg       SlaveConfig
	asym      Interval
	master    protocol.PortIdentity
	hasMaster bool

	sync     syncHalf // two-step Sync waiting for its Follow_Up
	followUp syncHalf // Follow_Up that came before its Sync
	last     completeSync

	req struct {
		valid bool
		seq   uint16
		t3    time.Time
		sync  completeSync
	}
	nextSeq uint16

	haveDelay bool
	delay     Interval
	t3, t4    time.Time
	respCorr  Interval
	drops     Drops
}

// NewSlave checks cfg and returns a Slave with no master.
func NewSlave(cfg SlaveConfig) (*Slave, error) {
	switch {
	case cfg.Mechanism != EndToEnd && cfg.Mechanism != PeerToPeer:
		return nil, fmt.Errorf("ptp: slave %s: unknown delay mechanism %d", cfg.Identity, cfg.Mechanism)
	case cfg.Timestamps > netstamp.StampHardware:
		return nil, fmt.Errorf("ptp: slave %s: unknown timestamp kind %s", cfg.Identity, cfg.Timestamps)
	case cfg.DelayAsymmetry > time.Second || cfg.DelayAsymmetry < -time.Second:
		return nil, fmt.Errorf("ptp: slave %s: delay asymmetry %s beyond ±1s", cfg.Identity, cfg.DelayAsymmetry)
	}
	return &Slave{cfg: cfg, asym: IntervalOf(cfg.DelayAsymmetry)}, nil
}

// SetMaster selects the port whose Sync, Follow_Up and Delay_Resp messages
// are used (the parent port of the Port's state machine). A new master
// starts the measurement afresh; a peer-to-peer Slave keeps its link delay,
// which does not depend on the master.
func (s *Slave) SetMaster(master protocol.PortIdentity) {
	if s.hasMaster && s.master == master {
		return
	}
	s.reset()
	s.master, s.hasMaster = master, true
}

// ClearMaster stops using any master's messages.
func (s *Slave) ClearMaster() { s.reset() }

func (s *Slave) reset() {
	fresh := Slave{cfg: s.cfg, asym: s.asym, nextSeq: s.nextSeq, drops: s.drops}
	if s.cfg.Mechanism == PeerToPeer {
		fresh.delay, fresh.haveDelay = s.delay, s.haveDelay
	}
	*s = fresh
}

// Drops returns the counts of messages not used, by reason.
func (s *Slave) Drops() Drops { return s.drops }

// MeanPathDelay returns the last mean path delay (end to end) or the mean
// link delay given by SetPeerDelay; ok is false before there is one.
func (s *Slave) MeanPathDelay() (d Interval, ok bool) { return s.delay, s.haveDelay }

// SetPeerDelay gives a peer-to-peer Slave the mean link delay measured by
// its PeerDelay.
func (s *Slave) SetPeerDelay(meanLinkDelay Interval) {
	s.delay = meanLinkDelay
	s.haveDelay = true
}

func (s *Slave) fromMaster(src protocol.PortIdentity, what string) error {
	if !s.hasMaster {
		return fmt.Errorf("ptp: %s from %s: %w", what, src, ErrNoMaster)
	}
	if src != s.master {
		return fmt.Errorf("ptp: %s from %s, master is %s: %w", what, src, s.master, ErrNotFromMaster)
	}
	return nil
}

// HandleSync takes a Sync message that arrived at t2 (local clock). It
// returns a measurement when the Sync completes one: a one-step Sync once a
// path delay is known, a two-step Sync whose Follow_Up came first.
func (s *Slave) HandleSync(msg *protocol.SyncDelayReq, t2 time.Time) (Measurement, bool, error) {
	m, ok, err := s.handleSync(msg, t2)
	return m, ok, s.drops.count(err)
}

func (s *Slave) handleSync(msg *protocol.SyncDelayReq, t2 time.Time) (Measurement, bool, error) {
	if msg == nil {
		return Measurement{}, false, fmt.Errorf("ptp: sync: %w", ErrNilMessage)
	}
	if mt := msg.MessageType(); mt != protocol.MessageSync {
		return Measurement{}, false, fmt.Errorf("ptp: sync: got %s: %w", mt, ErrWrongType)
	}
	if err := s.fromMaster(msg.SourcePortIdentity, "sync"); err != nil {
		return Measurement{}, false, err
	}
	if err := localTime(t2, "sync"); err != nil {
		return Measurement{}, false, err
	}
	corr, err := IntervalFromCorrection(msg.CorrectionField)
	if err != nil {
		return Measurement{}, false, err
	}
	if msg.FlagField&protocol.FlagTwoStep == 0 {
		t1, err := wireTime(msg.OriginTimestamp)
		if err != nil {
			return Measurement{}, false, err
		}
		m, ok := s.complete(msg.SequenceID, false, t1, t2, corr)
		return m, ok, nil
	}
	half := syncHalf{valid: true, seq: msg.SequenceID, src: msg.SourcePortIdentity, t: t2, corr: corr, twoStep: true}
	if fu := s.followUp; fu.valid && fu.seq == half.seq && fu.src == half.src {
		s.followUp = syncHalf{}
		m, ok := s.complete(half.seq, true, fu.t, t2, corr.Add(fu.corr))
		return m, ok, nil
	}
	s.followUp = syncHalf{}
	old := s.sync
	s.sync = half
	if old.valid {
		return Measurement{}, false, fmt.Errorf("ptp: sync %d: %w", old.seq, ErrFollowUpNeverCame)
	}
	return Measurement{}, false, nil
}

// HandleFollowUp takes the Follow_Up of a two-step Sync and returns a
// measurement when it completes one.
func (s *Slave) HandleFollowUp(msg *protocol.FollowUp) (Measurement, bool, error) {
	m, ok, err := s.handleFollowUp(msg)
	return m, ok, s.drops.count(err)
}

func (s *Slave) handleFollowUp(msg *protocol.FollowUp) (Measurement, bool, error) {
	if msg == nil {
		return Measurement{}, false, fmt.Errorf("ptp: follow_up: %w", ErrNilMessage)
	}
	if mt := msg.MessageType(); mt != protocol.MessageFollowUp {
		return Measurement{}, false, fmt.Errorf("ptp: follow_up: got %s: %w", mt, ErrWrongType)
	}
	if err := s.fromMaster(msg.SourcePortIdentity, "follow_up"); err != nil {
		return Measurement{}, false, err
	}
	corr, err := IntervalFromCorrection(msg.CorrectionField)
	if err != nil {
		return Measurement{}, false, err
	}
	t1, err := wireTime(msg.PreciseOriginTimestamp)
	if err != nil {
		return Measurement{}, false, err
	}
	seq := msg.SequenceID
	if sy := s.sync; sy.valid && sy.seq == seq && sy.src == msg.SourcePortIdentity {
		s.sync = syncHalf{}
		m, ok := s.complete(seq, true, t1, sy.t, sy.corr.Add(corr))
		return m, ok, nil
	}
	// A Follow_Up ahead of the pending Sync (or with none pending) may have
	// overtaken its Sync: keep it for HandleSync. Anything else is stale.
	if !s.sync.valid || ahead(seq, s.sync.seq) {
		s.followUp = syncHalf{valid: true, seq: seq, src: msg.SourcePortIdentity, t: t1, corr: corr}
		return Measurement{}, false, nil
	}
	return Measurement{}, false, fmt.Errorf("ptp: follow_up %d, waiting for %d: %w", seq, s.sync.seq, ErrUnmatched)
}

// ahead reports whether sequence id a comes after b, modulo 2^16.
func ahead(a, b uint16) bool { d := a - b; return d != 0 && d < 0x8000 }

func (s *Slave) complete(seq uint16, twoStep bool, t1, t2 time.Time, corr Interval) (Measurement, bool) {
	s.last = completeSync{valid: true, seq: seq, twoStep: twoStep, t1: t1, t2: t2, corr: corr}
	if !s.haveDelay {
		return Measurement{}, false
	}
	m := Measurement{
		Master:         s.master,
		SequenceID:     seq,
		TwoStep:        twoStep,
		T1:             t1,
		T2:             t2,
		SyncCorrection: corr,
		Delay:          s.delay,
		Timestamps:     s.cfg.Timestamps,
	}
	if s.cfg.Mechanism == EndToEnd {
		m.T3, m.T4, m.DelayRespCorrection = s.t3, s.t4, s.respCorr
	}
	// offsetFromMaster = t2 − t1 − corrections − delayAsymmetry − delay
	m.Offset = sub(t2, t1).Sub(corr).Sub(s.asym).Sub(s.delay)
	return m, true
}

// readyForDelayReq reports whether a Delay_Req sent now has a complete
// Sync to pair with, and no two-step Sync waits for its Follow_Up (the
// request would be paired with an older Sync).
func (s *Slave) readyForDelayReq() bool { return s.last.valid && !s.sync.valid }

// NewDelayReq builds the next Delay_Req message (correctionField 0). Send
// it, then call DelayReqSent with its sequence id and transmit timestamp.
func (s *Slave) NewDelayReq() *protocol.SyncDelayReq {
	seq := s.nextSeq
	s.nextSeq++
	return &protocol.SyncDelayReq{Header: protocol.Header{
		SdoIDAndMsgType:    protocol.NewSdoIDAndMsgType(protocol.MessageDelayReq, 0),
		Version:            protocol.Version,
		MessageLength:      44,
		DomainNumber:       s.cfg.DomainNumber,
		SourcePortIdentity: s.cfg.Identity,
		SequenceID:         seq,
		ControlField:       1,
		LogMessageInterval: 0x7f,
	}}
}

// DelayReqSent records that the Delay_Req with sequence id seq left at t3
// (local clock). The latest complete Sync is the one its response is paired
// with. An earlier request still unanswered counts as lost.
func (s *Slave) DelayReqSent(seq uint16, t3 time.Time) error {
	if err := localTime(t3, "delay_req"); err != nil {
		return s.drops.count(err)
	}
	lost := s.req.valid
	s.req.valid, s.req.seq, s.req.t3, s.req.sync = true, seq, t3, s.last
	if lost {
		s.drops.LostResponse++
	}
	return nil
}

// HandleDelayResp takes a Delay_Resp, matches it to the outstanding
// Delay_Req by sequence id and requestingPortIdentity, and returns the
// whole exchange as a Measurement: the Sync the Delay_Req followed (t1, t2)
// and the Delay_Req (t3, t4), with the new mean path delay
//
//	meanPathDelay = [(t2 − t1 − Sync and Follow_Up corrections − delayAsymmetry)
//	               + (t4 − t3 − Delay_Resp correction + delayAsymmetry)] / 2
//
// and that Sync's offset from the master with this delay, which is
// [(t2 − t1 − …) − (t4 − t3 − …)] / 2. Its error is half the difference of
// the two directions' delays, as an NTP exchange's is, and the exchange's
// round trip says how large that can be; a Sync's own offset, with the
// delay of an earlier exchange, has an error no delay bounds.
func (s *Slave) HandleDelayResp(msg *protocol.DelayResp) (Measurement, error) {
	m, err := s.handleDelayResp(msg)
	return m, s.drops.count(err)
}

func (s *Slave) handleDelayResp(msg *protocol.DelayResp) (Measurement, error) {
	if msg == nil {
		return Measurement{}, fmt.Errorf("ptp: delay_resp: %w", ErrNilMessage)
	}
	if mt := msg.MessageType(); mt != protocol.MessageDelayResp {
		return Measurement{}, fmt.Errorf("ptp: delay_resp: got %s: %w", mt, ErrWrongType)
	}
	if s.cfg.Mechanism != EndToEnd {
		return Measurement{}, fmt.Errorf("ptp: delay_resp on a peer-to-peer port: %w", ErrMechanism)
	}
	if err := s.fromMaster(msg.SourcePortIdentity, "delay_resp"); err != nil {
		return Measurement{}, err
	}
	if msg.RequestingPortIdentity != s.cfg.Identity {
		return Measurement{}, fmt.Errorf("ptp: delay_resp %d for %s: %w", msg.SequenceID, msg.RequestingPortIdentity, ErrWrongRequester)
	}
	if !s.req.valid {
		return Measurement{}, fmt.Errorf("ptp: delay_resp %d: %w", msg.SequenceID, errNothingOutstanding)
	}
	if msg.SequenceID != s.req.seq {
		return Measurement{}, fmt.Errorf("ptp: delay_resp %d, outstanding delay_req %d: %w", msg.SequenceID, s.req.seq, ErrUnmatched)
	}
	corr, err := IntervalFromCorrection(msg.CorrectionField)
	if err != nil {
		return Measurement{}, err
	}
	t4, err := wireTime(msg.ReceiveTimestamp)
	if err != nil {
		return Measurement{}, err
	}
	sy := s.req.sync
	t3 := s.req.t3
	s.req.valid = false
	if !sy.valid {
		return Measurement{}, fmt.Errorf("ptp: delay_resp %d: %w", msg.SequenceID, ErrNoSync)
	}
	ms := sub(sy.t2, sy.t1).Sub(sy.corr).Sub(s.asym)
	sm := sub(t4, t3).Sub(corr).Add(s.asym)
	delay := ms.Add(sm).Half()
	if delay.ns < 0 {
		// The timestamps are wrong by more than the path's delay: the
		// local clock was slewed fast between t2 and t3, or a stamp was
		// late. The offset is as wrong, and a zero delay given to the
		// engine would stand as the path's minimum for its whole window.
		return Measurement{}, fmt.Errorf("ptp: delay_resp %d: mean path delay %v: %w", msg.SequenceID, delay, ErrNegativeDelay)
	}
	s.delay = delay
	s.haveDelay = true
	s.t3, s.t4, s.respCorr = t3, t4, corr
	return Measurement{
		Master:              s.master,
		SequenceID:          sy.seq,
		TwoStep:             sy.twoStep,
		T1:                  sy.t1,
		T2:                  sy.t2,
		T3:                  t3,
		T4:                  t4,
		SyncCorrection:      sy.corr,
		DelayRespCorrection: corr,
		Offset:              ms.Sub(s.delay),
		Delay:               s.delay,
		Timestamps:          s.cfg.Timestamps,
	}, nil
}

// PeerDelayConfig configures a PeerDelay.
type PeerDelayConfig struct {
	// Identity is the local port's identity.
	Identity protocol.PortIdentity
	// DomainNumber goes into the Pdelay_Req messages NewRequest builds.
	DomainNumber uint8
	// Timestamps is the kind of local timestamps the caller passes in.
	Timestamps netstamp.Stamping
	// RateRatioWindow is how many exchanges apart the neighborRateRatio is
	// measured (2..64); 0 means 8.
	RateRatioWindow int
}

// PeerDelayResult is one completed peer delay exchange.
type PeerDelayResult struct {
	// Responder is the port that answered.
	Responder protocol.PortIdentity
	// SequenceID is the exchange's sequence id.
	SequenceID uint16
	// TwoStep says the responder sent a Pdelay_Resp_Follow_Up.
	TwoStep bool
	// T1 is when the Pdelay_Req left, by the local clock.
	T1 time.Time
	// T2 is when the responder received it (requestReceiptTimestamp; zero
	// from a one-step responder, which reports only its turnaround).
	T2 time.Time
	// T3 is when the responder sent the Pdelay_Resp
	// (responseOriginTimestamp; zero from a one-step responder).
	T3 time.Time
	// T4 is when the Pdelay_Resp arrived, by the local clock.
	T4 time.Time
	// Correction is the sum of the correction fields of the Pdelay_Resp
	// and its follow-up (a one-step responder's turnaround time is in it).
	Correction Interval
	// MeanLinkDelay is [(t4 − t1) − (t3 − t2) − Correction] / 2.
	MeanLinkDelay Interval
	// NeighborRateRatio is the responder's clock frequency over ours,
	// measured over up to RateRatioWindow exchanges; valid only when
	// RateRatioValid (two-step responders, from the second exchange on).
	NeighborRateRatio float64
	// RateRatioValid says whether NeighborRateRatio was measured.
	RateRatioValid bool
	// Timestamps says what kind of local timestamps T1 and T4 are.
	Timestamps netstamp.Stamping
}

type rateSample struct {
	t3, t4 time.Time
}

// PeerDelay is the requesting side of the peer delay mechanism (clause
// 11.4): it matches Pdelay_Resp and Pdelay_Resp_Follow_Up messages to the
// outstanding Pdelay_Req and computes the mean link delay and the
// neighborRateRatio. It does no I/O and is not safe for concurrent use.
type PeerDelay struct {
	cfg     PeerDelayConfig
	nextSeq uint16

	req struct {
		valid     bool
		seq       uint16
		t1        time.Time
		answered  bool // a Pdelay_Resp came
		responder protocol.PortIdentity
		t2, t4    time.Time
		corr      Interval
		done      bool
	}
	samples   []rateSample // two-step exchanges with the current responder, oldest first
	responder protocol.PortIdentity
	drops     Drops
}

// NewPeerDelay checks cfg and returns a PeerDelay.
func NewPeerDelay(cfg PeerDelayConfig) (*PeerDelay, error) {
	if cfg.RateRatioWindow == 0 {
		cfg.RateRatioWindow = 8
	}
	switch {
	case cfg.RateRatioWindow < 2 || cfg.RateRatioWindow > 64:
		return nil, fmt.Errorf("ptp: peer delay %s: rate ratio window %d outside 2..64", cfg.Identity, cfg.RateRatioWindow)
	case cfg.Timestamps > netstamp.StampHardware:
		return nil, fmt.Errorf("ptp: peer delay %s: unknown timestamp kind %s", cfg.Identity, cfg.Timestamps)
	}
	return &PeerDelay{cfg: cfg}, nil
}

// Drops returns the counts of messages not used, by reason.
func (p *PeerDelay) Drops() Drops { return p.drops }

// NewRequest builds the next Pdelay_Req. Send it, then call RequestSent
// with its sequence id and transmit timestamp.
func (p *PeerDelay) NewRequest() *protocol.PDelayReq {
	seq := p.nextSeq
	p.nextSeq++
	req := protocol.ReqPDelay(p.cfg.Identity.ClockIdentity, p.cfg.Identity.PortNumber, seq)
	req.DomainNumber = p.cfg.DomainNumber
	req.ControlField = 5
	return req
}

// RequestSent records that the Pdelay_Req with sequence id seq left at t1
// (local clock). An earlier exchange not completed counts as lost.
func (p *PeerDelay) RequestSent(seq uint16, t1 time.Time) error {
	if err := localTime(t1, "pdelay_req"); err != nil {
		return p.drops.count(err)
	}
	if p.req.valid && !p.req.done {
		if p.req.answered {
			p.drops.MissingFollowUp++
		} else {
			p.drops.LostResponse++
		}
	}
	p.req.valid, p.req.seq, p.req.t1 = true, seq, t1
	p.req.answered, p.req.done = false, false
	return nil
}

// HandleResp takes a Pdelay_Resp that arrived at t4 (local clock). From a
// one-step responder it completes the exchange; from a two-step one the
// result comes with HandleRespFollowUp.
func (p *PeerDelay) HandleResp(msg *protocol.PDelayResp, t4 time.Time) (PeerDelayResult, bool, error) {
	r, ok, err := p.handleResp(msg, t4)
	return r, ok, p.drops.count(err)
}

func (p *PeerDelay) handleResp(msg *protocol.PDelayResp, t4 time.Time) (PeerDelayResult, bool, error) {
	if msg == nil {
		return PeerDelayResult{}, false, fmt.Errorf("ptp: pdelay_resp: %w", ErrNilMessage)
	}
	if mt := msg.MessageType(); mt != protocol.MessagePDelayResp {
		return PeerDelayResult{}, false, fmt.Errorf("ptp: pdelay_resp: got %s: %w", mt, ErrWrongType)
	}
	if err := localTime(t4, "pdelay_resp"); err != nil {
		return PeerDelayResult{}, false, err
	}
	if msg.RequestingPortIdentity != p.cfg.Identity {
		return PeerDelayResult{}, false, fmt.Errorf("ptp: pdelay_resp %d for %s: %w", msg.SequenceID, msg.RequestingPortIdentity, ErrWrongRequester)
	}
	if !p.req.valid || msg.SequenceID != p.req.seq {
		return PeerDelayResult{}, false, fmt.Errorf("ptp: pdelay_resp %d, outstanding %d (valid %t): %w", msg.SequenceID, p.req.seq, p.req.valid, ErrUnmatched)
	}
	if p.req.answered {
		if msg.SourcePortIdentity != p.req.responder {
			p.req.done = true // the exchange is spoilt (802.1AS: more than one responder)
			return PeerDelayResult{}, false, fmt.Errorf("ptp: pdelay_resp %d from %s after %s: %w", msg.SequenceID, msg.SourcePortIdentity, p.req.responder, ErrOtherResponder)
		}
		return PeerDelayResult{}, false, fmt.Errorf("ptp: pdelay_resp %d repeated: %w", msg.SequenceID, ErrUnmatched)
	}
	corr, err := IntervalFromCorrection(msg.CorrectionField)
	if err != nil {
		return PeerDelayResult{}, false, err
	}
	p.req.answered, p.req.responder, p.req.t4, p.req.corr = true, msg.SourcePortIdentity, t4, corr
	if p.responder != msg.SourcePortIdentity {
		p.responder = msg.SourcePortIdentity
		p.samples = p.samples[:0]
	}
	if msg.FlagField&protocol.FlagTwoStep == 0 {
		p.req.done = true
		r := p.result(false, time.Time{}, time.Time{}, corr)
		return r, true, nil
	}
	t2, err := wireTime(msg.RequestReceiptTimestamp)
	if err != nil {
		p.req.done = true
		return PeerDelayResult{}, false, err
	}
	p.req.t2 = t2
	return PeerDelayResult{}, false, nil
}

// HandleRespFollowUp takes the Pdelay_Resp_Follow_Up of a two-step
// responder and completes the exchange.
func (p *PeerDelay) HandleRespFollowUp(msg *protocol.PDelayRespFollowUp) (PeerDelayResult, bool, error) {
	r, ok, err := p.handleRespFollowUp(msg)
	return r, ok, p.drops.count(err)
}

func (p *PeerDelay) handleRespFollowUp(msg *protocol.PDelayRespFollowUp) (PeerDelayResult, bool, error) {
	if msg == nil {
		return PeerDelayResult{}, false, fmt.Errorf("ptp: pdelay_resp_follow_up: %w", ErrNilMessage)
	}
	if mt := msg.MessageType(); mt != protocol.MessagePDelayRespFollowUp {
		return PeerDelayResult{}, false, fmt.Errorf("ptp: pdelay_resp_follow_up: got %s: %w", mt, ErrWrongType)
	}
	if msg.RequestingPortIdentity != p.cfg.Identity {
		return PeerDelayResult{}, false, fmt.Errorf("ptp: pdelay_resp_follow_up %d for %s: %w", msg.SequenceID, msg.RequestingPortIdentity, ErrWrongRequester)
	}
	if !p.req.valid || !p.req.answered || p.req.done || msg.SequenceID != p.req.seq || msg.SourcePortIdentity != p.req.responder {
		return PeerDelayResult{}, false, fmt.Errorf("ptp: pdelay_resp_follow_up %d from %s: %w", msg.SequenceID, msg.SourcePortIdentity, ErrUnmatched)
	}
	corr, err := IntervalFromCorrection(msg.CorrectionField)
	if err != nil {
		return PeerDelayResult{}, false, err
	}
	t3, err := wireTime(msg.ResponseOriginTimestamp)
	if err != nil {
		return PeerDelayResult{}, false, err
	}
	p.req.done = true
	return p.result(true, p.req.t2, t3, p.req.corr.Add(corr)), true, nil
}

func (p *PeerDelay) result(twoStep bool, t2, t3 time.Time, corr Interval) PeerDelayResult {
	r := PeerDelayResult{
		Responder:  p.req.responder,
		SequenceID: p.req.seq,
		TwoStep:    twoStep,
		T1:         p.req.t1,
		T2:         t2,
		T3:         t3,
		T4:         p.req.t4,
		Correction: corr,
		Timestamps: p.cfg.Timestamps,
	}
	turnaround := Interval{}
	if twoStep {
		turnaround = sub(t3, t2)
	}
	r.MeanLinkDelay = sub(r.T4, r.T1).Sub(turnaround).Sub(corr).Half()
	if twoStep && !t3.IsZero() {
		// The Follow_Up's correction (beyond the Pdelay_Resp's) carries the
		// sub-nanosecond part of t3; whole-ns precision is enough here.
		if len(p.samples) == p.cfg.RateRatioWindow {
			copy(p.samples, p.samples[1:])
			p.samples = p.samples[:len(p.samples)-1]
		}
		p.samples = append(p.samples, rateSample{t3: t3, t4: r.T4})
		if len(p.samples) >= 2 {
			first, last := p.samples[0], p.samples[len(p.samples)-1]
			local := last.t4.Sub(first.t4)
			remote := last.t3.Sub(first.t3)
			if local > 0 && remote > 0 {
				ratio := float64(remote) / float64(local)
				if math.Abs(ratio-1) < 1e-3 {
					r.NeighborRateRatio, r.RateRatioValid = ratio, true
				}
			}
		}
	}
	return r
}

// linkDelayWindow is how many peer delay exchanges the link delay given to
// the Slave is the median of. The link delay is a property of the cable and
// the two ports, constant while the link is up; a single exchange's value
// carries both directions' timestamp noise, which, fed to every Sync until
// the next exchange, would move all their offsets together.
const linkDelayWindow = 15

// medianFilter is the running median of the last linkDelayWindow values.
type medianFilter struct {
	ring [linkDelayWindow]Interval
	n, i int
}

// add records v and returns the median of the values recorded.
func (f *medianFilter) add(v Interval) Interval {
	f.ring[f.i] = v
	f.i = (f.i + 1) % len(f.ring)
	f.n = min(f.n+1, len(f.ring))
	var sorted [linkDelayWindow]Interval
	copy(sorted[:], f.ring[:f.n])
	slices.SortFunc(sorted[:f.n], func(a, b Interval) int { return cmp.Compare(a.Nanoseconds(), b.Nanoseconds()) })
	return sorted[f.n/2]
}
