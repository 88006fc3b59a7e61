package gpsd

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"maps"
	"math"
	"net"
	"os"
	"os/user"
	"strconv"
	"sync"
	"syscall"
	"time"
	"unsafe"

	"go.uber.org/zap"

	"github.com/timed-project/timed/sources"
)

// SockConfig configures a reader of chrony's SOCK reference-clock protocol:
// timed listens on a Unix datagram socket, and gpsd (or another tool) sends
// it one datagram per sample.
type SockConfig struct {
	// Path is the socket's path, such as /run/chrony.ttyACM0.sock (the path
	// gpsd writes to for the device /dev/ttyACM0 when it runs as root).
	Path string
	// Name names the source; "" means "sock PATH".
	Name string
	// Group, when set, is the name or numeric ID of the group that may
	// also write to the socket: the socket is then made mode 0660 and given
	// to that group. Otherwise it is mode 0600 (only its owner may write).
	Group string
	// RefID is the reference identifier, up to 4 ASCII characters; ""
	// means "SOCK" for time samples and "PPS" for pulse samples.
	RefID string
	// Offset is added to the reference time of every sample (chrony's
	// refclock offset option).
	Offset time.Duration
	// Delay is the assumed uncertainty of the samples' timing; it becomes
	// each measurement's root dispersion. Zero means the precision.
	Delay time.Duration
	// Precision is the resolution of the samples; zero means 1 µs (the
	// resolution of the timeval in a SOCK sample).
	Precision time.Duration
	// Timeout is how long the source may go without a valid sample before
	// it reports a fault; zero means 10 s.
	Timeout time.Duration
	// Prefer, NoSelect, Trust and Require are the engine's selection
	// options for this source (see sources.SourceOptions).
	Prefer, NoSelect, Trust, Require bool
	// Conn, when set, is the socket already bound at Path by someone else
	// (systemd's socket activation: a unit that may not write to /run gets
	// /run/chrony.DEVICE.sock from systemd). Run reads from it and neither
	// closes nor removes it; Group does not apply.
	Conn *net.UnixConn
}

// Sock is the SOCK reference-clock reader. It implements sources.Source.
type Sock struct {
	cfg   SockConfig
	name  string
	tb    sources.Timebase
	log   *zap.Logger
	state sockState
}

// Reasons a SOCK datagram or an SHM sample is dropped: the keys of
// RefclockStatus.Dropped for the sock and shm kinds.
const (
	DropWrongSize    = "wrong size"
	DropWrongMagic   = "wrong magic number"
	DropBadTimestamp = "invalid timestamp"
	DropBadOffset    = "invalid offset"
	DropBadLeap      = "invalid leap indicator"
	DropBadMode      = "unsupported mode"
	DropCountChanged = "count changed while reading"
	DropBadPrecision = "invalid precision"
	DropNotSynced    = "leap indicator says not synchronized"
)

// sockMagic is "SOCK" as a native int, the last field of every sample.
const sockMagic = 0x534f434b

// sockMaxOffset bounds the offset a sample may claim (about 100 years):
// beyond it the sample is nonsense and would overflow a time.Duration.
const sockMaxOffset = 100 * 365 * 24 * 3600.0

// sockTimeSize is the size of time_t and suseconds_t (a C long) on this
// architecture: 8 on 64-bit, 4 on 32-bit. 32-bit systems built with a
// 64-bit time_t (glibc's _TIME_BITS=64) send the 64-bit layout; the
// decoder accepts both there, as chrony does.
const sockTimeSize = int(unsafe.Sizeof(uintptr(0)))

// sockSampleSize returns the size of struct sock_sample when time_t and
// suseconds_t have timeSize bytes: a timeval, a double and four ints. The
// double is 8-aligned after a 16-byte timeval and follows an 8-byte one
// directly, so there is never padding.
func sockSampleSize(timeSize int) int { return 2*timeSize + 8 + 4*4 }

// sockSample is one decoded SOCK datagram.
type sockSample struct {
	// System is the system clock's reading at the sample.
	System time.Time
	// Offset is the true time minus the system time.
	Offset time.Duration
	// Pulse is set for a PPS sample: Offset is then only meaningful
	// modulo one second.
	Pulse bool
	// Leap is the leap second warning (ignored for pulses).
	Leap sources.Leap
}

// sockDecodeError is a decoding failure with the drop reason it counts
// under.
type sockDecodeError struct {
	reason string
	detail string
}

func (e *sockDecodeError) Error() string { return e.reason + ": " + e.detail }

