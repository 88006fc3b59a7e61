//go:build linux

package interop

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/timed-project/timed/internal/peers"
	"github.com/timed-project/timed/internal/testenv"
)

// TestPTPHardwareOnVeth: a PTP port with `timestamping: hardware` on a veth
// interface (no PTP hardware clock, no hardware stamps). timed starts, says
// in its log what is wrong and what to do (`timestamping: software`), and
// `timectl ptp` shows the port FAULTY with the same reason; the clock
// stays the configured one, with no tie.
func TestPTPHardwareOnVeth(t *testing.T) {
	testenv.RequireRoot(t)
	binaries(t)
	a, _ := peers.NewVethPair(t)
	cfg := timedConfig{SimOffset: "0s", NoSources: true, Name: "hw",
		Extra: "ptp:\n  ports:\n    - {interface: " + a.Iface + ", role: slave_only, timestamping: hardware}\n"}
	tp := startTimed(t, cfg, a.Netns)

	var r struct {
		Ports []struct {
			Interface, State, Reason, Timestamps string
		}
	}
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	if err := tp.query(ctx, &r, "ptp"); err != nil {
		t.Fatal(err)
	}
	if len(r.Ports) != 1 {
		t.Fatalf("timectl ptp: %+v, want one port", r.Ports)
	}
	p := r.Ports[0]
	t.Logf("timectl ptp: %s %s: %s", p.Interface, p.State, p.Reason)
	if p.State != "FAULTY" || !strings.Contains(p.Reason, a.Iface) || !strings.Contains(p.Reason, "timestamping: software") ||
		!strings.Contains(p.Reason, "no hardware timestamping") {
		t.Errorf("timectl ptp: port %+v, want FAULTY naming %s and saying to use timestamping: software", p, a.Iface)
	}
	found, keptAdmin := false, false
	for _, l := range logLines(tp.Output()) {
		msg, _ := l["msg"].(string)
		if e, _ := l["error"].(string); msg == "PTP port cannot use hardware timestamps" &&
			strings.Contains(e, a.Iface) && strings.Contains(e, "timestamping: software") {
			found = true
		}
		keptAdmin = keptAdmin || strings.HasPrefix(msg, "keeping CAP_NET_ADMIN")
	}
	if !found {
		t.Errorf("no log line about the port's missing hardware timestamps:\n%s", tp.Tail(20))
	}
	if !keptAdmin {
		t.Errorf("timed did not say it keeps CAP_NET_ADMIN for a hardware port:\n%s", tp.Tail(20))
	}
	var st struct {
		Clock struct {
			Driver, Device string
			Tie            *struct{}
		}
	}
	if err := tp.query(ctx, &st, "status"); err != nil {
		t.Fatal(err)
	}
	if st.Clock.Driver != "virtual" || st.Clock.Device != "" || st.Clock.Tie != nil {
		t.Errorf("timectl status clock %+v, want the virtual clock untouched", st.Clock)
	}
}
