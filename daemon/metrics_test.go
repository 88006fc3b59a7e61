package daemon

import (
	"bytes"
	"context"
	"io"
	"math"
	"net/http"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"go.uber.org/zap/zaptest"

	"github.com/timed-project/timed/control"
	"github.com/timed-project/timed/sources"
)

func fabricatedStatus() control.StatusReply {
	return control.StatusReply{
		Engine: sources.Status{
			Synchronized: true, Reference: "192.0.2.1:123", Stratum: 2,
			Offset: -12e-6, Uncertainty: 3e-6, Frequency: 12.5, FrequencyUncertainty: 0.02,
			RootDelay: 0.0015, RootDispersion: 0.0004, LastUpdateAgo: 2, Updates: 40, Steps: 1,
			Sources: []sources.SourceStatus{
				{Name: "192.0.2.1:123", Kind: "ntp", State: sources.StateSelected, Reach: 0o377, Poll: 6,
					Samples: 8, LastSampleAgo: 3, Offset: -11e-6, Uncertainty: 4e-6, Delay: 0.0009, Stratum: 1},
				{Name: "192.0.2.2:123", Kind: "ntp", State: sources.StateFalseticker, Reach: 0o17, Poll: -2,
					Offset: 0.25, Uncertainty: 1e-3, Delay: 0.002, Stratum: 3},
			},
		},
		Clock: control.ClockInfo{Driver: "virtual", OffsetFromSystem: 0.0002, Frequency: 12.5},
	}
}

// scrape serves the registry on a loopback port, fetches /metrics and
// parses the text exposition.
func scrape(t *testing.T, status func() control.StatusReply) map[string]*dto.MetricFamily {
	t.Helper()
	return scrapeWith(t, status, func() control.ServerStatsReply { return control.ServerStatsReply{} })
}

func fabricatedServerStats() control.ServerStatsReply {
	return control.ServerStatsReply{Enabled: true, Received: 100, Answered: 80, Interleaved: 5, KissRate: 3, KissDeny: 2,
		Dropped: map[string]uint64{"rate limited": 12, "denied": 2}, Clients: 7, ClientTableSize: 1024}
}

