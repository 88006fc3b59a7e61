package daemon

import (
	"context"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"go.uber.org/zap"

	"github.com/timed-project/timed/control"
	"github.com/timed-project/timed/sources"
)

// timectl's view: status and reload over the real control socket.
func TestControlSocket(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "timed.yaml")
	writeFile(t, path, "clock: {driver: virtual, simulate: {offset: 1s}}\n")
	cfg := virtualConfig(time.Second)
	cfg.Control.Socket = filepath.Join(dir, "run", "timed.sock")
	d, _ := testDaemon(t, cfg, path, newWorld(), nil, nil)
	d.f.listenControl = func(p string, log *zap.Logger) (net.Listener, string, error) {
		return listenControl(p, log, "")
	}
	start(t, d)
	if got := d.ControlSocket(); got != cfg.Control.Socket {
		t.Fatalf("control socket %q, want %q", got, cfg.Control.Socket)
	}
	c, err := control.Dial(cfg.Control.Socket)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	st, err := c.Status(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if st.Clock.Driver != "virtual" || st.Clock.OffsetFromSystem < 0.99 || st.Clock.OffsetFromSystem > 1.01 {
		t.Errorf("clock info %+v, want virtual 1 s ahead", st.Clock)
	}
	if os.Geteuid() == 0 {
		writeFile(t, path, "clock: {driver: virtual}\nntp: {servers: [{address: 192.0.2.5}]}\n")
		if err := c.Reload(ctx); err != nil {
			t.Fatalf("reload over the socket: %v", err)
		}
		eventually(t, "the added server", func() bool {
			s, err := c.Status(ctx)
			return err == nil && len(s.Engine.Sources) == 1 && s.Engine.Sources[0].State == sources.StateSelected
		})
		if err := c.MakeStep(ctx); err != nil {
			t.Errorf("makestep over the socket: %v", err)
		}
	}
}
