package gptp

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"net"
	"slices"
	"sync"
	"time"

	"github.com/facebook/time/ptp/protocol"
	"go.uber.org/zap"

	"github.com/timed-project/timed/internal/netstamp"
	"github.com/timed-project/timed/ptp"
	"github.com/timed-project/timed/sources"
)

// Profile is the set of rules a port follows.
type Profile string

// The profiles.
const (
	// ProfileGPTP is 802.1AS: Announce and its best master clock
	// algorithm, asCapable from the measured link delay.
	ProfileGPTP Profile = "gptp"
	// ProfileAutomotive is the AVnu automotive profile: static roles, no
	// Announce and no BMCA, asCapable assumed, initial and operational
	// intervals, and the link delay kept across restarts.
	ProfileAutomotive Profile = "automotive"
)

// Role is what a port may be.
type Role string

// The roles.
const (
	// RoleAuto (ProfileGPTP only): the BMCA decides; the port may be
	// grandmaster.
	RoleAuto Role = "auto"
	// RoleMaster: always master (grandmaster).
	RoleMaster Role = "master"
	// RoleSlave: never master.
	RoleSlave Role = "slave"
)

// Config configures a Port. Zero values take the defaults of
// linuxptp's gPTP.cfg and automotive configurations.
type Config struct {
	// Interface is the network interface.
	Interface string
	// Profile is ProfileGPTP (default) or ProfileAutomotive.
	Profile Profile
	// Role: RoleAuto (default for ProfileGPTP), RoleMaster or RoleSlave;
	// ProfileAutomotive needs RoleMaster or RoleSlave.
	Role Role
	// Priority1 and Priority2 are the grandmaster priorities announced and
	// compared (default 248, as gPTP.cfg).
	Priority1, Priority2 uint8
	// NeighborPropDelayThresh is the largest mean link delay with which
	// the port is asCapable (ProfileGPTP; default 800 ns, which software
	// timestamps exceed).
	NeighborPropDelayThresh time.Duration
	// LogSyncInterval, LogAnnounceInterval and LogPdelayReqInterval are
	// the (initial) intervals, log2 seconds (defaults -3, 0, 0).
	LogSyncInterval, LogAnnounceInterval, LogPdelayReqInterval int8
	// OperLogSyncInterval and OperLogPdelayReqInterval are the automotive
	// slave's operational intervals once synchronized (defaults 0 and 2):
	// it asks the master for the Sync interval with a Signaling message.
	OperLogSyncInterval, OperLogPdelayReqInterval int8
	// SyncReceiptTimeout and AnnounceReceiptTimeout are counted in
	// intervals (default 3).
	SyncReceiptTimeout, AnnounceReceiptTimeout int
	// AllowedLostResponses is how many peer delay requests in a row may
	// go unanswered before the port is no longer asCapable (default 3).
	AllowedLostResponses int
	// StateFile (ProfileAutomotive) keeps the neighbor rate ratio and
	// mean link delay across restarts; empty: not kept.
	StateFile string
	// Quality is the local clock's quality as grandmaster; nil announces
	// a free-running clock.
	Quality func() ptp.Quality
	// Leaps gives TAI − UTC and the leap flags as grandmaster.
	Leaps ptp.LeapTable
}

// Defaults of Config.
const (
	DefaultPriority                 = 248
	DefaultNeighborPropDelayThresh  = 800 * time.Nanosecond
	defaultLogSyncInterval          = -3
	defaultOperLogPdelayReqInterval = 2
	defaultReceiptTimeout           = 3
	defaultAllowedLostResponses     = 3
	// synchronizedOffset and synchronizedCount decide when an automotive
	// slave is synchronized and asks for the operational intervals: this
	// many measurements in a row within this offset of the master.
	synchronizedOffset = 10 * time.Microsecond
	synchronizedCount  = 10
)

