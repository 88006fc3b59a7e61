package ptp

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/netip"
	"time"

	"github.com/facebook/time/ptp/protocol"
	"go.uber.org/zap"

	"github.com/timed-project/timed/internal/netstamp"
	"github.com/timed-project/timed/sources"
)

// Role is what a port may become, as the configuration names it.
type Role string

// The roles of a port: the best master clock algorithm decides between
// master and slave (auto), or the port only ever follows a master
// (slave_only, portDS of a slave-only clock) or only ever is one
// (master_only, portDS.masterOnly).
const (
	RoleAuto       Role = "auto"
	RoleSlaveOnly  Role = "slave_only"
	RoleMasterOnly Role = "master_only"
)

// SourceConfig configures a PTP ordinary clock port.
type SourceConfig struct {
	// Interface is the network interface.
	Interface string
	// Role is what the port may become; empty means RoleSlaveOnly.
	Role Role
	// Quality reports the local clock's quality whenever the port may
	// become master (about once a second); nil means a clock that is
	// never synchronized (class 248).
	Quality func() Quality
	// Network is the transport.
	Network Network
	// Domain is the PTP domain number.
	Domain uint8
	// Priority1 and Priority2 are the local clock's priorities.
	Priority1, Priority2 uint8
	// LogAnnounceInterval, LogSyncInterval and LogMinDelayReqInterval are
	// the intervals the port expects and uses (log2 s); a master's
	// Delay_Resp may ask for another delay request interval.
	LogAnnounceInterval, LogSyncInterval, LogMinDelayReqInterval int8
	// AnnounceReceiptTimeout is in announce intervals (0: the default, 3).
	AnnounceReceiptTimeout int
	// DelayAsymmetry is portDS.delayAsymmetry.
	DelayAsymmetry time.Duration
	// DelayMechanism is EndToEnd (Delay_Req after Sync) or PeerToPeer
	// (Pdelay_Req every LogMinDelayReqInterval, in every state); zero
	// means EndToEnd.
	DelayMechanism DelayMechanism
	// EventPort and GeneralPort override the UDP ports (0: 319 and 320),
	// for tests.
	EventPort, GeneralPort uint16
	// UnicastMasters, when not empty, are the masters asked for unicast
	// service (unicast negotiation, UDP only); the port then relies on
	// their unicast messages alone.
	UnicastMasters []netip.Addr
	// UnicastListen serves unicast clients in the MASTER state: it grants
	// their requests for unicast Announce, Sync and Delay_Resp (unicast
	// negotiation, UDP only; see UnicastMaxClients and UnicastMaxGrant),
	// beside the multicast messages.
	UnicastListen bool
	// HardwareStamps uses the network card's hardware timestamps: the
	// timebase must then be a HardwareTimebase on the interface's PTP
	// hardware clock.
	HardwareStamps bool
}

// Source is a PTP ordinary clock port, as a time source of the engine: it
// runs the port state machine and the end-to-end or peer delay mechanism.
// With the peer delay mechanism the port measures the link delay to its
// neighbour and answers the neighbour's Pdelay_Req in every state. In the
// SLAVE and UNCALIBRATED states it reports each completed Sync as a
// measurement; in the MASTER state it sends Announce, two-step Sync and
// Follow_Up and answers Delay_Req, on the disciplined clock's time as TAI.
type Source struct {
	cfg    SourceConfig
	tb     sources.Timebase
	log    *zap.Logger
	status statusBox
}

