package sim

import (
	"errors"
	"fmt"
	"math"
	"runtime"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/timed-project/timed/sources"
)

// Scenario is one simulated situation and how it is judged.
type Scenario struct {
	// Name is short ("1", "6a"); Title says what it is.
	Name, Title string
	// Duration of the run and SyncWindow, the start of the measurement
	// window, in seconds of true time.
	Duration, SyncWindow float64
	// InitialOffset is L(0) − 0: positive means the clock starts ahead.
	InitialOffset float64
	Oscillator    Oscillator
	Servers       []Server
	// Configure changes the engine's configuration from
	// sources.DefaultConfig() (nil: the defaults).
	Configure func(*sources.Config)
	// LogMatch, when set, makes the run count the engine's log messages
	// containing it (Result.LogMatches).
	LogMatch string
	// NewProbe makes the scenario's probe for one run.
	NewProbe func() Probe
	// Checks judge the run: each on the median over seeds.
	Checks []Check
}

func (sc *Scenario) validate() error {
	if sc.Duration <= 0 || sc.SyncWindow < 0 {
		return errors.New("duration must be positive and the sync window not negative")
	}
	if len(sc.Servers) == 0 {
		return errors.New("no servers")
	}
	names := map[string]bool{}
	for i := range sc.Servers {
		if err := sc.Servers[i].validate(); err != nil {
			return err
		}
		if names[sc.Servers[i].Name] {
			return fmt.Errorf("server %s twice", sc.Servers[i].Name)
		}
		names[sc.Servers[i].Name] = true
	}
	o := sc.Oscillator
	if o.Wander < 0 || o.SwingPeriod < 0 {
		return errors.New("negative wander or swing period")
	}
	return nil
}

// Check is one figure of a scenario and its limit.
type Check struct {
	Metric string
	// Unit is how the figure is shown; Scale converts Value's SI figure to
	// it (1e6 for µs).
	Unit  string
	Scale float64
	// Value extracts the figure from one run, in SI units.
	Value func(r *Result) float64
	// Limit in display units; NaN: reported, not judged. AtLeast makes it a
	// lower bound.
	Limit   float64
	AtLeast bool
	// RelativeTo names a scenario: the limit is then Limit times that
	// scenario's median of the same metric.
	RelativeTo string
	// Chrony is chrony 4.3's figure from the issue, for the table ("" if
	// none was given).
	Chrony string
}

// Row is one judged figure.
type Row struct {
	Scenario, Title string
	Metric, Unit    string
	Median          float64 // display units
	Limit           float64 // display units, NaN: not judged
	AtLeast         bool
	Chrony          string
	Judged, Pass    bool
}

// Outcome is a scenario run over several seeds.
type Outcome struct {
	Scenario *Scenario
	Results  []*Result
	Err      error
	Rows     []Row
	Elapsed  time.Duration
}

// Pass reports whether every judged row passed and nothing failed to run.
func (o *Outcome) Pass() bool {
	if o.Err != nil {
		return false
	}
	for _, r := range o.Rows {
		if r.Judged && !r.Pass {
			return false
		}
	}
	return true
}

// Suite runs scenarios over seeds 1..Seeds and keeps the outcomes, so that a
// scenario whose limit refers to another runs that one once.
type Suite struct {
	Seeds     int
	NewEngine NewEngineFunc
	// Workers is how many seeds run at once (0: GOMAXPROCS).
	Workers int

	mu        sync.Mutex
	scenarios map[string]*Scenario
	order     []string
	outcomes  map[string]*Outcome
}

// NewSuite makes a suite of the standard scenarios.
func NewSuite(seeds int) *Suite {
	s := &Suite{Seeds: seeds, scenarios: map[string]*Scenario{}, outcomes: map[string]*Outcome{}}
	for _, sc := range Scenarios() {
		s.scenarios[sc.Name] = sc
		s.order = append(s.order, sc.Name)
	}
	return s
}

// Names lists the scenarios in order.
func (s *Suite) Names() []string { return slices.Clone(s.order) }

// Run runs the named scenario (once; later calls return the same outcome).
func (s *Suite) Run(name string) *Outcome {
	s.mu.Lock()
	if o, ok := s.outcomes[name]; ok {
		s.mu.Unlock()
		return o
	}
	sc, ok := s.scenarios[name]
	s.mu.Unlock()
	if !ok {
		return &Outcome{Err: fmt.Errorf("sim: no scenario %q", name)}
	}
	// Runs of the scenarios a limit refers to come first.
	ref := map[string]*Outcome{}
	for _, c := range sc.Checks {
		if c.RelativeTo != "" && c.RelativeTo != name {
			ref[c.RelativeTo] = s.Run(c.RelativeTo)
		}
	}
	o := s.run(sc, ref)
	s.mu.Lock()
	s.outcomes[name] = o
	s.mu.Unlock()
	return o
}

