package gpsd

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"time"
)

// jsonMaxLine is the longest line of gpsd JSON the client accepts. gpsd's
// own reports stay far below it (its buffer is 10 KiB); a longer line means
// the peer is not gpsd or is broken, and the connection is dropped.
const jsonMaxLine = 64 << 10

// jsonMaxDevices bounds the devices a DEVICES report may list.
const jsonMaxDevices = 64

// jsonReport is one gpsd JSON report, with only the fields the client uses.
// The class says which of them are meaningful.
type jsonReport struct {
	Class  string `json:"class"`
	Device string `json:"device"`

	// VERSION
	Release    string `json:"release"`
	ProtoMajor int    `json:"proto_major"`
	ProtoMinor int    `json:"proto_minor"`

	// DEVICES / DEVICE
	Devices []jsonDevice `json:"devices"`
	Path    string       `json:"path"`

	// TPV
	Mode        int    `json:"mode"`
	Time        string `json:"time"`
	Leapseconds *int   `json:"leapseconds"`

	// TOFF / PPS
	RealSec   int64 `json:"real_sec"`
	RealNsec  int64 `json:"real_nsec"`
	ClockSec  int64 `json:"clock_sec"`
	ClockNsec int64 `json:"clock_nsec"`
	// Precision is the PPS report's precision as log2 seconds (NTP style);
	// nil when absent.
	Precision *int `json:"precision"`

	// SKY
	USat       *int            `json:"uSat"`
	Satellites []jsonSatellite `json:"satellites"`

	// ERROR
	Message string `json:"message"`
}

// jsonDevice is one entry of a DEVICES report.
type jsonDevice struct {
	Path   string `json:"path"`
	Driver string `json:"driver"`
}

// jsonSatellite is one entry of a SKY report.
type jsonSatellite struct {
	Used bool `json:"used"`
}

// jsonUnixLimit bounds the seconds of a TOFF or PPS report: after the
// year 9999 the report is nonsense.
const jsonUnixLimit = 253402300800

// jsonDecodeReport decodes and checks one line of gpsd JSON. It rejects
// lines that are not a JSON object with a class, and time fields out of
// range, with an error saying what is wrong.
func jsonDecodeReport(line []byte) (jsonReport, error) {
	var r jsonReport
	line = bytes.TrimSpace(line)
	if len(line) == 0 {
		return r, errors.New("gpsd: empty line")
	}
	if len(line) > jsonMaxLine {
		return r, fmt.Errorf("gpsd: report of %d bytes is longer than %d", len(line), jsonMaxLine)
	}
	if line[0] != '{' {
		return r, fmt.Errorf("gpsd: report is not a JSON object: %q", jsonQuote(line))
	}
	if err := json.Unmarshal(line, &r); err != nil {
		return jsonReport{}, fmt.Errorf("gpsd: bad report %q: %w", jsonQuote(line), err)
	}
	if r.Class == "" {
		return jsonReport{}, fmt.Errorf("gpsd: report without class: %q", jsonQuote(line))
	}
	switch r.Class {
	case "TPV":
		if r.Mode < 0 || r.Mode > 3 {
			return jsonReport{}, fmt.Errorf("gpsd: TPV mode %d out of range 0..3", r.Mode)
		}
		if r.Time != "" {
			if _, err := jsonParseTime(r.Time); err != nil {
				return jsonReport{}, err
			}
		}
	case "TOFF", "PPS":
		for _, f := range []struct {
			name      string
			sec, nsec int64
		}{{"real", r.RealSec, r.RealNsec}, {"clock", r.ClockSec, r.ClockNsec}} {
			if f.sec <= 0 || f.sec >= jsonUnixLimit {
				return jsonReport{}, fmt.Errorf("gpsd: %s %s_sec %d out of range", r.Class, f.name, f.sec)
			}
			if f.nsec < 0 || f.nsec >= 1e9 {
				return jsonReport{}, fmt.Errorf("gpsd: %s %s_nsec %d out of range 0..999999999", r.Class, f.name, f.nsec)
			}
		}
		if r.Precision != nil && (*r.Precision < -40 || *r.Precision > 10) {
			return jsonReport{}, fmt.Errorf("gpsd: %s precision %d out of range -40..10", r.Class, *r.Precision)
		}
	case "DEVICES":
		if len(r.Devices) > jsonMaxDevices {
			return jsonReport{}, fmt.Errorf("gpsd: DEVICES lists %d devices, more than %d", len(r.Devices), jsonMaxDevices)
		}
	case "SKY":
		if r.USat != nil && (*r.USat < 0 || *r.USat > 1000) {
			return jsonReport{}, fmt.Errorf("gpsd: SKY uSat %d out of range", *r.USat)
		}
	}
	return r, nil
}

// jsonParseTime parses a TPV time (ISO 8601 UTC, as gpsd writes it).
func jsonParseTime(s string) (time.Time, error) {
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		return time.Time{}, fmt.Errorf("gpsd: TPV time %q: %w", jsonQuote([]byte(s)), err)
	}
	return t, nil
}

// jsonRefTime is the reference time of a TOFF or PPS report.
func (r *jsonReport) jsonRefTime() time.Time { return time.Unix(r.RealSec, r.RealNsec) }

// jsonClockTime is the system time at which a TOFF or PPS report's event
// arrived.
func (r *jsonReport) jsonClockTime() time.Time { return time.Unix(r.ClockSec, r.ClockNsec) }

// jsonPrecision is a PPS report's stated precision, or def when the report
// states none.
func (r *jsonReport) jsonPrecision(def time.Duration) time.Duration {
	if r.Precision == nil {
		return def
	}
	return time.Duration(math.Ldexp(float64(time.Second), *r.Precision))
}

// jsonSatellitesUsed is the number of satellites a SKY report says are
// used in the fix.
func (r *jsonReport) jsonSatellitesUsed() int {
	if r.USat != nil {
		return *r.USat
	}
	n := 0
	for _, s := range r.Satellites {
		if s.Used {
			n++
		}
	}
	return n
}

// jsonQuote shortens b for an error message.
func jsonQuote(b []byte) string {
	const max = 80
	if len(b) > max {
		return string(b[:max]) + "..."
	}
	return string(b)
}

// jsonLineReader reads newline-terminated lines of at most jsonMaxLine
// bytes; a longer line is an error, never a growing buffer.
type jsonLineReader struct {
	br *bufio.Reader
}

// errJSONLineTooLong is returned for a line longer than jsonMaxLine.
var errJSONLineTooLong = fmt.Errorf("gpsd: line longer than %d bytes", jsonMaxLine)

func newJSONLineReader(r io.Reader) *jsonLineReader {
	return &jsonLineReader{br: bufio.NewReaderSize(r, jsonMaxLine+1)}
}

// readLine returns the next line without its end of line. The slice is
// valid until the next call. At the end of input a last unterminated line
// is returned with it; then io.EOF.
func (l *jsonLineReader) readLine() ([]byte, error) {
	line, err := l.br.ReadSlice('\n')
	switch {
	case err == nil:
		return bytes.TrimRight(line, "\r\n"), nil
	case errors.Is(err, bufio.ErrBufferFull):
		return nil, errJSONLineTooLong
	case errors.Is(err, io.EOF) && len(line) > 0:
		if len(line) > jsonMaxLine {
			return nil, errJSONLineTooLong
		}
		return line, nil
	default:
		return nil, err
	}
}