func scrapeWith(t *testing.T, status func() control.StatusReply, server func() control.ServerStatsReply) map[string]*dto.MetricFamily {
	t.Helper()
	m, err := listenMetrics("127.0.0.1:0", newMetricsRegistry(status, server), zaptest.NewLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { m.serve(ctx); close(done) }()
	defer func() { cancel(); <-done }()
	resp, err := http.Get("http://" + m.addr() + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("GET /metrics: %d %v", resp.StatusCode, err)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(bytes.NewReader(body))
	if err != nil {
		t.Fatalf("parse: %v\n%s", err, body)
	}
	return fams
}

func labelsOf(m *dto.Metric) string {
	var parts []string
	for _, l := range m.GetLabel() {
		parts = append(parts, l.GetName()+"="+l.GetValue())
	}
	return strings.Join(parts, ",")
}

func value(m *dto.Metric) float64 {
	switch {
	case m.Gauge != nil:
		return m.GetGauge().GetValue()
	case m.Counter != nil:
		return m.GetCounter().GetValue()
	}
	return math.NaN()
}

func TestMetrics(t *testing.T) {
	fams := scrapeWith(t, fabricatedStatus, fabricatedServerStats)
	for _, tc := range []struct {
		name   string
		labels string
		want   float64
		typ    dto.MetricType
	}{
		{"timed_synchronized", "", 1, dto.MetricType_GAUGE},
		{"timed_holdover", "", 0, dto.MetricType_GAUGE},
		{"timed_offset_seconds", "", -12e-6, dto.MetricType_GAUGE},
		{"timed_offset_uncertainty_seconds", "", 3e-6, dto.MetricType_GAUGE},
		{"timed_frequency_correction_ratio", "", 12.5e-6, dto.MetricType_GAUGE},
		{"timed_frequency_correction_uncertainty_ratio", "", 0.02e-6, dto.MetricType_GAUGE},
		{"timed_root_delay_seconds", "", 0.0015, dto.MetricType_GAUGE},
		{"timed_root_dispersion_seconds", "", 0.0004, dto.MetricType_GAUGE},
		{"timed_stratum", "", 2, dto.MetricType_GAUGE},
		{"timed_last_update_age_seconds", "", 2, dto.MetricType_GAUGE},
		{"timed_clock_steps_total", "", 1, dto.MetricType_COUNTER},
		{"timed_clock_updates_total", "", 40, dto.MetricType_COUNTER},
		{"timed_clock_info", "driver=virtual", 1, dto.MetricType_GAUGE},
		{"timed_clock_offset_from_system_seconds", "", 0.0002, dto.MetricType_GAUGE},
		{"timed_source_offset_seconds", "kind=ntp,source=192.0.2.1:123", -11e-6, dto.MetricType_GAUGE},
		{"timed_source_offset_seconds", "kind=ntp,source=192.0.2.2:123", 0.25, dto.MetricType_GAUGE},
		{"timed_source_uncertainty_seconds", "kind=ntp,source=192.0.2.1:123", 4e-6, dto.MetricType_GAUGE},
		{"timed_source_delay_seconds", "kind=ntp,source=192.0.2.2:123", 0.002, dto.MetricType_GAUGE},
		{"timed_source_reach", "kind=ntp,source=192.0.2.1:123", 255, dto.MetricType_GAUGE},
		{"timed_source_reach", "kind=ntp,source=192.0.2.2:123", 15, dto.MetricType_GAUGE},
		{"timed_source_selected", "kind=ntp,source=192.0.2.1:123", 1, dto.MetricType_GAUGE},
		{"timed_source_selected", "kind=ntp,source=192.0.2.2:123", 0, dto.MetricType_GAUGE},
		{"timed_source_state", "kind=ntp,source=192.0.2.1:123,state=selected", 1, dto.MetricType_GAUGE},
		{"timed_source_state", "kind=ntp,source=192.0.2.2:123,state=falseticker", 1, dto.MetricType_GAUGE},
		{"timed_source_stratum", "kind=ntp,source=192.0.2.1:123", 1, dto.MetricType_GAUGE},
		{"timed_source_poll_interval_seconds", "kind=ntp,source=192.0.2.1:123", 64, dto.MetricType_GAUGE},
		{"timed_source_poll_interval_seconds", "kind=ntp,source=192.0.2.2:123", 0.25, dto.MetricType_GAUGE},
		{"timed_source_last_sample_age_seconds", "kind=ntp,source=192.0.2.1:123", 3, dto.MetricType_GAUGE},
		{"timed_server_requests_received_total", "", 100, dto.MetricType_COUNTER},
		{"timed_server_responses_total", "mode=basic", 75, dto.MetricType_COUNTER},
		{"timed_server_responses_total", "mode=interleaved", 5, dto.MetricType_COUNTER},
		{"timed_server_kisses_total", "code=RATE", 3, dto.MetricType_COUNTER},
		{"timed_server_kisses_total", "code=DENY", 2, dto.MetricType_COUNTER},
		{"timed_server_requests_dropped_total", "reason=rate limited", 12, dto.MetricType_COUNTER},
		{"timed_server_clients", "", 7, dto.MetricType_GAUGE},
		{"timed_server_client_table_size", "", 1024, dto.MetricType_GAUGE},
	} {
		f := fams[tc.name]
		if f == nil {
			t.Errorf("%s missing", tc.name)
			continue
		}
		if f.GetType() != tc.typ {
			t.Errorf("%s is a %v, want %v", tc.name, f.GetType(), tc.typ)
		}
		found := false
		for _, m := range f.GetMetric() {
			if labelsOf(m) == tc.labels {
				found = true
				if got := value(m); math.Abs(got-tc.want) > 1e-15 {
					t.Errorf("%s{%s} = %v, want %v", tc.name, tc.labels, got, tc.want)
				}
			}
		}
		if !found {
			t.Errorf("%s{%s} missing", tc.name, tc.labels)
		}
	}
	// A source without samples has no last-sample age.
	if n := len(fams["timed_source_last_sample_age_seconds"].GetMetric()); n != 1 {
		t.Errorf("timed_source_last_sample_age_seconds has %d series, want 1", n)
	}
	for _, name := range []string{"go_goroutines", "process_cpu_seconds_total"} {
		if fams[name] == nil && (name != "process_cpu_seconds_total" || isLinux) {
			t.Errorf("%s missing (Go and process collectors)", name)
		}
	}
	for name := range fams {
		if !strings.HasPrefix(name, "timed_") && !strings.HasPrefix(name, "go_") && !strings.HasPrefix(name, "process_") {
			t.Errorf("unexpected metric %s", name)
		}
	}
}

// The metrics reflect the status at scrape time.
func TestMetricsReadAtScrape(t *testing.T) {
	st := fabricatedStatus()
	n := 0
	fams := scrape(t, func() control.StatusReply {
		n++
		s := st
		s.Engine.Synchronized = false
		s.Engine.Sources = nil
		s.Clock.Driver = "system"
		return s
	})
	if n != 1 {
		t.Errorf("status read %d times for one scrape", n)
	}
	if v := value(fams["timed_synchronized"].GetMetric()[0]); v != 0 {
		t.Errorf("timed_synchronized = %v", v)
	}
	if fams["timed_source_reach"] != nil || fams["timed_clock_offset_from_system_seconds"] != nil {
		t.Error("per-source or virtual-clock metrics without sources or virtual clock")
	}
}

func TestMetricsLoopbackOnly(t *testing.T) {
	if _, err := listenMetrics("0.0.0.0:0", newMetricsRegistry(fabricatedStatus, fabricatedServerStats), zaptest.NewLogger(t)); err == nil ||
		!strings.Contains(err.Error(), "loopback") {
		t.Errorf("listenMetrics on 0.0.0.0: %v, want a loopback error", err)
	}
}

// The daemon serves its metrics on the configured address.
func TestDaemonServesMetrics(t *testing.T) {
	cfg := virtualConfig(0)
	cfg.Metrics.Listen = "127.0.0.1:0"
	d, _ := testDaemon(t, cfg, "", newWorld(), nil, nil)
	start(t, d)
	resp, err := (&http.Client{Timeout: 5 * time.Second}).Get("http://" + d.MetricsAddr() + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !strings.Contains(string(body), `timed_clock_info{driver="virtual"} 1`) {
		t.Errorf("metrics lack the clock info:\n%s", body)
	}
}
