package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/facebook/time/ntp/chrony"
	"github.com/spf13/cobra"

	"github.com/timed-project/timed/control"
	"github.com/timed-project/timed/sources"
)

// Where chronyd takes commands unless --chrony names another place: its
// Unix socket (every command, root or the chrony user only), else its UDP
// command port (monitoring commands, from localhost).
const (
	chronySocket = "/run/chrony/chronyd.sock"
	chronyUDP    = "127.0.0.1:323"
)

// chronyTimeout bounds one exchange with chronyd.
const chronyTimeout = 2 * time.Second

// compareReply is what `timectl compare -o json` prints.
type compareReply struct {
	// Timed is timed's status reply, as "timectl status -o json".
	Timed control.StatusReply `json:"timed"`
	// Chronyd is what chronyd said.
	Chronyd chronydReport `json:"chronyd"`
}

// chronydReport is chronyd's tracking and sources, converted to timed's
// units and signs: seconds, ppm, offsets positive when the local clock is
// behind.
type chronydReport struct {
	// Address is the command socket or host:port read.
	Address  string          `json:"address"`
	Tracking chronydTracking `json:"tracking"`
	Sources  []chronydSource `json:"sources"`
}

// chronydTracking is chronyd's "tracking".
type chronydTracking struct {
	// Reference is the address of the selected source (empty for a
	// reference clock or none), RefID its reference ID.
	Reference string `json:"reference"`
	RefID     uint32 `json:"refid"`
	Stratum   uint16 `json:"stratum"`
	// Leap is chronyd's leap status: 0 normal, 1 insert, 2 delete, 3 not
	// synchronised.
	Leap uint16 `json:"leap"`
	// Offset is chronyd's estimate of true time minus its clock (the
	// system clock) now, its "System time" (positive: the clock is
	// behind, chronyc's "slow"); LastOffset the offset at the last
	// update and RMSOffset their long-term RMS.
	Offset     float64 `json:"offset_s"`
	LastOffset float64 `json:"last_offset_s"`
	RMSOffset  float64 `json:"rms_offset_s"`
	// Frequency is chronyd's "Frequency": how fast (positive) or slow the
	// clock would run without chronyd, in ppm; Skew its error bound.
	Frequency float64 `json:"frequency_ppm"`
	Skew      float64 `json:"skew_ppm"`
	// RootDelay and RootDispersion are what chronyd would serve.
	RootDelay      float64 `json:"root_delay_s"`
	RootDispersion float64 `json:"root_dispersion_s"`
}

// chronydSource is one of chronyd's sources.
type chronydSource struct {
	// Address is the source's IP address (a reference clock's refid),
	// with ":port" when chronyd told it (Unix socket only).
	Address string `json:"address"`
	// Mode is "client", "peer" or "reference clock"; State chronyd's
	// state: sync, candidate, outlier, falseticker, jittery, unreach.
	Mode    string `json:"mode"`
	State   string `json:"state"`
	Stratum uint16 `json:"stratum"`
	Poll    int16  `json:"poll"`
	Reach   uint16 `json:"reach"`
	// LastSampleAgo is the seconds since the last sample.
	LastSampleAgo float64 `json:"last_sample_ago_s"`
	// Offset is the last sample's offset of the source from the local
	// clock (positive: the local clock is behind; chronyc shows the
	// opposite sign) and Uncertainty its error bound.
	Offset      float64 `json:"offset_s"`
	Uncertainty float64 `json:"uncertainty_s"`
	// EstimatedOffset and its error are from chronyd's regression over
	// Samples samples ("sourcestats"), same sign as Offset.
	EstimatedOffset      float64 `json:"estimated_offset_s"`
	EstimatedOffsetError float64 `json:"estimated_offset_error_s"`
	Samples              uint32  `json:"samples"`
	// Delay is the last round-trip delay ("ntpdata": Unix socket only;
	// absent over UDP).
	Delay float64 `json:"delay_s,omitempty"`
}

