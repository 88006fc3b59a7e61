package daemon

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"reflect"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap"

	"github.com/timed-project/timed/config"
	"github.com/timed-project/timed/control"
	"github.com/timed-project/timed/nts"
	"github.com/timed-project/timed/nts/ke"
)

// ntsService is NTS for the NTP server: the NTS-KE server, the cookie key
// ring the NTP server opens cookies with, and the key file's upkeep
// (rotation on schedule, saved after each; read again when another host
// changed it).
type ntsService struct {
	cfg  config.NTSServerConfig
	log  *zap.Logger
	ring *nts.KeyRing
	ke   *ke.Server
	cert atomic.Pointer[tls.Certificate]
	lns  []net.Listener

	keyFile os.FileInfo // the key file as last read or written; nil if none

	cancel context.CancelFunc
	wg     sync.WaitGroup
}

// ntsKeyCheck is how often the key file is checked for changes and the
// ring for its rotation (at most; a quarter of the rotation period when
// that is shorter).
const ntsKeyCheck = time.Minute

// announcedPort is the NTP port NTS-KE announces: the first server.listen
// port, or 0 (clients use 123) when that is 123.
func announcedPort(c config.ServerConfig) uint16 {
	if len(c.Listen) == 0 || c.Listen[0].Port() == 123 {
		return 0
	}
	return c.Listen[0].Port()
}

// sameNTS reports whether a and b run the same NTS service.
func sameNTS(a, b config.ServerConfig) bool {
	return reflect.DeepEqual(a.NTS, b.NTS) && announcedPort(a) == announcedPort(b)
}

// startNTS loads the certificate and the key ring of cfg.NTS, binds the
// NTS-KE listeners and starts serving; nil when NTS is off.
func startNTS(cfg config.ServerConfig, log *zap.Logger) (*ntsService, error) {
	c := cfg.NTS
	if len(c.Listen) == 0 {
		return nil, nil
	}
	s := &ntsService{cfg: c, log: log}
	if err := s.loadCertificate(); err != nil {
		return nil, err
	}
	if err := s.loadRing(time.Now()); err != nil {
		return nil, err
	}
	var err error
	s.ke, err = ke.NewServer(ke.ServerConfig{
		GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) { return s.cert.Load(), nil },
		Cookies:        s.ring,
		NTPPort:        announcedPort(cfg),
		MaxConns:       c.MaxConnections,
		Timeout:        c.Timeout,
		Logger:         log.Named("ke"),
	})
	if err != nil {
		return nil, fmt.Errorf("daemon: NTS: %w", err)
	}
	// An NTS-KE connection lasts one exchange, bounded by the server's
	// time limit: TCP keepalive (four socket options on every accepted
	// connection by default) would never fire.
	lc := net.ListenConfig{KeepAlive: -1}
	for _, ap := range c.Listen {
		ln, err := lc.Listen(context.Background(), "tcp", ap.String())
		if err != nil {
			for _, l := range s.lns {
				l.Close()
			}
			return nil, fmt.Errorf("daemon: NTS-KE: %w", err)
		}
		s.lns = append(s.lns, ln)
	}
	ctx, cancel := context.WithCancel(context.Background())
	s.cancel = cancel
	for _, ln := range s.lns {
		s.wg.Go(func() {
			if err := s.ke.Serve(ctx, ln); err != nil {
				log.Error("NTS-KE server stopped", zap.Stringer("listen", ln.Addr()), zap.Error(err))
			}
		})
	}
	s.wg.Go(func() { s.keepKeys(ctx) })
	addrs := make([]string, len(s.lns))
	for i, ln := range s.lns {
		addrs[i] = ln.Addr().String()
	}
	log.Info("NTS-KE server started", zap.Strings("listen", addrs), zap.Uint16("ntp_port_announced", announcedPort(cfg)),
		zap.String("key_file", c.KeyFile))
	return s, nil
}

// loadCertificate reads the certificate and key files; the one in use stays
// when they cannot be read.
func (s *ntsService) loadCertificate() error {
	cert, err := tls.LoadX509KeyPair(s.cfg.Certificate, s.cfg.Key)
	if err != nil {
		return fmt.Errorf("daemon: NTS: certificate %s, key %s: %w", s.cfg.Certificate, s.cfg.Key, err)
	}
	s.cert.Store(&cert)
	return nil
}

