package webguard

import (
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestGuardFailsClosed(t *testing.T) {
	path := filepath.Join(t.TempDir(), "web.yml")
	good := "basic_auth_users:\n  prometheus: $2y$10$Ex/AbSjnmKJX8VGDzm1i3OOeT7tI.6nsWt7K8iKS2E4/vUe2s6nxe\n"
	write := func(s string, mtime time.Time) {
		if err := os.WriteFile(path, []byte(s), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Chtimes(path, mtime, mtime); err != nil {
			t.Fatal(err)
		}
	}
	t0 := time.Now()
	write(good, t0)
	g := New(path)
	h := g.Handler(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusTeapot) }))
	code := func() (int, string) {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/metrics", nil))
		return rec.Code, rec.Body.String()
	}
	if c, _ := code(); c != http.StatusTeapot {
		t.Fatalf("valid file: %d, want the handler's answer", c)
	}
	write("", t0.Add(time.Second))
	if c, body := code(); c != http.StatusServiceUnavailable || !strings.Contains(body, "empty") {
		t.Errorf("emptied file: %d %q, want 503 saying it is empty", c, body)
	}
	write("basic_auth_users: [\n", t0.Add(2*time.Second))
	if c, _ := code(); c != http.StatusServiceUnavailable {
		t.Errorf("broken file: %d, want 503", c)
	}
	write(good, t0.Add(3*time.Second))
	if c, _ := code(); c != http.StatusTeapot {
		t.Errorf("restored file: %d, want the handler's answer", c)
	}
	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	if c, _ := code(); c != http.StatusServiceUnavailable {
		t.Errorf("removed file: %d, want 503", c)
	}
	if New("").Err() != nil {
		t.Error("no web config: nothing to refuse")
	}
}
