package gptp

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"math"
	"os"
	"time"

	"go.uber.org/zap"

	"github.com/timed-project/timed/internal/atomicfile"
)

// linkState is what a port keeps of its link across restarts (the
// automotive profile's fast start): the neighbor's rate ratio and the mean
// link delay.
type linkState struct {
	Interface         string  `json:"interface"`
	MeanLinkDelayNs   int64   `json:"mean_link_delay_ns"`
	NeighborRateRatio float64 `json:"neighbor_rate_ratio"`
	Saved             string  `json:"saved"`
}

// maxStateSize bounds what parseLinkState reads.
const maxStateSize = 4096

// parseLinkState reads a state file's contents; anything implausible is
// an error.
func parseLinkState(b []byte, iface string) (linkState, error) {
	if len(b) > maxStateSize {
		return linkState{}, fmt.Errorf("%d bytes, more than %d", len(b), maxStateSize)
	}
	var s linkState
	if err := json.Unmarshal(b, &s); err != nil {
		return linkState{}, err
	}
	switch {
	case s.Interface != iface:
		return linkState{}, fmt.Errorf("written for interface %q", s.Interface)
	case s.MeanLinkDelayNs < 0 || s.MeanLinkDelayNs > int64(time.Millisecond):
		return linkState{}, fmt.Errorf("mean link delay %d ns outside 0..1 ms", s.MeanLinkDelayNs)
	case s.NeighborRateRatio != 0 && (math.IsNaN(s.NeighborRateRatio) || math.Abs(s.NeighborRateRatio-1) > 1e-3):
		return linkState{}, fmt.Errorf("neighbor rate ratio %v more than 1000 ppm from 1", s.NeighborRateRatio)
	}
	return s, nil
}

// restoreLink reads the state file (automotive profile): the port then
// uses the kept link delay and rate ratio until it has measured its own.
func (run *portRun) restoreLink() {
	path := run.p.cfg.StateFile
	if path == "" || run.p.cfg.Profile != ProfileAutomotive {
		return
	}
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return
	}
	if err == nil {
		var s linkState
		if s, err = parseLinkState(b, run.p.cfg.Interface); err == nil {
			run.linkDelay, run.haveLinkDelay, run.nrr = time.Duration(s.MeanLinkDelayNs), true, s.NeighborRateRatio
			run.p.mu.Lock()
			run.p.status.RestoredLink = true
			run.p.mu.Unlock()
			run.publishLink()
			run.p.log.Info("gPTP link state restored", zap.String("file", path), zap.Duration("mean_link_delay", run.linkDelay),
				zap.Float64("neighbor_rate_ratio", run.nrr), zap.String("saved", s.Saved))
			return
		}
	}
	run.p.log.Warn("gPTP link state not used; measuring the link afresh", zap.String("file", path), zap.Error(err))
}

// saveLink writes the state file (automotive profile) once the link has
// been measured.
func (run *portRun) saveLink() {
	path := run.p.cfg.StateFile
	if path == "" || run.p.cfg.Profile != ProfileAutomotive || !run.haveLinkDelay {
		return
	}
	run.savedAt = time.Now()
	b, err := json.Marshal(linkState{Interface: run.p.cfg.Interface, MeanLinkDelayNs: int64(run.linkDelay),
		NeighborRateRatio: run.nrr, Saved: run.savedAt.UTC().Format(time.RFC3339)})
	if err == nil {
		err = atomicfile.Write(path, append(b, '\n'), 0o644)
	}
	if err != nil {
		run.p.log.Warn("cannot write the gPTP link state", zap.String("file", path), zap.Error(err))
	}
}