func sockReject(reason, format string, args ...any) error {
	return &sockDecodeError{reason: reason, detail: fmt.Sprintf(format, args...)}
}

// sockDropReason returns the drop reason of a decoding error.
func sockDropReason(err error) string {
	var de *sockDecodeError
	if errors.As(err, &de) {
		return de.reason
	}
	return "invalid"
}

// decodeSockSample decodes a datagram in the native byte order. It accepts
// the layout with this architecture's time_t and, on 32-bit systems, the
// one with a 64-bit time_t.
func decodeSockSample(b []byte) (sockSample, error) {
	switch {
	case len(b) == sockSampleSize(sockTimeSize):
		return decodeSockSampleLayout(b, sockTimeSize)
	case sockTimeSize == 4 && len(b) == sockSampleSize(8):
		return decodeSockSampleLayout(b, 8)
	}
	return sockSample{}, sockReject(DropWrongSize, "%d bytes, want %d", len(b), sockSampleSize(sockTimeSize))
}

// decodeSockSampleLayout decodes b as a sock_sample whose time_t and
// suseconds_t have timeSize (4 or 8) bytes.
func decodeSockSampleLayout(b []byte, timeSize int) (sockSample, error) {
	if len(b) != sockSampleSize(timeSize) {
		return sockSample{}, sockReject(DropWrongSize, "%d bytes, want %d", len(b), sockSampleSize(timeSize))
	}
	ne := binary.NativeEndian
	word := func(off int) int64 {
		if timeSize == 8 {
			return int64(ne.Uint64(b[off:]))
		}
		return int64(int32(ne.Uint32(b[off:])))
	}
	sec, usec := word(0), word(timeSize)
	off := 2 * timeSize
	offset := math.Float64frombits(ne.Uint64(b[off:]))
	pulse := int32(ne.Uint32(b[off+8:]))
	leap := int32(ne.Uint32(b[off+12:]))
	magic := ne.Uint32(b[off+20:])
	if magic != sockMagic {
		return sockSample{}, sockReject(DropWrongMagic, "%#x, want %#x", magic, sockMagic)
	}
	if sec <= 0 || usec < 0 || usec >= 1e6 {
		return sockSample{}, sockReject(DropBadTimestamp, "tv_sec %d tv_usec %d", sec, usec)
	}
	if math.IsNaN(offset) || math.Abs(offset) > sockMaxOffset {
		return sockSample{}, sockReject(DropBadOffset, "%g s", offset)
	}
	s := sockSample{
		System: time.Unix(sec, usec*1000),
		Offset: time.Duration(math.Round(offset * 1e9)),
		Pulse:  pulse != 0,
	}
	if !s.Pulse {
		switch leap {
		case 0:
			s.Leap = sources.LeapNone
		case 1:
			s.Leap = sources.LeapInsert
		case 2:
			s.Leap = sources.LeapDelete
		default:
			return sockSample{}, sockReject(DropBadLeap, "%d", leap)
		}
	}
	return s, nil
}

// sockFoldPulse reduces a pulse's offset to the nearest second boundary,
// within ±0.5 s: a pulse marks the start of a second without saying which.
func sockFoldPulse(d time.Duration) time.Duration {
	d %= time.Second
	switch {
	case d >= time.Second/2:
		d -= time.Second
	case d < -time.Second/2:
		d += time.Second
	}
	return d
}

// NewSock checks cfg and returns a SOCK reader; Run creates the socket.
func NewSock(cfg SockConfig, tb sources.Timebase, log *zap.Logger) (*Sock, error) {
	if cfg.Path == "" {
		return nil, errors.New("sock: no socket path")
	}
	if len(cfg.Path) >= 108 {
		return nil, fmt.Errorf("sock: %s: path longer than 107 bytes", cfg.Path)
	}
	if tb == nil {
		return nil, errors.New("sock: no timebase")
	}
	if _, err := packRefID(cfg.RefID); err != nil {
		return nil, fmt.Errorf("sock: %s: %w", cfg.Path, err)
	}
	if cfg.Precision < 0 || cfg.Delay < 0 || cfg.Timeout < 0 {
		return nil, fmt.Errorf("sock: %s: negative precision, delay or timeout", cfg.Path)
	}
	if cfg.Precision == 0 {
		cfg.Precision = time.Microsecond
	}
	if cfg.Timeout == 0 {
		cfg.Timeout = 10 * time.Second
	}
	if cfg.Conn != nil {
		if a, ok := cfg.Conn.LocalAddr().(*net.UnixAddr); !ok || a.Name != cfg.Path {
			return nil, fmt.Errorf("sock: %s: given a socket bound elsewhere (%v)", cfg.Path, cfg.Conn.LocalAddr())
		}
	}
	if cfg.Group != "" {
		if _, err := sockLookupGroup(cfg.Group); err != nil {
			return nil, fmt.Errorf("sock: %s: %w", cfg.Path, err)
		}
	}
	if log == nil {
		log = zap.NewNop()
	}
	name := cfg.Name
	if name == "" {
		name = "sock " + cfg.Path
	}
	s := &Sock{cfg: cfg, name: name, tb: tb, log: log.With(zap.String("source", name))}
	s.state.init("sock", cfg.Path)
	return s, nil
}

