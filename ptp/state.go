package ptp

import (
	"fmt"
	"strings"
	"time"

	"github.com/facebook/time/ptp/protocol"
)

// DefaultAnnounceReceiptTimeout is portDS.announceReceiptTimeout of the
// default profiles: the number of announce intervals without an Announce
// after which the master is taken to be gone.
const DefaultAnnounceReceiptTimeout = 3

// PortConfig configures a Port.
type PortConfig struct {
	// Identity is the port's identity; its clock identity must be the
	// clock's, its port number 1..65534.
	Identity protocol.PortIdentity
	// Clock is the local clock's default dataset.
	Clock DefaultDataset
	// MasterOnly keeps the port out of the SLAVE state (portDS.masterOnly).
	// It cannot be combined with Clock.SlaveOnly.
	MasterOnly bool
	// LogAnnounceInterval is portDS.logAnnounceInterval, -8..8.
	LogAnnounceInterval protocol.LogInterval
	// AnnounceReceiptTimeout is portDS.announceReceiptTimeout, at least 2;
	// 0 means DefaultAnnounceReceiptTimeout.
	AnnounceReceiptTimeout int
	// ForeignMasterCapacity bounds the foreign master table; 0 means
	// DefaultForeignMasterCapacity.
	ForeignMasterCapacity int
	// TimeProperties are the local clock's time properties, in force while
	// the port is its own grandmaster.
	TimeProperties TimeProperties
}

// Port is the protocol engine of one port of an ordinary clock, without I/O:
// the foreign master table, the best master clock algorithm and the port
// state machine of clause 9.2.5 (figure 30, reduced to what an ordinary
// clock with one port can do). The caller feeds it Announce messages and
// calls Tick regularly (at least once per announce interval); Port is not
// safe for concurrent use.
type Port struct {
	cfg      PortConfig
	interval time.Duration // 2^logAnnounceInterval
	timeout  time.Duration // announceReceiptTimeout intervals

	state  protocol.PortState
	reason string
	since  time.Time

	table                 foreignMasterTable
	announceDeadline      time.Time
	qualificationDeadline time.Time

	master    *ForeignMaster // while UNCALIBRATED or SLAVE
	parent    ParentDataset
	timeProps TimeProperties
	decision  Decision

	masterChanged bool // set by apply when an UNCALIBRATED or SLAVE port changes master
}

// NewPort checks cfg and returns a port in the INITIALIZING state; call
// Initialize to start it.
func NewPort(cfg PortConfig) (*Port, error) {
	if cfg.AnnounceReceiptTimeout == 0 {
		cfg.AnnounceReceiptTimeout = DefaultAnnounceReceiptTimeout
	}
	if cfg.ForeignMasterCapacity == 0 {
		cfg.ForeignMasterCapacity = DefaultForeignMasterCapacity
	}
	switch {
	case cfg.Identity.ClockIdentity != cfg.Clock.ClockIdentity:
		return nil, fmt.Errorf("ptp: port %s: clock identity differs from the clock's %s", cfg.Identity, cfg.Clock.ClockIdentity)
	case cfg.Identity.PortNumber == 0 || cfg.Identity.PortNumber == 0xffff:
		return nil, fmt.Errorf("ptp: port %s: port number must be 1..65534", cfg.Identity)
	case cfg.MasterOnly && cfg.Clock.SlaveOnly:
		return nil, fmt.Errorf("ptp: port %s: master-only and slave-only at once", cfg.Identity)
	case cfg.LogAnnounceInterval < -8 || cfg.LogAnnounceInterval > 8:
		return nil, fmt.Errorf("ptp: port %s: logAnnounceInterval %d outside -8..8", cfg.Identity, cfg.LogAnnounceInterval)
	case cfg.AnnounceReceiptTimeout < 2 || cfg.AnnounceReceiptTimeout > 255:
		return nil, fmt.Errorf("ptp: port %s: announceReceiptTimeout %d outside 2..255", cfg.Identity, cfg.AnnounceReceiptTimeout)
	case cfg.ForeignMasterCapacity < 1 || cfg.ForeignMasterCapacity > 1024:
		return nil, fmt.Errorf("ptp: port %s: foreign master capacity %d outside 1..1024", cfg.Identity, cfg.ForeignMasterCapacity)
	}
	iv := cfg.LogAnnounceInterval.Duration()
	p := &Port{
		cfg:      cfg,
		interval: iv,
		timeout:  time.Duration(cfg.AnnounceReceiptTimeout) * iv,
		state:    protocol.PortStateInitializing,
		reason:   "initializing",
		table:    foreignMasterTable{capacity: cfg.ForeignMasterCapacity},
	}
	p.becomeOwnGrandmaster()
	return p, nil
}

