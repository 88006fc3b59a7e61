//go:build linux && bench

package bench

import (
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"math"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/timed-project/timed/internal/ntpload"
	"github.com/timed-project/timed/internal/peers"
	"github.com/timed-project/timed/internal/testenv"
)

var (
	flagRounds  = flag.Int("rounds", 5, "rounds; in each, every server takes its turn")
	flagLeg     = flag.Duration("leg", 3*time.Second, "how long each load run sends")
	flagSources = flag.Int("sources", 4000, "distinct client addresses")
	flagServers = flag.String("servers", "chronyd,timed,reference", "the servers to measure, in turn order")
	flagSpread  = flag.Bool("spread", true, "also measure, unpinned, how each server spreads over the cores")
	flagMillion = flag.Bool("million", true, "also measure memory after requests from a million client addresses")
	flagQuiet   = flag.Duration("quiet-wait", 30*time.Second, "the longest wait for a quiet machine before each run")
)

// The chronyd configuration beyond peers.StartChronyServer's: every
// 127.0.0.0/8 client allowed; rate limiting on (so that chronyd does its
// per-client work) but at 2^-19 s and a burst of 255, which no load here
// reaches; room for 65536 clients in its log, as timed's table has.
var chronyExtra = []string{
	"allow 127.0.0.0/8",
	"ratelimit interval -19 burst 255 leak 0",
	"clientloglimit 8388608",
}

// timedConfig is the configuration timed serves with: the virtual clock,
// local stratum 1 like chronyd's, rate limits on but out of reach.
const timedConfig = `clock: {driver: virtual}
drift_file: ""
control: {socket: %s}
ntp: {servers: []}
server:
  listen: ["%s"]
  workers: 0
  interleaved: true
  allow: []
  deny: []
  deny_response: ignore
  client_table_size: 65536
  rate_limit:
    interval: 1us
    burst: 1024
    kiss_every: 4
    prefix_ipv4: 24
    prefix_ipv6: 48
    prefix_interval: 100ns
    prefix_burst: 65536
  local:
    stratum: 1
`

// env is what every leg of the benchmark shares.
type env struct {
	dir                 string
	timed, ntpload, ref string
	addr                netip.AddrPort
	// netns, when not empty, is the network namespace the load runs in.
	netns                    string
	all, serverCPU, loadCPUs unix.CPUSet
	pinned, niced            bool
}

// benchNice is the nice value the servers and the load generator run at.
const benchNice = -20

func TestServerBench(t *testing.T) {
	e := setup(t)
	servers := strings.Split(*flagServers, ",")
	var legs []Leg
	for r := 1; r <= *flagRounds; r++ {
		for _, s := range servers {
			leg := Leg{Server: s, Round: r}
			t.Run(fmt.Sprintf("round%d/%s", r, s), func(t *testing.T) { e.measure(t, &leg) })
			legs = append(legs, leg)
		}
	}
	var spreads []Spread
	if *flagSpread {
		for _, s := range servers {
			sp := Spread{Server: s}
			t.Run("spread/"+s, func(t *testing.T) { e.spread(t, &sp) })
			spreads = append(spreads, sp)
		}
	}
	var memory []memoryRow
	if *flagMillion {
		for _, s := range servers {
			if s == Reference {
				continue
			}
			m := memoryRow{server: s}
			t.Run("million/"+s, func(t *testing.T) { e.million(t, &m) })
			memory = append(memory, m)
		}
	}

	body := e.report(legs, spreads, memory)
	t.Logf("\n%s", body)
	if os.Getenv("TIMED_WRITE_PERF") != "1" {
		return
	}
	doc := filepath.Join(peers.RepoRoot(t), "docs", "PERFORMANCE.md")
	if err := WriteSection(doc, ServerSection, body); err != nil {
		t.Fatal(err)
	}
	t.Logf("wrote the server section of %s", doc)
}