// NewSource checks cfg; tb converts the kernel's timestamps to the
// disciplined clock's timescale.
func NewSource(cfg SourceConfig, tb sources.Timebase, log *zap.Logger) (*Source, error) {
	if log == nil {
		log = zap.NewNop()
	}
	switch {
	case cfg.Interface == "":
		return nil, errors.New("ptp: source without an interface")
	case cfg.Network != NetworkUDPv4 && cfg.Network != NetworkUDPv6 && cfg.Network != NetworkL2:
		return nil, fmt.Errorf("ptp: %s: unknown network %q", cfg.Interface, cfg.Network)
	case cfg.Domain > 127:
		return nil, fmt.Errorf("ptp: %s: domain %d outside 0..127", cfg.Interface, cfg.Domain)
	}
	switch cfg.DelayMechanism {
	case 0:
		cfg.DelayMechanism = EndToEnd
	case EndToEnd, PeerToPeer:
	default:
		return nil, fmt.Errorf("ptp: %s: unknown delay mechanism %d", cfg.Interface, cfg.DelayMechanism)
	}
	switch cfg.Role {
	case "":
		cfg.Role = RoleSlaveOnly
	case RoleAuto, RoleSlaveOnly, RoleMasterOnly:
	default:
		return nil, fmt.Errorf("ptp: %s: unknown role %q (want auto, slave_only or master_only)", cfg.Interface, cfg.Role)
	}
	for _, iv := range []int8{cfg.LogAnnounceInterval, cfg.LogSyncInterval, cfg.LogMinDelayReqInterval} {
		if iv < -7 || iv > 6 {
			return nil, fmt.Errorf("ptp: %s: message interval 2^%d s outside 2^-7..2^6", cfg.Interface, iv)
		}
	}
	if _, ok := tb.(HardwareTimebase); cfg.HardwareStamps && !ok {
		return nil, fmt.Errorf("ptp: %s: hardware timestamps are readings of the interface's PTP hardware clock, "+
			"and the disciplined clock (%T) cannot convert them: discipline the PHC, or use timestamping: software", cfg.Interface, tb)
	}
	if err := checkUnicastMasters(cfg); err != nil {
		return nil, err
	}
	if cfg.UnicastListen && (cfg.Network == NetworkL2 || cfg.Role == RoleSlaveOnly) {
		return nil, fmt.Errorf("ptp: %s: unicast_listen needs transport udp4 or udp6 and a port that may become master", cfg.Interface)
	}
	return &Source{cfg: cfg, tb: tb, log: log}, nil
}

// Name is "ptp IFACE".
func (s *Source) Name() string { return "ptp " + s.cfg.Interface }

// Options are the engine options of the source: its poll interval is the
// sync interval.
func (s *Source) Options() sources.SourceOptions {
	return sources.SourceOptions{Kind: "ptp", Address: s.cfg.Interface,
		MinPoll: int(s.cfg.LogSyncInterval), MaxPoll: int(s.cfg.LogSyncInterval)}
}

// Run runs the port until ctx is done.
func (s *Source) Run(ctx context.Context, r sources.Reporter) error {
	ifi, err := net.InterfaceByName(s.cfg.Interface)
	if err != nil {
		return fmt.Errorf("ptp: %w", err)
	}
	id, err := protocol.NewClockIdentity(ifi.HardwareAddr)
	if err != nil {
		return fmt.Errorf("ptp: %s: clock identity from %q: %w", s.cfg.Interface, ifi.HardwareAddr, err)
	}
	tr, err := OpenTransport(TransportConfig{Network: s.cfg.Network, Interface: s.cfg.Interface,
		EventPort: s.cfg.EventPort, GeneralPort: s.cfg.GeneralPort, TxStampWait: txStampWait,
		HardwareStamps: s.cfg.HardwareStamps})
	if errors.Is(err, netstamp.ErrNoHardwareStamps) {
		err = fmt.Errorf("ptp: %s cannot timestamp PTP messages in hardware; use timestamping: software for this port: %w",
			s.cfg.Interface, err)
	}
	if err != nil {
		s.status.update(func(st *PortStatus) { st.State, st.Reason = "FAULTY", err.Error() })
		return err
	}
	defer tr.Close()
	p, err := newPortRun(s, id, tr, r)
	if err != nil {
		return err
	}
	if s.cfg.Role != RoleSlaveOnly {
		p.leaps = s.loadLeapTable()
	}
	return p.run(ctx)
}

