package daemon

import (
	"context"
	"errors"
	"fmt"
	"math"
	"net"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"go.uber.org/zap"

	"github.com/timed-project/timed/control"
	"github.com/timed-project/timed/sources"
)

// The metrics follow Prometheus conventions: the timed_ prefix, base units
// (seconds), and _total for counters. Frequencies are ratios, not ppm
// (Prometheus prefers ratios to parts-per-N units): 1e-6 is 1 ppm.
// Everything is read from the engine's status when scraped.
var (
	mSynchronized = prometheus.NewDesc("timed_synchronized",
		"1 when the clock is synchronized to its sources, else 0.", nil, nil)
	mHoldover = prometheus.NewDesc("timed_holdover",
		"1 when every source is lost and the clock runs on its last frequency, else 0.", nil, nil)
	mOffset = prometheus.NewDesc("timed_offset_seconds",
		"Estimated offset of true time from the local clock (positive: the local clock is behind).", nil, nil)
	mOffsetUnc = prometheus.NewDesc("timed_offset_uncertainty_seconds",
		"Uncertainty (one sigma) of timed_offset_seconds.", nil, nil)
	mFreq = prometheus.NewDesc("timed_frequency_correction_ratio",
		"Frequency correction applied to the oscillator as a ratio (1e-6 = 1 ppm); positive makes the clock run faster.", nil, nil)
	mFreqUnc = prometheus.NewDesc("timed_frequency_correction_uncertainty_ratio",
		"Uncertainty (one sigma) of timed_frequency_correction_ratio.", nil, nil)
	mRootDelay = prometheus.NewDesc("timed_root_delay_seconds",
		"Round-trip delay to the primary reference, as an NTP server on this clock would send it.", nil, nil)
	mRootDisp = prometheus.NewDesc("timed_root_dispersion_seconds",
		"Dispersion relative to the primary reference, as an NTP server on this clock would send it.", nil, nil)
	mStratum = prometheus.NewDesc("timed_stratum",
		"Stratum of the local clock (16 when unsynchronized).", nil, nil)
	mLastUpdate = prometheus.NewDesc("timed_last_update_age_seconds",
		"Time since the clock was last corrected from a source.", nil, nil)
	mSteps = prometheus.NewDesc("timed_clock_steps_total",
		"Steps of the clock since timed started.", nil, nil)
	mUpdates = prometheus.NewDesc("timed_clock_updates_total",
		"Corrections of the clock from sources since timed started.", nil, nil)
	mClockInfo = prometheus.NewDesc("timed_clock_info",
		"The clock driver timed disciplines (always 1).", []string{"driver"}, nil)
	mClockFromSys = prometheus.NewDesc("timed_clock_offset_from_system_seconds",
		"How far the virtual clock is ahead of the system clock (virtual clock only).", nil, nil)

	srcLabels      = []string{"source", "kind"}
	mSrcOffset     = prometheus.NewDesc("timed_source_offset_seconds", "Filtered offset of the source from the local clock (positive: the local clock is behind).", srcLabels, nil)
	mSrcUnc        = prometheus.NewDesc("timed_source_uncertainty_seconds", "Uncertainty (one sigma) of timed_source_offset_seconds.", srcLabels, nil)
	mSrcDelay      = prometheus.NewDesc("timed_source_delay_seconds", "Round-trip delay of the last sample.", srcLabels, nil)
	mSrcReach      = prometheus.NewDesc("timed_source_reach", "Reach register: one bit per recent poll, set when it was answered (0-255; 255 = all of the last 8).", srcLabels, nil)
	mSrcSelected   = prometheus.NewDesc("timed_source_selected", "1 when the clock follows the source (state selected or combined), else 0.", srcLabels, nil)
	mSrcState      = prometheus.NewDesc("timed_source_state", "The source's state in selection, in the state label (always 1).", []string{"source", "kind", "state"}, nil)
	mSrcStratum    = prometheus.NewDesc("timed_source_stratum", "Stratum the source announces.", srcLabels, nil)
	mSrcPoll       = prometheus.NewDesc("timed_source_poll_interval_seconds", "Current poll interval.", srcLabels, nil)
	mSrcLastSample = prometheus.NewDesc("timed_source_last_sample_age_seconds", "Time since the source's last sample.", srcLabels, nil)
)