func compareCommand(ctx context.Context, g *globals) *cobra.Command {
	var where string
	cmd := &cobra.Command{
		Use:   "compare",
		Short: "Show chronyd's tracking and sources beside timed's",
		Long: `Read a running chronyd over its command socket and print its tracking and
sources beside timed's status and sources: the evidence to look at before
replacing one with the other.

The first table compares the daemons: the selected source, stratum, each
one's estimate of its own clock's error from true time (positive: the clock
is behind), that clock's offset from the system clock (timed's virtual
clock; 0 for a daemon steering the system clock), frequency (timed's
correction; chronyd's "Frequency", how fast the clock would run without
it), root delay and root dispersion. The second matches sources by address:
each daemon's state, the source's offset as each measures it against its
own clock (same sign: positive when the local clock is behind), with its
uncertainty, and the round-trip delay. Sources named by a host name in
timed's configuration are matched by the address they resolved to when
chronyd reports it.

--chrony names chronyd's Unix command socket (a path) or its UDP command
address (HOST:PORT). By default timectl tries ` + chronySocket + `, then
` + chronyUDP + `. chronyd answers on its Unix socket only to root and its
own user; over UDP it answers monitoring commands from allowed addresses
(cmdallow, localhost by default) but not "ntpdata", so delays are missing.

With -o json the output is {"timed": StatusReply, "chronyd": {...}}.

Exit status: 0 both daemons answered; 1 either could not be read; 2 usage
error.`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			r := compareReply{}
			var err error
			if r.Chronyd, err = readChronyd(where); err != nil {
				return err
			}
			if r.Timed, err = g.statusOnce(ctx, cmd, 10*time.Second); err != nil {
				return err
			}
			if g.output == "json" {
				return writeJSON(cmd.OutOrStdout(), r, true)
			}
			renderCompare(cmd.OutOrStdout(), r)
			return nil
		},
	}
	cmd.Flags().StringVar(&where, "chrony", "", "chronyd's command `SOCKET|HOST:PORT` (default "+chronySocket+", then "+chronyUDP+")")
	return cmd
}

// readChronyd reads chronyd's tracking and sources from where ("": the
// default socket, then the default UDP address).
func readChronyd(where string) (chronydReport, error) {
	if where != "" {
		return readChronydAt(where)
	}
	r, errUnix := readChronydAt(chronySocket)
	if errUnix == nil {
		return r, nil
	}
	r, errUDP := readChronydAt(chronyUDP)
	if errUDP == nil {
		return r, nil
	}
	return chronydReport{}, fmt.Errorf("compare: cannot read chronyd (--chrony names it): %w", errors.Join(errUnix, errUDP))
}

func readChronydAt(where string) (chronydReport, error) {
	conn, cleanup, err := dialChronyd(where)
	if err != nil {
		return chronydReport{}, err
	}
	defer cleanup()
	unix := strings.Contains(where, "/")
	r, err := chronydStatus(&chrony.Client{Connection: conn}, conn, unix)
	if err != nil {
		return chronydReport{}, fmt.Errorf("chronyd at %s: %w", where, err)
	}
	r.Address = where
	return r, nil
}

// dialChronyd connects to chronyd's command socket: a path (Unix datagram
// socket, answered to a socket of our own, bound in a fresh directory that
// chronyd's user may reach) or HOST:PORT (UDP).
func dialChronyd(where string) (net.Conn, func(), error) {
	if !strings.Contains(where, "/") {
		if _, _, err := net.SplitHostPort(where); err != nil {
			return nil, nil, usageError{fmt.Errorf("--chrony %q: want a socket path or HOST:PORT", where)}
		}
		conn, err := net.DialTimeout("udp", where, chronyTimeout)
		if err != nil {
			return nil, nil, fmt.Errorf("chronyd at %s: %w", where, err)
		}
		return conn, func() { conn.Close() }, nil
	}
	dir, err := os.MkdirTemp("", "timectl-chrony-")
	if err != nil {
		return nil, nil, fmt.Errorf("chronyd at %s: socket for the reply: %w", where, err)
	}
	// chronyd may run as its own user: it must reach the directory and
	// write to the socket to answer.
	local := filepath.Join(dir, "timectl.sock")
	conn, err := net.DialUnix("unixgram", &net.UnixAddr{Name: local, Net: "unixgram"}, &net.UnixAddr{Name: where, Net: "unixgram"})
	if err == nil {
		err = errors.Join(os.Chmod(dir, 0o711), os.Chmod(local, 0o666))
	}
	if err != nil {
		if conn != nil {
			conn.Close()
		}
		os.RemoveAll(dir)
		if errors.Is(err, fs.ErrPermission) {
			return nil, nil, fmt.Errorf("chronyd at %s: %w (only root and chronyd's user may use its command socket; --chrony 127.0.0.1:323 reads it over UDP)", where, err)
		}
		return nil, nil, fmt.Errorf("chronyd at %s: %w (is chronyd running?)", where, err)
	}
	return conn, func() { conn.Close(); os.RemoveAll(dir) }, nil
}

