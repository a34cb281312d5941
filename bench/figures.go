package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os"
	"sync"
)

// figure is one measured number. Every stage of the harness appends its figures to one JSON-lines
// file; `bench report` turns that file into the table BENCHMARKS.md quotes.
type figure struct {
	Section string  `json:"section"`
	Name    string  `json:"name"`
	Value   float64 `json:"value"`
	Unit    string  `json:"unit,omitempty"`
	// Target is the target in words, with Met saying whether the value meets it; empty
	// for figures that have none.
	Target string `json:"target,omitempty"`
	Met    *bool  `json:"met,omitempty"`
	Note   string `json:"note,omitempty"`
}

// figures collects figures and appends them to path ("" keeps them in memory only).
type figures struct {
	mu   sync.Mutex
	path string
	all  []figure
}

func newFigures(path string) *figures { return &figures{path: path} }

func (fs *figures) add(f figure) {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	fs.all = append(fs.all, f)
}

// merge adds the figures of other, in order.
func (fs *figures) merge(other *figures) {
	other.mu.Lock()
	all := other.all
	other.mu.Unlock()
	fs.mu.Lock()
	defer fs.mu.Unlock()
	fs.all = append(fs.all, all...)
}

// info records a figure without a target.
func (fs *figures) info(section, name string, v float64, unit, note string) {
	fs.add(figure{Section: section, Name: name, Value: v, Unit: unit, Note: note})
}

// target records a figure against a target.
func (fs *figures) target(section, name string, v float64, unit, target string, met bool, note string) {
	fs.add(figure{Section: section, Name: name, Value: v, Unit: unit, Target: target, Met: &met, Note: note})
}

// flush appends the figures collected so far to the file.
func (fs *figures) flush() error {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	if fs.path == "" {
		return nil
	}
	f, err := os.OpenFile(fs.path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return fmt.Errorf("opening the figures file: %w", err)
	}
	w := bufio.NewWriter(f)
	enc := json.NewEncoder(w)
	for _, fg := range fs.all {
		if err := enc.Encode(fg); err != nil {
			f.Close()
			return err
		}
	}
	fs.all = nil
	if err := w.Flush(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

func readFigures(path string) ([]figure, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var out []figure
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for line := 1; sc.Scan(); line++ {
		if len(sc.Bytes()) == 0 {
			continue
		}
		var fg figure
		if err := json.Unmarshal(sc.Bytes(), &fg); err != nil {
			return nil, fmt.Errorf("%s:%d: not a figure: %w", path, line, err)
		}
		out = append(out, fg)
	}
	return out, sc.Err()
}