// State returns the port's state.
func (p *Port) State() protocol.PortState { return p.state }

// Reason says in one line why the port is in its state, for example
// "listening: announce receipt timeout: no announce from master
// 0a0a0a.fffe.000010-1 (grandmaster 0a0a0a.fffe.000010) for 3s".
func (p *Port) Reason() string { return p.reason }

// Since returns when the port entered its state.
func (p *Port) Since() time.Time { return p.since }

// Parent returns the parent dataset: the master and grandmaster this clock
// follows, or the clock itself when it is its own grandmaster.
func (p *Port) Parent() ParentDataset { return p.parent }

// Master returns the foreign master the port is synchronizing to, as last
// announced; ok is false unless the port is UNCALIBRATED or SLAVE.
func (p *Port) Master() (m ForeignMaster, ok bool) {
	if p.master == nil {
		return ForeignMaster{}, false
	}
	return *p.master, true
}

// TimeProperties returns the time properties in force: the master's while
// the port follows one, the local clock's otherwise.
func (p *Port) TimeProperties() TimeProperties { return p.timeProps }

// LastDecision returns the last recommendation of the state decision
// algorithm.
func (p *Port) LastDecision() Decision { return p.decision }

// ForeignMasterStatus is one entry of the foreign master table as
// ForeignMasters reports it.
type ForeignMasterStatus struct {
	ForeignMaster
	// LastAnnounce is when the last Announce of this master arrived.
	LastAnnounce time.Time
	// Qualified says whether the master passes the qualification rule now.
	Qualified bool
}

// ForeignMasters lists the foreign master table at now.
func (p *Port) ForeignMasters(now time.Time) []ForeignMasterStatus {
	out := make([]ForeignMasterStatus, 0, len(p.table.records))
	for _, r := range p.table.records {
		out = append(out, ForeignMasterStatus{
			ForeignMaster: r.ds,
			LastAnnounce:  r.arrived[0],
			Qualified:     r.qualified(now, p.interval, p.cfg.AnnounceReceiptTimeout),
		})
	}
	return out
}

// set moves the port to state s and reports whether the state changed.
func (p *Port) set(s protocol.PortState, now time.Time, why string) bool {
	p.reason = strings.ToLower(s.String()) + ": " + why
	if s == p.state {
		return false
	}
	usesTimer := func(s protocol.PortState) bool {
		switch s {
		case protocol.PortStateListening, protocol.PortStatePassive,
			protocol.PortStateUncalibrated, protocol.PortStateSlave:
			return true
		}
		return false
	}
	if usesTimer(s) && !usesTimer(p.state) {
		p.announceDeadline = now.Add(p.timeout)
	}
	if s != protocol.PortStateUncalibrated && s != protocol.PortStateSlave {
		p.master = nil
	}
	p.state = s
	p.since = now
	return true
}

func (p *Port) becomeOwnGrandmaster() {
	p.master = nil
	p.parent = parentFromDefault(p.cfg.Clock)
	p.timeProps = p.cfg.TimeProperties
}

// restart is the INITIALIZING state: the tables are cleared and, the
// initialization having nothing to wait for, the port goes on to LISTENING.
func (p *Port) restart(now time.Time, why string) bool {
	old := p.state
	p.table.records = nil
	p.becomeOwnGrandmaster()
	p.decision = Decision{}
	p.state = protocol.PortStateInitializing
	p.set(protocol.PortStateListening, now, why)
	return old != p.state
}

// Initialize is the INITIALIZE event: the port starts afresh in LISTENING.
func (p *Port) Initialize(now time.Time) bool {
	return p.restart(now, "initialized, waiting for announces")
}

// Disable is the DESIGNATED_DISABLED event.
func (p *Port) Disable(now time.Time) bool {
	p.becomeOwnGrandmaster()
	return p.set(protocol.PortStateDisabled, now, "disabled by configuration")
}

// Enable is the DESIGNATED_ENABLED event: a disabled port initializes.
func (p *Port) Enable(now time.Time) bool {
	if p.state != protocol.PortStateDisabled {
		return false
	}
	return p.restart(now, "enabled, waiting for announces")
}

