package store

import (
	"maps"
	"slices"
	"sync"
	"time"
)

// Memory is a Log that keeps everything in memory: for tests and for running without a storage
// path, where counters restart from zero.
type Memory struct {
	mu      sync.Mutex
	closed  bool
	records []Record
	keys    map[string]bool
	state   State
}

var _ Log = (*Memory)(nil)

// NewMemory returns an empty in-memory log.
func NewMemory() *Memory {
	return &Memory{
		keys:  map[string]bool{},
		state: State{Watermarks: map[string]Watermark{}, CommitsFirstSeen: map[string]time.Time{}},
	}
}

// Append implements Log.
func (m *Memory) Append(b Batch) ([]Record, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return nil, ErrClosed
	}
	var added []Record
	for _, r := range b.Records {
		if m.keys[r.Key] {
			continue
		}
		m.keys[r.Key] = true
		m.records = append(m.records, r)
		added = append(added, r)
	}
	maps.Copy(m.state.Watermarks, b.Watermarks)
	for k, t := range b.CommitsFirstSeen {
		if old, ok := m.state.CommitsFirstSeen[k]; !ok || t.Before(old) {
			m.state.CommitsFirstSeen[k] = t
		}
	}
	return added, nil
}

// Load implements Log.
func (m *Memory) Load() (State, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return State{}, ErrClosed
	}
	return State{
		Watermarks:       maps.Clone(m.state.Watermarks),
		CommitsFirstSeen: maps.Clone(m.state.CommitsFirstSeen),
		Base:             slices.Clone(m.state.Base),
	}, nil
}

// Replay implements Log.
func (m *Memory) Replay(fn func(Record) error) error {
	m.mu.Lock()
	recs := slices.Clone(m.records)
	closed := m.closed
	m.mu.Unlock()
	if closed {
		return ErrClosed
	}
	for _, r := range recs {
		if err := fn(r); err != nil {
			return err
		}
	}
	return nil
}

// Compact implements Log. Keys of compacted records are kept so that a re-read of an old build
// is still recognised as stored.
func (m *Memory) Compact(cutoff time.Time, fold func(base []byte, old []Record) ([]byte, error)) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return ErrClosed
	}
	var old, keep []Record
	for _, r := range m.records {
		if r.FinishedAt.Before(cutoff) {
			old = append(old, r)
		} else {
			keep = append(keep, r)
		}
	}
	if len(old) == 0 {
		return nil
	}
	base, err := fold(slices.Clone(m.state.Base), old)
	if err != nil {
		return err
	}
	m.state.Base = base
	m.records = keep
	return nil
}

// Close implements Log.
func (m *Memory) Close() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.closed = true
	return nil
}