// check fills in the defaults and checks c.
func (c *Config) check() error {
	if c.Interface == "" {
		return errors.New("gptp: no interface")
	}
	if c.Profile == "" {
		c.Profile = ProfileGPTP
	}
	switch c.Profile {
	case ProfileGPTP:
		if c.Role == "" {
			c.Role = RoleAuto
		}
	case ProfileAutomotive:
		if c.Role != RoleMaster && c.Role != RoleSlave {
			return fmt.Errorf("gptp: %s: the automotive profile has static roles: want master or slave, not %q", c.Interface, c.Role)
		}
	default:
		return fmt.Errorf("gptp: %s: unknown profile %q (want gptp or automotive)", c.Interface, c.Profile)
	}
	if c.Role != RoleAuto && c.Role != RoleMaster && c.Role != RoleSlave {
		return fmt.Errorf("gptp: %s: unknown role %q (want auto, master or slave)", c.Interface, c.Role)
	}
	if c.Priority1 == 0 {
		c.Priority1 = DefaultPriority
	}
	if c.Priority2 == 0 {
		c.Priority2 = DefaultPriority
	}
	if c.NeighborPropDelayThresh == 0 {
		c.NeighborPropDelayThresh = DefaultNeighborPropDelayThresh
	}
	if c.NeighborPropDelayThresh < 0 {
		return fmt.Errorf("gptp: %s: negative neighbor_prop_delay_thresh", c.Interface)
	}
	if c.LogSyncInterval == 0 {
		c.LogSyncInterval = defaultLogSyncInterval
	}
	if c.Profile == ProfileAutomotive && c.OperLogPdelayReqInterval == 0 {
		c.OperLogPdelayReqInterval = defaultOperLogPdelayReqInterval
	}
	for _, v := range []int8{c.LogSyncInterval, c.LogAnnounceInterval, c.LogPdelayReqInterval, c.OperLogSyncInterval, c.OperLogPdelayReqInterval} {
		if v < -7 || v > 6 {
			return fmt.Errorf("gptp: %s: log interval %d outside -7..6", c.Interface, v)
		}
	}
	if c.SyncReceiptTimeout == 0 {
		c.SyncReceiptTimeout = defaultReceiptTimeout
	}
	if c.AnnounceReceiptTimeout == 0 {
		c.AnnounceReceiptTimeout = defaultReceiptTimeout
	}
	if c.AllowedLostResponses == 0 {
		c.AllowedLostResponses = defaultAllowedLostResponses
	}
	if c.SyncReceiptTimeout < 2 || c.AnnounceReceiptTimeout < 2 || c.AllowedLostResponses < 1 {
		return fmt.Errorf("gptp: %s: receipt timeouts below 2 or no lost response allowed", c.Interface)
	}
	return nil
}

// Status is a port's state for timectl.
type Status struct {
	Interface string
	Profile   Profile
	Role      Role
	// State is INITIALIZING, LISTENING, SLAVE, MASTER or FAULTY; Reason
	// says why in words.
	State, Reason string
	Identity      protocol.PortIdentity
	// ASCapable says whether the link qualifies for gPTP (ProfileGPTP:
	// the neighbor answers peer delay requests and the mean link delay is
	// within the threshold; ProfileAutomotive: always).
	ASCapable bool
	// Neighbor is the port that answers the peer delay requests;
	// MeanLinkDelay and NeighborRateRatio (its frequency over ours) what
	// they measure; RestoredLink says they were read from the state file
	// and not measured yet.
	Neighbor          protocol.PortIdentity
	MeanLinkDelay     time.Duration
	NeighborRateRatio float64
	RestoredLink      bool
	// Parent is the master port followed, Grandmaster its grandmaster
	// (ProfileGPTP), StepsRemoved its distance; RateRatio is the
	// grandmaster's frequency over ours (cumulativeScaledRateOffset times
	// the neighbor rate ratio).
	Parent       protocol.PortIdentity
	Grandmaster  protocol.ClockIdentity
	StepsRemoved uint16
	RateRatio    float64
	// PTPTimescale says the time on the wire is TAI, UTCOffset the TAI −
	// UTC taken out of it (or put into it as master); the automotive
	// profile carries the clock's own time.
	PTPTimescale bool
	UTCOffset    time.Duration
	// LogSyncInterval is the Sync interval now (the master's, or the one
	// sent as master).
	LogSyncInterval int8
	// Offset is the last measured offset (master − local) and
	// LastMeasurement when; Measurements counts them; FirstSync is how
	// long after the start the first came.
	Offset          time.Duration
	LastMeasurement time.Time
	Measurements    uint64
	FirstSync       time.Duration
	// PdelayExchanges counts completed peer delay exchanges, Dropped the
	// messages not used, by reason.
	PdelayExchanges uint64
	Dropped         map[string]uint64
}

// The reasons a port drops a message, the keys of Status.Dropped.
const (
	DropMalformed     = "malformed"
	DropOwn           = "own_message"
	DropNotASCapable  = "not_as_capable"
	DropNotFromParent = "not_from_master"
	DropUnmatched     = "unmatched"
	DropPathLoop      = "path_trace_loop"
	DropStepsRemoved  = "steps_removed_255"
	DropPdelay        = "pdelay"
	DropNoLinkDelay   = "no_link_delay"
	DropNoTxStamp     = "no_tx_timestamp" // a message sent whose kernel transmit timestamp did not come
)

// Port is a gPTP end-station port: a source of measurements while it is
// slave, a grandmaster while it is master. It implements sources.Source.
type Port struct {
	cfg Config
	tb  sources.Timebase
	log *zap.Logger

	mu     sync.Mutex
	status Status
}

// NewPort checks cfg and returns a port; nothing is opened until Run.
func NewPort(cfg Config, tb sources.Timebase, log *zap.Logger) (*Port, error) {
	if err := cfg.check(); err != nil {
		return nil, err
	}
	if tb == nil {
		return nil, errors.New("gptp: no timebase")
	}
	if log == nil {
		log = zap.NewNop()
	}
	p := &Port{cfg: cfg, tb: tb, log: log.With(zap.String("gptp_port", cfg.Interface))}
	p.status = Status{Interface: cfg.Interface, Profile: cfg.Profile, Role: cfg.Role, State: "INITIALIZING",
		Reason: "not started", Dropped: map[string]uint64{}, LogSyncInterval: cfg.LogSyncInterval}
	return p, nil
}