// setup builds timed, ntpload and the reference responder, picks the port
// and decides the pinning: the server on the last CPU, the load generator
// (and this process) on the others.
func setup(t *testing.T) *env {
	e := &env{dir: t.TempDir()}
	root := peers.RepoRoot(t)
	goCmd := "go"
	if _, err := exec.LookPath(goCmd); err != nil {
		goCmd = filepath.Join(runtime.GOROOT(), "bin", "go")
	}
	build := exec.Command(goCmd, "build", "-o", e.dir+string(os.PathSeparator), "./cmd/timed", "./cmd/ntpload")
	build.Dir = root
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build ./cmd/timed ./cmd/ntpload: %v\n%s", err, out)
	}
	e.timed, e.ntpload = filepath.Join(e.dir, "timed"), filepath.Join(e.dir, "ntpload")
	gcc := testenv.LookPath(t, "gcc", "/usr/bin/gcc")
	e.ref = filepath.Join(e.dir, "refresponder")
	src := filepath.Join(root, "internal", "ntpload", "refresponder", "refresponder.c")
	if out, err := exec.Command(gcc, "-O2", "-o", e.ref, src, "-lpthread").CombinedOutput(); err != nil {
		t.Fatalf("gcc -O2 %s: %v\n%s", src, err, out)
	}
	localhost := netip.MustParseAddr("127.0.0.1")
	e.addr = netip.AddrPortFrom(localhost, uint16(peers.FreeUDPPort(t, localhost)))

	if err := unix.SchedGetaffinity(0, &e.all); err != nil {
		t.Fatal(err)
	}
	var cpus []int
	for i := range 1024 {
		if e.all.IsSet(i) {
			cpus = append(cpus, i)
		}
	}
	// The servers and the load generator inherit nice -20 (when allowed),
	// so that other processes on a shared machine disturb them less.
	if prio, err := unix.Getpriority(unix.PRIO_PROCESS, 0); err == nil && unix.Setpriority(unix.PRIO_PROCESS, 0, benchNice) == nil {
		e.niced = true
		niceSelf(t, benchNice)
		t.Cleanup(func() { niceSelf(t, 20-prio) }) // the system call returns 20 - nice
	}
	if len(cpus) >= 2 {
		e.pinned = true
		e.serverCPU.Set(cpus[len(cpus)-1])
		for _, c := range cpus[:len(cpus)-1] {
			e.loadCPUs.Set(c)
		}
		pinSelf(t, e.loadCPUs)
		t.Cleanup(func() { pinSelf(t, e.all) })
	}
	return e
}

// pinSelf sets the CPU affinity of every thread of this process; threads
// and processes started later inherit it.
func pinSelf(t *testing.T, set unix.CPUSet) {
	t.Helper()
	eachThread(t, "sched_setaffinity", func(tid int) error { return unix.SchedSetaffinity(tid, &set) })
}

// niceSelf sets the nice value of every thread of this process; threads and
// processes started later inherit it.
func niceSelf(t *testing.T, nice int) {
	t.Helper()
	eachThread(t, "setpriority", func(tid int) error { return unix.Setpriority(unix.PRIO_PROCESS, tid, nice) })
}

func eachThread(t *testing.T, what string, f func(tid int) error) {
	t.Helper()
	tasks, err := os.ReadDir("/proc/self/task")
	if err != nil {
		t.Fatal(err)
	}
	for _, task := range tasks {
		tid, _ := strconv.Atoi(task.Name())
		if err := f(tid); err != nil && err != unix.ESRCH {
			t.Fatalf("%s(%d): %v", what, tid, err)
		}
	}
}