// loadLeapTable reads the system's leap-seconds list and says in the log
// what a master port will announce from it.
func (s *Source) loadLeapTable() LeapTable {
	t, path, err := LoadLeapTable()
	if err != nil {
		s.log.Warn("no leap-seconds list: announcing currentUtcOffset 37 s, not marked valid, and no leap seconds",
			zap.Error(err))
		return LeapTable{}
	}
	now := s.tb.Now()
	tp := t.TimeProperties(now)
	if !tp.CurrentUTCOffsetValid {
		s.log.Warn("the leap-seconds list has expired: announcing its last currentUtcOffset, not marked valid",
			zap.String("file", path), zap.Time("expired", t.Expires), zap.Int16("utc_offset_s", tp.CurrentUTCOffset))
		return t
	}
	s.log.Info("leap-seconds list", zap.String("file", path), zap.Time("expires", t.Expires),
		zap.Int16("utc_offset_s", tp.CurrentUTCOffset))
	return t
}

// portRun is the state of one run of a Source.
type portRun struct {
	s     *Source
	tr    Transport
	r     sources.Reporter
	log   *zap.Logger
	self  protocol.PortIdentity
	port  *Port
	slave *Slave
	group Address

	// The peer delay mechanism: nil with the end-to-end one.
	pdelay        *PeerDelay
	linkDelay     medianFilter // of pdelay's exchanges
	pdelayGroup   Address
	nextPdelayReq time.Time

	stamping       netstamp.Stamping
	txStampsMissed uint64 // event messages sent without a kernel transmit timestamp
	// portDrops counts messages dropped before any state machine saw them:
	// "malformed" (undecodable or truncated) and "wrong_domain".
	portDrops      map[string]uint64
	unicast        *unicastNegotiation // nil without unicast masters
	service        *unicastService     // nil without unicast_listen
	signalingSeq   uint16
	logDelayReq    int8
	nextDelayReq   time.Time
	nextPoll       time.Time
	synced         int // measurements since the master was selected
	lastState      protocol.PortState
	lastReportedUp bool

	// The master side.
	clock        DefaultDataset // the local clock as last given to the port
	leaps        LeapTable
	timeProps    TimeProperties // the local clock's, as last given to the port
	msgs         masterMessages
	nextQuality  time.Time
	nextAnnounce time.Time
	nextSync     time.Time
}

// txStampWait is how long an event message waits for its kernel transmit
// timestamp: the Follow_Up, Delay_Req record or Pdelay_Resp_Follow_Up can
// wait, and a timestamp read in user space instead is not used.
const txStampWait = 20 * time.Millisecond

// slaveAfter is how many measurements an UNCALIBRATED port takes before it
// calls itself SLAVE (MASTER_CLOCK_SELECTED).
const slaveAfter = 4

