package gpsd

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"os"
	"time"

	"go.uber.org/zap"

	"github.com/timed-project/timed/sources"
)

// SHMKeyBase is the System V IPC key of NTP shared-memory unit 0 ("NTP0");
// unit N has key SHMKeyBase+N.
const SHMKeyBase = 0x4e545030

// SHMConfig configures a reader of an NTP shared-memory segment (ntpd's
// SHM driver, chrony's SHM refclock), the segment gpsd writes its time to.
type SHMConfig struct {
	// Unit is the segment's unit, 0 to 7 (key 0x4e545030 + Unit).
	Unit int
	// Name names the source; "" means "shm UNIT".
	Name string
	// Perm is the mode a segment timed creates gets; zero means ntpd's
	// choice: 0600 for units 0 and 1 (only root can write them, so only a
	// writer running as root is believed) and 0666 for units 2 to 7 (any
	// user's writer). An existing segment keeps its mode.
	Perm os.FileMode
	// Interval is how often the segment is read; zero means 1 s.
	Interval time.Duration
	// FaultAfter is how many reads in a row without a new valid sample
	// make the source report a fault; zero means 5.
	FaultAfter int
	// RefID is the reference identifier, up to 4 ASCII characters; ""
	// means "SHM".
	RefID string
	// Offset is added to the reference time of every sample.
	Offset time.Duration
	// Delay is the assumed uncertainty of the samples' timing; it becomes
	// each measurement's root dispersion. Zero means
	// DefaultSHMUncertainty.
	Delay time.Duration
	// Precision overrides the precision the writer states in the segment;
	// zero means use the segment's.
	Precision time.Duration
	// Prefer, NoSelect, Trust and Require are the engine's selection
	// options for this source (see sources.SourceOptions).
	Prefer, NoSelect, Trust, Require bool
	// Segment, when set, is the unit's segment attached beforehand
	// (AttachSHM), while timed still had the privilege to: Run reads it
	// and leaves it attached, so that a restarted reader needs no
	// privilege. Otherwise Run attaches the segment and detaches it when
	// it returns.
	Segment *SHMSegment

	// key overrides the segment's key (tests use keys of their own).
	key int
}

// SHM is the NTP shared-memory reader. It implements sources.Source.
type SHM struct {
	cfg   SHMConfig
	name  string
	tb    sources.Timebase
	log   *zap.Logger
	state sockState
}

// shmLayout gives the byte offsets of struct shmTime's fields for one
// size of time_t.
type shmLayout struct {
	mode, count                      int
	clockSec, clockUSec              int
	receiveSec, receiveUSec          int
	leap, precision, nsamples, valid int
	clockNSec, receiveNSec           int
	size                             int
	timeSize                         int
}

// shmLayoutFor returns the layout of struct shmTime when time_t has
// timeSize bytes (8 on 64-bit systems, 4 on 32-bit ones). A time_t is
// aligned to its size; the struct ends padded to its largest alignment.
func shmLayoutFor(timeSize int) shmLayout {
	l := shmLayout{timeSize: timeSize}
	off := 0
	field := func(size int) int {
		off = (off + size - 1) / size * size
		at := off
		off += size
		return at
	}
	l.mode = field(4)
	l.count = field(4)
	l.clockSec = field(timeSize)
	l.clockUSec = field(4)
	l.receiveSec = field(timeSize)
	l.receiveUSec = field(4)
	l.leap = field(4)
	l.precision = field(4)
	l.nsamples = field(4)
	l.valid = field(4)
	l.clockNSec = field(4)
	l.receiveNSec = field(4)
	off += 8 * 4 // dummy[8]
	l.size = (off + timeSize - 1) / timeSize * timeSize
	return l
}

// shmNative is the layout on this architecture.
var shmNative = shmLayoutFor(sockTimeSize)

// shmSample is one decoded segment.
type shmSample struct {
	Mode  int
	Count int32
	Valid bool
	// Reference is the receiver's time; System the system clock's reading
	// at which the receiver had it.
	Reference, System time.Time
	Leap              sources.Leap
	// Precision is the stated precision as log2 seconds.
	Precision int
}

