package phc

import (
	"errors"
	"os"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

func TestOpenErrors(t *testing.T) {
	tests := []struct {
		path string
		want string
	}{
		{"/dev/ptp-timed-test-missing", "phc: open /dev/ptp-timed-test-missing: no such file or directory"},
		{"/dev/null", "phc: /dev/null is not a PTP hardware clock"},
	}
	for _, tt := range tests {
		t.Run(tt.path, func(t *testing.T) {
			dev, err := Open(tt.path)
			if err == nil {
				dev.Close()
				t.Fatalf("Open(%s) succeeded", tt.path)
			}
			if !strings.HasPrefix(err.Error(), tt.want) {
				t.Errorf("Open(%s) = %q, want %q", tt.path, err, tt.want)
			}
		})
	}
}

func TestFindByInterface(t *testing.T) {
	tests := []struct {
		ifname string
		want   string
	}{
		{"lo", "phc: lo has no PTP hardware clock"},
		{"timednosuch0", "phc: timednosuch0: no such network interface"},
		{"", `phc: invalid interface name ""`},
		{"averyveryverylongname", `phc: invalid interface name "averyveryverylongname"`},
	}
	for _, tt := range tests {
		t.Run(tt.ifname, func(t *testing.T) {
			path, err := FindByInterface(tt.ifname)
			if err == nil || err.Error() != tt.want {
				t.Errorf("FindByInterface(%q) = %q, %v; want error %q", tt.ifname, path, err, tt.want)
			}
		})
	}
	// Every other interface here has no PHC either (this machine has no
	// /dev/ptp*); whichever has one must name a /dev/ptpN.
	ifs, err := os.ReadDir("/sys/class/net")
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range ifs {
		path, err := FindByInterface(e.Name())
		if err == nil && !strings.HasPrefix(path, "/dev/ptp") {
			t.Errorf("FindByInterface(%s) = %q", e.Name(), path)
		}
		if err != nil && !strings.Contains(err.Error(), e.Name()) {
			t.Errorf("FindByInterface(%s): error %q does not name the interface", e.Name(), err)
		}
	}
}

func ts(sec int64, nsec uint32) unix.PtpClockTime { return unix.PtpClockTime{Sec: sec, Nsec: nsec} }

func TestExtendedOffset(t *testing.T) {
	const s = 1_700_000_000
	tests := []struct {
		name    string
		samples [][3]unix.PtpClockTime // system before, device, system after
		want    Offset
		wantErr string
	}{
		{"one sample", [][3]unix.PtpClockTime{{ts(s, 1000), ts(s+37, 1500), ts(s, 2000)}},
			Offset{Offset: 37 * time.Second, Delay: time.Microsecond, System: time.Unix(s, 1500), Method: MethodExtended}, ""},
		{"narrowest wins", [][3]unix.PtpClockTime{
			{ts(s, 0), ts(s, 5000), ts(s, 4000)},
			{ts(s, 10000), ts(s, 10300), ts(s, 10400)},
			{ts(s, 20000), ts(s, 20100), ts(s, 21000)},
		}, Offset{Offset: 100 * time.Nanosecond, Delay: 400 * time.Nanosecond, System: time.Unix(s, 10200), Method: MethodExtended}, ""},
		{"across a second", [][3]unix.PtpClockTime{{ts(s, 999_999_900), ts(s-1, 999_999_000), ts(s+1, 100)}},
			Offset{Offset: -time.Second - time.Microsecond, Delay: 200 * time.Nanosecond, System: time.Unix(s+1, 0), Method: MethodExtended}, ""},
		{"system stepped back", [][3]unix.PtpClockTime{{ts(s, 5000), ts(s, 0), ts(s, 1000)}}, Offset{}, "went backwards"},
		{"no samples", nil, Offset{}, "0 samples"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var e unix.PtpSysOffsetExtended
			e.Samples = uint32(len(tt.samples))
			copy(e.Ts[:], tt.samples)
			got, err := extendedOffset(&e)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("error %v, want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Errorf("got %+v, %v; want %+v", got, err, tt.want)
			}
		})
	}
	var e unix.PtpSysOffsetExtended
	e.Samples = 26 // more than the array holds
	if _, err := extendedOffset(&e); err == nil {
		t.Error("26 samples accepted")
	}
}

func TestPreciseOffset(t *testing.T) {
	p := unix.PtpSysOffsetPrecise{Device: ts(1_700_000_037, 250), Realtime: ts(1_700_000_000, 0), Monoraw: ts(5, 0)}
	want := Offset{Offset: 37*time.Second + 250, System: time.Unix(1_700_000_000, 0), Method: MethodPrecise}
	if got := preciseOffset(&p); got != want {
		t.Errorf("got %+v, want %+v", got, want)
	}
}

func TestUnsupported(t *testing.T) {
	tests := []struct {
		err  error
		want bool
	}{
		{unix.EOPNOTSUPP, true},
		{unix.ENOTTY, true},
		{unix.EINVAL, true},
		{unix.EBUSY, false},
		{unix.ENODEV, false},
	}
	for _, tt := range tests {
		err := unsupported("PTP_SYS_OFFSET_PRECISE", tt.err)
		if errors.Is(err, ErrNotSupported) != tt.want || !errors.Is(err, tt.err) {
			t.Errorf("unsupported(%v) = %v; want ErrNotSupported: %v", tt.err, err, tt.want)
		}
	}
}
