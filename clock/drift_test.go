package clock

import (
	"errors"
	"io/fs"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestDriftRoundTrip(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "timed.drift")
	for _, tc := range []struct{ ppm, unc float64 }{
		{-12.345678, 0.042},
		{0, 0},
		{499.999999, 1e-6},
		{-100000, 100000},
	} {
		if err := WriteDrift(path, tc.ppm, tc.unc); err != nil {
			t.Fatal(err)
		}
		ppm, unc, err := ReadDrift(path)
		if err != nil {
			t.Fatal(err)
		}
		if math.Abs(ppm-tc.ppm) > 1e-6 || math.Abs(unc-tc.unc) > 1e-6 {
			t.Errorf("read back %v %v, wrote %v %v", ppm, unc, tc.ppm, tc.unc)
		}
	}
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if string(data) != "-100000.000000 100000.000000\n" {
		t.Errorf("file is %q", data)
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 1 {
		t.Errorf("temporary files left behind: %v", entries)
	}
	st, _ := os.Stat(path)
	if st.Mode().Perm() != 0o644 {
		t.Errorf("mode %v, want 0644", st.Mode().Perm())
	}
}

func TestReadDriftMissing(t *testing.T) {
	_, _, err := ReadDrift(filepath.Join(t.TempDir(), "nope"))
	if !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("error %v does not match fs.ErrNotExist", err)
	}
}

func TestReadDriftAcceptsChronyFormat(t *testing.T) {
	// chrony writes "%20.6f %20.6f\n".
	path := filepath.Join(t.TempDir(), "drift")
	if err := os.WriteFile(path, []byte("          -14.301456             0.089172\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	ppm, unc, err := ReadDrift(path)
	if err != nil || ppm != -14.301456 || unc != 0.089172 {
		t.Errorf("got %v %v %v", ppm, unc, err)
	}
}

func TestReadDriftRejects(t *testing.T) {
	tests := []struct{ name, data, want string }{
		{"empty", "", "found 0 fields"},
		{"one field", "12.5\n", "found 1 fields"},
		{"three fields", "1 2 3\n", "found 3 fields"},
		{"garbage", "hello world\n", "not a number"},
		{"NaN", "NaN 1\n", "not a finite number"},
		{"Inf", "1 +Inf\n", "not a finite number"},
		{"absurd", "250000 1\n", "beyond"},
		{"absurd uncertainty", "1 1e9\n", "beyond"},
		{"negative uncertainty", "1 -1\n", "negative uncertainty"},
		{"two lines", "1 2\n3 4\n", "more than one line"},
		{"huge", strings.Repeat(" ", 5000) + "1 2", "longer than"},
		{"binary", "\x00\x01 \xff\n", "not a number"},
	}
	dir := t.TempDir()
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(dir, tt.name)
			if err := os.WriteFile(path, []byte(tt.data), 0o644); err != nil {
				t.Fatal(err)
			}
			_, _, err := ReadDrift(path)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error %v, want one containing %q", err, tt.want)
			}
			if err != nil && !strings.Contains(err.Error(), path) {
				t.Errorf("error %q does not name the file", err)
			}
		})
	}
}

func TestWriteDriftRejects(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "drift")
	for _, tc := range []struct{ ppm, unc float64 }{
		{math.NaN(), 0}, {0, math.Inf(1)}, {2e5, 0}, {0, -1},
	} {
		if err := WriteDrift(path, tc.ppm, tc.unc); err == nil {
			t.Errorf("WriteDrift(%v, %v) succeeded", tc.ppm, tc.unc)
		}
	}
	if err := WriteDrift(filepath.Join(dir, "no", "such", "dir"), 1, 1); err == nil {
		t.Error("WriteDrift into a missing directory succeeded")
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 0 {
		t.Errorf("files left behind: %v", entries)
	}
}

func FuzzParseDrift(f *testing.F) {
	for _, s := range []string{"-12.345678 0.042000\n", "0 0", "NaN NaN", "1e5 1e-300", "  1\t2 \r\n", "0x1p3 1"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		ppm, unc, err := parseDrift(data)
		if err != nil {
			return
		}
		if math.IsNaN(ppm) || math.IsInf(ppm, 0) || math.Abs(ppm) > maxDriftPPM {
			t.Fatalf("accepted frequency %v", ppm)
		}
		if math.IsNaN(unc) || unc < 0 || unc > maxDriftPPM {
			t.Fatalf("accepted uncertainty %v", unc)
		}
	})
}