func newPortRun(s *Source, id protocol.ClockIdentity, tr Transport, r sources.Reporter) (*portRun, error) {
	self := protocol.PortIdentity{ClockIdentity: id, PortNumber: 1}
	clock := DefaultDataset{ClockIdentity: id, Priority1: s.cfg.Priority1, Priority2: s.cfg.Priority2,
		ClockQuality: freeRunning.ClockQuality, DomainNumber: s.cfg.Domain, SlaveOnly: s.cfg.Role == RoleSlaveOnly}
	port, err := NewPort(PortConfig{
		Identity:               self,
		Clock:                  clock,
		MasterOnly:             s.cfg.Role == RoleMasterOnly,
		LogAnnounceInterval:    protocol.LogInterval(s.cfg.LogAnnounceInterval),
		AnnounceReceiptTimeout: s.cfg.AnnounceReceiptTimeout,
	})
	if err != nil {
		return nil, err
	}
	stamping := netstamp.StampKernel
	if s.cfg.HardwareStamps {
		stamping = netstamp.StampHardware
	}
	slave, err := NewSlave(SlaveConfig{Identity: self, DomainNumber: s.cfg.Domain, Mechanism: s.cfg.DelayMechanism,
		DelayAsymmetry: s.cfg.DelayAsymmetry, Timestamps: stamping})
	if err != nil {
		return nil, err
	}
	group, err := tr.Network().GroupAddress(GroupPrimary)
	if err != nil {
		return nil, err
	}
	p := &portRun{s: s, tr: tr, r: r, log: s.log.With(zap.String("port", s.Name())), self: self, port: port,
		slave: slave, group: group, stamping: stamping, logDelayReq: s.cfg.LogMinDelayReqInterval, clock: clock, portDrops: map[string]uint64{},
		msgs: masterMessages{self: self, domain: s.cfg.Domain, logAnnounce: protocol.LogInterval(s.cfg.LogAnnounceInterval),
			logSync: protocol.LogInterval(s.cfg.LogSyncInterval), logDelay: protocol.LogInterval(s.cfg.LogMinDelayReqInterval)}}
	if len(s.cfg.UnicastMasters) > 0 {
		p.unicast = newUnicastNegotiation(s.cfg.UnicastMasters, unicastIntervals{announce: s.cfg.LogAnnounceInterval,
			sync: s.cfg.LogSyncInterval, delayResp: s.cfg.LogMinDelayReqInterval, endToEnd: s.cfg.DelayMechanism == EndToEnd})
	}
	if s.cfg.UnicastListen {
		p.service = newUnicastService(s.cfg.LogAnnounceInterval, s.cfg.LogSyncInterval, s.cfg.LogMinDelayReqInterval)
	}
	if s.cfg.DelayMechanism == PeerToPeer {
		p.pdelay, err = NewPeerDelay(PeerDelayConfig{Identity: self, DomainNumber: s.cfg.Domain, Timestamps: stamping})
		if err != nil {
			return nil, err
		}
		if p.pdelayGroup, err = tr.Network().GroupAddress(GroupPeerDelay); err != nil {
			return nil, err
		}
	}
	return p, nil
}

// tick is how often the state machine's timers run.
const tick = 100 * time.Millisecond

// qualityInterval is how often a port that may become master asks for the
// local clock's quality.
const qualityInterval = time.Second

func (p *portRun) run(ctx context.Context) error {
	now := time.Now()
	p.refreshClock(now)
	p.port.Initialize(now)
	p.lastState = p.port.State()
	defer p.unicastStop()
	p.r.Fault("listening: waiting for an announce from a master")
	buf := make([]byte, 1500)
	nextTick := now.Add(tick)
	for {
		deadline := nextTick
		if p.port.State() == protocol.PortStateMaster {
			deadline = earliest(deadline, p.nextAnnounce, p.nextSync)
			if t := p.serviceNextDue(); !t.IsZero() {
				deadline = earliest(deadline, t)
			}
		}
		if p.pdelay != nil {
			deadline = earliest(deadline, p.nextPdelayReq)
		} else if p.delayRequestPossible() {
			deadline = earliest(deadline, p.nextDelayReq)
		}
		rctx, cancel := context.WithDeadline(ctx, deadline)
		rec, err := p.tr.Receive(rctx, buf)
		cancel()
		if ctx.Err() != nil {
			return nil
		}
		if err == nil {
			p.handle(buf[:rec.N], rec)
		} else if !errors.Is(err, context.DeadlineExceeded) {
			return fmt.Errorf("ptp: %s: %w", p.s.cfg.Interface, err)
		}
		now = time.Now()
		if !now.Before(nextTick) {
			nextTick = now.Add(tick)
			p.refreshClock(now)
			if p.port.Tick(now) {
				p.stateChanged(now)
			}
			p.publish()
		}
		p.poll(now)
		p.sendMasterMessages(now)
		p.peerDelayRequest(now)
		p.delayRequest(now)
		p.unicastTick(now)
	}
}

// earliest is the earliest of its arguments.
func earliest(t time.Time, more ...time.Time) time.Time {
	for _, u := range more {
		if u.Before(t) {
			t = u
		}
	}
	return t
}

