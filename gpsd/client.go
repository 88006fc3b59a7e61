package gpsd

import (
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"net"
	"strings"
	"sync"
	"syscall"
	"time"

	"go.uber.org/zap"

	"github.com/timed-project/timed/sources"
)

// Defaults of ClientConfig.
const (
	// DefaultGpsdAddress is where gpsd listens unless configured otherwise.
	DefaultGpsdAddress = "127.0.0.1:2947"
	// DefaultTOFFUncertainty is the uncertainty given to a TOFF
	// measurement (serial NMEA time) when ClientConfig.Delay is zero: the
	// time of a serial sentence varies by some milliseconds with the
	// receiver's firmware and the serial line.
	DefaultTOFFUncertainty = 20 * time.Millisecond
	// DefaultTOFFPrecision is the precision of a TOFF measurement when
	// ClientConfig.Precision is zero.
	DefaultTOFFPrecision = time.Millisecond
)

// Reconnection back-off: the first retry after clientMinBackoff, doubling
// to clientMaxBackoff.
const (
	clientMinBackoff  = time.Second
	clientMaxBackoff  = 64 * time.Second
	clientDialTimeout = 5 * time.Second
	// clientPPSPrecision is the precision of a PPS measurement when
	// neither the report nor ClientConfig.Precision states one.
	clientPPSPrecision = time.Microsecond
)

// ClientConfig configures a Client.
type ClientConfig struct {
	// Name names the source; "" means "gpsd ADDRESS", followed by the
	// device when one is configured and by "pps" for PPS reports.
	Name string
	// Address is gpsd's TCP address (host:port) or the path of its Unix
	// socket (anything starting with "/"); "" means DefaultGpsdAddress.
	Address string
	// Device is the path of the receiver gpsd reads (such as
	// /dev/ttyACM0); "" means the first device gpsd reports.
	Device string
	// MinMode is the fix mode measurements need: 2 (2D) or 3 (3D); 0
	// means 3.
	MinMode int
	// PPS selects gpsd's PPS reports (the pulse-per-second edge, fine)
	// instead of its TOFF reports (the time of the serial sentence,
	// coarse). Configure two clients, one of each, to have both, as chrony
	// does with two refclocks.
	PPS bool
	// Offset is added to the reference time (chrony's offset): the
	// receiver's known lag of its serial time, for example.
	Offset time.Duration
	// Delay is the assumed uncertainty of the signal (chrony's delay); it
	// is the measurements' root dispersion. Zero means
	// DefaultTOFFUncertainty for TOFF and the precision for PPS.
	Delay time.Duration
	// Precision is the resolution of the measurements; zero means
	// DefaultTOFFPrecision for TOFF, and for PPS the report's precision or
	// clientPPSPrecision.
	Precision time.Duration
	// RefID is the 1 to 4 ASCII character reference identifier; "" means
	// "GPS" for TOFF and "PPS" for PPS.
	RefID string
	// Selection options for the engine, as sources.SourceOptions.
	Prefer, NoSelect, Trust, Require bool
}

// Client is a time source that reads gpsd's JSON reports: it pairs the
// receiver's time (TOFF or PPS, see ClientConfig.PPS) with the system time
// at which it arrived. It implements sources.Source.
type Client struct {
	cfg     ClientConfig
	network string
	refID   uint32
	tb      sources.Timebase
	log     *zap.Logger

	mu     sync.Mutex
	status RefclockStatus
}

// NewClient checks cfg and returns a Client that reads gpsd at
// cfg.Address with the local time from tb.
func NewClient(cfg ClientConfig, tb sources.Timebase, log *zap.Logger) (*Client, error) {
	if tb == nil {
		return nil, errors.New("gpsd: client: no timebase")
	}
	if log == nil {
		log = zap.NewNop()
	}
	if cfg.Address == "" {
		cfg.Address = DefaultGpsdAddress
	}
	network := "tcp"
	if strings.HasPrefix(cfg.Address, "/") {
		network = "unix"
	} else if _, _, err := net.SplitHostPort(cfg.Address); err != nil {
		return nil, fmt.Errorf("gpsd: client: address %q: %w", cfg.Address, err)
	}
	switch cfg.MinMode {
	case 0:
		cfg.MinMode = 3
	case 2, 3:
	default:
		return nil, fmt.Errorf("gpsd: client: min mode %d: must be 2 or 3", cfg.MinMode)
	}
	if cfg.Delay < 0 || cfg.Precision < 0 {
		return nil, fmt.Errorf("gpsd: client: delay %v and precision %v must not be negative", cfg.Delay, cfg.Precision)
	}
	if cfg.RefID == "" {
		cfg.RefID = "GPS"
		if cfg.PPS {
			cfg.RefID = "PPS"
		}
	}
	refID, err := packRefID(cfg.RefID)
	if err != nil {
		return nil, err
	}
	c := &Client{cfg: cfg, network: network, refID: refID, tb: tb, log: log}
	c.status = RefclockStatus{Kind: "gpsd", Device: c.deviceLabel(), Reason: "not started", Dropped: map[string]uint64{}}
	return c, nil
}

