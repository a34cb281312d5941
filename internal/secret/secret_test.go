package secret

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

const token = "bkua_0123456789abcdef"

func TestSecretNeverPrints(t *testing.T) {
	s := Secret(token)
	j, err := json.Marshal(struct{ T Secret }{s})
	if err != nil {
		t.Fatal(err)
	}
	for _, out := range []string{fmt.Sprint(s), fmt.Sprintf("%v %+v %#v %s %q", s, s, s, s, s), string(j)} {
		if strings.Contains(out, token) {
			t.Errorf("secret leaked in %q", out)
		}
	}
	if s.Reveal() != token {
		t.Errorf("Reveal() = %q", s.Reveal())
	}
}

func TestLoad(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "token")
	if err := os.WriteFile(good, []byte(token+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	empty := filepath.Join(dir, "empty")
	if err := os.WriteFile(empty, []byte("\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	twoLines := filepath.Join(dir, "two")
	if err := os.WriteFile(twoLines, []byte(token+"\nother\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("TEST_SECRET_ENV", " "+token+" ")

	if s, err := Load(good, "UNSET_VAR_X"); err != nil || s.Reveal() != token {
		t.Errorf("file: got %q, %v", s.Reveal(), err)
	}
	if s, err := Load("", "TEST_SECRET_ENV"); err != nil || s.Reveal() != token {
		t.Errorf("env: got %q, %v", s.Reveal(), err)
	}
	if _, err := Load("", "UNSET_VAR_X"); !errors.Is(err, ErrMissing) || !strings.Contains(err.Error(), "UNSET_VAR_X") {
		t.Errorf("missing: got %v", err)
	}
	for _, f := range []string{empty, twoLines, filepath.Join(dir, "absent")} {
		_, err := Load(f, "TEST_SECRET_ENV")
		if err == nil || !strings.Contains(err.Error(), f) || strings.Contains(err.Error(), token) {
			t.Errorf("Load(%q) error %v must name the file and not the token", f, err)
		}
	}
}
