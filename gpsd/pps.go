package gpsd

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"strings"
	"sync"
	"time"

	"go.uber.org/zap"

	"github.com/timed-project/timed/internal/wait"
	"github.com/timed-project/timed/sources"
)

// PPSConfig configures a PPS source: an RFC 2783 pulse-per-second device
// such as /dev/pps0, fed by a GNSS receiver's PPS output.
//
// A pulse only says "a second starts here". Which second it is comes from
// a coarse source: Coarse, when set, gives the offset of a reference that
// numbers seconds (another reference clock or an NTP server, named by the
// configuration's `lock:`, like chrony's lock option). Without Coarse the
// local clock itself is assumed to be within ±0.4 s of the true time, as
// chrony assumes for a PPS refclock without lock. Either way, a pulse whose
// estimated time is more than 0.4 s from a whole second cannot be numbered
// safely and is dropped.
type PPSConfig struct {
	// Name identifies the source; empty means "pps:" followed by Device.
	Name string
	// Device is the PPS device's path, such as /dev/pps0.
	Device string
	// ClearEdge uses the clear (falling) edge instead of the assert
	// (rising) one.
	ClearEdge bool
	// Coarse, when not nil, returns the offset of the lock source from the
	// disciplined clock (reference − local), and false while it has none.
	// Pulses that come while it has none are dropped. It is called from
	// Run's goroutine, once a pulse, and must be safe for that.
	Coarse func() (offset time.Duration, ok bool)
	// Offset is added to the reference time of every pulse: the time at a
	// pulse is the whole second plus Offset (a receiver whose pulse comes
	// late needs a positive one).
	Offset time.Duration
	// Delay is the assumed uncertainty of the signal's timing (chrony's
	// delay); it is each measurement's root dispersion. Zero means the
	// precision.
	Delay time.Duration
	// Precision is the precision of the pulse's timestamps; zero means
	// 1 µs.
	Precision time.Duration
	// RefID is the reference identifier, 1 to 4 ASCII letters; empty
	// means "PPS".
	RefID string
	// Poll is the engine's poll interval for the source, log2 seconds.
	Poll int
	// Selection options for the engine, as sources.SourceOptions.
	Prefer, NoSelect, Trust, Require bool
}

// ppsDevicePrecision is the precision assumed for kernel PPS timestamps
// when PPSConfig.Precision is zero.
const ppsDevicePrecision = time.Microsecond

// ppsMaxFraction is how far from a whole second a pulse may be, as numbered
// by the coarse source (or the local clock), and still be numbered.
const ppsMaxFraction = 400 * time.Millisecond

// ppsFetchTimeout bounds one wait for a pulse. It is longer than a second,
// so that one pulse a second never times out, and short enough for Run to
// notice its context ending soon.
const ppsFetchTimeout = 1500 * time.Millisecond

// ppsSilentFault is how many fetch timeouts in a row make the source report
// a fault.
const ppsSilentFault = 2

// ppsRetryMax bounds the wait between attempts to open the device.
const ppsRetryMax = 30 * time.Second

// Reasons under which pulses are counted in RefclockStatus.Dropped.
const (
	ppsDropRepeated  = "repeated"        // the same sequence number again
	ppsDropNoCoarse  = "no_coarse"       // the lock source has no offset yet
	ppsDropAmbiguous = "far_from_second" // more than 0.4 s from a whole second
	ppsDropBadFetch  = "bad_fetch"       // the device returned an invalid result
)

// errPPSTimeout is what a ppsDevice's Fetch returns when no pulse came in
// time (or the wait was interrupted).
var errPPSTimeout = errors.New("no pulse within the timeout")

// errPPSBadFetch marks a fetch result that the decoder rejected: the pulse
// is dropped but the device stays open.
var errPPSBadFetch = errors.New("invalid fetch result")

// ppsDevice is an open PPS device. Fetch waits up to timeout for the next
// pulse of the configured edge and returns its system-clock (CLOCK_REALTIME)
// timestamp and sequence number.
type ppsDevice interface {
	Fetch(timeout time.Duration) (edge time.Time, seq uint32, err error)
	Close() error
}

// PPS is a source that reads pulses from a PPS device. It implements
// sources.Source.
type PPS struct {
	cfg   PPSConfig
	name  string
	refID uint32
	tb    sources.Timebase
	log   *zap.Logger
	// open opens the device; tests replace it.
	open func(path string, clearEdge bool) (ppsDevice, error)

	// lastSeq is the sequence number of the last pulse handled; Run's
	// goroutine only.
	lastSeq  uint32
	haveLast bool

	mu     sync.Mutex
	status RefclockStatus
}

