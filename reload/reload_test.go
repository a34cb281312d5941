package reload

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

func TestReload(t *testing.T) {
	reg := prometheus.NewPedanticRegistry()
	var broken bool
	var applied, catalogs int
	r := New(reg, nil,
		Step{"config", func(context.Context) error {
			if broken {
				return errors.New("line 3: field objectivs not found")
			}
			applied++
			return nil
		}},
		Step{"catalog", func(context.Context) error { catalogs++; return nil }},
	)
	h := r.Handler(time.Second)
	do := func(method string) *httptest.ResponseRecorder {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest(method, "/-/reload", nil))
		return rec
	}
	if rec := do(http.MethodGet); rec.Code != http.StatusMethodNotAllowed {
		t.Errorf("GET: %d, want 405", rec.Code)
	}
	if rec := do(http.MethodPost); rec.Code != http.StatusOK || applied != 1 || catalogs != 1 {
		t.Errorf("POST: %d, applied %d, catalogs %d", rec.Code, applied, catalogs)
	}
	if got := testutil.ToFloat64(r.success); got != 1 {
		t.Errorf("success = %v after a good reload", got)
	}
	before := testutil.ToFloat64(r.timestamp)
	broken = true
	rec := do(http.MethodPut)
	if rec.Code != http.StatusInternalServerError || !strings.Contains(rec.Body.String(), "config: line 3: field objectivs not found") {
		t.Errorf("broken config: %d %q, want 500 naming the error", rec.Code, rec.Body.String())
	}
	if catalogs != 2 {
		t.Errorf("the catalog was not re-read when the config file was broken (%d)", catalogs)
	}
	if got := testutil.ToFloat64(r.success); got != 0 {
		t.Errorf("success = %v after a failed reload, want 0", got)
	}
	if got := testutil.ToFloat64(r.timestamp); got != before {
		t.Errorf("the success timestamp moved on a failed reload")
	}
	if n, err := testutil.GatherAndCount(reg); err != nil || n != 2 {
		t.Errorf("registered %d series (%v), want 2", n, err)
	}
}