// decodeSHM decodes a copy of a segment laid out as l, in the native byte
// order. It fails for a short buffer, an unknown mode and, when the
// segment is marked valid, for timestamps, leap or precision out of range.
func decodeSHM(b []byte, l shmLayout) (shmSample, error) {
	if len(b) < l.size {
		return shmSample{}, sockReject(DropWrongSize, "%d bytes, want at least %d", len(b), l.size)
	}
	ne := binary.NativeEndian
	i32 := func(off int) int32 { return int32(ne.Uint32(b[off:])) }
	tt := func(off int) int64 {
		if l.timeSize == 8 {
			return int64(ne.Uint64(b[off:]))
		}
		return int64(i32(off))
	}
	s := shmSample{Mode: int(i32(l.mode)), Count: i32(l.count), Valid: i32(l.valid) != 0}
	if s.Mode != 0 && s.Mode != 1 {
		return shmSample{}, sockReject(DropBadMode, "mode %d", s.Mode)
	}
	if !s.Valid {
		return s, nil
	}
	cSec, cUSec, cNSec := tt(l.clockSec), int64(i32(l.clockUSec)), int64(i32(l.clockNSec))
	rSec, rUSec, rNSec := tt(l.receiveSec), int64(i32(l.receiveUSec)), int64(i32(l.receiveNSec))
	if cSec <= 0 || rSec <= 0 || cUSec < 0 || cUSec >= 1e6 || rUSec < 0 || rUSec >= 1e6 {
		return shmSample{}, sockReject(DropBadTimestamp, "clock %d.%06d receive %d.%06d", cSec, cUSec, rSec, rUSec)
	}
	// Writers that predate the nanosecond fields leave them at zero (or
	// garbage): use them only when both agree with the microseconds.
	cFrac, rFrac := cUSec*1000, rUSec*1000
	if cNSec >= 0 && cNSec < 1e9 && rNSec >= 0 && rNSec < 1e9 && cNSec/1000 == cUSec && rNSec/1000 == rUSec {
		cFrac, rFrac = cNSec, rNSec
	}
	if math.Abs(float64(cSec-rSec)) > sockMaxOffset {
		return shmSample{}, sockReject(DropBadOffset, "clock %d s, receive %d s", cSec, rSec)
	}
	s.Reference = time.Unix(cSec, cFrac)
	s.System = time.Unix(rSec, rFrac)
	switch leap := i32(l.leap); leap {
	case 0:
		s.Leap = sources.LeapNone
	case 1:
		s.Leap = sources.LeapInsert
	case 2:
		s.Leap = sources.LeapDelete
	case 3:
		return shmSample{}, sockReject(DropNotSynced, "leap %d", leap)
	default:
		return shmSample{}, sockReject(DropBadLeap, "%d", leap)
	}
	s.Precision = int(i32(l.precision))
	if s.Precision < -30 || s.Precision > 10 {
		return shmSample{}, sockReject(DropBadPrecision, "2^%d s", s.Precision)
	}
	return s, nil
}

// shmPrecision converts a log2-seconds precision into a duration.
func shmPrecision(log2 int) time.Duration {
	return time.Duration(math.Ldexp(float64(time.Second), log2))
}

// DefaultSHMUncertainty is the uncertainty of an SHM sample when
// SHMConfig.Delay is zero. A segment's stated precision says nothing about
// the sample's accuracy: gpsd states 2^-20 s for its serial time, which
// is late by milliseconds to hundreds of them, and a source whose
// uncertainty is a thousand times too small can outvote good ones. A PPS
// unit is configured with a small delay (1 µs).
const DefaultSHMUncertainty = 20 * time.Millisecond

// NewSHM checks cfg and returns an SHM reader; Run attaches the segment.
func NewSHM(cfg SHMConfig, tb sources.Timebase, log *zap.Logger) (*SHM, error) {
	if cfg.Unit < 0 || cfg.Unit > 7 {
		return nil, fmt.Errorf("shm: unit %d: want 0 to 7", cfg.Unit)
	}
	if tb == nil {
		return nil, errors.New("shm: no timebase")
	}
	if _, err := packRefID(cfg.RefID); err != nil {
		return nil, fmt.Errorf("shm: unit %d: %w", cfg.Unit, err)
	}
	if cfg.Interval < 0 || cfg.Delay < 0 || cfg.Precision < 0 || cfg.FaultAfter < 0 {
		return nil, fmt.Errorf("shm: unit %d: negative interval, delay, precision or fault count", cfg.Unit)
	}
	if cfg.Segment != nil && cfg.Segment.unit != cfg.Unit {
		return nil, fmt.Errorf("shm: unit %d: given the segment of unit %d", cfg.Unit, cfg.Segment.unit)
	}
	if cfg.Perm&^0o777 != 0 {
		return nil, fmt.Errorf("shm: unit %d: permissions %v are more than rwx bits", cfg.Unit, cfg.Perm)
	}
	if cfg.Interval == 0 {
		cfg.Interval = time.Second
	}
	if cfg.Interval < time.Millisecond {
		return nil, fmt.Errorf("shm: unit %d: interval %s below 1 ms", cfg.Unit, cfg.Interval)
	}
	if cfg.FaultAfter == 0 {
		cfg.FaultAfter = 5
	}
	if cfg.Delay == 0 {
		cfg.Delay = DefaultSHMUncertainty
	}
	if cfg.Perm == 0 {
		cfg.Perm = shmDefaultPerm(cfg.Unit)
	}
	if cfg.key == 0 {
		cfg.key = SHMKeyBase + cfg.Unit
	}
	if log == nil {
		log = zap.NewNop()
	}
	name := cfg.Name
	if name == "" {
		name = fmt.Sprintf("shm %d", cfg.Unit)
	}
	s := &SHM{cfg: cfg, name: name, tb: tb, log: log.With(zap.String("source", name))}
	s.state.init("shm", s.device())
	return s, nil
}

