package harness

import (
	"sort"
	"sync"
)

// Metrics is the stats store shared by every VM of a Harness, as Envoy's
// stats are process-wide while metric ids are per VM. Tests read metrics by
// the name the module defined. It is safe for concurrent use.
type Metrics struct {
	mu      sync.Mutex // guards metrics
	metrics map[metricKey]*metric
}

type metricKey struct {
	typ  MetricType
	name string
}

type metric struct {
	value   int64    // counter or gauge value
	records []uint64 // histogram samples
}

func newMetrics() *Metrics { return &Metrics{metrics: map[metricKey]*metric{}} }

func (m *Metrics) define(typ MetricType, name string) *metric {
	m.mu.Lock()
	defer m.mu.Unlock()
	k := metricKey{typ, name}
	if mt, ok := m.metrics[k]; ok {
		return mt
	}
	mt := &metric{}
	m.metrics[k] = mt
	return mt
}

// increment applies Envoy's rules: counters take only positive offsets,
// gauges any offset, histograms none.
func (m *Metrics) increment(typ MetricType, mt *metric, offset int64) Status {
	m.mu.Lock()
	defer m.mu.Unlock()
	switch typ {
	case MetricCounter:
		if offset <= 0 {
			return StatusBadArgument
		}
		mt.value += offset
	case MetricGauge:
		mt.value += offset
	default:
		return StatusBadArgument
	}
	return StatusOK
}

// record: a counter adds, a gauge is set, a histogram records a sample.
func (m *Metrics) record(typ MetricType, mt *metric, v uint64) Status {
	m.mu.Lock()
	defer m.mu.Unlock()
	switch typ {
	case MetricCounter:
		mt.value += int64(v)
	case MetricGauge:
		mt.value = int64(v)
	case MetricHistogram:
		mt.records = append(mt.records, v)
	default:
		return StatusBadArgument
	}
	return StatusOK
}

func (m *Metrics) get(typ MetricType, mt *metric) (uint64, Status) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if typ == MetricHistogram {
		return 0, StatusBadArgument
	}
	return uint64(mt.value), StatusOK
}

// Counter returns the value of the counter name and whether it is defined.
func (m *Metrics) Counter(name string) (int64, bool) { return m.value(MetricCounter, name) }

// Gauge returns the value of the gauge name and whether it is defined.
func (m *Metrics) Gauge(name string) (int64, bool) { return m.value(MetricGauge, name) }

// Histogram returns a copy of the samples recorded in histogram name.
func (m *Metrics) Histogram(name string) ([]uint64, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	mt, ok := m.metrics[metricKey{MetricHistogram, name}]
	if !ok {
		return nil, false
	}
	return append([]uint64(nil), mt.records...), true
}

func (m *Metrics) value(typ MetricType, name string) (int64, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	mt, ok := m.metrics[metricKey{typ, name}]
	if !ok {
		return 0, false
	}
	return mt.value, true
}

// Names lists the defined metrics as "type:name", sorted, for diagnostics.
func (m *Metrics) Names() []string {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := make([]string, 0, len(m.metrics))
	for k := range m.metrics {
		out = append(out, k.typ.String()+":"+k.name)
	}
	sort.Strings(out)
	return out
}