// refreshClock gives the port the local clock's current quality and time
// properties, about once a second, unless the port is slave-only.
func (p *portRun) refreshClock(now time.Time) {
	if p.s.cfg.Role == RoleSlaveOnly || now.Before(p.nextQuality) {
		return
	}
	p.nextQuality = now.Add(qualityInterval)
	q := freeRunning
	if p.s.cfg.Quality != nil {
		q = p.s.cfg.Quality()
	}
	clock := p.clock
	clock.ClockQuality = q.ClockQuality
	tp := p.leaps.TimeProperties(p.s.tb.Now())
	tp.TimeTraceable, tp.FrequencyTraceable, tp.TimeSource = q.TimeTraceable, q.FrequencyTraceable, q.TimeSource
	if clock == p.clock && tp == p.timeProps {
		return
	}
	if clock != p.clock {
		p.log.Info("local clock quality", zap.Uint8("clock_class", uint8(q.ClockQuality.ClockClass)),
			zap.String("clock_accuracy", fmt.Sprintf("0x%02x", uint8(q.ClockQuality.ClockAccuracy))), zap.Stringer("time_source", q.TimeSource))
	}
	if err := p.port.SetClock(clock, tp); err != nil {
		p.log.Warn("cannot update the local clock's dataset", zap.Error(err))
		return
	}
	p.clock, p.timeProps = clock, tp
}

// toPTP converts a time on the disciplined clock (UTC) to the PTP
// timescale the port announces (TAI).
func (p *portRun) toPTP(utc time.Time) time.Time {
	return utc.Add(time.Duration(p.timeProps.CurrentUTCOffset) * time.Second)
}

// sendMasterMessages sends the Announce and the Sync with its Follow_Up
// that are due, in the MASTER state.
func (p *portRun) sendMasterMessages(now time.Time) {
	if p.port.State() != protocol.PortStateMaster {
		return
	}
	if !now.Before(p.nextAnnounce) {
		p.nextAnnounce = now.Add(p.msgs.logAnnounce.Duration())
		p.sendGeneral("announce", p.msgs.announce(p.port.Parent(), p.port.TimeProperties(), p.toPTP(p.s.tb.Now())))
	}
	if !now.Before(p.nextSync) {
		p.nextSync = now.Add(p.msgs.logSync.Duration())
		p.sendSync()
	}
	p.sendUnicastService(now)
}

// sendSync sends a two-step Sync and its Follow_Up with the Sync's
// transmit timestamp.
func (p *portRun) sendSync() {
	sync := p.msgs.sync(p.toPTP(p.s.tb.Now()))
	if tx, ok := p.sendEvent("sync", sync); ok {
		p.sendGeneral("follow-up", p.msgs.followUp(sync.SequenceID, p.toPTP(tx)))
	}
}

// sendEvent sends an event message to the primary group and returns its
// transmit timestamp on the disciplined clock; failures are logged.
func (p *portRun) sendEvent(what string, msg protocol.Packet) (time.Time, bool) {
	return p.sendEventTo(what, msg, p.group)
}

// sendEventTo sends an event message to the address to and returns its
// transmit timestamp on the disciplined clock; failures are logged.
func (p *portRun) sendEventTo(what string, msg protocol.Packet, to Address) (time.Time, bool) {
	b, err := protocol.Bytes(msg)
	if err != nil {
		p.log.Warn("cannot build a "+what, zap.Error(err))
		return time.Time{}, false
	}
	tx, st, err := p.tr.SendEvent(b, to)
	if err != nil {
		p.log.Warn("cannot send a "+what, zap.Error(err))
		return time.Time{}, false
	}
	if st != p.stamping {
		// The kernel's transmit timestamp did not come in time: a time
		// read in user space can be off by a scheduling delay, which
		// would go into every offset that uses it. Better no measurement.
		p.log.Debug(what+" sent without a kernel transmit timestamp; not used", zap.Stringer("stamping", st))
		p.txStampsMissed++
		return time.Time{}, false
	}
	return stampTime(p.s.tb, tx, st), true
}

// sendGeneral sends a general message to the primary group.
func (p *portRun) sendGeneral(what string, msg protocol.Packet) {
	p.sendGeneralTo(what, msg, p.group)
}