// shmDefaultPerm is ntpd's mode for a unit's segment: 0600 for units 0
// and 1 (only root can write them, so only a writer running as root is
// believed) and 0666 for units 2 to 7.
func shmDefaultPerm(unit int) os.FileMode {
	if unit < 2 {
		return 0o600
	}
	return 0o666
}

// SHMSegment is an NTP shared-memory unit's segment attached by AttachSHM.
type SHMSegment struct {
	unit    int
	seg     shmSegment
	created bool
}

// AttachSHM attaches the segment of unit (0 to 7), creating it with ntpd's
// mode when it does not exist, for an SHM reader to use later
// (SHMConfig.Segment). timed attaches its units at start-up, when it may
// still hold CAP_IPC_OWNER: gpsd running as root makes units 0 and 1
// root's with mode 0600, which no other user can attach without it.
func AttachSHM(unit int) (*SHMSegment, error) {
	if unit < 0 || unit > 7 {
		return nil, fmt.Errorf("shm: unit %d: want 0 to 7", unit)
	}
	seg, created, err := shmAttachUnit(unit, SHMKeyBase+unit, shmDefaultPerm(unit))
	if err != nil {
		return nil, err
	}
	return &SHMSegment{unit: unit, seg: seg, created: created}, nil
}

// Detach detaches the segment; a reader using it must have stopped.
func (g *SHMSegment) Detach() error { return g.seg.Detach() }

// shmAttachUnit attaches a unit's segment (shmAttach) and checks its size;
// errors name the unit, and a refusal says what would allow it.
func shmAttachUnit(unit, key int, perm os.FileMode) (shmSegment, bool, error) {
	seg, created, err := shmAttach(key, shmNative.size, perm)
	if errors.Is(err, os.ErrPermission) {
		err = fmt.Errorf("%w (a segment another user made, such as units 0 and 1 of a gpsd running as root, mode 0600: "+
			"timed reads it only with CAP_IPC_OWNER while it starts, as timed.service gives it, or with the writer on units 2 to 7)", err)
	}
	if err != nil {
		return nil, false, fmt.Errorf("shm: unit %d: %w", unit, err)
	}
	if seg.Size() < shmNative.size {
		seg.Detach()
		return nil, false, fmt.Errorf("shm: unit %d: segment has %d bytes, want at least %d", unit, seg.Size(), shmNative.size)
	}
	return seg, created, nil
}

// device is the unit and key, as Status and Options show it.
func (s *SHM) device() string {
	return fmt.Sprintf("unit %d (key %#x)", s.cfg.Unit, s.cfg.key)
}

// Name identifies the source.
func (s *SHM) Name() string { return s.name }

// Options returns the engine options: kind "shm", the unit as the address
// and the read interval as the poll interval.
func (s *SHM) Options() sources.SourceOptions {
	p := shmLog2(s.cfg.Interval)
	return sources.SourceOptions{Kind: "shm", Address: s.device(), MinPoll: p, MaxPoll: p,
		Prefer: s.cfg.Prefer, NoSelect: s.cfg.NoSelect, Trust: s.cfg.Trust, Require: s.cfg.Require}
}

// shmLog2 rounds an interval to log2 seconds within the engine's -6..17.
func shmLog2(d time.Duration) int {
	p := int(math.Round(math.Log2(d.Seconds())))
	return min(max(p, -6), 17)
}

// Status reports the segment's state and counters.
func (s *SHM) Status() RefclockStatus { return s.state.status() }

