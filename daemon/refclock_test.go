package daemon

import (
	"path/filepath"
	"testing"

	"github.com/timed-project/timed/config"
	"github.com/timed-project/timed/control"
)

// The status lists every configured reference clock with what its reader
// says: a SOCK clock listening on its socket, and a PPS clock whose device
// does not exist as not connected, with why.
func TestRefclockStatus(t *testing.T) {
	cfg := virtualConfig(0)
	sock := filepath.Join(t.TempDir(), "chrony.ttyS0.sock")
	missing := filepath.Join(t.TempDir(), "pps9")
	cfg.Refclocks = []config.Refclock{
		{Kind: "sock", Name: "nmea", Path: sock},
		{Kind: "pps", Name: "pps", Device: missing},
	}
	d, _ := testDaemon(t, cfg, "", newWorld(), nil, nil)
	if got := d.Status().Refclocks; len(got) != 2 || got[0].Reason != "not started yet" || got[0].Device != sock || got[0].Kind != "sock" {
		t.Errorf("before start: %+v, want both not started yet, with kind and device", got)
	}
	start(t, d)
	var got []control.RefclockInfo
	eventually(t, "both readers to report", func() bool {
		got = d.Status().Refclocks
		return len(got) == 2 && got[0].Connected && got[1].Reason != "" && got[1].Reason != "not started yet"
	})
	if r := got[0]; r.Name != "nmea" || r.Kind != "sock" || r.Device != sock || r.Samples != 0 || r.LastSampleAgo != 0 {
		t.Errorf("sock: %+v, want nmea listening on %s without samples", r, sock)
	}
	if r := got[1]; r.Name != "pps" || r.Kind != "pps" || r.Device != missing || r.Connected {
		t.Errorf("pps: %+v, want pps on %s not connected", r, missing)
	}
	t.Logf("%+v", got)
}