// Fault is the FAULT_DETECTED event; why says what went wrong. A disabled
// port stays disabled.
func (p *Port) Fault(now time.Time, why string) bool {
	if p.state == protocol.PortStateDisabled {
		return false
	}
	p.becomeOwnGrandmaster()
	return p.set(protocol.PortStateFaulty, now, why)
}

// FaultCleared is the FAULT_CLEARED event: a faulty port initializes.
func (p *Port) FaultCleared(now time.Time) bool {
	if p.state != protocol.PortStateFaulty {
		return false
	}
	return p.restart(now, "fault cleared, waiting for announces")
}

// MasterClockSelected is the MASTER_CLOCK_SELECTED event: the caller's servo
// has settled on the master, and an UNCALIBRATED port becomes SLAVE.
func (p *Port) MasterClockSelected(now time.Time) bool {
	if p.state != protocol.PortStateUncalibrated || p.master == nil {
		return false
	}
	return p.set(protocol.PortStateSlave, now, "synchronizing to "+describeMaster(*p.master))
}

// SynchronizationFault is the SYNCHRONIZATION_FAULT event: a SLAVE port
// goes back to UNCALIBRATED; why says what went wrong.
func (p *Port) SynchronizationFault(now time.Time, why string) bool {
	if p.state != protocol.PortStateSlave {
		return false
	}
	return p.set(protocol.PortStateUncalibrated, now, "synchronization fault: "+why)
}

func describeMaster(m ForeignMaster) string {
	return fmt.Sprintf("master %s (grandmaster %s, class %d, %d steps removed)",
		m.SenderPortIdentity, m.GrandmasterIdentity, m.GrandmasterClockQuality.ClockClass, m.StepsRemoved)
}

// SetClock replaces the local clock's default dataset and time properties,
// as its quality changes (the engine synchronizes, loses its sources) or a
// leap second nears. A port that is its own grandmaster announces them at
// once; the next Tick runs the state decision with them. The clock
// identity, domain and slave-only setting cannot change.
func (p *Port) SetClock(ds DefaultDataset, tp TimeProperties) error {
	old := p.cfg.Clock
	if ds.ClockIdentity != old.ClockIdentity || ds.DomainNumber != old.DomainNumber || ds.SlaveOnly != old.SlaveOnly {
		return fmt.Errorf("ptp: port %s: the clock's identity, domain and slave-only setting cannot change", p.cfg.Identity)
	}
	p.cfg.Clock, p.cfg.TimeProperties = ds, tp
	if p.master == nil {
		p.becomeOwnGrandmaster()
	}
	return nil
}

// HandleAnnounce records an Announce message received at now in the
// foreign master table. It returns an error wrapping one of ErrNilMessage,
// ErrPortNotRunning, ErrWrongDomain, ErrFromSelf, ErrStepsRemoved or
// ErrDuplicateAnnounce when the message is not used. State changes happen
// in Tick.
func (p *Port) HandleAnnounce(msg *protocol.Announce, now time.Time) error {
	if msg == nil {
		return fmt.Errorf("ptp: announce: %w", ErrNilMessage)
	}
	switch p.state {
	case protocol.PortStateInitializing, protocol.PortStateFaulty, protocol.PortStateDisabled:
		return fmt.Errorf("ptp: announce from %s in state %s: %w", msg.SourcePortIdentity, p.state, ErrPortNotRunning)
	}
	switch {
	case msg.DomainNumber != p.cfg.Clock.DomainNumber:
		return fmt.Errorf("ptp: announce from %s in domain %d, ours is %d: %w",
			msg.SourcePortIdentity, msg.DomainNumber, p.cfg.Clock.DomainNumber, ErrWrongDomain)
	case msg.SourcePortIdentity.ClockIdentity == p.cfg.Clock.ClockIdentity:
		return fmt.Errorf("ptp: announce from %s: %w", msg.SourcePortIdentity, ErrFromSelf)
	case msg.StepsRemoved >= 255:
		return fmt.Errorf("ptp: announce from %s with stepsRemoved %d: %w", msg.SourcePortIdentity, msg.StepsRemoved, ErrStepsRemoved)
	}
	ds := ForeignMasterFromAnnounce(msg, p.cfg.Identity)
	if err := p.table.add(ds, msg.SequenceID, now); err != nil {
		return err
	}
	switch p.state {
	case protocol.PortStateUncalibrated, protocol.PortStateSlave:
		if p.master != nil && p.master.SenderPortIdentity == ds.SenderPortIdentity {
			p.follow(ds)
			p.announceDeadline = now.Add(p.timeout)
		}
	case protocol.PortStateListening, protocol.PortStatePassive:
		p.announceDeadline = now.Add(p.timeout)
	}
	return nil
}