// shmSegment is an attached segment.
type shmSegment interface {
	// Bytes copies the segment into b (len(b) bytes at most).
	Bytes(b []byte)
	// Count reads the count field at offset off atomically.
	Count(off int) int32
	// ClearValid sets the valid field at offset off to 0; it fails on a
	// read-only attachment.
	ClearValid(off int) error
	// Size is the segment's size in bytes.
	Size() int
	// Detach detaches the segment.
	Detach() error
}

// Run reads the segment every Interval until ctx is done.
func (s *SHM) Run(ctx context.Context, r sources.Reporter) error {
	var (
		seg     shmSegment
		created bool
		held    = s.cfg.Segment != nil
		err     error
	)
	if held {
		seg, created = s.cfg.Segment.seg, s.cfg.Segment.created
	} else if seg, created, err = shmAttachUnit(s.cfg.Unit, s.cfg.key, s.cfg.Perm); err != nil {
		s.state.setConnected(false, err.Error())
		r.Fault(err.Error())
		return err
	}
	defer func() {
		if !held {
			seg.Detach()
		}
		s.state.setConnected(false, "stopped")
	}()
	s.state.setConnected(true, "")
	s.log.Info("reading SHM segment", zap.Int("unit", s.cfg.Unit), zap.Bool("created", created),
		zap.Bool("attached_at_start", held))

	rd := shmReader{seg: seg, layout: shmNative, buf: make([]byte, shmNative.size)}
	tick := time.NewTicker(s.cfg.Interval)
	defer tick.Stop()
	missed := 0
	faulted := false
	for {
		m, ok, err := rd.poll(s)
		if err != nil {
			s.state.drop(s.log, sockDropReason(err), err)
		}
		if ok {
			missed = 0
			s.state.deliver(r, m, &faulted)
		} else {
			missed++
			if missed >= s.cfg.FaultAfter {
				reason := fmt.Sprintf("no valid sample in SHM unit %d for %d reads", s.cfg.Unit, missed)
				if err != nil {
					reason += ": " + err.Error()
				}
				s.state.setReason(reason)
				r.Fault(reason)
				faulted = true
			}
		}
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
		}
	}
}

// shmReader reads samples from a segment with the count/valid handshake.
type shmReader struct {
	seg    shmSegment
	layout shmLayout
	buf    []byte
	// lastCount is the count of the last sample taken, used to tell new
	// samples from old ones where valid cannot be cleared.
	lastCount  int32
	lastSystem time.Time
	haveLast   bool
}

// poll takes the segment's sample if there is a new valid one. It returns
// ok false and a nil error when there is simply nothing new.
func (rd *shmReader) poll(s *SHM) (sources.Measurement, bool, error) {
	rd.seg.Bytes(rd.buf)
	smp, err := decodeSHM(rd.buf, rd.layout)
	if err != nil {
		// A sample that cannot be used is consumed all the same, so that
		// it is counted once and not at every read.
		rd.seg.ClearValid(rd.layout.valid)
		return sources.Measurement{}, false, err
	}
	if !smp.Valid {
		return sources.Measurement{}, false, nil
	}
	if smp.Mode == 1 && rd.seg.Count(rd.layout.count) != smp.Count {
		// The writer changed the sample while it was copied; the next
		// read sees it whole.
		return sources.Measurement{}, false, sockReject(DropCountChanged, "count was %d", smp.Count)
	}
	if err := rd.seg.ClearValid(rd.layout.valid); err != nil {
		// Read-only: valid stays set, so only a changed count or stamp
		// is a new sample.
		if rd.haveLast && smp.Count == rd.lastCount && smp.System.Equal(rd.lastSystem) {
			return sources.Measurement{}, false, nil
		}
	}
	rd.lastCount, rd.lastSystem, rd.haveLast = smp.Count, smp.System, true
	prec := s.cfg.Precision
	if prec == 0 {
		prec = shmPrecision(smp.Precision)
	}
	local := s.tb.FromSystem(smp.System) // the disciplined clock, maybe not the system clock
	m := sources.Measurement{
		Local:          local,
		Offset:         smp.Reference.Add(s.cfg.Offset).Sub(local),
		Precision:      prec,
		RootDispersion: s.cfg.Delay,
		Stratum:        0,
		Leap:           smp.Leap,
		Stamping:       sources.StampUser,
	}
	if m.RootDispersion == 0 {
		m.RootDispersion = prec
	}
	refID := s.cfg.RefID
	if refID == "" {
		refID = "SHM"
	}
	m.RefID, _ = packRefID(refID)
	return m, true, nil
}
