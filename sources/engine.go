package sources

import (
	"fmt"
	"time"

	"go.uber.org/zap"
)

// Engine is the selection and combining engine. It is not safe for
// concurrent use: the daemon serializes calls.
type Engine struct {
	cfg Config
	log *zap.Logger
}

// NewEngine makes an engine with no sources.
func NewEngine(cfg Config, log *zap.Logger) *Engine {
	return &Engine{cfg: cfg, log: log}
}

// AddSource registers a source by name.
func (e *Engine) AddSource(name string, opts SourceOptions) error {
	return fmt.Errorf("sources: %s: engine not built yet", name)
}

// RemoveSource forgets a source.
func (e *Engine) RemoveSource(name string) {}

// Polled records that the source sent a request at local time now.
func (e *Engine) Polled(name string, now time.Time) {}

// Measured feeds one measurement of the named source.
func (e *Engine) Measured(name string, m Measurement) {}

// Fault sets or (with "") clears the source's fault.
func (e *Engine) Fault(name, reason string) {}

// PollInterval is the interval the engine wants the source to poll at.
func (e *Engine) PollInterval(name string) time.Duration { return 64 * time.Second }

// Update runs selection and combining at local time now and returns what the
// clock must do. Call it after every measurement and at least once a second.
func (e *Engine) Update(now time.Time) Correction { return Correction{} }

// Status reports the engine's state at local time now.
func (e *Engine) Status(now time.Time) Status { return Status{} }