// NewPPS checks cfg and returns a PPS source for it. It does not open the
// device: Run does, and retries while it cannot.
func NewPPS(cfg PPSConfig, tb sources.Timebase, log *zap.Logger) (*PPS, error) {
	if cfg.Device == "" {
		return nil, errors.New("pps: no device given (such as /dev/pps0)")
	}
	if strings.ContainsRune(cfg.Device, 0) {
		return nil, fmt.Errorf("pps: device %q contains a NUL byte", cfg.Device)
	}
	if tb == nil {
		return nil, fmt.Errorf("pps: %s: no timebase", cfg.Device)
	}
	if cfg.Delay < 0 || cfg.Precision < 0 {
		return nil, fmt.Errorf("pps: %s: delay %v and precision %v must not be negative", cfg.Device, cfg.Delay, cfg.Precision)
	}
	if cfg.Offset <= -time.Second || cfg.Offset >= time.Second {
		return nil, fmt.Errorf("pps: %s: offset %v is a second or more; a pulse can only be corrected by less than a second", cfg.Device, cfg.Offset)
	}
	if cfg.Precision == 0 {
		cfg.Precision = ppsDevicePrecision
	}
	if cfg.RefID == "" {
		cfg.RefID = "PPS"
	}
	refID, err := packRefID(cfg.RefID)
	if err != nil {
		return nil, fmt.Errorf("pps: %s: %w", cfg.Device, err)
	}
	if log == nil {
		log = zap.NewNop()
	}
	name := cfg.Name
	if name == "" {
		name = "pps:" + cfg.Device
	}
	p := &PPS{
		cfg:   cfg,
		name:  name,
		refID: refID,
		tb:    tb,
		log:   log.With(zap.String("source", name)),
		open:  openPPSDevice,
	}
	p.status = RefclockStatus{Kind: "pps", Device: cfg.Device, Reason: "not started", Dropped: map[string]uint64{}}
	return p, nil
}

// Name returns the source's name.
func (p *PPS) Name() string { return p.name }

// Options returns the engine options of the source.
func (p *PPS) Options() sources.SourceOptions {
	return sources.SourceOptions{
		Kind:     "pps",
		Address:  p.cfg.Device,
		MinPoll:  p.cfg.Poll,
		MaxPoll:  p.cfg.Poll,
		Prefer:   p.cfg.Prefer,
		NoSelect: p.cfg.NoSelect,
		Trust:    p.cfg.Trust,
		Require:  p.cfg.Require,
	}
}

// Status returns a snapshot of the source's state.
func (p *PPS) Status() RefclockStatus {
	p.mu.Lock()
	defer p.mu.Unlock()
	s := p.status
	s.Dropped = maps.Clone(p.status.Dropped)
	return s
}

// Run opens the device and reports one measurement per numbered pulse until
// ctx is done. While the device cannot be opened or read it reports a
// fault and tries again, waiting longer each time (up to 30 s). It returns
// nil when ctx is done; it notices within about 1.5 s, the longest wait
// for one pulse.
func (p *PPS) Run(ctx context.Context, r sources.Reporter) error {
	retry := time.Second
	for ctx.Err() == nil {
		dev, err := p.open(p.cfg.Device, p.cfg.ClearEdge)
		if err != nil {
			p.fault(r, err.Error(), false)
			p.log.Warn("cannot open PPS device", zap.Error(err), zap.Duration("retry_in", retry))
			if !wait.For(ctx, retry) {
				break
			}
			retry = min(2*retry, ppsRetryMax)
			continue
		}
		p.log.Info("PPS device open", zap.Bool("clear_edge", p.cfg.ClearEdge))
		p.fault(r, "", true)
		err = p.read(ctx, dev, r)
		if cerr := dev.Close(); cerr != nil {
			p.log.Debug("closing PPS device", zap.Error(cerr))
		}
		if err == nil {
			break
		}
		retry = time.Second
		p.fault(r, err.Error(), false)
		p.log.Warn("PPS device failed", zap.Error(err), zap.Duration("retry_in", retry))
		if !wait.For(ctx, retry) {
			break
		}
	}
	p.mu.Lock()
	p.status.Connected = false
	p.status.Reason = "stopped"
	p.mu.Unlock()
	return nil
}

// read fetches pulses from dev until ctx is done (nil) or the device fails
// (the error).
func (p *PPS) read(ctx context.Context, dev ppsDevice, r sources.Reporter) error {
	silent := 0
	for ctx.Err() == nil {
		edge, seq, err := dev.Fetch(ppsFetchTimeout)
		switch {
		case errors.Is(err, errPPSTimeout):
			silent++
			r.Polled()
			if silent == ppsSilentFault {
				p.fault(r, fmt.Sprintf("no pulse from %s for %v", p.cfg.Device, time.Duration(silent)*ppsFetchTimeout), true)
			}
			continue
		case errors.Is(err, errPPSBadFetch):
			p.drop(ppsDropBadFetch)
			p.log.Debug("invalid PPS fetch result", zap.Error(err))
			continue
		case err != nil:
			return err
		}
		if silent >= ppsSilentFault {
			p.fault(r, "", true)
		}
		silent = 0
		m, reason := p.number(edge, seq)
		if reason == ppsDropRepeated {
			p.drop(reason)
			continue
		}
		r.Polled()
		if reason != "" {
			p.drop(reason)
			p.log.Debug("PPS pulse dropped", zap.String("reason", reason), zap.Time("edge", edge), zap.Uint32("seq", seq))
			continue
		}
		r.Measured(m)
		p.mu.Lock()
		p.status.Samples++
		p.status.LastSample = m.Local
		p.mu.Unlock()
	}
	return nil
}