// Name is "gptp" and the interface.
func (p *Port) Name() string { return "gptp " + p.cfg.Interface }

// Options are the engine options: kind gptp, the interface, the Sync
// interval as poll.
func (p *Port) Options() sources.SourceOptions {
	return sources.SourceOptions{Kind: "gptp", Address: p.cfg.Interface, MinPoll: int(p.cfg.LogSyncInterval), MaxPoll: int(max(p.cfg.LogSyncInterval, p.cfg.OperLogSyncInterval))}
}

// Status returns a copy of the port's state.
func (p *Port) Status() Status {
	p.mu.Lock()
	defer p.mu.Unlock()
	s := p.status
	s.Dropped = maps.Clone(p.status.Dropped)
	return s
}

// Run opens the port's transport and runs it until ctx is done.
func (p *Port) Run(ctx context.Context, r sources.Reporter) error {
	ifi, err := net.InterfaceByName(p.cfg.Interface)
	if err != nil {
		return fmt.Errorf("gptp: %w", err)
	}
	id, err := protocol.NewClockIdentity(ifi.HardwareAddr)
	if err != nil {
		return fmt.Errorf("gptp: %s: clock identity from %q: %w", p.cfg.Interface, ifi.HardwareAddr, err)
	}
	tr, err := ptp.OpenTransport(ptp.TransportConfig{Network: ptp.NetworkL2, Interface: p.cfg.Interface})
	if err != nil {
		return fmt.Errorf("gptp: %s: %w", p.cfg.Interface, err)
	}
	defer tr.Close()
	self := protocol.PortIdentity{ClockIdentity: id, PortNumber: 1}
	pd, err := ptp.NewPeerDelay(ptp.PeerDelayConfig{Identity: self, Timestamps: netstamp.StampKernel})
	if err != nil {
		return fmt.Errorf("gptp: %s: %w", p.cfg.Interface, err)
	}
	run := &portRun{p: p, tr: tr, r: r, self: self, pd: pd, started: time.Now(), syncInterval: p.cfg.LogSyncInterval,
		pdelayInterval: p.cfg.LogPdelayReqInterval}
	run.restoreLink()
	p.mu.Lock()
	p.status.Identity = self
	p.mu.Unlock()
	defer run.saveLink()
	return run.loop(ctx)
}

// received is one message read by the receiving goroutine.
type received struct {
	b   []byte
	rec ptp.Received
}

// portRun is the state of one run of a Port; only its loop goroutine
// touches it.
type portRun struct {
	p       *Port
	tr      ptp.Transport
	r       sources.Reporter
	self    protocol.PortIdentity
	pd      *ptp.PeerDelay
	started time.Time

	// Peer delay.
	pdelayInterval int8
	pdelayPending  bool // a request is out and not answered yet
	lost           int  // requests in a row without a complete answer
	linkDelays     []time.Duration
	linkDelay      time.Duration
	haveLinkDelay  bool
	nrr            float64
	asCapable      bool
	savedAt        time.Time

	// Master selection (ProfileGPTP) and the master followed.
	master      *masterInfo
	masterSeen  time.Time
	noAnnounces time.Time // when listening began without a master

	// Slave: the pending two-step Sync.
	syncSeq    uint16
	syncT2     time.Time
	syncValid  bool
	lastSync   time.Time
	synced     int  // measurements in a row within synchronizedOffset
	operSwitch bool // the automotive slave asked for the operational intervals

	// Master: sequence ids and the interval sent at.
	syncInterval int8
	seqSync      uint16
	seqAnnounce  uint16
	seqSignaling uint16
	stopSync     bool
}

// masterInfo is the master a slave port follows and what its Announce
// said.
type masterInfo struct {
	port         protocol.PortIdentity
	gm           ptp.ForeignMaster
	logAnnounce  int8
	timeProps    ptp.TimeProperties
	stepsRemoved uint16
}

func interval(log int8) time.Duration {
	if log >= 0 {
		return time.Second << log
	}
	return time.Second >> -log
}