// reloadCertificate reads the certificate again (SIGHUP).
func (s *ntsService) reloadCertificate() {
	if err := s.loadCertificate(); err != nil {
		s.log.Error("reload: cannot read the NTS certificate; the one in use stays", zap.Error(err))
		return
	}
	s.log.Info("reload: NTS certificate read again", zap.String("certificate", s.cfg.Certificate))
}

// loadRing reads the key file, or makes a ring and writes it when there is
// none, and rotates it when its newest key is a period old.
func (s *ntsService) loadRing(now time.Time) error {
	c := s.cfg
	ring, err := nts.LoadKeyRing(c.KeyFile, c.KeyRotation, c.KeysKept)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		if ring, err = nts.NewKeyRing(c.KeyRotation, c.KeysKept); err != nil {
			return fmt.Errorf("daemon: NTS: %w", err)
		}
		s.log.Info("no NTS key file: new cookie keys", zap.String("key_file", c.KeyFile))
	case err != nil:
		return fmt.Errorf("daemon: NTS: key file: %w", err)
	default:
		s.keyFile, _ = os.Stat(c.KeyFile)
	}
	s.ring = ring
	return s.rotate(now)
}

// rotate rotates the ring if it is due and saves it when it changed.
func (s *ntsService) rotate(now time.Time) error {
	changed, err := s.ring.Rotate(now)
	if err != nil {
		return fmt.Errorf("daemon: NTS: key rotation: %w", err)
	}
	if !changed {
		return nil
	}
	if err := s.ring.Save(s.cfg.KeyFile); err != nil {
		return fmt.Errorf("daemon: NTS: %w", err)
	}
	s.keyFile, _ = os.Stat(s.cfg.KeyFile)
	s.log.Info("NTS cookie keys rotated and saved", zap.String("key_file", s.cfg.KeyFile))
	return nil
}

// keepKeys reads the key file again when it changed on disk (another host
// rotated it) and rotates the ring on schedule, until ctx ends.
func (s *ntsService) keepKeys(ctx context.Context) {
	t := time.NewTicker(min(ntsKeyCheck, s.cfg.KeyRotation/4))
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-t.C:
			s.checkKeyFile()
			if err := s.rotate(now); err != nil {
				s.log.Error("NTS cookie keys: rotation failed; the current key stays in use", zap.Error(err))
			}
		}
	}
}

// checkKeyFile loads the key file when it differs from the one last read
// or written.
func (s *ntsService) checkKeyFile() {
	fi, err := os.Stat(s.cfg.KeyFile)
	if err != nil || s.keyFile != nil && os.SameFile(fi, s.keyFile) && fi.ModTime().Equal(s.keyFile.ModTime()) && fi.Size() == s.keyFile.Size() {
		return
	}
	if err := s.ring.Load(s.cfg.KeyFile); err != nil {
		s.log.Error("NTS key file changed on disk but cannot be read; the keys in use stay", zap.Error(err))
		return
	}
	s.keyFile = fi
	s.log.Info("NTS key file changed on disk: cookie keys read again", zap.String("key_file", s.cfg.KeyFile))
}

// close stops the NTS-KE server and the key upkeep.
func (s *ntsService) close() {
	s.cancel()
	s.wg.Wait()
}

// stats are the NTS counters for `timectl serverstats`.
func (s *ntsService) stats(answered, naks uint64) *control.NTSServerStats {
	k := s.ke.Stats()
	out := &control.NTSServerStats{
		Answered: answered, NAKs: naks,
		Accepted: k.Accepted, Refused: k.Refused, Handshakes: k.Handshakes, Exchanges: k.Exchanges,
		TLSErrors: k.TLSErrors, Timeouts: k.Timeouts, BadRequests: k.BadRequests, Unsupported: k.Unsupported,
		InternalErrors: k.InternalErrors, WriteErrors: k.WriteErrors, Active: k.Active,
	}
	for _, ln := range s.lns {
		out.Listen = append(out.Listen, ln.Addr().String())
	}
	return out
}
