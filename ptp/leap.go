package ptp

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"time"
)

// LeapSecondsFiles are where operating systems keep the IERS leap-seconds
// list (tzdata on Linux, ntpd's copy on FreeBSD), in the order
// LoadLeapTable tries them.
var LeapSecondsFiles = []string{
	"/usr/share/zoneinfo/leap-seconds.list",
	"/var/db/ntpd.leap-seconds.list",
	"/etc/ntp/leap-seconds.list",
}

// Bounds on a leap-seconds list: the real one has 28 entries in about 5 KB.
const (
	maxLeapFileSize = 64 << 10
	maxLeapEntries  = 1000
)

// leapAnnounceWindow is how long before a leap second the Leap59 and
// Leap61 flags are announced.
const leapAnnounceWindow = 12 * time.Hour

// ntpEpochOffset is the number of seconds from 1900-01-01 (the list's
// epoch) to 1970-01-01.
const ntpEpochOffset = 2208988800

// LeapTable is TAI − UTC over time, as the IERS leap-seconds list gives it.
// The zero LeapTable knows nothing.
type LeapTable struct {
	changes []leapChange // ascending
	// Expires is when the list stops being authoritative: a leap second
	// after it may be missing.
	Expires time.Time
}

// leapChange says that from At (UTC) on, TAI − UTC is Offset seconds.
type leapChange struct {
	At     time.Time
	Offset int
}

// ParseLeapSecondsList reads the IERS leap-seconds list format
// (leap-seconds.list): lines "NTPSECONDS OFFSET [# comment]" saying from
// which instant (seconds since 1900, UTC) TAI − UTC is OFFSET seconds, and
// the comment "#@ NTPSECONDS" giving its expiry. Entries must ascend, each
// offset differing from the one before by one second.
func ParseLeapSecondsList(data []byte) (LeapTable, error) {
	if len(data) > maxLeapFileSize {
		return LeapTable{}, fmt.Errorf("ptp: leap-seconds list of %d bytes, more than %d", len(data), maxLeapFileSize)
	}
	var t LeapTable
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 0, 512), maxLeapFileSize)
	line := 0
	for sc.Scan() {
		line++
		text := strings.TrimSpace(sc.Text())
		if rest, ok := strings.CutPrefix(text, "#@"); ok {
			at, err := ntpSeconds(strings.TrimSpace(rest))
			if err != nil {
				return LeapTable{}, fmt.Errorf("ptp: leap-seconds list line %d: expiry: %w", line, err)
			}
			t.Expires = at
			continue
		}
		if i := strings.IndexByte(text, '#'); i >= 0 {
			text = strings.TrimSpace(text[:i])
		}
		if text == "" {
			continue
		}
		f := strings.Fields(text)
		if len(f) != 2 {
			return LeapTable{}, fmt.Errorf("ptp: leap-seconds list line %d: want two numbers, got %q", line, text)
		}
		at, err := ntpSeconds(f[0])
		if err != nil {
			return LeapTable{}, fmt.Errorf("ptp: leap-seconds list line %d: %w", line, err)
		}
		off, err := strconv.Atoi(f[1])
		if err != nil || off < 0 || off > 1000 {
			return LeapTable{}, fmt.Errorf("ptp: leap-seconds list line %d: offset %q is not a number of seconds from 0 to 1000", line, f[1])
		}
		if n := len(t.changes); n > 0 {
			prev := t.changes[n-1]
			if !at.After(prev.At) {
				return LeapTable{}, fmt.Errorf("ptp: leap-seconds list line %d: %s does not follow %s", line, at.Format(time.DateOnly), prev.At.Format(time.DateOnly))
			}
			if d := off - prev.Offset; d != 1 && d != -1 {
				return LeapTable{}, fmt.Errorf("ptp: leap-seconds list line %d: offset jumps from %d to %d s", line, prev.Offset, off)
			}
		}
		if len(t.changes) == maxLeapEntries {
			return LeapTable{}, fmt.Errorf("ptp: leap-seconds list has more than %d entries", maxLeapEntries)
		}
		t.changes = append(t.changes, leapChange{At: at, Offset: off})
	}
	if err := sc.Err(); err != nil {
		return LeapTable{}, fmt.Errorf("ptp: leap-seconds list: %w", err)
	}
	switch {
	case len(t.changes) == 0:
		return LeapTable{}, errors.New("ptp: leap-seconds list has no entries")
	case t.Expires.IsZero():
		return LeapTable{}, errors.New("ptp: leap-seconds list has no expiry line (#@)")
	}
	return t, nil
}

// ntpSeconds reads a count of seconds since 1900 (NTP era 0 and 1).
func ntpSeconds(s string) (time.Time, error) {
	v, err := strconv.ParseUint(s, 10, 64)
	if err != nil || v < ntpEpochOffset || v >= 1<<33 {
		return time.Time{}, fmt.Errorf("%q is not a time in seconds since 1900 after 1970", s)
	}
	return time.Unix(int64(v-ntpEpochOffset), 0).UTC(), nil
}

// LoadLeapTable reads the first of paths that exists (LeapSecondsFiles when
// none are given) and returns the table and the file it came from.
func LoadLeapTable(paths ...string) (LeapTable, string, error) {
	if len(paths) == 0 {
		paths = LeapSecondsFiles
	}
	var errs []error
	for _, p := range paths {
		f, err := os.Open(p)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		data, err := io.ReadAll(io.LimitReader(f, maxLeapFileSize+1))
		f.Close()
		if err != nil {
			return LeapTable{}, p, fmt.Errorf("ptp: %w", err)
		}
		t, err := ParseLeapSecondsList(data)
		if err != nil {
			return LeapTable{}, p, fmt.Errorf("%w (in %s)", err, p)
		}
		return t, p, nil
	}
	return LeapTable{}, "", fmt.Errorf("ptp: no leap-seconds list: %w", errors.Join(errs...))
}

// TimeProperties returns the time properties of a grandmaster whose clock
// reads utc: the PTP timescale, TAI − UTC at utc (valid while the table
// knows it and has not expired; DefaultUTCOffset, not valid, from an empty
// table), and Leap61 or Leap59 during the last 12 hours before a leap
// second the table lists. The traceability flags and the time source are
// left for the caller.
func (t LeapTable) TimeProperties(utc time.Time) TimeProperties {
	tp := TimeProperties{PTPTimescale: true, CurrentUTCOffset: int16(DefaultUTCOffset / time.Second)}
	if len(t.changes) == 0 || utc.Before(t.changes[0].At) {
		return tp
	}
	i := len(t.changes) - 1
	for i > 0 && utc.Before(t.changes[i].At) {
		i--
	}
	tp.CurrentUTCOffset = int16(t.changes[i].Offset)
	tp.CurrentUTCOffsetValid = utc.Before(t.Expires)
	if i+1 < len(t.changes) {
		next := t.changes[i+1]
		if next.At.Sub(utc) <= leapAnnounceWindow {
			tp.Leap61 = next.Offset > t.changes[i].Offset
			tp.Leap59 = !tp.Leap61
		}
	}
	return tp
}