func (p *Port) follow(m ForeignMaster) {
	p.master = &m
	p.parent = parentFromMaster(m)
	p.timeProps = m.TimeProperties
}

// Tick runs the timers (announce receipt timeout, qualification timeout)
// and the state decision at now, and reports whether the state or, in
// UNCALIBRATED and SLAVE, the master changed.
func (p *Port) Tick(now time.Time) bool {
	old := p.state
	p.masterChanged = false
	switch p.state {
	case protocol.PortStateListening, protocol.PortStatePassive,
		protocol.PortStateUncalibrated, protocol.PortStateSlave:
		if !now.Before(p.announceDeadline) {
			p.announceTimeout(now)
		}
	case protocol.PortStatePreMaster:
		if !now.Before(p.qualificationDeadline) {
			p.set(protocol.PortStateMaster, now, p.decision.Code+": "+p.decision.Why)
		}
	case protocol.PortStateInitializing, protocol.PortStateFaulty, protocol.PortStateDisabled:
		return false
	}
	p.table.expire(now, p.interval)
	erbest := p.table.best(now, p.interval, p.cfg.AnnounceReceiptTimeout)
	p.apply(StateDecision(p.cfg.Clock, erbest, p.state, DecisionOptions{MasterOnly: p.cfg.MasterOnly}), erbest, now)
	return p.state != old || p.masterChanged
}

// announceTimeout is ANNOUNCE_RECEIPT_TIMEOUT_EXPIRES. The reason names
// the master that went silent, if the port followed one; a slave-only port
// that stays LISTENING keeps that reason through the timeouts that follow,
// so that it still says which master was lost.
func (p *Port) announceTimeout(now time.Time) {
	why := fmt.Sprintf("announce receipt timeout: no announce from a master for %s", p.timeout)
	if p.master != nil {
		why = fmt.Sprintf("announce receipt timeout: no announce from master %s (grandmaster %s) for %s",
			p.master.SenderPortIdentity, p.master.GrandmasterIdentity, p.timeout)
		p.table.remove(p.master.SenderPortIdentity)
	}
	p.becomeOwnGrandmaster()
	if p.cfg.Clock.SlaveOnly {
		p.announceDeadline = now.Add(p.timeout)
		if p.state == protocol.PortStateListening && p.decision.Code == "TIMEOUT" {
			return
		}
		p.decision = Decision{Code: "TIMEOUT", Why: why}
		p.set(protocol.PortStateListening, now, why)
		return
	}
	p.decision = Decision{Code: "TIMEOUT", Why: why}
	p.set(protocol.PortStateMaster, now, why)
}

// apply carries out a recommended state (STATE_DECISION_EVENT).
func (p *Port) apply(d Decision, erbest *ForeignMaster, now time.Time) {
	switch d.State {
	case protocol.PortStateListening:
		if p.state == protocol.PortStateListening {
			return // keep the reason that brought the port here
		}
		p.decision = d
		p.becomeOwnGrandmaster()
		p.set(protocol.PortStateListening, now, d.Why)
	case protocol.PortStateMaster:
		p.becomeOwnGrandmaster()
		switch p.state {
		case protocol.PortStateMaster, protocol.PortStatePreMaster:
			return
		}
		p.decision = d
		// The standard's qualification timeout for M1 and M2 is zero
		// intervals; like linuxptp we wait (1 + stepsRemoved) = 1 announce
		// interval so that a port does not start sending on one decision.
		p.qualificationDeadline = now.Add(p.interval)
		p.set(protocol.PortStatePreMaster, now, fmt.Sprintf("%s: %s; master after %s", d.Code, d.Why, p.interval))
	case protocol.PortStatePassive:
		p.decision = d
		p.becomeOwnGrandmaster()
		p.set(protocol.PortStatePassive, now, d.Code+": "+d.Why)
	case protocol.PortStateSlave:
		p.decision = d
		inSlave := p.state == protocol.PortStateUncalibrated || p.state == protocol.PortStateSlave
		same := p.master != nil && p.master.SenderPortIdentity == erbest.SenderPortIdentity
		p.follow(*erbest)
		if inSlave && same {
			return
		}
		if inSlave {
			p.announceDeadline = now.Add(p.timeout)
			p.since = now
			p.masterChanged = true
		}
		p.set(protocol.PortStateUncalibrated, now, "new "+describeMaster(*erbest)+"; waiting for the clock to settle")
	}
}
