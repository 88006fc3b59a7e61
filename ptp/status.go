package ptp

import (
	"maps"
	"slices"
	"sync"
	"time"

	"github.com/facebook/time/ptp/protocol"
)

// PortStatus is what `timectl ptp` shows of a port.
type PortStatus struct {
	Interface string
	Network   Network
	Role      Role
	// State is the port state (SLAVE, MASTER, LISTENING, ...), Reason why,
	// Since when.
	State  string
	Reason string
	Since  time.Time
	// Identity is the port's own identity; Parent the port it takes time
	// from and Grandmaster that port's grandmaster (empty unless
	// UNCALIBRATED or SLAVE, or in MASTER, the local clock).
	Identity            string
	Parent              string
	Grandmaster         string
	GrandmasterClass    uint8
	GrandmasterAccuracy time.Duration
	StepsRemoved        uint16
	// UTCOffset is TAI − UTC as used, UTCOffsetValid whether the
	// grandmaster says it is right, PTPTimescale whether the timescale is
	// PTP's.
	UTCOffset      time.Duration
	UTCOffsetValid bool
	PTPTimescale   bool
	// Offset is the last offset from the master (local − master, UTC),
	// MeanPathDelay the last mean path delay, Timestamps the kind of
	// local timestamps, and LastMeasurement when the last one was made.
	Offset          time.Duration
	MeanPathDelay   time.Duration
	Timestamps      string
	LastMeasurement time.Time
	// Measurements counts completed Syncs; Dropped the messages the delay
	// mechanism did not use, by reason.
	Measurements uint64
	Dropped      map[string]uint64
	// UnicastMasters is the negotiation with each unicast master, in the
	// configured order; empty without unicast masters.
	UnicastMasters []UnicastMasterStatus
	// UnicastClients are the unicast clients the port serves (with
	// unicast_listen), in the order they first asked; empty otherwise.
	UnicastClients []UnicastClientStatus
}

// statusBox holds a port's latest status for other goroutines.
type statusBox struct {
	mu sync.Mutex
	st PortStatus
}

func (b *statusBox) get() PortStatus {
	b.mu.Lock()
	defer b.mu.Unlock()
	st := b.st
	st.UnicastMasters = slices.Clone(b.st.UnicastMasters)
	for i := range st.UnicastMasters {
		st.UnicastMasters[i].Grants = slices.Clone(st.UnicastMasters[i].Grants)
	}
	st.UnicastClients = slices.Clone(b.st.UnicastClients)
	for i := range st.UnicastClients {
		st.UnicastClients[i].Grants = slices.Clone(st.UnicastClients[i].Grants)
	}
	st.Dropped = maps.Clone(b.st.Dropped)
	return st
}

func (b *statusBox) update(f func(st *PortStatus)) {
	b.mu.Lock()
	defer b.mu.Unlock()
	f(&b.st)
}

// Status returns the port's latest status; before it runs, only its
// configuration.
func (s *Source) Status() PortStatus {
	st := s.status.get()
	st.Interface, st.Network, st.Role = s.cfg.Interface, s.cfg.Network, s.cfg.Role
	if st.State == "" {
		st.State, st.Reason = "INITIALIZING", "not running yet"
	}
	return st
}

// publish copies the port's state into the Source's status.
func (p *portRun) publish() {
	parent := p.port.Parent()
	tp := p.port.TimeProperties()
	utc, _ := tp.UTCOffset()
	_, hasMaster := p.port.Master()
	drops := p.slave.Drops()
	var unicast []UnicastMasterStatus
	if p.unicast != nil {
		unicast = p.unicast.status(time.Now())
	}
	var clients []UnicastClientStatus
	if p.service != nil {
		clients = p.service.status(time.Now())
	}
	p.s.status.update(func(st *PortStatus) {
		st.State, st.Reason, st.Since = p.port.State().String(), p.port.Reason(), p.port.Since()
		st.Identity = p.self.String()
		st.Parent, st.Grandmaster = "", ""
		if hasMaster || p.port.State() == protocol.PortStateMaster {
			st.Parent, st.Grandmaster = parent.ParentPortIdentity.String(), parent.GrandmasterIdentity.String()
			st.GrandmasterClass = uint8(parent.GrandmasterClockQuality.ClockClass)
			st.GrandmasterAccuracy = accuracy(parent.GrandmasterClockQuality.ClockAccuracy)
			st.StepsRemoved = parent.StepsRemoved
		}
		st.UTCOffset, st.UTCOffsetValid, st.PTPTimescale = utc, tp.CurrentUTCOffsetValid, tp.PTPTimescale
		st.Dropped = drops.byReason()
		st.UnicastMasters = unicast
		st.UnicastClients = clients
		if p.service != nil && p.service.denied > 0 {
			st.Dropped["unicast_denied"] = p.service.denied
		}
		if p.txStampsMissed > 0 {
			st.Dropped["no_tx_timestamp"] = p.txStampsMissed
		}
		for reason, n := range p.portDrops {
			st.Dropped[reason] = n
		}
	})
}

// published records a measurement in the status.
func (p *portRun) published(ms Measurement, offset time.Duration) {
	p.s.status.update(func(st *PortStatus) {
		st.Offset, st.MeanPathDelay = offset, ms.Delay.Duration()
		st.Timestamps = ms.Timestamps.String()
		st.LastMeasurement = ms.T2
		st.Measurements++
	})
}