// start starts server s, on the server's CPU when pinned is true (the
// process inherits this process's affinity while it starts), and returns
// its pid once it answers. The server stops when the (sub)test ends.
func (e *env) start(t *testing.T, s string, pinned bool) int {
	t.Helper()
	if pinned && e.pinned {
		pinSelf(t, e.serverCPU)
		defer pinSelf(t, e.loadCPUs)
	}
	switch s {
	case Chronyd:
		c := peers.StartChronyServer(t, peers.ChronyOptions{Addr: e.addr.Addr(), Port: int(e.addr.Port()), Extra: chronyExtra})
		return c.Pid()
	case Timed:
		dir := t.TempDir()
		conf := filepath.Join(dir, "timed.yaml")
		if err := os.WriteFile(conf, []byte(fmt.Sprintf(timedConfig, filepath.Join(dir, "timed.sock"), e.addr)), 0o644); err != nil {
			t.Fatal(err)
		}
		p := peers.Start(t, peers.ProcOptions{Name: "timed", Dir: dir}, e.timed, "-c", conf)
		peers.WaitNTP(t, e.addr, p)
		return p.Pid()
	case Reference:
		threads := "1"
		if !pinned || !e.pinned {
			threads = strconv.Itoa(runtime.NumCPU())
		}
		p := peers.Start(t, peers.ProcOptions{Name: "refresponder"}, e.ref, "-t", threads, e.addr.Addr().String(), strconv.Itoa(int(e.addr.Port())))
		peers.WaitNTP(t, e.addr, p)
		return p.Pid()
	}
	t.Fatalf("unknown server %q (want chronyd, timed or reference)", s)
	return 0
}

// load runs ntpload against the server with the given flags and returns
// its result, the CPU (in cores) that other processes used meanwhile and
// the server's threads' shares.
// A run that others disturbed (more than maxOthers) is repeated, up to
// three runs; the least disturbed one counts.
func (e *env) load(t *testing.T, pid int, args ...string) (*ntpload.Result, float64, []ThreadShare) {
	t.Helper()
	var best *ntpload.Result
	var bestThreads []ThreadShare
	bestOthers := math.Inf(1)
	for try := 1; try <= 3 && bestOthers > maxOthers; try++ {
		if try > 1 {
			t.Logf("others used %.2f cores during the run: running it again", bestOthers)
		}
		th0, _ := ntpload.Threads(pid)
		res, others := e.loadOnce(t, pid, args...)
		th1, _ := ntpload.Threads(pid)
		if others < bestOthers {
			best, bestOthers, bestThreads = res, others, shares(th0, th1, res.Seconds)
		}
	}
	return best, bestOthers, bestThreads
}

// maxOthers is the CPU, in cores, that other processes may use during a
// run before it is repeated.
const maxOthers = 0.05

func (e *env) loadOnce(t *testing.T, pid int, args ...string) (*ntpload.Result, float64) {
	t.Helper()
	argv := append([]string{"-o", "json", "-pid", strconv.Itoa(pid), "-sources", strconv.Itoa(*flagSources), "-d", flagLeg.String()}, args...)
	cmd := e.ntploadCommand(append(argv, e.addr.String())...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	waitQuiet(t)
	busy0, t0 := busyCPU(t), time.Now()
	if err := cmd.Run(); err != nil {
		t.Fatalf("ntpload %s: %v\n%s", strings.Join(argv, " "), err, stderr.String())
	}
	wall := time.Since(t0).Seconds()
	busy := busyCPU(t) - busy0
	var res ntpload.Result
	if err := json.Unmarshal(stdout.Bytes(), &res); err != nil {
		t.Fatalf("ntpload's output: %v\n%s", err, stdout.String())
	}
	loader := (cmd.ProcessState.UserTime() + cmd.ProcessState.SystemTime()).Seconds()
	others := max(busy-loader-res.ServerCPU, 0) / wall
	return &res, others
}

// ntploadCommand is ntpload with args, in e's network namespace when it
// has one (ip netns exec execs ntpload in place: the process and its CPU
// time are ntpload's).
func (e *env) ntploadCommand(args ...string) *exec.Cmd {
	if e.netns == "" {
		return exec.Command(e.ntpload, args...)
	}
	return exec.Command("ip", append([]string{"netns", "exec", e.netns, e.ntpload}, args...)...)
}

// waitQuiet waits, up to -quiet-wait (30 s), for half a second in which all processors
// together are less than 5% busy: other processes on a shared machine
// would disturb the figures.
func waitQuiet(t *testing.T) {
	t.Helper()
	start := time.Now()
	for {
		b0 := busyCPU(t)
		time.Sleep(500 * time.Millisecond)
		busy := (busyCPU(t) - b0) / 0.5
		switch {
		case busy < 0.05:
			if waited := time.Since(start); waited > time.Second {
				t.Logf("waited %s for the machine to be quiet", waited.Round(time.Second))
			}
			return
		case time.Since(start) > *flagQuiet:
			t.Logf("the machine is not quiet (%.2f cores busy); measuring anyway", busy)
			return
		}
	}
}

// busyCPU is the CPU time, in seconds, that all processors spent busy
// (the "cpu" line of /proc/stat, all but idle and iowait).
func busyCPU(t *testing.T) float64 {
	t.Helper()
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		t.Fatal(err)
	}
	line, _, _ := strings.Cut(string(b), "\n")
	f := strings.Fields(line)
	var busy float64
	for i, v := range f[1:] {
		n, _ := strconv.ParseFloat(v, 64)
		if i != 3 && i != 4 && i < 8 { // idle, iowait; guest time is in user already
			busy += n
		}
	}
	return busy / 100
}

