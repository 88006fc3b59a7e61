package ntp

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/netip"
	"strconv"
	"time"

	"go.uber.org/zap"

	"github.com/timed-project/timed/internal/wait"
	"github.com/timed-project/timed/sources"
)

// PoolConfig configures a pool: a DNS name whose addresses become separate
// clients.
type PoolConfig struct {
	// Address is the pool's host name (an IP address works too, giving one
	// client).
	Address string
	// Port is the servers' UDP port; 0 means 123.
	Port int
	// MaxSources is how many clients the pool keeps; 0 means 4.
	MaxSources int
	// IBurst, XLeave, MinPoll and MaxPoll are given to every client.
	IBurst, XLeave   bool
	MinPoll, MaxPoll int
	// Resolver resolves Address; nil means net.DefaultResolver.
	Resolver Resolver
	// NTS, when set, protects every client with NTS. Each client's key
	// exchange goes to its own address (or NTS.Server when set) on
	// NTS.Port, and the certificate must name the pool (NTS.ServerName
	// defaults to Address), as chrony does for NTS pools.
	NTS *NTSConfig
	// CheckInterval is how often the pool replaces unreachable clients and
	// re-resolves when it has fewer than MaxSources; 0 means 5 minutes.
	CheckInterval time.Duration
}

// Pool keeps up to MaxSources clients for the addresses a pool name
// resolves to.
type Pool struct {
	cfg PoolConfig
	tb  sources.Timebase
	log *zap.Logger
}

// NewPool returns a pool; nothing happens until Run.
func NewPool(cfg PoolConfig, tb sources.Timebase, log *zap.Logger) *Pool {
	if cfg.Port == 0 {
		cfg.Port = DefaultPort
	}
	if cfg.MaxSources <= 0 {
		cfg.MaxSources = 4
	}
	if cfg.MinPoll == 0 && cfg.MaxPoll == 0 {
		cfg.MinPoll, cfg.MaxPoll = 6, 10
	}
	if cfg.Resolver == nil {
		cfg.Resolver = net.DefaultResolver
	}
	if cfg.CheckInterval <= 0 {
		cfg.CheckInterval = 5 * time.Minute
	}
	if log == nil {
		log = zap.NewNop()
	}
	return &Pool{cfg: cfg, tb: tb, log: log.With(zap.String("pool", cfg.Address))}
}

// Name returns "host:port" of the pool.
func (p *Pool) Name() string { return net.JoinHostPort(p.cfg.Address, strconv.Itoa(p.cfg.Port)) }

// Run adds clients to reg, replaces those that stay unreachable or were
// refused service, and removes its clients when ctx is done. It returns nil
// then, or an error when the configuration is unusable.
func (p *Pool) Run(ctx context.Context, reg sources.Registry) error {
	if p.tb == nil {
		return errors.New("ntp: pool: no timebase")
	}
	active := map[netip.Addr]*Client{}
	// Addresses given up on: not tried again for a while.
	bad := map[netip.Addr]time.Time{}
	defer func() {
		for _, c := range active {
			reg.Remove(c.Name())
		}
	}()
	retry := 10 * time.Second
	for {
		// Replace clients that stay unreachable or were demobilized.
		for a, c := range active {
			if c.Unreachable() || c.Demobilized() {
				p.log.Info("replacing pool server", zap.Stringer("address", a),
					zap.Bool("unreachable", c.Unreachable()), zap.Bool("refused", c.Demobilized()))
				reg.Remove(c.Name())
				delete(active, a)
				bad[a] = time.Now()
			}
		}
		for a, since := range bad {
			if time.Since(since) > 4*p.cfg.CheckInterval {
				delete(bad, a)
			}
		}
		next := p.cfg.CheckInterval
		if len(active) < p.cfg.MaxSources {
			if err := p.fill(ctx, reg, active, bad); err != nil {
				if ctx.Err() != nil {
					return nil
				}
				p.log.Warn("cannot resolve pool", zap.Error(err))
				next = min(retry, p.cfg.CheckInterval)
				retry = min(2*retry, p.cfg.CheckInterval)
			} else {
				retry = 10 * time.Second
			}
		}
		if !wait.For(ctx, next) {
			return nil
		}
	}
}

// fill resolves the pool and adds clients for new addresses until there
// are MaxSources.
func (p *Pool) fill(ctx context.Context, reg sources.Registry, active map[netip.Addr]*Client, bad map[netip.Addr]time.Time) error {
	var addrs []netip.Addr
	if a, err := netip.ParseAddr(p.cfg.Address); err == nil {
		addrs = []netip.Addr{a}
	} else {
		lctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		addrs, err = p.cfg.Resolver.LookupNetIP(lctx, "ip", p.cfg.Address)
		cancel()
		if err != nil {
			return fmt.Errorf("ntp: pool %s: %w", p.cfg.Address, err)
		}
	}
	// Take the addresses in random order, so that clients sharing a
	// resolver's answer spread over the pool's servers.
	rand.Shuffle(len(addrs), func(i, j int) { addrs[i], addrs[j] = addrs[j], addrs[i] })
	for _, a := range addrs {
		if len(active) >= p.cfg.MaxSources {
			break
		}
		a = a.Unmap()
		if _, ok := active[a]; ok {
			continue
		}
		if _, ok := bad[a]; ok {
			continue
		}
		c, err := NewClient(ClientConfig{
			Address: a.String(), Port: p.cfg.Port, IBurst: p.cfg.IBurst, XLeave: p.cfg.XLeave,
			MinPoll: p.cfg.MinPoll, MaxPoll: p.cfg.MaxPoll, NTS: p.memberNTS(),
		}, p.tb, p.log)
		if err != nil {
			return err
		}
		opts := c.Options()
		if err := reg.Add(c, opts); err != nil {
			p.log.Info("pool server not added", zap.Stringer("address", a), zap.Error(err))
			bad[a] = time.Now()
			continue
		}
		p.log.Info("pool server added", zap.String("source", c.Name()))
		active[a] = c
	}
	return nil
}

// memberNTS is the NTS configuration of a pool member: the pool's, with the
// certificate checked against the pool's name.
func (p *Pool) memberNTS() *NTSConfig {
	if p.cfg.NTS == nil {
		return nil
	}
	n := *p.cfg.NTS
	if n.ServerName == "" && n.Server == "" {
		n.ServerName = p.cfg.Address
	}
	return &n
}