func (c *Client) deviceLabel() string {
	if c.cfg.Device == "" {
		return c.cfg.Address
	}
	return c.cfg.Address + " " + c.cfg.Device
}

// Name is the configured name, or "gpsd ADDRESS" followed by the device
// when one is configured and by "pps" for a client of PPS reports.
func (c *Client) Name() string {
	if c.cfg.Name != "" {
		return c.cfg.Name
	}
	n := "gpsd " + c.deviceLabel()
	if c.cfg.PPS {
		n += " pps"
	}
	return n
}

// Options are the engine options of the source: kind "gpsd", address the
// gpsd address (and device), and the configured selection options.
func (c *Client) Options() sources.SourceOptions {
	return sources.SourceOptions{Kind: "gpsd", Address: c.deviceLabel(),
		Prefer: c.cfg.Prefer, NoSelect: c.cfg.NoSelect, Trust: c.cfg.Trust, Require: c.cfg.Require}
}

// Status is a snapshot of the client's state.
func (c *Client) Status() RefclockStatus {
	c.mu.Lock()
	defer c.mu.Unlock()
	s := c.status
	s.Dropped = maps.Clone(c.status.Dropped)
	return s
}

// Run reads gpsd until ctx is done, reconnecting with a back-off of 1 s
// doubling to 64 s whenever gpsd cannot be reached or closes the
// connection. It returns nil when ctx is done.
func (c *Client) Run(ctx context.Context, r sources.Reporter) error {
	backoff := clientMinBackoff
	for {
		healthy, err := c.session(ctx, r)
		if ctx.Err() != nil {
			c.setDisconnected("stopped")
			return nil
		}
		if healthy {
			backoff = clientMinBackoff
		}
		reason := fmt.Sprintf("gpsd at %s: %s, retrying in %s", c.cfg.Address, clientErrText(err), backoff)
		c.setDisconnected(reason)
		r.Fault(reason)
		c.log.Warn("gpsd connection lost", zap.String("address", c.cfg.Address), zap.Error(err), zap.Duration("retry_in", backoff))
		select {
		case <-ctx.Done():
			c.setDisconnected("stopped")
			return nil
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, clientMaxBackoff)
	}
}

// clientErrText says in a few words why a session ended: the errno alone
// ("connection refused") when there is one.
func clientErrText(err error) string {
	var errno syscall.Errno
	switch {
	case err == nil, errors.Is(err, io.EOF):
		return "connection closed"
	case errors.As(err, &errno):
		return errno.Error()
	default:
		return strings.TrimPrefix(err.Error(), "gpsd: ")
	}
}

func (c *Client) setDisconnected(reason string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.status.Connected = false
	c.status.Reason = reason
	c.status.Mode = 0
	c.status.Satellites = 0
}

// clientSession is the state of one connection.
type clientSession struct {
	device  string // the device measurements come from ("" until chosen)
	mode    int    // the last TPV mode of that device
	fixSeen bool   // a TPV of the device has been seen
	fault   string // the fault last reported
}

// session runs one connection to gpsd. healthy reports whether gpsd
// answered with a usable VERSION, so that the back-off starts over. Its
// errors do not name the address: Run says it with them.
func (c *Client) session(ctx context.Context, r sources.Reporter) (healthy bool, err error) {
	d := net.Dialer{Timeout: clientDialTimeout}
	conn, err := d.DialContext(ctx, c.network, c.cfg.Address)
	if err != nil {
		return false, err
	}
	defer conn.Close()
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	defer stop()

	if _, err := io.WriteString(conn, c.watchCommand()); err != nil {
		return false, fmt.Errorf("sending WATCH: %w", err)
	}
	c.mu.Lock()
	c.status.Connected = true
	c.status.Reason = "waiting for gpsd's VERSION"
	c.mu.Unlock()
	c.log.Info("connected to gpsd", zap.String("address", c.cfg.Address), zap.String("device", c.cfg.Device))

	s := &clientSession{device: c.cfg.Device}
	lr := newJSONLineReader(conn)
	for {
		line, err := lr.readLine()
		if err != nil {
			return healthy, err
		}
		rep, err := jsonDecodeReport(line)
		if err != nil {
			c.drop("bad report")
			c.log.Debug("bad gpsd report", zap.Error(err))
			continue
		}
		if rep.Class == "VERSION" {
			if rep.ProtoMajor != 3 {
				return false, fmt.Errorf("protocol %d.%d, need 3.x", rep.ProtoMajor, rep.ProtoMinor)
			}
			healthy = true
			c.log.Info("gpsd version", zap.String("release", rep.Release), zap.Int("proto_major", rep.ProtoMajor), zap.Int("proto_minor", rep.ProtoMinor))
			c.setFault(r, s, "no fix yet")
			continue
		}
		c.handle(r, s, &rep)
	}
}

