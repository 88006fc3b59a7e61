package ptp

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/timed-project/timed/internal/netstamp"
	"github.com/timed-project/timed/internal/peers"
)

// A port with hardware timestamps on a veth interface (which has none)
// stops at once with an error that names the interface, wraps
// netstamp.ErrNoHardwareStamps and says to use software timestamps; its
// status shows it.
func TestSourceHardwareStampsOnVeth(t *testing.T) {
	a, _ := peers.NewVethPair(t)
	for _, n := range []Network{NetworkUDPv4, NetworkL2} {
		t.Run(string(n), func(t *testing.T) {
			src, err := NewSource(SourceConfig{Interface: a.Iface, Network: n, HardwareStamps: true,
				EventPort: 11319, GeneralPort: 11320}, phcTimebase{}, nil)
			if err != nil {
				t.Fatal(err)
			}
			var runErr error
			peers.InNetns(t, a.Netns, func() { runErr = src.Run(context.Background(), nopReporter{}) })
			if !errors.Is(runErr, netstamp.ErrNoHardwareStamps) || !strings.Contains(runErr.Error(), a.Iface) ||
				!strings.Contains(runErr.Error(), "use timestamping: software") {
				t.Fatalf("Run: %v, want a clear error wrapping ErrNoHardwareStamps", runErr)
			}
			st := src.Status()
			if st.State != "FAULTY" || st.Reason != runErr.Error() {
				t.Errorf("status %s %q, want FAULTY with the error", st.State, st.Reason)
			}
		})
	}
}
