package collector

import (
	"strings"
	"testing"
	"time"

	"github.com/buildkite-deployments-exporter/buildkite_deployments_exporter/backstage"
	"github.com/buildkite-deployments-exporter/buildkite_deployments_exporter/store"
)

func TestNewValidatesOptions(t *testing.T) {
	ok := Options{Client: newTestClient(t, newFake()), Catalog: func() []backstage.Component { return nil }, Log: store.NewMemory(), PollInterval: time.Second}
	if _, err := New(ok); err != nil {
		t.Fatalf("valid options: %v", err)
	}
	for name, tc := range map[string]struct {
		mod  func(*Options)
		want string
	}{
		"client":    {func(o *Options) { o.Client = nil }, "client"},
		"catalog":   {func(o *Options) { o.Catalog = nil }, "catalog"},
		"log":       {func(o *Options) { o.Log = nil }, "log"},
		"interval":  {func(o *Options) { o.PollInterval = 0 }, "poll interval"},
		"backfill":  {func(o *Options) { o.Backfill = -time.Hour }, "backfill"},
		"retention": {func(o *Options) { o.Retention, o.Backfill = time.Hour, 2*time.Hour }, "retention"},
	} {
		o := ok
		tc.mod(&o)
		if _, err := New(o); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: New = %v, want an error about %q", name, err, tc.want)
		}
	}
}