// watchCommand is the ?WATCH command the client sends.
func (c *Client) watchCommand() string {
	cmd := `?WATCH={"enable":true,"json":true,"pps":true`
	if c.cfg.Device != "" {
		cmd += `,"device":` + clientJSONString(c.cfg.Device)
	}
	return cmd + "}\n"
}

// clientJSONString quotes s as a JSON string.
func clientJSONString(s string) string {
	var b strings.Builder
	b.WriteByte('"')
	for _, r := range s {
		switch {
		case r == '"' || r == '\\':
			b.WriteByte('\\')
			b.WriteRune(r)
		case r < 0x20:
			fmt.Fprintf(&b, `\u%04x`, r)
		default:
			b.WriteRune(r)
		}
	}
	b.WriteByte('"')
	return b.String()
}

// setFault reports a fault (or clears it with "") when it changed, and
// keeps it as the status's reason.
func (c *Client) setFault(r sources.Reporter, s *clientSession, reason string) {
	c.mu.Lock()
	c.status.Reason = reason
	c.mu.Unlock()
	if reason != s.fault {
		s.fault = reason
		r.Fault(reason)
	}
}

func (c *Client) drop(reason string) {
	c.mu.Lock()
	c.status.Dropped[reason]++
	c.mu.Unlock()
}

// handle acts on one report other than VERSION.
func (c *Client) handle(r sources.Reporter, s *clientSession, rep *jsonReport) {
	switch rep.Class {
	case "DEVICES":
		paths := make([]string, 0, len(rep.Devices))
		for _, d := range rep.Devices {
			paths = append(paths, d.Path)
		}
		if c.cfg.Device != "" {
			found := false
			for _, p := range paths {
				found = found || p == c.cfg.Device
			}
			if !found {
				c.setFault(r, s, fmt.Sprintf("device %s not among gpsd's devices [%s]", c.cfg.Device, strings.Join(paths, " ")))
			}
		} else if s.device == "" && len(paths) > 0 {
			s.device = paths[0]
			c.log.Info("gpsd device chosen", zap.String("device", s.device))
		}
	case "DEVICE":
		if c.cfg.Device != "" && rep.Path == c.cfg.Device && strings.HasPrefix(s.fault, "device ") {
			c.setFault(r, s, "no fix yet")
		}
		if s.device == "" && rep.Path != "" {
			s.device = rep.Path
		}
	case "TPV":
		if !c.ours(s, rep.Device) {
			return
		}
		s.mode, s.fixSeen = rep.Mode, true
		c.mu.Lock()
		c.status.Mode = rep.Mode
		c.mu.Unlock()
		if rep.Mode < c.cfg.MinMode {
			c.setFault(r, s, fmt.Sprintf("no %dD fix: mode %d", c.cfg.MinMode, rep.Mode))
		} else {
			c.setFault(r, s, "")
		}
		if rep.Leapseconds != nil {
			c.log.Debug("gpsd leap seconds", zap.Int("leapseconds", *rep.Leapseconds))
		}
	case "SKY":
		if !c.ours(s, rep.Device) {
			return
		}
		c.mu.Lock()
		c.status.Satellites = rep.jsonSatellitesUsed()
		c.mu.Unlock()
	case "TOFF", "PPS":
		if (rep.Class == "PPS") != c.cfg.PPS {
			return
		}
		if !c.ours(s, rep.Device) {
			c.drop("other device")
			return
		}
		r.Polled()
		switch {
		case !s.fixSeen:
			c.drop("no fix yet")
			return
		case s.mode < c.cfg.MinMode:
			c.drop("no fix")
			return
		}
		m := c.measurement(rep)
		c.mu.Lock()
		c.status.Samples++
		c.status.LastSample = m.Local
		c.mu.Unlock()
		r.Measured(m)
	case "ERROR":
		c.log.Warn("gpsd error", zap.String("message", rep.Message))
		c.setFault(r, s, "gpsd: "+rep.Message)
	}
}

// ours reports whether a report of device belongs to the device the
// client follows, choosing the first one seen when none is configured.
func (c *Client) ours(s *clientSession, device string) bool {
	if s.device == "" && device != "" {
		s.device = device
	}
	return device == "" || device == s.device
}

// measurement turns a TOFF or PPS report into a measurement.
func (c *Client) measurement(rep *jsonReport) sources.Measurement {
	ref := rep.jsonRefTime().Add(c.cfg.Offset)
	local := c.tb.FromSystem(rep.jsonClockTime())
	prec := c.cfg.Precision
	unc := c.cfg.Delay
	if c.cfg.PPS {
		if prec == 0 {
			prec = rep.jsonPrecision(clientPPSPrecision)
		}
		if unc == 0 {
			unc = prec
		}
	} else {
		if prec == 0 {
			prec = DefaultTOFFPrecision
		}
		if unc == 0 {
			unc = DefaultTOFFUncertainty
		}
	}
	return sources.Measurement{
		Local:          local,
		Offset:         ref.Sub(local),
		RootDispersion: unc,
		Precision:      prec,
		Stratum:        0,
		Leap:           sources.LeapNone,
		RefID:          c.refID,
		Stamping:       sources.StampUser,
	}
}