// chronydStatus asks chronyd for tracking, the sources and, per source,
// sourcestats and (over the Unix socket) ntpdata.
func chronydStatus(c *chrony.Client, conn net.Conn, unix bool) (chronydReport, error) {
	ask := func(what string, p chrony.RequestPacket) (chrony.ResponsePacket, error) {
		conn.SetDeadline(time.Now().Add(chronyTimeout))
		resp, err := c.Communicate(p)
		if err != nil {
			hint := ""
			if errors.Is(err, os.ErrDeadlineExceeded) {
				hint = " (no answer: is chronyd there, and does it allow commands from here?)"
			}
			return nil, fmt.Errorf("%s: %w%s", what, err, hint)
		}
		return resp, nil
	}
	var r chronydReport
	resp, err := ask("tracking", chrony.NewTrackingPacket())
	if err != nil {
		return r, err
	}
	tr, ok := resp.(*chrony.ReplyTracking)
	if !ok {
		return r, fmt.Errorf("tracking: unexpected reply %T", resp)
	}
	r.Tracking = chronydTracking{RefID: tr.RefID, Stratum: tr.Stratum, Leap: tr.LeapStatus,
		Offset: tr.CurrentCorrection, LastOffset: -tr.LastOffset, RMSOffset: tr.RMSOffset,
		Frequency: tr.FreqPPM, Skew: tr.SkewPPM, RootDelay: tr.RootDelay, RootDispersion: tr.RootDispersion}
	if tr.IPAddr != nil && !tr.IPAddr.IsUnspecified() {
		r.Tracking.Reference = tr.IPAddr.String()
	}
	resp, err = ask("sources", chrony.NewSourcesPacket())
	if err != nil {
		return r, err
	}
	n, ok := resp.(*chrony.ReplySources)
	if !ok {
		return r, fmt.Errorf("sources: unexpected reply %T", resp)
	}
	for i := range int32(min(n.NSources, 1024)) {
		resp, err := ask("sourcedata", chrony.NewSourceDataPacket(i))
		if err != nil {
			return r, err
		}
		sd, ok := resp.(*chrony.ReplySourceData)
		if !ok {
			return r, fmt.Errorf("sourcedata: unexpected reply %T", resp)
		}
		s := chronydSource{Address: sd.IPAddr.String(), Mode: sd.Mode.String(), State: sd.State.String(),
			Stratum: sd.Stratum, Poll: sd.Poll, Reach: sd.Reachability, LastSampleAgo: float64(sd.SinceSample),
			Offset: -sd.LatestMeas, Uncertainty: sd.LatestMeasErr}
		if sd.Mode == chrony.SourceModeRef {
			// chronyd puts a reference clock's refid where the address goes.
			b := sd.IPAddr.IP
			s.Address = chrony.RefidToString(uint32(b[0])<<24 | uint32(b[1])<<16 | uint32(b[2])<<8 | uint32(b[3]))
		}
		if resp, err := ask("sourcestats", chrony.NewSourceStatsPacket(i)); err == nil {
			if ss, ok := resp.(*chrony.ReplySourceStats); ok {
				s.EstimatedOffset, s.EstimatedOffsetError, s.Samples = -ss.EstimatedOffset, ss.EstimatedOffsetErr, ss.NSamples
			}
		}
		if unix && sd.Mode != chrony.SourceModeRef {
			if resp, err := ask("ntpdata", chrony.NewNTPDataPacket(sd.IPAddr)); err == nil {
				if nd, ok := resp.(*chrony.ReplyNTPData); ok {
					s.Delay = nd.PeerDelay
					s.Address = net.JoinHostPort(s.Address, strconv.Itoa(int(nd.RemotePort)))
				}
			}
		}
		r.Sources = append(r.Sources, s)
	}
	return r, nil
}

