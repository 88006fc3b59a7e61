package ptp

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// leapList is the tail of the IERS list in its own format: TAI − UTC is 35 s
// from 1 July 2012, 36 s from 1 July 2015, 37 s from 1 January 2017; the
// list expires on 28 June 2026.
const leapList = `#	Updated through IERS Bulletin C 70
#$	 3929093563
#@	3991593600
#
3550089600	35	# 1 Jul 2012
3644697600	36	# 1 Jul 2015
3692217600	37	# 1 Jan 2017
#h	4b304e10 95642b3f c10b91f9 90791725 25f280d0
`

func TestParseLeapSecondsList(t *testing.T) {
	tab, err := ParseLeapSecondsList([]byte(leapList))
	if err != nil {
		t.Fatal(err)
	}
	if want := time.Date(2026, 6, 28, 0, 0, 0, 0, time.UTC); !tab.Expires.Equal(want) {
		t.Errorf("expires %v, want %v", tab.Expires, want)
	}
	if n := len(tab.changes); n != 3 || !tab.changes[2].At.Equal(time.Date(2017, 1, 1, 0, 0, 0, 0, time.UTC)) || tab.changes[2].Offset != 37 {
		t.Errorf("changes %+v", tab.changes)
	}

	bad := []struct{ name, text, want string }{
		{"empty", "", "no entries"},
		{"no expiry", "3692217600 37\n", "no expiry"},
		{"one field", "#@ 3991593600\n3692217600\n", "two numbers"},
		{"three fields", "#@ 3991593600\n3692217600 37 1\n", "two numbers"},
		{"not a number", "#@ 3991593600\nx 37\n", "seconds since 1900"},
		{"before 1970", "#@ 3991593600\n100 37\n", "seconds since 1900"},
		{"huge time", "#@ 3991593600\n99999999999999 37\n", "seconds since 1900"},
		{"negative offset", "#@ 3991593600\n3692217600 -1\n", "offset"},
		{"huge offset", "#@ 3991593600\n3692217600 99999\n", "offset"},
		{"descending", "#@ 3991593600\n3692217600 37\n3644697600 36\n", "does not follow"},
		{"jump", "#@ 3991593600\n3644697600 35\n3692217600 37\n", "jumps"},
		{"bad expiry", "#@ soon\n3692217600 37\n", "expiry"},
		{"too big", strings.Repeat("#\n", maxLeapFileSize), "bytes"},
	}
	for _, tt := range bad {
		t.Run(tt.name, func(t *testing.T) {
			_, err := ParseLeapSecondsList([]byte(tt.text))
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error %v, want one containing %q", err, tt.want)
			}
		})
	}
}

func TestLeapTableTimeProperties(t *testing.T) {
	// 2017-01-01 00:00:00 UTC was preceded by the leap second 2016-12-31 23:59:60.
	tab, err := ParseLeapSecondsList([]byte(leapList))
	if err != nil {
		t.Fatal(err)
	}
	leap := time.Date(2017, 1, 1, 0, 0, 0, 0, time.UTC)
	negative, err := ParseLeapSecondsList([]byte("#@ 3991593600\n3644697600 36\n3692217600 35\n"))
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name           string
		tab            LeapTable
		utc            time.Time
		offset         int16
		valid          bool
		leap61, leap59 bool
	}{
		{"empty table", LeapTable{}, leap, 37, false, false, false},
		{"before the table", tab, time.Date(2000, 1, 1, 0, 0, 0, 0, time.UTC), 37, false, false, false},
		{"2013", tab, time.Date(2013, 5, 1, 0, 0, 0, 0, time.UTC), 35, true, false, false},
		{"13 h before", tab, leap.Add(-13 * time.Hour), 36, true, false, false},
		{"12 h before", tab, leap.Add(-12 * time.Hour), 36, true, true, false},
		{"last second", tab, leap.Add(-time.Second), 36, true, true, false},
		{"at the leap", tab, leap, 37, true, false, false},
		{"before expiry", tab, tab.Expires.Add(-time.Second), 37, true, false, false},
		{"expired", tab, tab.Expires, 37, false, false, false},
		{"negative leap", negative, leap.Add(-time.Hour), 36, true, false, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tp := tt.tab.TimeProperties(tt.utc)
			if !tp.PTPTimescale || tp.CurrentUTCOffset != tt.offset || tp.CurrentUTCOffsetValid != tt.valid ||
				tp.Leap61 != tt.leap61 || tp.Leap59 != tt.leap59 {
				t.Errorf("%+v, want offset %d valid %t leap61 %t leap59 %t", tp, tt.offset, tt.valid, tt.leap61, tt.leap59)
			}
		})
	}
}

func TestLoadLeapTable(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "leap-seconds.list")
	broken := filepath.Join(dir, "broken.list")
	if err := os.WriteFile(good, []byte(leapList), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(broken, []byte("garbage\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	tab, path, err := LoadLeapTable(filepath.Join(dir, "missing"), good, broken)
	if err != nil || path != good || len(tab.changes) != 3 {
		t.Errorf("LoadLeapTable = %d changes from %q, %v; want 3 from %s", len(tab.changes), path, err, good)
	}
	if _, path, err := LoadLeapTable(broken, good); err == nil || path != broken || !strings.Contains(err.Error(), broken) {
		t.Errorf("broken first file: %q, %v; want an error naming %s", path, err, broken)
	}
	for _, sys := range LeapSecondsFiles { // the lists this machine ships must parse
		if _, err := os.Stat(sys); err == nil {
			if tab, _, err := LoadLeapTable(sys); err != nil || len(tab.changes) < 28 {
				t.Errorf("%s: %d changes, %v", sys, len(tab.changes), err)
			}
		}
	}
	if _, _, err := LoadLeapTable(filepath.Join(dir, "missing")); err == nil || !strings.Contains(err.Error(), "no leap-seconds list") {
		t.Errorf("no file: %v", err)
	}
}

// FuzzParseLeapSecondsList: whatever the file holds, the parser returns a
// table or an error, and a table it returns is ordered, steps by one second
// and answers TimeProperties without panicking.
func FuzzParseLeapSecondsList(f *testing.F) {
	f.Add([]byte(leapList))
	f.Add([]byte("#@ 3991593600\n3692217600 37\n"))
	f.Add([]byte("#@\n"))
	f.Add([]byte("3692217600\t37\t# 1 Jan 2017\n#@ 1\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		tab, err := ParseLeapSecondsList(data)
		if err != nil {
			return
		}
		for i := 1; i < len(tab.changes); i++ {
			a, b := tab.changes[i-1], tab.changes[i]
			if !b.At.After(a.At) || (b.Offset-a.Offset != 1 && a.Offset-b.Offset != 1) {
				t.Fatalf("entries %+v then %+v", a, b)
			}
		}
		for _, c := range tab.changes {
			tp := tab.TimeProperties(c.At.Add(-time.Hour))
			if tp.Leap59 && tp.Leap61 {
				t.Fatalf("both leap flags at %v", c.At)
			}
		}
	})
}
