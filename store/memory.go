package store

import (
	"maps"
	"slices"
	"sync"
	"time"
)

// Memory is a Log that keeps everything in memory: for tests and for running without a storage
// path, where counters restart from zero. It prunes like Bolt, so both answer alike.
type Memory struct {
	mu      sync.Mutex
	closed  bool
	records []Record
	keys    map[string]time.Time // Record.Key → FinishedAt
	state   State
}

var _ Log = (*Memory)(nil)

// NewMemory returns an empty in-memory log.
func NewMemory() *Memory {
	return &Memory{
		keys:  map[string]time.Time{},
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
		if _, ok := m.keys[r.Key]; ok || r.FinishedAt.Before(m.state.PrunedBefore) {
			continue
		}
		m.keys[r.Key] = r.FinishedAt
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
	st := m.state
	st.Watermarks = maps.Clone(m.state.Watermarks)
	st.CommitsFirstSeen = maps.Clone(m.state.CommitsFirstSeen)
	st.Base = slices.Clone(m.state.Base)
	return st, nil
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

// Compact implements Log, pruning as Bolt does (see Log.Compact).
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
	if len(old) > 0 {
		base, err := fold(slices.Clone(m.state.Base), old)
		if err != nil {
			return err
		}
		m.state.Base = base
		m.records = keep
		m.state.Compacted += uint64(len(old))
	}
	h := pruneHorizon(cutoff, m.state.Watermarks)
	for k, t := range m.keys {
		if t.Unix() < h.Unix() { // whole seconds, as Bolt's index keeps them
			delete(m.keys, k)
		}
	}
	for k, t := range m.state.CommitsFirstSeen {
		if t.Before(cutoff) {
			delete(m.state.CommitsFirstSeen, k)
		}
	}
	if h.After(m.state.PrunedBefore) && h.Unix() > 0 { // as Bolt, which stores it unsigned
		m.state.PrunedBefore = h
	}
	return nil
}

// Close implements Log.
func (m *Memory) Close() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.closed = true
	return nil
}