// loop receives and sends until ctx is done.
func (run *portRun) loop(ctx context.Context) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	in := make(chan received, 64)
	errc := make(chan error, 1)
	go func() {
		buf := make([]byte, 1500)
		for {
			rec, err := run.tr.Receive(ctx, buf)
			if err != nil {
				if ctx.Err() != nil || errors.Is(err, net.ErrClosed) {
					errc <- nil
					return
				}
				if errors.Is(err, netstamp.ErrTruncated) {
					run.drop(DropMalformed, err)
					continue
				}
				errc <- err
				return
			}
			b := slices.Clone(buf[:rec.N])
			select {
			case in <- received{b: b, rec: rec}:
			case <-ctx.Done():
				errc <- nil
				return
			}
		}
	}()

	now := time.Now()
	run.noAnnounces = now
	run.enterInitial(now)
	nextPdelay := now
	nextSync := now.Add(interval(run.syncInterval))
	nextAnnounce := now
	tick := time.NewTimer(0)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case err := <-errc:
			if err != nil {
				run.setState("FAULTY", "receiving: "+err.Error())
				return fmt.Errorf("gptp: %s: receiving: %w", run.p.cfg.Interface, err)
			}
			return nil
		case m := <-in:
			run.handle(m.b, m.rec)
		case <-tick.C:
		}
		now = time.Now()
		if !now.Before(nextPdelay) {
			if run.sendsPdelay() {
				run.pdelayRequest()
			}
			nextPdelay = now.Add(interval(run.pdelayInterval))
		}
		run.checkTimeouts(now)
		if run.isMaster() {
			if !now.Before(nextSync) {
				if !run.stopSync && run.asCapable {
					run.sendSync()
				}
				nextSync = now.Add(interval(run.syncInterval))
			}
			if run.p.cfg.Profile == ProfileGPTP && !now.Before(nextAnnounce) {
				if run.asCapable {
					run.sendAnnounce()
				}
				nextAnnounce = now.Add(interval(run.p.cfg.LogAnnounceInterval))
			}
		} else {
			nextSync, nextAnnounce = now, now
		}
		next := nextPdelay
		if run.isMaster() {
			next = earliest(next, nextSync)
			if run.p.cfg.Profile == ProfileGPTP {
				next = earliest(next, nextAnnounce)
			}
		}
		next = earliest(next, now.Add(100*time.Millisecond)) // receipt timeouts
		tick.Reset(max(time.Until(next), 0))
	}
}

func earliest(a, b time.Time) time.Time {
	if b.Before(a) {
		return b
	}
	return a
}

// enterInitial puts the port in its first state.
func (run *portRun) enterInitial(now time.Time) {
	cfg := run.p.cfg
	switch {
	case cfg.Role == RoleMaster:
		run.becomeMaster("configured master")
	case cfg.Profile == ProfileAutomotive:
		run.setState("SLAVE", "configured slave: waiting for Sync")
	default:
		run.setState("LISTENING", "waiting for an Announce")
	}
	run.asCapable = cfg.Profile == ProfileAutomotive || run.asCapable
	run.publishLink()
}

// isMaster reports whether the port sends Sync.
func (run *portRun) isMaster() bool {
	run.p.mu.Lock()
	defer run.p.mu.Unlock()
	return run.p.status.State == "MASTER"
}

// sendsPdelay reports whether the port measures the link: every port but
// an automotive master (linuxptp's automotive-master.cfg inhibits it).
func (run *portRun) sendsPdelay() bool {
	return !(run.p.cfg.Profile == ProfileAutomotive && run.p.cfg.Role == RoleMaster)
}

func (run *portRun) setState(state, reason string) {
	run.p.mu.Lock()
	changed := run.p.status.State != state
	run.p.status.State, run.p.status.Reason = state, reason
	run.p.mu.Unlock()
	if changed {
		run.p.log.Info("gPTP port state", zap.String("state", state), zap.String("reason", reason))
	}
}

func (run *portRun) drop(reason string, err error) {
	run.p.mu.Lock()
	run.p.status.Dropped[reason]++
	run.p.mu.Unlock()
	run.p.log.Debug("gPTP message not used", zap.String("reason", reason), zap.Error(err))
}

// utcOffset is TAI − UTC to take out of (or put into) the timestamps on
// the wire: the announced one on ProfileGPTP (none on an arbitrary
// timescale), none on ProfileAutomotive, which has no Announce to say it:
// the time on the wire is the clock's own, as linuxptp sends and reads it
// with software timestamps.
func (run *portRun) utcOffset() time.Duration {
	if run.p.cfg.Profile == ProfileAutomotive {
		return 0
	}
	if run.isMaster() {
		tp := run.p.cfg.Leaps.TimeProperties(run.p.tb.Now())
		return time.Duration(tp.CurrentUTCOffset) * time.Second
	}
	if run.master == nil {
		return 0
	}
	off, _ := run.master.timeProps.UTCOffset()
	return off
}

// send encodes m and sends it to the 802.1AS group address; an event
// message returns its transmit time on the local clock.
func (run *portRun) send(m Message, event bool) (time.Time, bool) {
	b, err := Encode(m)
	if err != nil {
		run.p.log.Warn("cannot encode a gPTP message", zap.Error(err))
		return time.Time{}, false
	}
	to := ptp.Address{MAC: ptp.MACPeerDelay}
	if !event {
		if err := run.tr.SendGeneral(b, to); err != nil {
			run.p.log.Debug("gPTP send failed", zap.Error(err))
			return time.Time{}, false
		}
		return time.Time{}, true
	}
	tx, st, err := run.tr.SendEvent(b, to)
	if err != nil {
		run.p.log.Debug("gPTP send failed", zap.Error(err))
		return time.Time{}, false
	}
	if st != netstamp.StampKernel {
		// The kernel's transmit timestamp did not come in time: a time
		// read in user space can be off by a scheduling delay, which
		// would go into the neighbor's offsets. Better none.
		run.drop(DropNoTxStamp, nil)
		return time.Time{}, false
	}
	return run.p.tb.FromSystem(tx), true
}