// statusCollector turns the daemon's status into metrics at scrape time.
type statusCollector struct {
	status func() control.StatusReply
}

func (c statusCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{mSynchronized, mHoldover, mOffset, mOffsetUnc, mFreq, mFreqUnc,
		mRootDelay, mRootDisp, mStratum, mLastUpdate, mSteps, mUpdates, mClockInfo, mClockFromSys,
		mSrcOffset, mSrcUnc, mSrcDelay, mSrcReach, mSrcSelected, mSrcState, mSrcStratum, mSrcPoll,
		mSrcLastSample} {
		ch <- d
	}
}

func (c statusCollector) Collect(ch chan<- prometheus.Metric) {
	r := c.status()
	st := r.Engine
	gauge := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
	}
	gauge(mSynchronized, b2f(st.Synchronized))
	gauge(mHoldover, b2f(st.Holdover))
	gauge(mOffset, st.Offset)
	gauge(mOffsetUnc, st.Uncertainty)
	gauge(mFreq, st.Frequency*1e-6)
	gauge(mFreqUnc, st.FrequencyUncertainty*1e-6)
	gauge(mRootDelay, st.RootDelay)
	gauge(mRootDisp, st.RootDispersion)
	gauge(mStratum, float64(st.Stratum))
	if st.Updates > 0 {
		gauge(mLastUpdate, st.LastUpdateAgo)
	}
	ch <- prometheus.MustNewConstMetric(mSteps, prometheus.CounterValue, float64(st.Steps))
	ch <- prometheus.MustNewConstMetric(mUpdates, prometheus.CounterValue, float64(st.Updates))
	gauge(mClockInfo, 1, r.Clock.Driver)
	if r.Clock.Driver == "virtual" {
		gauge(mClockFromSys, r.Clock.OffsetFromSystem)
	}
	for _, s := range st.Sources {
		gauge(mSrcOffset, s.Offset, s.Name, s.Kind)
		gauge(mSrcUnc, s.Uncertainty, s.Name, s.Kind)
		gauge(mSrcDelay, s.Delay, s.Name, s.Kind)
		gauge(mSrcReach, float64(s.Reach), s.Name, s.Kind)
		gauge(mSrcSelected, b2f(s.State == sources.StateSelected || s.State == sources.StateCombined), s.Name, s.Kind)
		gauge(mSrcState, 1, s.Name, s.Kind, string(s.State))
		gauge(mSrcStratum, float64(s.Stratum), s.Name, s.Kind)
		gauge(mSrcPoll, math.Ldexp(1, s.Poll), s.Name, s.Kind)
		if s.Samples > 0 {
			gauge(mSrcLastSample, s.LastSampleAgo, s.Name, s.Kind)
		}
	}
}

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

// The NTP server's counters, read from its workers when scraped (nothing
// when no server is configured).
var (
	mSrvReceived    = prometheus.NewDesc("timed_server_requests_received_total", "Datagrams the NTP server read.", nil, nil)
	mSrvAnswered    = prometheus.NewDesc("timed_server_responses_total", "Time responses the NTP server sent, by mode (basic or interleaved).", []string{"mode"}, nil)
	mSrvKisses      = prometheus.NewDesc("timed_server_kisses_total", "Kiss-of-death replies the NTP server sent, by code.", []string{"code"}, nil)
	mSrvDropped     = prometheus.NewDesc("timed_server_requests_dropped_total", "Requests the NTP server did not answer with time, by reason.", []string{"reason"}, nil)
	mSrvClients     = prometheus.NewDesc("timed_server_clients", "Clients in the NTP server's client table.", nil, nil)
	mSrvClientsSize = prometheus.NewDesc("timed_server_client_table_size", "Capacity of the NTP server's client table.", nil, nil)
	mSrvNTS         = prometheus.NewDesc("timed_server_nts_responses_total", "NTS replies the NTP server sent, by kind (authenticated or nak).", []string{"kind"}, nil)
	mSrvNTSKE       = prometheus.NewDesc("timed_server_ntske_total", "NTS-KE server events, by kind (accepted, refused, handshake, exchange, and errors).", []string{"event"}, nil)
)