// sendGeneralTo sends a general message to the address to.
func (p *portRun) sendGeneralTo(what string, msg protocol.Packet, to Address) {
	b, err := protocol.Bytes(msg)
	if err == nil {
		err = p.tr.SendGeneral(b, to)
	}
	if err != nil {
		p.log.Warn("cannot send a "+what, zap.Error(err))
	}
}

// stateChanged follows the port's new state or master.
func (p *portRun) stateChanged(now time.Time) {
	st := p.port.State()
	p.log.Info("port state", zap.Stringer("from", p.lastState), zap.Stringer("to", st), zap.String("reason", p.port.Reason()))
	p.lastState = st
	if st == protocol.PortStateMaster {
		p.nextAnnounce, p.nextSync = now, now
	}
	if m, ok := p.port.Master(); ok {
		p.slave.SetMaster(m.SenderPortIdentity)
		if st == protocol.PortStateUncalibrated {
			p.synced = 0
		}
		p.r.Fault("")
		p.nextDelayReq = now
		return
	}
	p.slave.ClearMaster()
	p.synced = 0
	p.r.Fault(p.port.Reason())
}

// poll tells the engine a Sync was due, once per sync interval while a
// master is selected: the reach register then shows lost Syncs.
func (p *portRun) poll(now time.Time) {
	if _, ok := p.port.Master(); !ok || now.Before(p.nextPoll) {
		return
	}
	p.nextPoll = now.Add(protocol.LogInterval(p.s.cfg.LogSyncInterval).Duration())
	p.r.Polled()
}

func (p *portRun) handle(b []byte, rec Received) {
	pkt, err := protocol.DecodePacket(b)
	if err != nil {
		p.portDrops["malformed"]++
		p.log.Debug("undecodable message", zap.Stringer("from", rec.From), zap.Error(err))
		return
	}
	if len(b) < 5 || b[4] != p.s.cfg.Domain {
		p.portDrops["wrong_domain"]++
		return
	}
	if !p.unicastAccept(pkt, rec) {
		return
	}
	now := time.Now()
	switch m := pkt.(type) {
	case *protocol.Signaling:
		p.handleSignaling(m, rec, now)
	case *protocol.Announce:
		if err := p.port.HandleAnnounce(m, now); err != nil {
			p.log.Debug("announce not used", zap.Error(err))
			return
		}
		if p.port.Tick(now) {
			p.stateChanged(now)
		}
	case *protocol.SyncDelayReq:
		if m.MessageType() == protocol.MessageDelayReq {
			p.delayResponse(m, rec)
			return
		}
		ms, ok, err := p.slave.HandleSync(m, p.rxTime(rec))
		p.syncMeasured(ms, ok, err)
		p.delayRequest(now)
	case *protocol.FollowUp:
		ms, ok, err := p.slave.HandleFollowUp(m)
		p.syncMeasured(ms, ok, err)
		p.delayRequest(now)
	case *protocol.PDelayReq:
		if p.pdelay == nil || m.SourcePortIdentity.ClockIdentity == p.self.ClockIdentity {
			return
		}
		p.peerDelayResponse(m, rec)
	case *protocol.PDelayResp:
		if p.pdelay == nil || m.RequestingPortIdentity != p.self {
			return
		}
		r, ok, err := p.pdelay.HandleResp(m, p.rxTime(rec))
		p.peerDelayMeasured(r, ok, err)
	case *protocol.PDelayRespFollowUp:
		if p.pdelay == nil || m.RequestingPortIdentity != p.self {
			return
		}
		r, ok, err := p.pdelay.HandleRespFollowUp(m)
		p.peerDelayMeasured(r, ok, err)
	case *protocol.DelayResp:
		if m.RequestingPortIdentity != p.self {
			return
		}
		ms, err := p.slave.HandleDelayResp(m)
		p.measured(ms, err == nil, err)
		if err != nil {
			return
		}
		if iv := int8(m.LogMessageInterval); iv != 0x7f && iv >= -7 && iv <= 6 {
			p.logDelayReq = iv // the master's minimum delay request interval
		}
	}
}