// pdelayRequest sends a Pdelay_Req, counting the last one lost if it was
// not answered.
func (run *portRun) pdelayRequest() {
	if run.pdelayPending {
		run.lost++
		if run.lost >= run.p.cfg.AllowedLostResponses && run.p.cfg.Profile == ProfileGPTP && run.asCapable {
			run.asCapable = false
			run.p.log.Info("gPTP port no longer asCapable: the neighbor does not answer peer delay requests", zap.Int("lost", run.lost))
			run.publishLink()
		}
	}
	req := run.pd.NewRequest()
	req.LogMessageInterval = protocol.LogInterval(run.pdelayInterval)
	tx, ok := run.send(req, true)
	run.pdelayPending = true
	if !ok {
		return
	}
	if err := run.pd.RequestSent(req.SequenceID, tx); err != nil {
		run.drop(DropPdelay, err)
	}
}

// handle processes one received message.
func (run *portRun) handle(b []byte, rec ptp.Received) {
	m, err := Decode(b)
	if err != nil {
		run.drop(DropMalformed, err)
		return
	}
	t := run.p.tb.FromSystem(rec.RX)
	switch msg := m.(type) {
	case *protocol.PDelayReq:
		if msg.SourcePortIdentity.ClockIdentity == run.self.ClockIdentity {
			run.drop(DropOwn, nil)
			return
		}
		run.pdelayRespond(msg, t)
	case *protocol.PDelayResp:
		res, ok, err := run.pd.HandleResp(msg, t)
		run.pdelayResult(res, ok, err)
	case *protocol.PDelayRespFollowUp:
		res, ok, err := run.pd.HandleRespFollowUp(msg)
		run.pdelayResult(res, ok, err)
	case *Announce:
		run.announce(msg, time.Now())
	case *Sync:
		run.sync(msg, t)
	case *FollowUp:
		run.followUp(msg)
	case *Signaling:
		run.signaling(msg)
	}
}

// pdelayRespond answers a Pdelay_Req as a two-step responder.
func (run *portRun) pdelayRespond(req *protocol.PDelayReq, t2 time.Time) {
	off := run.utcOffset()
	resp := &protocol.PDelayResp{
		Header: protocol.Header{SdoIDAndMsgType: protocol.NewSdoIDAndMsgType(protocol.MessagePDelayResp, MajorSdoID),
			SequenceID: req.SequenceID, SourcePortIdentity: run.self, DomainNumber: req.DomainNumber,
			FlagField: protocol.FlagTwoStep, ControlField: 5, LogMessageInterval: 0x7f},
		PDelayRespBody: protocol.PDelayRespBody{RequestReceiptTimestamp: protocol.NewTimestamp(t2.Add(off)),
			RequestingPortIdentity: req.SourcePortIdentity},
	}
	t3, ok := run.send(resp, true)
	if !ok {
		return
	}
	fu := &protocol.PDelayRespFollowUp{
		Header: protocol.Header{SdoIDAndMsgType: protocol.NewSdoIDAndMsgType(protocol.MessagePDelayRespFollowUp, MajorSdoID),
			SequenceID: req.SequenceID, SourcePortIdentity: run.self, DomainNumber: req.DomainNumber,
			ControlField: 5, LogMessageInterval: 0x7f},
		PDelayRespFollowUpBody: protocol.PDelayRespFollowUpBody{ResponseOriginTimestamp: protocol.NewTimestamp(t3.Add(off)),
			RequestingPortIdentity: req.SourcePortIdentity},
	}
	run.send(fu, false)
}

// pdelayResult takes a completed (or failed) peer delay exchange.
func (run *portRun) pdelayResult(res ptp.PeerDelayResult, ok bool, err error) {
	if err != nil {
		run.drop(DropPdelay, err)
		return
	}
	if !ok {
		return
	}
	run.pdelayPending, run.lost = false, 0
	d := res.MeanLinkDelay.Duration()
	run.linkDelays = append(run.linkDelays, d)
	if len(run.linkDelays) > 5 {
		run.linkDelays = run.linkDelays[1:]
	}
	sorted := slices.Clone(run.linkDelays)
	slices.Sort(sorted)
	run.linkDelay, run.haveLinkDelay = sorted[len(sorted)/2], true
	if res.RateRatioValid {
		run.nrr = res.NeighborRateRatio
	}
	was := run.asCapable
	switch run.p.cfg.Profile {
	case ProfileAutomotive:
		run.asCapable = true
	default:
		run.asCapable = run.linkDelay <= run.p.cfg.NeighborPropDelayThresh
	}
	if was != run.asCapable {
		if run.asCapable {
			run.p.log.Info("gPTP port asCapable", zap.Duration("mean_link_delay", run.linkDelay))
		} else {
			run.p.log.Info("gPTP port not asCapable: the mean link delay exceeds neighbor_prop_delay_thresh",
				zap.Duration("mean_link_delay", run.linkDelay), zap.Duration("thresh", run.p.cfg.NeighborPropDelayThresh))
		}
	}
	run.p.mu.Lock()
	run.p.status.PdelayExchanges++
	run.p.status.Neighbor = res.Responder
	run.p.status.RestoredLink = false
	run.p.mu.Unlock()
	run.publishLink()
	if time.Since(run.savedAt) > time.Minute {
		run.saveLink()
	}
}

