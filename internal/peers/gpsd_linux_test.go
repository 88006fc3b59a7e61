package peers

import (
	"bufio"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/timed-project/timed/internal/testenv"
)

func TestGenerateNMEA(t *testing.T) {
	start := time.Date(2026, 12, 31, 23, 59, 58, 700e6, time.UTC)
	tests := []struct {
		name string
		n    int
		want []string
	}{
		{name: "none", n: 0},
		{name: "over the new year", n: 3, want: []string{
			"GPGGA,235958.00", "GPRMC,235958.00,A", "GPZDA,235958.00,31,12,2026",
			"GPGGA,235959.00", "GPRMC,235959.00,A", "GPZDA,235959.00,31,12,2026",
			"GPGGA,000000.00", "GPRMC,000000.00,A", "GPZDA,000000.00,01,01,2027",
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out := GenerateNMEA(start, tt.n)
			lines := strings.Split(strings.TrimSuffix(string(out), "\r\n"), "\r\n")
			if tt.n == 0 {
				if len(out) != 0 {
					t.Fatalf("got %q", out)
				}
				return
			}
			if len(lines) != tt.n*NMEASentencesPerEpoch {
				t.Fatalf("%d sentences, want %d", len(lines), tt.n*NMEASentencesPerEpoch)
			}
			for i, l := range lines {
				if !strings.HasPrefix(l, "$"+tt.want[i]+",") {
					t.Errorf("sentence %d = %q, want it to start with $%s", i, l, tt.want[i])
				}
				star := strings.LastIndexByte(l, '*')
				if star < 0 {
					t.Fatalf("sentence %d without checksum: %q", i, l)
				}
				var cs byte
				for _, c := range []byte(l[1:star]) {
					cs ^= c
				}
				if got := l[star+1:]; got != fmt.Sprintf("%02X", cs) {
					t.Errorf("sentence %d checksum %s, want %02X", i, got, cs)
				}
			}
		})
	}
	// A known sentence (NMEA's textbook GGA) checks the framing itself.
	if got, want := nmeaSentence("GPGGA,123519,4807.038,N,01131.000,E,1,08,0.9,545.4,M,46.9,M,,"), "$GPGGA,123519,4807.038,N,01131.000,E,1,08,0.9,545.4,M,46.9,M,,*47\r\n"; got != want {
		t.Errorf("nmeaSentence = %q, want %q", got, want)
	}
}

// TestGpsfake: gpsfake replays generated NMEA, freely and stepped, and gpsd
// reports a TPV with a generated time (gpsd uses the first epochs to
// recognize the protocol, and reports an epoch when the next begins).
func TestGpsfake(t *testing.T) {
	testenv.RequireRoot(t)
	start := time.Now().Add(-time.Hour).Truncate(time.Second)
	file := filepath.Join(t.TempDir(), "gps.nmea")
	if err := os.WriteFile(file, GenerateNMEA(start, 20), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, stepped := range []bool{false, true} {
		t.Run(fmt.Sprintf("stepped=%v", stepped), func(t *testing.T) {
			port := FreeTCPPort(t)
			var g *SteppedGpsfake
			if stepped {
				g = StartGpsfakeStepped(t, file, port)
			} else {
				StartGpsfake(t, file, port)
			}
			c, err := net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", port))
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			fmt.Fprintf(c, "?WATCH={\"enable\":true,\"json\":true}\n")
			if g != nil {
				stop := make(chan struct{})
				defer close(stop)
				go func() {
					for range 8 {
						if g.Feed(NMEASentencesPerEpoch) != nil {
							return
						}
						select {
						case <-stop:
							return
						case <-time.After(200 * time.Millisecond):
						}
					}
				}()
			}
			c.SetReadDeadline(time.Now().Add(10 * time.Second))
			sc := bufio.NewScanner(c)
			var tpv struct {
				Class string    `json:"class"`
				Time  time.Time `json:"time"`
			}
			last := start.Add(7 * time.Second)
			for sc.Scan() {
				if json.Unmarshal(sc.Bytes(), &tpv) != nil || tpv.Class != "TPV" || tpv.Time.IsZero() {
					continue
				}
				if tpv.Time.Before(start) || tpv.Time.After(last) {
					t.Fatalf("TPV time %v, want one within %v..%v: %s", tpv.Time, start, last, sc.Bytes())
				}
				t.Logf("gpsd: %.120s", sc.Bytes())
				return
			}
			t.Fatalf("no TPV with a time: %v", sc.Err())
		})
	}
}