// renderCompare prints the two tables of `timectl compare`.
func renderCompare(w io.Writer, r compareReply) {
	st, ct := r.Timed.Engine, r.Chronyd.Tracking
	timedRef := st.Reference
	if timedRef == "" {
		timedRef = "none"
	}
	chronyRef := ct.Reference
	if chronyRef == "" {
		chronyRef = chrony.RefidToString(ct.RefID)
	}
	if ct.RefID == 0 {
		chronyRef = "none"
	}
	clockOffset := 0.0
	if r.Timed.Clock.Driver == "virtual" {
		clockOffset = r.Timed.Clock.OffsetFromSystem
	}
	timedClock := r.Timed.Clock.Driver + " clock"
	rows := [][]string{
		{"", "TIMED", "CHRONYD"},
		{"clock", timedClock, "system clock"},
		{"reference", timedRef, chronyRef},
		{"stratum", strconv.Itoa(int(st.Stratum)), strconv.Itoa(int(ct.Stratum))},
		{"clock error estimate", fmtOffset(st.Offset, st.Uncertainty),
			fmt.Sprintf("%s (rms %s)", fmtSeconds(ct.Offset, true), fmtSeconds(ct.RMSOffset, false))},
		{"clock − system clock", fmtSeconds(clockOffset, true), fmtSeconds(0, true)},
		{"frequency", fmt.Sprintf("%+.3f ppm correction", st.Frequency), chronyFrequency(ct.Frequency)},
		{"root delay", fmtSeconds(st.RootDelay, false), fmtSeconds(ct.RootDelay, false)},
		{"root dispersion", fmtSeconds(st.RootDispersion, false), fmtSeconds(ct.RootDispersion, false)},
	}
	fmt.Fprintf(w, "chronyd: %s\n\n", r.Chronyd.Address)
	writeTable(w, rows, func(int, int) string { return "" }, false)
	fmt.Fprintln(w)

	rows = [][]string{{"SOURCE", "TIMED STATE", "TIMED OFFSET", "TIMED DELAY", "CHRONYD STATE", "CHRONYD OFFSET", "CHRONYD DELAY"}}
	for _, m := range matchSources(st.Sources, r.Chronyd.Sources) {
		row := []string{m.name, "-", "-", "-", "-", "-", "-"}
		if s := m.timed; s != nil {
			row[1] = string(s.State)
			if s.Samples > 0 {
				row[2], row[3] = fmtOffset(s.Offset, s.Uncertainty), fmtDelay(s.Delay)
			}
		}
		if c := m.chronyd; c != nil {
			row[4], row[5] = c.State, fmtOffset(c.Offset, c.Uncertainty)
			if c.Delay > 0 {
				row[6] = fmtSeconds(c.Delay, false)
			}
		}
		rows = append(rows, row)
	}
	writeTable(w, rows, func(int, int) string { return "" }, false)
	fmt.Fprintln(w, "\nOffsets: the source's time minus each daemon's clock (positive: the clock is behind).")
}

// sourcePair is one source as each daemon sees it; either may be nil.
type sourcePair struct {
	name    string
	timed   *sources.SourceStatus
	chronyd *chronydSource
}

// matchSources pairs timed's and chronyd's sources by address: IP and
// port when chronyd gave the port, else IP alone. Unmatched sources of
// either are listed alone.
func matchSources(ts []sources.SourceStatus, cs []chronydSource) []sourcePair {
	var out []sourcePair
	used := make([]bool, len(cs))
	for i := range ts {
		p := sourcePair{name: ts[i].Name, timed: &ts[i]}
		for j := range cs {
			if !used[j] && sameSource(ts[i].Address, cs[j].Address) {
				used[j], p.chronyd = true, &cs[j]
				break
			}
		}
		out = append(out, p)
	}
	for j := range cs {
		if !used[j] {
			out = append(out, sourcePair{name: cs[j].Address, chronyd: &cs[j]})
		}
	}
	return out
}

// sameSource reports whether timed's source address (host:port) and
// chronyd's (IP or IP:port) name one server.
func sameSource(timedAddr, chronyAddr string) bool {
	ta, err := netip.ParseAddrPort(timedAddr)
	if err != nil {
		return false
	}
	if ca, err := netip.ParseAddrPort(chronyAddr); err == nil {
		return ta.Addr().Unmap() == ca.Addr().Unmap() && ta.Port() == ca.Port()
	}
	ip, err := netip.ParseAddr(chronyAddr)
	return err == nil && ip.Unmap() == ta.Addr().Unmap()
}

// chronyFrequency prints chronyd's frequency as chronyc does.
func chronyFrequency(ppm float64) string {
	if ppm < 0 {
		return fmt.Sprintf("%.3f ppm slow", -ppm)
	}
	return fmt.Sprintf("%.3f ppm fast", ppm)
}