// serverCollector turns the NTP server's counters into metrics.
type serverCollector struct {
	stats func() control.ServerStatsReply
}

func (c serverCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{mSrvReceived, mSrvAnswered, mSrvKisses, mSrvDropped, mSrvClients, mSrvClientsSize, mSrvNTS, mSrvNTSKE} {
		ch <- d
	}
}

func (c serverCollector) Collect(ch chan<- prometheus.Metric) {
	st := c.stats()
	if !st.Enabled {
		return
	}
	counter := func(d *prometheus.Desc, v uint64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v), labels...)
	}
	counter(mSrvReceived, st.Received)
	counter(mSrvAnswered, st.Answered-st.Interleaved, "basic")
	counter(mSrvAnswered, st.Interleaved, "interleaved")
	counter(mSrvKisses, st.KissRate, "RATE")
	counter(mSrvKisses, st.KissDeny, "DENY")
	for reason, n := range st.Dropped {
		counter(mSrvDropped, n, reason)
	}
	ch <- prometheus.MustNewConstMetric(mSrvClients, prometheus.GaugeValue, float64(st.Clients))
	ch <- prometheus.MustNewConstMetric(mSrvClientsSize, prometheus.GaugeValue, float64(st.ClientTableSize))
	if n := st.NTS; n != nil {
		counter(mSrvNTS, n.Answered, "authenticated")
		counter(mSrvNTS, n.NAKs, "nak")
		for _, e := range []struct {
			v    uint64
			name string
		}{{n.Accepted, "accepted"}, {n.Refused, "refused"}, {n.Handshakes, "handshake"}, {n.Exchanges, "exchange"},
			{n.TLSErrors, "tls_error"}, {n.Timeouts, "timeout"}, {n.BadRequests, "bad_request"}, {n.Unsupported, "unsupported"},
			{n.InternalErrors, "internal_error"}, {n.WriteErrors, "write_error"}} {
			counter(mSrvNTSKE, e.v, e.name)
		}
	}
}

// newMetricsRegistry is timed's one registry: the status and server
// collectors and the Go and process collectors (never the global default
// registry).
func newMetricsRegistry(status func() control.StatusReply, server func() control.ServerStatsReply) *prometheus.Registry {
	reg := prometheus.NewRegistry()
	reg.MustRegister(
		statusCollector{status: status},
		serverCollector{stats: server},
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
	)
	return reg
}

// metricsServer serves /metrics over HTTP.
type metricsServer struct {
	ln  net.Listener
	srv *http.Server
	log *zap.Logger
}

// listenMetrics listens on addr, which must be a loopback address (the
// endpoint has no authentication).
func listenMetrics(addr string, reg *prometheus.Registry, log *zap.Logger) (*metricsServer, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("daemon: metrics: %w", err)
	}
	if ta, ok := ln.Addr().(*net.TCPAddr); !ok || !ta.IP.IsLoopback() {
		ln.Close()
		return nil, fmt.Errorf("daemon: metrics: %s is not a loopback address", addr)
	}
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{
		ErrorLog:      zap.NewStdLog(log.Named("metrics")),
		ErrorHandling: promhttp.ContinueOnError,
	}))
	return &metricsServer{
		ln:  ln,
		log: log,
		srv: &http.Server{
			Handler:           mux,
			ReadHeaderTimeout: 5 * time.Second,
			ReadTimeout:       10 * time.Second,
			WriteTimeout:      10 * time.Second,
		},
	}, nil
}

func (m *metricsServer) addr() string { return m.ln.Addr().String() }

// serve answers until ctx is done.
func (m *metricsServer) serve(ctx context.Context) {
	done := make(chan struct{})
	go func() {
		defer close(done)
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		m.srv.Shutdown(sctx)
	}()
	if err := m.srv.Serve(m.ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
		m.log.Error("metrics endpoint stopped", zap.Error(err))
	}
	<-done
}