// measure is one leg: the server started pinned, a saturating run, then a
// run at half of what the server answered.
func (e *env) measure(t *testing.T, leg *Leg) {
	pid := e.start(t, leg.Server, true)
	maxRes, o1, threads := e.load(t, pid, "-burst", "16")
	half := strconv.FormatFloat(math.Round(maxRes.ResponseRate/2), 'f', 0, 64)
	halfRes, o2, _ := e.load(t, pid, "-burst", "1", "-rate", half)
	leg.Max, leg.Half, leg.Others = maxRes, halfRes, max(o1, o2)
	if maxRes.Kissed+halfRes.Kissed > 0 {
		t.Errorf("%s sent kisses (%v, %v): its rate limit must stay out of reach", leg.Server, maxRes.Kisses, halfRes.Kisses)
	}
	t.Logf("%s: %.0f responses/s at saturation, %.0f per CPU-second (%.2f cores; threads %s); at %s req/s loss %.3f%%, latency p50 %.0f µs, p99 %.0f µs; others used %.2f cores",
		leg.Server, maxRes.ResponseRate, maxRes.PerCPUSecond, maxRes.ServerCores, threadList(threads),
		half, 100*halfRes.Loss, halfRes.Latency.P50, halfRes.Latency.P99, leg.Others)
}

// shares is each thread's CPU between two snapshots, busiest first.
func shares(before, after []ntpload.ThreadCPU, seconds float64) []ThreadShare {
	prev := map[int]time.Duration{}
	for _, th := range before {
		prev[th.TID] = th.CPU
	}
	var out []ThreadShare
	for _, th := range after {
		cpu := (th.CPU - prev[th.TID]).Seconds()
		out = append(out, ThreadShare{Name: fmt.Sprintf("%s/%d", th.Name, th.TID), CPU: cpu, Cores: cpu / seconds})
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].CPU > out[j].CPU })
	return out
}

func threadList(ts []ThreadShare) string {
	var parts []string
	for _, th := range ts {
		if th.Cores >= 0.01 {
			parts = append(parts, fmt.Sprintf("%s %.2f", th.Name, th.Cores))
		}
	}
	return strings.Join(parts, ", ")
}