// publishLink copies the link's state to the status.
func (run *portRun) publishLink() {
	run.p.mu.Lock()
	run.p.status.ASCapable = run.asCapable
	run.p.status.MeanLinkDelay = run.linkDelay
	run.p.status.NeighborRateRatio = run.nrr
	run.p.status.LogSyncInterval = run.syncInterval
	run.p.mu.Unlock()
}

// ourSystem is the local clock as a candidate grandmaster.
func (run *portRun) ourSystem() ptp.ForeignMaster {
	q := run.quality()
	p1 := run.p.cfg.Priority1
	if run.p.cfg.Role == RoleSlave {
		p1 = 255 // not grandmaster-capable
	}
	return ptp.ForeignMaster{GrandmasterIdentity: run.self.ClockIdentity, GrandmasterPriority1: p1,
		GrandmasterClockQuality: q.ClockQuality, GrandmasterPriority2: run.p.cfg.Priority2,
		SenderPortIdentity: run.self, ReceiverPortIdentity: run.self}
}

func (run *portRun) quality() ptp.Quality {
	if run.p.cfg.Quality != nil {
		return run.p.cfg.Quality()
	}
	return ptp.Quality{ClockQuality: protocol.ClockQuality{ClockClass: protocol.ClockClass(248),
		ClockAccuracy: protocol.ClockAccuracyUnknown, OffsetScaledLogVariance: 0x4e5d}, TimeSource: protocol.TimeSourceInternalOscillator}
}

// announce runs 802.1AS's BMCA on one Announce (ProfileGPTP).
func (run *portRun) announce(a *Announce, now time.Time) {
	if run.p.cfg.Profile != ProfileGPTP {
		return
	}
	if a.Header.SourcePortIdentity.ClockIdentity == run.self.ClockIdentity {
		run.drop(DropOwn, nil)
		return
	}
	if !run.asCapable {
		run.drop(DropNotASCapable, nil)
		return
	}
	if slices.Contains(a.PathTrace, run.self.ClockIdentity) {
		run.drop(DropPathLoop, nil)
		return
	}
	if a.StepsRemoved >= 255 {
		run.drop(DropStepsRemoved, nil)
		return
	}
	fm := ptp.ForeignMaster{GrandmasterIdentity: a.GrandmasterIdentity, GrandmasterPriority1: a.GrandmasterPriority1,
		GrandmasterClockQuality: a.GrandmasterClockQuality, GrandmasterPriority2: a.GrandmasterPriority2,
		StepsRemoved: a.StepsRemoved, SenderPortIdentity: a.Header.SourcePortIdentity, ReceiverPortIdentity: run.self,
		LogAnnounceInterval: a.Header.LogMessageInterval}
	tp := ptp.TimePropertiesOf(a.Header.FlagField, a.CurrentUTCOffset, a.TimeSource)
	if run.p.cfg.Role == RoleMaster {
		return // a configured grandmaster follows no one
	}
	if run.master != nil && run.master.port == a.Header.SourcePortIdentity {
		run.master.gm, run.master.timeProps, run.master.stepsRemoved = fm, tp, a.StepsRemoved
		run.master.logAnnounce = int8(a.Header.LogMessageInterval)
		run.masterSeen = now
		return
	}
	if run.master != nil && !ptp.Compare(fm, run.master.gm).AWins() {
		return
	}
	// The candidate must beat the local clock as grandmaster.
	if ptp.Compare(run.ourSystem(), fm).AWins() {
		if run.p.cfg.Role == RoleAuto && run.master == nil {
			run.becomeMaster("the local clock is better than " + fm.GrandmasterIdentity.String())
		}
		return
	}
	run.master = &masterInfo{port: a.Header.SourcePortIdentity, gm: fm, logAnnounce: int8(a.Header.LogMessageInterval),
		timeProps: tp, stepsRemoved: a.StepsRemoved}
	run.masterSeen = now
	run.syncValid = false
	run.lastSync = now
	off, _ := tp.UTCOffset()
	run.p.mu.Lock()
	run.p.status.Parent, run.p.status.Grandmaster, run.p.status.StepsRemoved = fm.SenderPortIdentity, fm.GrandmasterIdentity, a.StepsRemoved+1
	run.p.status.PTPTimescale, run.p.status.UTCOffset = tp.PTPTimescale, off
	run.p.mu.Unlock()
	run.setState("SLAVE", fmt.Sprintf("synchronizing to %s (grandmaster %s, priority1 %d, class %d)",
		fm.SenderPortIdentity, fm.GrandmasterIdentity, fm.GrandmasterPriority1, fm.GrandmasterClockQuality.ClockClass))
}

