package daemon

import (
	"net"
	"os"
	"strconv"

	"go.uber.org/zap"

	"github.com/timed-project/timed/config"
	"github.com/timed-project/timed/gpsd"
)

// heldRefclockIO is what reference clocks open once, at start-up, and keep
// for every reader after: SOCK sockets the service manager bound (timed,
// as user _timed in a read-only /run, cannot make /run/chrony.DEVICE.sock
// itself) and SHM segments attached while timed still held
// CAP_IPC_OWNER (gpsd running as root makes units 0 and 1 root's, mode
// 0600). A reader restarted after a fault, or by a reload, reuses them and
// needs no privilege; a unit or path first configured by a reload is
// opened by its reader.
type heldRefclockIO struct {
	sockets map[string]*net.UnixConn // by path
	shm     map[int]*gpsd.SHMSegment // by unit
}

// holdRefclockIO takes the sockets passed by the service manager and
// attaches the SHM units of rcs. A unit that cannot be attached now is left
// to its reader, which reports why.
func holdRefclockIO(rcs []config.Refclock, log *zap.Logger) heldRefclockIO {
	h := heldRefclockIO{sockets: listenFDs(log), shm: map[int]*gpsd.SHMSegment{}}
	used := map[string]bool{}
	for _, rc := range rcs {
		switch rc.Kind {
		case "sock":
			used[rc.Path] = true
		case "shm":
			if _, ok := h.shm[rc.Unit]; ok {
				continue
			}
			seg, err := gpsd.AttachSHM(rc.Unit)
			if err != nil {
				log.Debug("SHM unit not attached at start-up; its reader tries", zap.Int("unit", rc.Unit), zap.Error(err))
				continue
			}
			h.shm[rc.Unit] = seg
		}
	}
	for path := range h.sockets {
		if !used[path] {
			log.Warn("socket from the service manager not used: no sock reference clock has its path", zap.String("path", path))
		}
	}
	return h
}

// release closes the sockets and detaches the segments; the readers have
// stopped.
func (h heldRefclockIO) release() {
	for _, c := range h.sockets {
		c.Close()
	}
	for _, s := range h.shm {
		s.Detach()
	}
}

// listenFDs takes the Unix datagram sockets passed by systemd's socket
// activation (sd_listen_fds(3): LISTEN_PID is this process, LISTEN_FDS
// sockets from descriptor 3), by the path each is bound to, and removes
// the variables from the environment. Other descriptors are closed with a
// warning.
func listenFDs(log *zap.Logger) map[string]*net.UnixConn {
	out := map[string]*net.UnixConn{}
	pid, n := os.Getenv("LISTEN_PID"), os.Getenv("LISTEN_FDS")
	for _, v := range []string{"LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES"} {
		os.Unsetenv(v)
	}
	if pid != strconv.Itoa(os.Getpid()) {
		return out
	}
	count, err := strconv.Atoi(n)
	if err != nil || count < 0 || count > 1024 {
		log.Warn("LISTEN_FDS from the service manager is not a count of sockets", zap.String("LISTEN_FDS", n))
		return out
	}
	const first = 3 // SD_LISTEN_FDS_START
	fds := make([]uintptr, count)
	for i := range fds {
		fds[i] = uintptr(first + i)
	}
	return takeSockets(fds, log)
}

// takeSockets takes the bound Unix datagram sockets among the descriptors
// fds, by path, and closes the others with a warning.
func takeSockets(fds []uintptr, log *zap.Logger) map[string]*net.UnixConn {
	out := map[string]*net.UnixConn{}
	for _, fd := range fds {
		f := os.NewFile(fd, "LISTEN_FD_"+strconv.Itoa(int(fd)))
		c, err := net.FileConn(f) // a duplicate, close-on-exec
		f.Close()
		if err != nil {
			log.Warn("descriptor from the service manager is not a socket", zap.Uintptr("fd", fd), zap.Error(err))
			continue
		}
		uc, ok := c.(*net.UnixConn)
		addr, _ := c.LocalAddr().(*net.UnixAddr)
		if !ok || addr == nil || addr.Net != "unixgram" || addr.Name == "" {
			log.Warn("socket from the service manager is not a bound Unix datagram socket (timed takes only SOCK reference clocks' sockets)",
				zap.Uintptr("fd", fd), zap.Stringer("address", c.LocalAddr()))
			c.Close()
			continue
		}
		out[addr.Name] = uc
		log.Info("socket from the service manager", zap.String("path", addr.Name))
	}
	return out
}
