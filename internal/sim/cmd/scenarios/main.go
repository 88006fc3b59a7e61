// Command scenarios runs every simulator scenario over its seeds against the
// engine and prints a Markdown table of the median figures. With -w FILE it
// also rewrites the part of FILE between the markers
// "<!-- scenarios:begin -->" and "<!-- scenarios:end -->" (creating the file
// with a short introduction when it does not exist).
//
//	go run ./internal/sim/cmd/scenarios -w docs/PERFORMANCE.md
package main

import (
	"errors"
	"flag"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/timed-project/timed/internal/sim"
)

const (
	beginMarker = "<!-- scenarios:begin -->"
	endMarker   = "<!-- scenarios:end -->"
)

const intro = `# Performance

timed's engine is measured in the deterministic simulator (internal/sim):
true time, an oscillator with frequency error and random-walk wander, network
paths with jitter, asymmetry and loss, and servers that may be wrong. Each
scenario runs over 20 seeds and is judged on the median; offsets are measured
against true time once a second from the end of the sync window (210 s) to
the end of the run. The first five scenarios use chrony's own simulation
model, so chrony 4.3's figures under that model are given next to ours:
one perfect server, 100 µs + 100 µs × Exponential(1) each way, the client
clock 100 ms ahead and +100 ppm fast with a 1e-9 random walk, 10000 s.

How the figures are defined:
- Offset is the local clock minus true time; the frequency error is the
  clock's total rate error (oscillator plus the engine's correction, which
  includes the slew that removes phase errors).
- Time to sync: the earliest second after which |offset| < 1 ms and
  |frequency error| < 500 ppm at every later second.
- Scenario 2 lets the engine step offsets above 10 ms in its first three
  updates (step_threshold 10 ms, step_limit 3) and gives it no drift file.
- Scenario 6: "not a falseticker" counts the seconds at which a wrong server
  is in any other state after it first leaves "initial"; the move towards a
  wrong server is how far the clock goes past true time on that server's
  side (from when it first reaches true time, if it starts on that side).
- Scenario 8 loses 30% of the packets in each direction independently, so
  49% of the exchanges complete.
- Scenario 9: three servers, all unreachable from 86400 s to 93600 s; the
  holdover error is |offset| at each second of the outage, compared with the
  uncertainty the engine's status reports at that second.
- Scenario 10 (not in the issue; it checks ` + "`bounded_by: authenticated`" + `): two
  authenticated servers as in scenario 1 and a LAN server (20 µs + 5 µs ×
  Exponential(1) each way, polled every 16 s, not authenticated, configured
  ` + "`bounded_by: authenticated`" + `) whose clock steps by +2 ms at 5000 s.
- Poll intervals are taken as seconds of true time.

Regenerate the table with ` + "`go run ./internal/sim/cmd/scenarios -w docs/PERFORMANCE.md`" + `.

`

func main() {
	seeds := flag.Int("seeds", 20, "seeds per scenario")
	write := flag.String("w", "", "rewrite the scenario table in this Markdown file")
	only := flag.String("run", "", "comma-separated scenario names to run (default: all)")
	flag.Parse()
	if err := run(*seeds, *write, *only); err != nil {
		fmt.Fprintln(os.Stderr, "scenarios:", err)
		os.Exit(1)
	}
}

func run(seeds int, write, only string) error {
	if seeds < 1 {
		return errors.New("-seeds must be at least 1")
	}
	suite := sim.NewSuite(seeds)
	names := suite.Names()
	if only != "" {
		names = strings.Split(only, ",")
	}
	start := time.Now()
	var outcomes []*sim.Outcome
	pass := true
	for _, n := range names {
		o := suite.Run(strings.TrimSpace(n))
		fmt.Fprintf(os.Stderr, "scenario %s: %s\n", n, o.Elapsed.Round(time.Millisecond))
		outcomes = append(outcomes, o)
		pass = pass && o.Pass()
	}
	total := time.Since(start)
	table := sim.Markdown(outcomes)
	fmt.Print(table)
	fmt.Fprintf(os.Stderr, "%d scenarios, %d seeds each, in %s\n", len(names), seeds, total.Round(time.Millisecond))
	if write != "" {
		note := fmt.Sprintf("Median of %d seeds per scenario; generated in %s of run time.\n\n", seeds, total.Round(time.Second))
		if err := rewrite(write, note+table); err != nil {
			return err
		}
	}
	if !pass {
		return errors.New("some scenarios fail")
	}
	return nil
}

// rewrite replaces the text between the markers in path with body.
func rewrite(path, body string) error {
	data, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		data = []byte(intro + beginMarker + "\n" + endMarker + "\n")
	} else if err != nil {
		return err
	}
	text := string(data)
	b := strings.Index(text, beginMarker)
	e := strings.Index(text, endMarker)
	if b < 0 || e < b {
		return fmt.Errorf("%s: markers %s and %s not found in order", path, beginMarker, endMarker)
	}
	text = text[:b+len(beginMarker)] + "\n" + body + text[e:]
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(text), 0o644); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}