// becomeMaster makes the port the grandmaster.
func (run *portRun) becomeMaster(why string) {
	run.master = nil
	tp := run.p.cfg.Leaps.TimeProperties(run.p.tb.Now())
	run.p.mu.Lock()
	run.p.status.Parent, run.p.status.Grandmaster, run.p.status.StepsRemoved = protocol.PortIdentity{}, run.self.ClockIdentity, 0
	run.p.status.PTPTimescale = run.p.cfg.Profile == ProfileGPTP
	run.p.status.UTCOffset = 0
	if run.p.status.PTPTimescale {
		run.p.status.UTCOffset = time.Duration(tp.CurrentUTCOffset) * time.Second
	}
	run.p.mu.Unlock()
	run.setState("MASTER", "grandmaster: "+why)
}

// checkTimeouts gives up a master whose Announce or Sync stopped coming.
func (run *portRun) checkTimeouts(now time.Time) {
	cfg := run.p.cfg
	switch {
	case cfg.Role == RoleMaster:
		return
	case cfg.Profile == ProfileAutomotive:
		limit := time.Duration(cfg.SyncReceiptTimeout) * interval(run.syncInterval)
		if !run.lastSync.IsZero() && now.Sub(run.lastSync) > limit && run.p.Status().State == "SLAVE" {
			run.setState("SLAVE", fmt.Sprintf("no Sync for %v: the master is silent", limit))
			run.r.Fault(fmt.Sprintf("no Sync from the master for %v", limit))
			run.lastSync = time.Time{}
			run.synced = 0
		}
		return
	}
	if run.master != nil {
		limit := time.Duration(cfg.AnnounceReceiptTimeout) * interval(run.master.logAnnounce)
		if now.Sub(run.masterSeen) > limit {
			run.p.log.Info("gPTP master lost: no Announce", zap.Stringer("master", run.master.port), zap.Duration("for", limit))
			run.r.Fault(fmt.Sprintf("no Announce from master %s for %v", run.master.port, limit))
			run.master = nil
			run.noAnnounces = now
			if cfg.Role == RoleAuto {
				run.becomeMaster("the master went silent")
			} else {
				run.setState("LISTENING", "the master went silent; waiting for an Announce")
			}
		}
		return
	}
	if cfg.Role == RoleAuto && !run.isMaster() &&
		now.Sub(run.noAnnounces) > time.Duration(cfg.AnnounceReceiptTimeout)*interval(cfg.LogAnnounceInterval) {
		run.becomeMaster("no better master announced itself")
	}
}

// sync takes the Sync of a two-step master.
func (run *portRun) sync(s *Sync, t2 time.Time) {
	if s.Header.SourcePortIdentity.ClockIdentity == run.self.ClockIdentity {
		run.drop(DropOwn, nil)
		return
	}
	if run.isMaster() {
		return
	}
	if !run.fromParent(s.Header.SourcePortIdentity) {
		run.drop(DropNotFromParent, nil)
		return
	}
	if !run.asCapable {
		run.drop(DropNotASCapable, nil)
		return
	}
	run.syncSeq, run.syncT2, run.syncValid = s.Header.SequenceID, t2, true
	run.lastSync = time.Now()
	if li := int8(s.Header.LogMessageInterval); li >= -7 && li <= 6 && li != run.syncInterval {
		run.syncInterval = li
		run.publishLink()
	}
}

// fromParent reports whether port is the master followed: on the
// automotive profile the first port that sends Sync (linuxptp's
// ignore_source_id takes any), on gPTP the master the BMCA chose.
func (run *portRun) fromParent(port protocol.PortIdentity) bool {
	if run.p.cfg.Profile == ProfileAutomotive {
		run.p.mu.Lock()
		defer run.p.mu.Unlock()
		if run.p.status.Parent == (protocol.PortIdentity{}) {
			run.p.status.Parent, run.p.status.Grandmaster = port, port.ClockIdentity
		}
		return true
	}
	return run.master != nil && run.master.port == port
}

// followUp completes a two-step Sync into a measurement.
func (run *portRun) followUp(f *FollowUp) {
	if run.isMaster() || f.Header.SourcePortIdentity.ClockIdentity == run.self.ClockIdentity {
		return
	}
	if !run.fromParent(f.Header.SourcePortIdentity) {
		run.drop(DropNotFromParent, nil)
		return
	}
	if !run.syncValid || f.Header.SequenceID != run.syncSeq {
		run.drop(DropUnmatched, nil)
		return
	}
	run.syncValid = false
	if !run.haveLinkDelay {
		run.drop(DropNoLinkDelay, nil)
		return
	}
	corr := time.Duration(int64(f.Header.CorrectionField) >> 16)
	origin := f.PreciseOriginTimestamp.Time().Add(-run.utcOffset())
	// The master's time when the Sync arrived: its send time, the
	// residence time of the bridges on the way and this link's delay.
	atT2 := origin.Add(corr + run.linkDelay)
	offset := atT2.Sub(run.syncT2)
	ratio := f.Info.RateRatio()
	if run.nrr != 0 {
		ratio *= run.nrr
	}
	now := time.Now()
	run.p.mu.Lock()
	first := run.p.status.Measurements == 0
	run.p.status.Measurements++
	run.p.status.Offset, run.p.status.LastMeasurement, run.p.status.RateRatio = offset, now, ratio
	if first {
		run.p.status.FirstSync = now.Sub(run.started)
	}
	run.p.mu.Unlock()
	if first {
		run.p.log.Info("gPTP: first Sync measured", zap.Duration("after_start", now.Sub(run.started)), zap.Duration("offset", offset),
			zap.Duration("mean_link_delay", run.linkDelay))
	}
	m := sources.Measurement{
		Local:     run.syncT2,
		Offset:    offset,
		Delay:     2 * run.linkDelay,
		Precision: time.Microsecond,
		Stratum:   1,
		RefID:     0x50545000, // "PTP"
		Stamping:  sources.StampKernel,
	}
	if run.master != nil {
		m.Stratum = uint8(min(int(run.master.stepsRemoved)+1, 15))
		m.RootDispersion = accuracy(run.master.gm.GrandmasterClockQuality.ClockAccuracy)
		switch {
		case run.master.timeProps.Leap61:
			m.Leap = sources.LeapInsert
		case run.master.timeProps.Leap59:
			m.Leap = sources.LeapDelete
		}
	}
	run.r.Polled()
	run.r.Measured(m)
	run.r.Fault("")
	run.operational(offset)
}