func (s *Suite) run(sc *Scenario, ref map[string]*Outcome) *Outcome {
	start := time.Now()
	o := &Outcome{Scenario: sc, Results: make([]*Result, s.Seeds)}
	errs := make([]error, s.Seeds)
	workers := s.Workers
	if workers <= 0 {
		workers = runtime.GOMAXPROCS(0)
	}
	seeds := make(chan int)
	var wg sync.WaitGroup
	for range min(workers, s.Seeds) {
		wg.Go(func() {
			for i := range seeds {
				o.Results[i], errs[i] = Run(sc, Options{Seed: uint64(i + 1), NewEngine: s.NewEngine})
			}
		})
	}
	for i := range s.Seeds {
		seeds <- i
	}
	close(seeds)
	wg.Wait()
	o.Elapsed = time.Since(start)
	if err := errors.Join(errs...); err != nil {
		o.Err = err
		o.Results = nil
	}
	for _, c := range sc.Checks {
		row := Row{Scenario: sc.Name, Title: sc.Title, Metric: c.Metric, Unit: c.Unit,
			Median: math.NaN(), Limit: c.Limit, AtLeast: c.AtLeast, Chrony: c.Chrony}
		if o.Err == nil {
			row.Median = o.median(c)
		}
		if c.RelativeTo != "" {
			row.Limit = math.NaN()
			if r := ref[c.RelativeTo]; r != nil && r.Err == nil {
				row.Limit = c.Limit * r.median(c)
			}
		}
		row.Judged = !math.IsNaN(c.Limit)
		switch {
		case !row.Judged:
		case math.IsNaN(row.Median) || math.IsNaN(row.Limit):
			row.Pass = false
		case c.AtLeast:
			row.Pass = row.Median >= row.Limit
		default:
			row.Pass = row.Median <= row.Limit
		}
		o.Rows = append(o.Rows, row)
	}
	return o
}

// median of a check's figure over the runs, in display units.
func (o *Outcome) median(c Check) float64 {
	v := make([]float64, 0, len(o.Results))
	for _, r := range o.Results {
		v = append(v, c.Value(r)*c.Scale)
	}
	return Median(v)
}

// Median of v (NaN for none; the mean of the middle two for an even count).
func Median(v []float64) float64 {
	if len(v) == 0 {
		return math.NaN()
	}
	v = slices.Clone(v)
	slices.Sort(v)
	n := len(v)
	if n%2 == 1 {
		return v[n/2]
	}
	if math.IsInf(v[n/2-1], 0) || math.IsInf(v[n/2], 0) {
		return v[n/2] // avoid Inf−Inf
	}
	return (v[n/2-1] + v[n/2]) / 2
}

// FormatValue shows a figure ("never" for +Inf, "—" for NaN).
func FormatValue(v float64, unit string) string {
	switch {
	case math.IsNaN(v):
		return "—"
	case math.IsInf(v, 1):
		return "never"
	}
	s := fmt.Sprintf("%.3g", v)
	if math.Abs(v) >= 1000 {
		s = fmt.Sprintf("%.0f", v)
	}
	if unit == "" {
		return s
	}
	return s + " " + unit
}

// String is the row as one line, for test logs.
func (r Row) String() string {
	res := "info"
	if r.Judged {
		res = "FAIL"
		if r.Pass {
			res = "pass"
		}
	}
	op := "≤"
	if r.AtLeast {
		op = "≥"
	}
	chrony := ""
	if r.Chrony != "" {
		chrony = " [chrony 4.3: " + r.Chrony + "]"
	}
	lim := ""
	if r.Judged {
		lim = fmt.Sprintf(" (limit %s %s)", op, FormatValue(r.Limit, r.Unit))
	}
	return fmt.Sprintf("%s: %s = %s%s%s %s", r.Scenario, r.Metric, FormatValue(r.Median, r.Unit), lim, chrony, res)
}

// Markdown renders the outcomes as a table.
func Markdown(outcomes []*Outcome) string {
	var b strings.Builder
	b.WriteString("| scenario | metric | timed (median) | limit | chrony 4.3 | result |\n")
	b.WriteString("|---|---|---|---|---|---|\n")
	for _, o := range outcomes {
		if o.Err != nil {
			name := "?"
			if o.Scenario != nil {
				name = o.Scenario.Name + " " + o.Scenario.Title
			}
			fmt.Fprintf(&b, "| %s | — | error: %s | — | — | FAIL |\n", name, mdEscape(firstLine(o.Err.Error())))
			continue
		}
		for i, r := range o.Rows {
			name := ""
			if i == 0 {
				name = r.Scenario + ". " + r.Title
			}
			limit, res := "—", "info"
			if r.Judged {
				op := "≤ "
				if r.AtLeast {
					op = "≥ "
				}
				limit = op + FormatValue(r.Limit, r.Unit)
				res = "**fail**"
				if r.Pass {
					res = "pass"
				}
			}
			chrony := r.Chrony
			if chrony == "" {
				chrony = "—"
			}
			fmt.Fprintf(&b, "| %s | %s | %s | %s | %s | %s |\n", mdEscape(name), mdEscape(r.Metric),
				FormatValue(r.Median, r.Unit), limit, mdEscape(chrony), res)
		}
	}
	return b.String()
}

func firstLine(s string) string {
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		return s[:i]
	}
	return s
}

func mdEscape(s string) string { return strings.ReplaceAll(s, "|", `\|`) }
