package logging

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"

	"github.com/go-kit/log/level"
)

func TestLevelsAndFormats(t *testing.T) {
	var buf bytes.Buffer
	logger, slogger, err := New(Config{Level: "warn", Format: "logfmt"}, &buf)
	if err != nil {
		t.Fatal(err)
	}
	level.Info(logger).Log("msg", "hidden")
	level.Warn(logger).Log("msg", "shown", "key", "v")
	slogger.Info("slog hidden")
	slogger.Error("slog shown", "address", "127.0.0.1:1")
	out := buf.String()
	if strings.Contains(out, "hidden") {
		t.Errorf("info lines passed a warn filter:\n%s", out)
	}
	for _, want := range []string{"level=warn", `msg=shown`, "caller=logging_test.go:", `msg="slog shown"`, "level=error", "address=127.0.0.1:1"} {
		if !strings.Contains(out, want) {
			t.Errorf("missing %q in:\n%s", want, out)
		}
	}
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		if !strings.Contains(line, "ts=20") || strings.Contains(line, "time=") {
			t.Errorf("line without the shared ts key: %s", line)
		}
	}
}

func TestJSON(t *testing.T) {
	var buf bytes.Buffer
	logger, slogger, err := New(Config{Level: "debug", Format: "json"}, &buf)
	if err != nil {
		t.Fatal(err)
	}
	level.Debug(logger).Log("msg", "a")
	slogger.Debug("b")
	lines := strings.Split(strings.TrimSpace(buf.String()), "\n")
	if len(lines) != 2 {
		t.Fatalf("want 2 lines, got %q", lines)
	}
	for _, l := range lines {
		var m map[string]any
		if err := json.Unmarshal([]byte(l), &m); err != nil {
			t.Fatalf("not JSON: %s", l)
		}
		if m["level"] != "debug" || m["ts"] == nil {
			t.Errorf("line %s lacks level=debug or ts", l)
		}
	}
}

func TestBadConfig(t *testing.T) {
	if _, _, err := New(Config{Level: "loud"}, &bytes.Buffer{}); err == nil {
		t.Error("unknown level accepted")
	}
	if _, _, err := New(Config{Format: "xml"}, &bytes.Buffer{}); err == nil {
		t.Error("unknown format accepted")
	}
}