// accuracy is the error bound a clockAccuracy value announces (0 when
// unknown).
func accuracy(a protocol.ClockAccuracy) time.Duration {
	if a < 0x20 || a > 0x31 {
		return 0
	}
	return a.Duration()
}

// operational switches an automotive slave to its operational intervals
// once synchronized: it asks the master for the Sync interval and slows
// its own peer delay requests.
func (run *portRun) operational(offset time.Duration) {
	if run.p.cfg.Profile != ProfileAutomotive || run.operSwitch {
		return
	}
	if offset.Abs() > synchronizedOffset {
		run.synced = 0
		return
	}
	run.synced++
	if run.synced < synchronizedCount {
		return
	}
	run.operSwitch = true
	run.pdelayInterval = run.p.cfg.OperLogPdelayReqInterval
	req := IntervalRequest{LinkDelayInterval: -128, TimeSyncInterval: run.p.cfg.OperLogSyncInterval, AnnounceInterval: -128}
	run.seqSignaling++
	run.send(NewSignaling(run.self, run.seqSignaling, req), false)
	run.p.log.Info("gPTP automotive slave synchronized: asking for the operational intervals",
		zap.Int8("log_sync_interval", run.p.cfg.OperLogSyncInterval), zap.Int8("log_pdelay_interval", run.pdelayInterval))
}

// signaling takes a message interval request (as master: the Sync and
// Announce intervals; as any port: the peer delay interval).
func (run *portRun) signaling(s *Signaling) {
	if s.Interval == nil || s.Header.SourcePortIdentity.ClockIdentity == run.self.ClockIdentity {
		return
	}
	req := *s.Interval
	apply := func(v int8, initial int8, dst *int8) {
		switch v {
		case -128: // no change
		case 126:
			*dst = initial
		case 127: // stop: only Sync is stopped
		default:
			if v >= -7 && v <= 6 {
				*dst = v
			}
		}
	}
	if run.isMaster() {
		run.stopSync = req.TimeSyncInterval == 127
		apply(req.TimeSyncInterval, run.p.cfg.LogSyncInterval, &run.syncInterval)
		run.p.log.Info("gPTP: the neighbor asked for message intervals", zap.Int8("log_sync_interval", req.TimeSyncInterval),
			zap.Int8("log_link_delay_interval", req.LinkDelayInterval))
	}
	apply(req.LinkDelayInterval, run.p.cfg.LogPdelayReqInterval, &run.pdelayInterval)
	run.publishLink()
}

// sendSync sends a two-step Sync and its Follow_Up as grandmaster.
func (run *portRun) sendSync() {
	run.seqSync++
	s := NewSync(run.self, run.seqSync, run.syncInterval)
	tx, ok := run.send(s, true)
	if !ok {
		return
	}
	fu := NewFollowUp(run.self, run.seqSync, run.syncInterval, tx.Add(run.utcOffset()), ptp.Interval{}, FollowUpInfo{})
	if run.p.cfg.Profile == ProfileAutomotive {
		fu.Header.FlagField &^= protocol.FlagPTPTimescale
	}
	run.send(fu, false)
}

// sendAnnounce sends an Announce as grandmaster (ProfileGPTP).
func (run *portRun) sendAnnounce() {
	run.seqAnnounce++
	q := run.quality()
	tp := run.p.cfg.Leaps.TimeProperties(run.p.tb.Now())
	tp.PTPTimescale = true
	tp.TimeSource = q.TimeSource
	tp.TimeTraceable, tp.FrequencyTraceable = q.TimeTraceable, q.FrequencyTraceable
	parent := ptp.ParentDataset{GrandmasterIdentity: run.self.ClockIdentity, GrandmasterClockQuality: q.ClockQuality,
		GrandmasterPriority1: run.p.cfg.Priority1, GrandmasterPriority2: run.p.cfg.Priority2}
	a := NewAnnounce(run.self, run.seqAnnounce, run.p.cfg.LogAnnounceInterval, parent, tp, []protocol.ClockIdentity{run.self.ClockIdentity})
	run.send(a, false)
}