// sockLookupGroup resolves a group name or numeric ID.
func sockLookupGroup(g string) (int, error) {
	if id, err := strconv.Atoi(g); err == nil && id >= 0 {
		return id, nil
	}
	grp, err := user.LookupGroup(g)
	if err != nil {
		return 0, fmt.Errorf("group %q: %w", g, err)
	}
	return strconv.Atoi(grp.Gid)
}

// Name identifies the source.
func (s *Sock) Name() string { return s.name }

// Options returns the engine options: kind "sock", the socket path as the
// address, and a poll interval of 1 s (the samples come when the writer
// sends them).
func (s *Sock) Options() sources.SourceOptions {
	return sources.SourceOptions{Kind: "sock", Address: s.cfg.Path,
		Prefer: s.cfg.Prefer, NoSelect: s.cfg.NoSelect, Trust: s.cfg.Trust, Require: s.cfg.Require}
}

// Status reports the socket's state and counters.
func (s *Sock) Status() RefclockStatus { return s.state.status() }

// Run listens on the socket until ctx is done. A stale socket file left at
// the path is removed first (anything else there is an error), and the
// socket is removed when Run returns.
func (s *Sock) Run(ctx context.Context, r sources.Reporter) error {
	conn, held := s.cfg.Conn, s.cfg.Conn != nil
	if !held {
		var err error
		if conn, err = s.listen(); err != nil {
			s.state.setConnected(false, err.Error())
			r.Fault(err.Error())
			return err
		}
		created, _ := os.Lstat(s.cfg.Path)
		defer func() {
			conn.Close()
			// Remove the socket only if it is still ours.
			if now, err := os.Lstat(s.cfg.Path); err == nil && created != nil && os.SameFile(now, created) {
				os.Remove(s.cfg.Path)
			}
		}()
	}
	defer s.state.setConnected(false, "stopped")
	s.state.setConnected(true, "")
	s.log.Info("listening for SOCK samples", zap.String("path", s.cfg.Path), zap.Bool("from_service_manager", held))

	// Cancelling ends a read in progress: by closing a socket of our own,
	// by a deadline in the past on one that outlives Run. The loop looks
	// at ctx after setting its own deadline, so a cancellation between the
	// two is not lost.
	done := make(chan struct{})
	defer close(done)
	go func() {
		select {
		case <-ctx.Done():
			if held {
				conn.SetReadDeadline(time.Unix(1, 0))
			} else {
				conn.Close()
			}
		case <-done:
		}
	}()

	// NewSock checked the configured refid.
	refID, _ := packRefID(s.cfg.RefID)
	ppsID := refID
	if s.cfg.RefID == "" {
		refID, _ = packRefID("SOCK")
		ppsID, _ = packRefID("PPS")
	}
	// One byte more than the largest accepted sample shows an oversized
	// datagram as too long instead of truncating it to a valid size.
	buf := make([]byte, sockSampleSize(8)+1)
	faulted := false
	for {
		if err := conn.SetReadDeadline(time.Now().Add(s.cfg.Timeout)); err != nil {
			return fmt.Errorf("sock: %s: %w", s.cfg.Path, err)
		}
		if ctx.Err() != nil {
			return nil
		}
		n, _, err := conn.ReadFrom(buf)
		if ctx.Err() != nil {
			return nil
		}
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				reason := fmt.Sprintf("no valid sample on %s for %s", s.cfg.Path, s.cfg.Timeout)
				s.state.setReason(reason)
				if !faulted {
					s.log.Warn("no SOCK samples", zap.Duration("for", s.cfg.Timeout))
				}
				r.Fault(reason)
				faulted = true
				continue
			}
			err = fmt.Errorf("sock: %s: %w", s.cfg.Path, err)
			s.state.setConnected(false, err.Error())
			r.Fault(err.Error())
			return err
		}
		sample, err := decodeSockSample(buf[:n])
		if err != nil {
			s.state.drop(s.log, sockDropReason(err), err)
			continue
		}
		// The sample says how far the reference is from the system clock
		// at System; the measurement is against the disciplined clock,
		// which may be another (the virtual clock).
		local := s.tb.FromSystem(sample.System)
		m := sources.Measurement{
			Local:          local,
			Offset:         sample.System.Add(sample.Offset + s.cfg.Offset).Sub(local),
			Precision:      s.cfg.Precision,
			RootDispersion: s.cfg.Delay,
			Stratum:        0,
			Leap:           sample.Leap,
			RefID:          refID,
			Stamping:       sources.StampUser,
		}
		if m.RootDispersion == 0 {
			m.RootDispersion = s.cfg.Precision
		}
		if sample.Pulse {
			m.Offset = sockFoldPulse(m.Offset)
			m.RefID = ppsID
		}
		s.state.deliver(r, m, &faulted)
	}
}

