package ntp

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sort"
	"sync"
	"testing"
	"time"

	"go.uber.org/zap/zaptest"

	"github.com/timed-project/timed/internal/testenv"
	"github.com/timed-project/timed/sources"
)

// registry runs added sources like the daemon would.
type registry struct {
	mu      sync.Mutex
	running map[string]context.CancelFunc
	opts    map[string]sources.SourceOptions
	added   []string
	removed []string
	wg      sync.WaitGroup
}

func newRegistry() *registry {
	return &registry{running: map[string]context.CancelFunc{}, opts: map[string]sources.SourceOptions{}}
}

func (g *registry) Add(src sources.Source, opts sources.SourceOptions) error {
	g.mu.Lock()
	defer g.mu.Unlock()
	if _, ok := g.running[src.Name()]; ok {
		return errors.New("already running")
	}
	ctx, cancel := context.WithCancel(context.Background())
	g.running[src.Name()] = cancel
	g.opts[src.Name()] = opts
	g.added = append(g.added, src.Name())
	g.wg.Go(func() { _ = src.Run(ctx, newReporter(fastPoll)) })
	return nil
}

func (g *registry) Remove(name string) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if cancel, ok := g.running[name]; ok {
		cancel()
		delete(g.running, name)
		g.removed = append(g.removed, name)
	}
}

func (g *registry) names() []string {
	g.mu.Lock()
	defer g.mu.Unlock()
	var n []string
	for k := range g.running {
		n = append(n, k)
	}
	sort.Strings(n)
	return n
}

func listenAt(t *testing.T, ip string, port int) *net.UDPConn {
	c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.ParseIP(ip), Port: port})
	if err != nil {
		testenv.Missing(t, fmt.Sprintf("a listening address %s:%d (%v)", ip, port, err))
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// serveGood answers every request on c correctly.
func serveGood(c *net.UDPConn) {
	s := &fakeServer{conn: c}
	go s.serve()
}

func TestPool(t *testing.T) {
	// Three "pool servers" on 127.0.0.1..3, same port; 127.0.0.2 never
	// answers; 127.0.0.4 is held in reserve.
	a := listenAt(t, "127.0.0.1", 0)
	port := a.LocalAddr().(*net.UDPAddr).Port
	serveGood(a)
	listenAt(t, "127.0.0.2", port) // silent
	serveGood(listenAt(t, "127.0.0.3", port))
	serveGood(listenAt(t, "127.0.0.4", port))

	res := &fakeResolver{addrs: map[string][]netip.Addr{"pool.test": {
		netip.MustParseAddr("127.0.0.1"), netip.MustParseAddr("127.0.0.2"), netip.MustParseAddr("127.0.0.1"),
	}}}
	p := NewPool(PoolConfig{Address: "pool.test", Port: port, MaxSources: 3, MinPoll: -6, MaxPoll: -6,
		Resolver: res, CheckInterval: 100 * time.Millisecond}, sysTimebase{}, zaptest.NewLogger(t))
	if p.Name() != "pool.test:"+itoa(port) {
		t.Errorf("Name() = %q", p.Name())
	}
	reg := newRegistry()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- p.Run(ctx, reg) }()

	name := func(ip string) string { return net.JoinHostPort(ip, itoa(port)) }
	waitFor := func(want ...string) {
		t.Helper()
		sort.Strings(want)
		deadline := time.Now().Add(5 * time.Second)
		for time.Now().Before(deadline) {
			got := reg.names()
			if len(got) == len(want) {
				same := true
				for i := range got {
					same = same && got[i] == want[i]
				}
				if same {
					return
				}
			}
			time.Sleep(10 * time.Millisecond)
		}
		t.Fatalf("running %v, want %v", reg.names(), want)
	}
	// Duplicates collapse: two distinct addresses.
	waitFor(name("127.0.0.1"), name("127.0.0.2"))
	reg.mu.Lock()
	o := reg.opts[name("127.0.0.1")]
	reg.mu.Unlock()
	if o.Kind != "ntp" || o.Address != name("127.0.0.1") || o.MinPoll != -6 || o.MaxPoll != -6 {
		t.Errorf("options %+v", o)
	}

	// New addresses appear; the silent one is replaced after 8 polls.
	res.mu.Lock()
	res.addrs["pool.test"] = []netip.Addr{netip.MustParseAddr("127.0.0.2"), netip.MustParseAddr("127.0.0.3"), netip.MustParseAddr("127.0.0.4")}
	res.mu.Unlock()
	waitFor(name("127.0.0.1"), name("127.0.0.3"), name("127.0.0.4"))
	reg.mu.Lock()
	removed := append([]string(nil), reg.removed...)
	reg.mu.Unlock()
	if len(removed) != 1 || removed[0] != name("127.0.0.2") {
		t.Errorf("removed %v, want only the silent server", removed)
	}

	cancel()
	if err := <-done; err != nil {
		t.Errorf("Run returned %v", err)
	}
	if n := reg.names(); len(n) != 0 {
		t.Errorf("still running after the pool stopped: %v", n)
	}
	reg.wg.Wait()
}