// spread runs the server and the load generator without pinning, at a
// maximal rate, and samples which processor the server's threads run on.
func (e *env) spread(t *testing.T, sp *Spread) {
	if e.pinned {
		pinSelf(t, e.all)
		defer pinSelf(t, e.loadCPUs)
	}
	sp.Workers = map[string]string{Chronyd: "1 (single-threaded)", Timed: "workers: 0 (one per CPU)",
		Reference: fmt.Sprintf("%d threads", runtime.NumCPU())}[sp.Server]
	pid := e.start(t, sp.Server, false)
	th0, _ := ntpload.Threads(pid)
	perCPU := make([]float64, runtime.NumCPU())
	stop := make(chan struct{})
	sampled := make(chan struct{})
	go func() {
		defer close(sampled)
		last := map[int]time.Duration{}
		for _, th := range th0 {
			last[th.TID] = th.CPU
		}
		tick := time.NewTicker(20 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-stop:
				return
			case <-tick.C:
			}
			ths, err := ntpload.Threads(pid)
			if err != nil {
				return
			}
			for _, th := range ths {
				if d := th.CPU - last[th.TID]; d > 0 && th.Processor >= 0 && th.Processor < len(perCPU) {
					perCPU[th.Processor] += d.Seconds()
				}
				last[th.TID] = th.CPU
			}
		}
	}()
	res, _ := e.loadOnce(t, pid, "-burst", "16")
	close(stop)
	<-sampled
	th1, _ := ntpload.Threads(pid)
	sp.Result = res
	sp.Threads = shares(th0, th1, res.Seconds)
	for i := range perCPU {
		perCPU[i] /= res.Seconds
	}
	sp.PerCPU = perCPU
	t.Logf("%s unpinned: %.0f responses/s, %.0f per CPU-second, %.2f cores; per processor %v; threads %s",
		sp.Server, res.ResponseRate, res.PerCPUSecond, res.ServerCores, perCPU, threadList(sp.Threads))
}

// memoryRow is a server's memory before and after requests from a million
// client addresses.
type memoryRow struct {
	server             string
	before, after, hwm float64 // MiB
	answered, sent     uint64
}

// million sends one request from each of a million addresses and reads the
// server's memory before and after.
func (e *env) million(t *testing.T, m *memoryRow) {
	pid := e.start(t, m.server, true)
	m.before, _ = rss(t, pid)
	cmd := exec.Command(e.ntpload, "-o", "json", "-sources", "1000000", "-burst", "1", "-rate", "150000", "-d", "7s", e.addr.String())
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("ntpload: %v", err)
	}
	var res ntpload.Result
	if err := json.Unmarshal(out, &res); err != nil {
		t.Fatal(err)
	}
	m.sent, m.answered = res.Sent, res.Answered
	m.after, m.hwm = rss(t, pid)
	t.Logf("%s: RSS %.1f MiB before, %.1f MiB after %d requests from a million addresses (peak %.1f MiB); %d answered",
		m.server, m.before, m.after, m.sent, m.hwm, m.answered)
}

// rss is a process's resident and peak resident memory in MiB.
func rss(t *testing.T, pid int) (cur, peak float64) {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		k, v, _ := strings.Cut(line, ":")
		f := strings.Fields(v)
		if len(f) == 0 {
			continue
		}
		kib, _ := strconv.ParseFloat(f[0], 64)
		switch k {
		case "VmRSS":
			cur = kib / 1024
		case "VmHWM":
			peak = kib / 1024
		}
	}
	return cur, peak
}