// listen removes a stale socket at the path and binds a new one with the
// configured permissions.
func (s *Sock) listen() (*net.UnixConn, error) {
	path := s.cfg.Path
	if st, err := os.Lstat(path); err == nil {
		if st.Mode()&os.ModeSocket == 0 {
			return nil, fmt.Errorf("sock: %s: exists and is not a socket", path)
		}
		if err := os.Remove(path); err != nil {
			return nil, fmt.Errorf("sock: removing stale socket: %w%s", err, sockHint(err))
		}
	}
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		return nil, fmt.Errorf("sock: %w%s", err, sockHint(err))
	}
	// Until the chmod, the socket has the umask's mode; writing to a
	// datagram socket needs write permission, which the usual umasks deny
	// to group and others.
	perm := os.FileMode(0o600)
	if s.cfg.Group != "" {
		gid, err := sockLookupGroup(s.cfg.Group)
		if err == nil {
			err = os.Chown(path, -1, gid)
		}
		if err != nil {
			conn.Close()
			os.Remove(path)
			return nil, fmt.Errorf("sock: %s: group: %w", path, err)
		}
		perm = 0o660
	}
	if err := os.Chmod(path, perm); err != nil {
		conn.Close()
		os.Remove(path)
		return nil, fmt.Errorf("sock: %s: %w", path, err)
	}
	return conn, nil
}

// sockHint says what to do when timed may not make its socket, as under
// timed.service (user _timed, /run read-only).
func sockHint(err error) string {
	if errors.Is(err, os.ErrPermission) || errors.Is(err, syscall.EROFS) {
		return " (under systemd, systemd makes the socket and hands it to timed: " +
			"systemctl enable --now timed-sock@DEVICE.socket for /run/chrony.DEVICE.sock, then restart timed)"
	}
	return ""
}

// sockState is the status and counters a SOCK or SHM reader shares with
// Status callers.
type sockState struct {
	mu         sync.Mutex
	st         RefclockStatus
	dropWarned map[string]time.Time
}

func (s *sockState) init(kind, device string) {
	s.st = RefclockStatus{Kind: kind, Device: device, Reason: "not started", Dropped: map[string]uint64{}}
	s.dropWarned = map[string]time.Time{}
}

func (s *sockState) status() RefclockStatus {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := s.st
	out.Dropped = maps.Clone(s.st.Dropped)
	return out
}

func (s *sockState) setConnected(connected bool, reason string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.st.Connected = connected
	s.st.Reason = reason
}

func (s *sockState) setReason(reason string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.st.Reason = reason
}

// deliver hands m to the engine and records it, clearing a fault the
// reader reported (*faulted) first.
func (s *sockState) deliver(r sources.Reporter, m sources.Measurement, faulted *bool) {
	if *faulted {
		r.Fault("")
		*faulted = false
	}
	r.Polled()
	r.Measured(m)
	s.mu.Lock()
	defer s.mu.Unlock()
	s.st.Reason = ""
	s.st.Samples++
	s.st.LastSample = m.Local
}

// drop counts a dropped input and logs it, each reason at most once a
// minute.
func (s *sockState) drop(log *zap.Logger, reason string, err error) {
	now := time.Now()
	s.mu.Lock()
	s.st.Dropped[reason]++
	total := s.st.Dropped[reason]
	last, warned := s.dropWarned[reason]
	loud := !warned || now.Sub(last) >= time.Minute
	if loud {
		s.dropWarned[reason] = now
	}
	s.mu.Unlock()
	if loud {
		log.Warn("sample dropped", zap.String("reason", reason), zap.Error(err), zap.Uint64("total", total))
	}
}
