package daemon

import (
	"errors"
	"fmt"
	"io/fs"
	"net"

	"go.uber.org/zap"

	"github.com/timed-project/timed/config"
	"github.com/timed-project/timed/control"
)

// listenControl makes the control socket at path. When path is the default
// one and its directory cannot be made or written (timed runs as an
// ordinary user), it falls back to control.FallbackSocket and logs where.
func listenControl(path string, log *zap.Logger, xdgRuntimeDir string) (net.Listener, string, error) {
	if path == "" {
		path = config.DefaultControlSocket
	}
	ln, err := control.Listen(path)
	if err == nil {
		return ln, path, nil
	}
	if path != config.DefaultControlSocket || !errors.Is(err, fs.ErrPermission) {
		return nil, "", fmt.Errorf("daemon: control socket %s: %w", path, err)
	}
	alt := control.FallbackSocket(xdgRuntimeDir)
	ln, err2 := control.Listen(alt)
	if err2 != nil {
		return nil, "", fmt.Errorf("daemon: control socket %s: %w; fallback %s: %w", path, err, alt, err2)
	}
	log.Warn("cannot make the control socket in its usual place; using a private one (timectl -s "+alt+")",
		zap.String("wanted", path), zap.String("control_socket", alt), zap.NamedError("reason", err))
	return ln, alt, nil
}