// rxTime is the receive timestamp of rec on the disciplined clock's
// timescale.
func (p *portRun) rxTime(rec Received) time.Time { return stampTime(p.s.tb, rec.RX, rec.Stamping) }

// delayResponse answers a Delay_Req in the MASTER state, with the
// end-to-end mechanism (a peer-to-peer port does not answer them).
func (p *portRun) delayResponse(req *protocol.SyncDelayReq, rec Received) {
	if p.port.State() != protocol.PortStateMaster || p.pdelay != nil {
		return
	}
	if req.FlagField&protocol.FlagUnicast != 0 && p.service != nil {
		p.unicastDelayResponse(req, rec)
		return
	}
	p.sendGeneral("delay response", p.msgs.delayResp(req, p.toPTP(p.rxTime(rec))))
}

// delayRequestPossible reports whether the end-to-end mechanism can send a
// Delay_Req now: a master is followed and its last Sync is complete.
func (p *portRun) delayRequestPossible() bool {
	_, ok := p.port.Master()
	return ok && p.pdelay == nil && p.slave.readyForDelayReq()
}

// delayRequest sends a Delay_Req when one is due, with the end-to-end
// mechanism. Its timer runs on its own, not from the Syncs, so that the
// requests come at their interval on average whatever the Sync interval;
// each is paired with the latest complete Sync (Slave.HandleDelayResp).
func (p *portRun) delayRequest(now time.Time) {
	if now.Before(p.nextDelayReq) || !p.delayRequestPossible() {
		return
	}
	// Spread the requests over 0.5..1.5 of the interval, as the standard
	// asks (clause 9.5.11.2), so that slaves do not send in step.
	iv := protocol.LogInterval(p.logDelayReq).Duration()
	p.nextDelayReq = now.Add(iv/2 + rand.N(iv))
	req := p.slave.NewDelayReq()
	tx, ok := p.sendEventTo("delay request", req, p.delayReqDestination(req))
	if !ok {
		return
	}
	if err := p.slave.DelayReqSent(req.SequenceID, tx); err != nil {
		p.log.Debug("delay request not recorded", zap.Error(err))
	}
}

// peerDelayRequest sends a Pdelay_Req to the peer-delay group when one is
// due, every 2^LogMinDelayReqInterval s in every state.
func (p *portRun) peerDelayRequest(now time.Time) {
	if p.pdelay == nil || now.Before(p.nextPdelayReq) {
		return
	}
	p.nextPdelayReq = now.Add(protocol.LogInterval(p.s.cfg.LogMinDelayReqInterval).Duration())
	req := p.pdelay.NewRequest()
	tx, ok := p.sendEventTo("peer delay request", req, p.pdelayGroup)
	if !ok {
		return
	}
	if err := p.pdelay.RequestSent(req.SequenceID, tx); err != nil {
		p.log.Debug("peer delay request not recorded", zap.Error(err))
	}
}

// peerDelayResponse answers a neighbour's Pdelay_Req two-step: the
// Pdelay_Resp carries when the request arrived, its follow-up when the
// Pdelay_Resp left, both on the PTP timescale.
func (p *portRun) peerDelayResponse(req *protocol.PDelayReq, rec Received) {
	resp := p.msgs.pdelayResp(req, p.toPTP(p.rxTime(rec)))
	if tx, ok := p.sendEventTo("peer delay response", resp, p.pdelayGroup); ok {
		p.sendGeneralTo("peer delay response follow-up", p.msgs.pdelayRespFollowUp(req, p.toPTP(tx)), p.pdelayGroup)
	}
}

// peerDelayMeasured gives the Slave the mean link delay of a completed
// peer delay exchange.
func (p *portRun) peerDelayMeasured(r PeerDelayResult, ok bool, err error) {
	if err != nil {
		p.log.Debug("peer delay message not used", zap.Error(err))
		return
	}
	if !ok {
		return
	}
	p.slave.SetPeerDelay(p.linkDelay.add(r.MeanLinkDelay))
	p.log.Debug("mean link delay", zap.Stringer("responder", r.Responder), zap.Stringer("delay", r.MeanLinkDelay))
}