// number turns a pulse's system-clock timestamp into a measurement, or says
// why the pulse is dropped.
func (p *PPS) number(edge time.Time, seq uint32) (sources.Measurement, string) {
	if p.haveLast && seq == p.lastSeq {
		return sources.Measurement{}, ppsDropRepeated
	}
	p.lastSeq, p.haveLast = seq, true
	var coarse time.Duration
	if p.cfg.Coarse != nil {
		off, ok := p.cfg.Coarse()
		if !ok {
			return sources.Measurement{}, ppsDropNoCoarse
		}
		coarse = off
	}
	local := p.tb.FromSystem(edge)
	// The pulse marks a whole second of reference time plus Offset;
	// estimate the reference time at the pulse and find that second.
	est := local.Add(coarse - p.cfg.Offset)
	second := est.Round(time.Second)
	if frac := est.Sub(second); frac > ppsMaxFraction || frac < -ppsMaxFraction {
		return sources.Measurement{}, ppsDropAmbiguous
	}
	ref := second.Add(p.cfg.Offset)
	unc := p.cfg.Delay
	if unc == 0 {
		unc = p.cfg.Precision
	}
	return sources.Measurement{
		Local:          local,
		Offset:         ref.Sub(local),
		RootDispersion: unc,
		Precision:      p.cfg.Precision,
		Stratum:        0,
		RefID:          p.refID,
		Stamping:       sources.StampKernel,
	}, ""
}

func (p *PPS) drop(reason string) {
	p.mu.Lock()
	p.status.Dropped[reason]++
	p.mu.Unlock()
}

// fault records the device's state and tells the engine why the source
// cannot be used ("" clears it).
func (p *PPS) fault(r sources.Reporter, reason string, connected bool) {
	p.mu.Lock()
	p.status.Connected = connected
	p.status.Reason = reason
	p.mu.Unlock()
	r.Fault(reason)
}

// PPS capture modes (linux/pps.h, RFC 2783).
const (
	ppsCaptureAssert = 0x01
	ppsCaptureClear  = 0x02
	ppsCanWait       = 0x100
	ppsTSFmtTSpec    = 0x1000
)

// ppsMaxSec is the largest timestamp, in Unix seconds, a fetch result may
// carry (the year 9999); a later one is a broken device or driver.
const ppsMaxSec = 253402300799

// ppsKInfo is the part of the kernel's struct pps_kinfo that a fetch
// returns, independent of the architecture's layout.
type ppsKInfo struct {
	AssertSeq, ClearSeq   uint32
	AssertSec, ClearSec   int64
	AssertNsec, ClearNsec int32
	Mode                  int32
}

// ppsDecodeFetch checks a fetch result and returns the timestamp and
// sequence number of the wanted edge. Errors wrap errPPSBadFetch.
func ppsDecodeFetch(k ppsKInfo, clearEdge bool) (time.Time, uint32, error) {
	edge, bit := "assert", int32(ppsCaptureAssert)
	seq, sec, nsec := k.AssertSeq, k.AssertSec, k.AssertNsec
	if clearEdge {
		edge, bit = "clear", ppsCaptureClear
		seq, sec, nsec = k.ClearSeq, k.ClearSec, k.ClearNsec
	}
	switch {
	case k.Mode&bit == 0:
		return time.Time{}, 0, fmt.Errorf("%w: the device does not capture the %s edge (mode %#x)", errPPSBadFetch, edge, k.Mode)
	case seq == 0:
		return time.Time{}, 0, fmt.Errorf("%w: no %s pulse captured yet", errPPSBadFetch, edge)
	case nsec < 0 || nsec >= 1e9:
		return time.Time{}, 0, fmt.Errorf("%w: %s timestamp has %d nanoseconds, outside 0 to 999999999", errPPSBadFetch, edge, nsec)
	case sec <= 0 || sec > ppsMaxSec:
		return time.Time{}, 0, fmt.Errorf("%w: %s timestamp of %d seconds is outside 1970 to 9999", errPPSBadFetch, edge, sec)
	}
	return time.Unix(sec, int64(nsec)), seq, nil
}