// report is the Markdown section: the method, the summary, the goals, every
// round, the spread over cores and the memory.
func (e *env) report(legs []Leg, spreads []Spread, memory []memoryRow) string {
	var b strings.Builder
	pin := "Nothing was pinned (fewer than 2 CPUs)."
	if e.pinned {
		pin = fmt.Sprintf("Each server is started pinned to CPU %s (so Go's GOMAXPROCS and timed's `workers: 0` give it one socket, and the reference one thread); "+
			"the load generator runs pinned to CPU %s. In a check by hand on this machine, chronyd's figures were steadier and higher pinned "+
			"(4 runs: 157,000–204,000 responses/s, 188,000–213,000 per CPU-second) than with both left to the scheduler (86,000–162,000 and 164,000–187,000).", cpuList(e.serverCPU), cpuList(e.loadCPUs))
	}
	nice := ""
	if e.niced {
		nice = fmt.Sprintf("Servers and load generator run at nice %d. ", benchNice)
	}
	b.WriteString(writtenBy("bench-server", "TestServerBench"))
	fmt.Fprintf(&b, "Method: in each of %d rounds, chronyd 4.3 (`chronyd -x -d`, CAP_SYS_TIME dropped, `local stratum 1`, `ratelimit interval -19 burst 255 leak 0`: "+
		"its rate limit is on but out of reach), timed (virtual clock, `local: {stratum: 1}`, rate limits on with `interval: 1us` and `prefix_interval: 100ns`, out of reach) "+
		"and the reference responder (internal/ntpload/refresponder: C, recvmmsg/sendmmsg, kernel receive timestamps, no client table, no rate limit) take turns on the same loopback port. "+
		"Each is loaded by cmd/ntpload from %d client addresses in 127.0.0.0/8: first %s at a maximal rate (bursts of 16 requests per address, sent with UDP GSO, far more than any of the three answers); "+
		"responses per server CPU-second are the responses matched to their requests over the server's user + system time from /proc/PID/stat. "+
		"Then %s at half the responses/s that server managed, one request per address in turn, paced every 50 µs: loss counts requests without a response, latency runs from the load generator's "+
		"send to its receive (user space on both ends). Figures are medians over the rounds; a ratio is taken within each round, then the median. %s "+
		"%sBefore each run the benchmark waits for the machine to be quiet, and it repeats (up to three times in all) a run during which other processes used more than %.2f cores; "+
		"\"others' CPU\" is what they used in the run kept (the machine is shared).\n\n",
		*flagRounds, *flagSources, *flagLeg, *flagLeg, pin, nice, maxOthers)
	b.WriteString(SummaryTable(legs, *flagRounds))
	b.WriteString("\n")
	lines, _ := Goals(legs, *flagRounds)
	goalLines(&b, lines)
	b.WriteString("\nResponses per server CPU-second, round by round:\n\n")
	b.WriteString(RatiosTable(legs, *flagRounds))
	b.WriteString("\nEvery leg:\n\n")
	b.WriteString(RoundsTable(legs))
	if len(spreads) > 0 {
		b.WriteString("\nHow the servers spread over the cores when nothing is pinned (the load generator shares the same cores; CPU per processor is sampled every 20 ms from the threads' last processor):\n\n")
		b.WriteString(SpreadTable(spreads))
	}
	if len(memory) > 0 {
		b.WriteString("\nMemory with a million client addresses (1,050,000 requests at 150,000 a second, one from each of 1,000,000 addresses in turn, server pinned):\n\n")
		b.WriteString("| server | RSS before (MiB) | RSS after (MiB) | peak RSS (MiB) | requests | answered |\n|---|---:|---:|---:|---:|---:|\n")
		for _, m := range memory {
			fmt.Fprintf(&b, "| %s | %.1f | %.1f | %.1f | %d | %d |\n", m.server, m.before, m.after, m.hwm, m.sent, m.answered)
		}
	}
	return b.String()
}

// writtenBy is the first line of a report: which make target and test
// wrote it, on what machine, when.
func writtenBy(target, test string) string {
	return fmt.Sprintf("Written by `make %s` (`go test -tags bench -run '^%s$' ./internal/ntpload/bench`), %s, %s, %d CPUs, %s.\n\n",
		target, test, kernel(), cpuModel(), runtime.NumCPU(), time.Now().UTC().Format("2006-01-02"))
}

func cpuList(s unix.CPUSet) string {
	var l []string
	for i := range 1024 {
		if s.IsSet(i) {
			l = append(l, strconv.Itoa(i))
		}
	}
	return strings.Join(l, ",")
}

func kernel() string {
	var u unix.Utsname
	if unix.Uname(&u) != nil {
		return "linux"
	}
	return "Linux " + unix.ByteSliceToString(u.Release[:])
}

func cpuModel() string {
	b, _ := os.ReadFile("/proc/cpuinfo")
	for _, line := range strings.Split(string(b), "\n") {
		if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "model name" {
			return strings.TrimSpace(v)
		}
	}
	return runtime.GOARCH
}