// syncMeasured takes a Sync's measurement. With the peer delay mechanism
// it is the engine's measurement; with the end-to-end one the engine gets
// the Delay_Req exchanges instead (see Slave.HandleDelayResp), and a Sync
// only counts its errors.
func (p *portRun) syncMeasured(ms Measurement, ok bool, err error) {
	if p.pdelay == nil && err == nil {
		return
	}
	p.measured(ms, ok, err)
}

// measured reports a completed measurement to the engine: a Sync with the
// peer delay mechanism, a Delay_Req exchange with the end-to-end one.
func (p *portRun) measured(ms Measurement, ok bool, err error) {
	if err != nil {
		p.log.Debug("message not used", zap.Error(err))
		return
	}
	if !ok {
		return
	}
	tp := p.port.TimeProperties()
	utcOffset, _ := tp.UTCOffset()
	leap := sources.LeapNone
	switch {
	case tp.Leap61:
		leap = sources.LeapInsert
	case tp.Leap59:
		leap = sources.LeapDelete
	}
	parent := p.port.Parent()
	// A mean link delay that comes out negative (P2P: timestamp noise on a
	// short link; an E2E exchange with a negative delay is dropped before
	// this) carries no weight information: the engine gets zero, the
	// offset as measured.
	delay := max(2*ms.Delay.Duration(), 0)
	// Offset is local − master on the master's timescale (TAI for PTP):
	// the engine wants master − local in UTC.
	// An exchange's offset is the mean of the offsets at t2 and t3: it
	// applies halfway between them, as an NTP exchange's does between its
	// send and receive.
	local := ms.T2
	if !ms.T3.IsZero() {
		local = ms.T2.Add(ms.T3.Sub(ms.T2) / 2)
	}
	p.r.Measured(sources.Measurement{
		Local:          local,
		Offset:         -(ms.Offset.Duration() + utcOffset),
		Delay:          delay,
		RootDispersion: accuracy(parent.GrandmasterClockQuality.ClockAccuracy),
		Precision:      stampPrecision(ms.Timestamps),
		Stratum:        uint8(min(int(parent.StepsRemoved)+1, 15)),
		Leap:           leap,
		RefID:          0x50545000, // "PTP"
		Stamping:       sourcesStamping(ms.Timestamps),
	})
	p.published(ms, ms.Offset.Duration()+utcOffset)
	p.synced++
	if p.synced == slaveAfter && p.port.State() == protocol.PortStateUncalibrated {
		now := time.Now()
		if p.port.MasterClockSelected(now) {
			p.stateChanged(now)
		}
	}
}

// accuracy is the error bound a grandmaster's clockAccuracy announces
// (IEEE 1588-2019 table 5), zero when unknown.
func accuracy(a protocol.ClockAccuracy) time.Duration {
	const first = 0x17 // 1 ps; the codes then go 2.5, 10, 25, 100, 250, 1000, ... × 10^n
	switch {
	case a < first || a > 0x31:
		return 0
	case a >= 0x30: // 10 s, and "more than 10 s"
		return 10 * time.Second
	}
	steps := [...]float64{1, 2.5, 10, 25, 100, 250}
	i := int(a - first)
	ps := steps[i%len(steps)]
	for range i / len(steps) {
		ps *= 1000
	}
	return time.Duration(ps / 1000) // ps → ns
}

// stampPrecision is the resolution a kind of timestamp has.
func stampPrecision(s netstamp.Stamping) time.Duration {
	switch s {
	case netstamp.StampHardware:
		return 8 * time.Nanosecond
	case netstamp.StampKernel:
		return time.Microsecond
	}
	return 10 * time.Microsecond
}

func sourcesStamping(s netstamp.Stamping) sources.Stamping {
	switch s {
	case netstamp.StampHardware:
		return sources.StampHardware
	case netstamp.StampKernel:
		return sources.StampKernel
	}
	return sources.StampUser
}
