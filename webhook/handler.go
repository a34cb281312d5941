package webhook

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/go-kit/log"
	"github.com/go-kit/log/level"

	"github.com/buildkite-deployments-exporter/buildkite_deployments_exporter/buildkite"
)

// Path is where Buildkite posts.
const Path = "/webhooks/buildkite"

// DefaultMaxBodyBytes bounds a delivery's body. A build event carries one build without its
// jobs and its pipeline (whose configuration YAML is the large part); meta-data values are up to
// 100 KB each, but more than a few is unheard of.
const DefaultMaxBodyBytes = 2 << 20

// Events are the event names Buildkite's pipeline webhooks send (reference §12): the values of
// the event label besides "other". Agent and cluster events are "other": the exporter has no
// use for them, and the header arrives before authentication, so it must not choose labels.
var Events = []string{
	"build.failing", "build.finished", "build.running", "build.scheduled", "build.skipped",
	"job.activated", "job.finished", "job.promised_exit_status", "job.scheduled", "job.started",
	"ping",
}

// EventOther is the event label of any other name.
const EventOther = "other"

// Results of a delivery: the values of the result label.
const (
	// ResultAccepted: authenticated, well-formed, and handed on (a build.* event of a linked
	// pipeline) or a ping.
	ResultAccepted = "accepted"
	// ResultIgnored: authenticated and well-formed but of no use: an event the exporter does not
	// read, a pipeline the catalog does not link, or a full queue.
	ResultIgnored = "ignored"
	// ResultRejectedAuth: no credentials, a wrong token or a forged signature (401).
	ResultRejectedAuth = "rejected_auth"
	// ResultRejectedReplay: an authentic signature outside the window or seen before (401).
	ResultRejectedReplay = "rejected_replay"
	// ResultRejectedBody: too large (413), not JSON or not the documented shape (400).
	ResultRejectedBody = "rejected_body"
)

// Results are every result, in the order surfaces list them.
var Results = []string{ResultAccepted, ResultIgnored, ResultRejectedAuth, ResultRejectedReplay, ResultRejectedBody}

// Sink is where builds go: the collector. Both methods are called in the HTTP handler, so they
// must not block: Linked reads a published map, Offer is a send on a bounded queue.
type Sink interface {
	// Linked says whether the catalog links the pipeline <org>/<pipeline>.
	Linked(org, pipeline string) bool
	// Offer hands over the build of a build.* event received at received; false when the queue
	// is full (the delivery is dropped; the next poll reads the build).
	Offer(event, org string, b *buildkite.Build, received time.Time) bool
}

// Options configure a Handler.
type Options struct {
	// Token is the webhook token; required.
	Token []byte
	Sink  Sink
	// MaxBodyBytes bounds a body; 0 is DefaultMaxBodyBytes.
	MaxBodyBytes int64
	// Now is the clock signatures are checked against; nil is time.Now.
	Now    func() time.Time
	Logger log.Logger
}

// Handler serves POST /webhooks/buildkite. It is also the prometheus.Collector of its
// self-metrics (see metrics.go).
type Handler struct {
	v       *verifier
	sink    Sink
	maxBody int64
	now     func() time.Time
	logger  log.Logger
	stats   *stats

	logMu     sync.Mutex
	lastLoged map[string]time.Time // by result: rejections are logged once a minute each
}

// New returns a Handler; it refuses an empty token, as the listener must not accept anyone.
func New(o Options) (*Handler, error) {
	if len(bytes.TrimSpace(o.Token)) == 0 {
		return nil, errors.New("webhook: no webhook token: give --webhook.token-file or $BUILDKITE_WEBHOOK_TOKEN (the token of the webhook notification service in Buildkite)")
	}
	if o.Sink == nil {
		return nil, errors.New("webhook: no sink")
	}
	h := &Handler{sink: o.Sink, maxBody: o.MaxBodyBytes, now: o.Now, logger: o.Logger, stats: newStats(), lastLoged: map[string]time.Time{}}
	if h.maxBody <= 0 {
		h.maxBody = DefaultMaxBodyBytes
	}
	if h.now == nil {
		h.now = time.Now
	}
	if h.logger == nil {
		h.logger = log.NewNopLogger()
	}
	h.v = newVerifier(slices.Clone(o.Token), h.now)
	return h, nil
}

// EventLabel maps a header value to the event label: a known name, or "other".
func EventLabel(name string) string {
	if _, ok := slices.BinarySearch(Events, name); ok {
		return name
	}
	return EventOther
}

// ServeHTTP authenticates, reads and hands on one delivery.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		http.Error(w, "Buildkite webhooks are POSTed here", http.StatusMethodNotAllowed)
		return
	}
	received := h.now()
	name := r.Header.Get("X-Buildkite-Event")
	event := EventLabel(name)
	sigHeader := r.Header.Get("X-Buildkite-Signature")
	tokenHeader, hasToken := r.Header["X-Buildkite-Token"]
	if sigHeader == "" {
		// Token deliveries are refused before their body is read.
		if !hasToken {
			h.reject(w, event, ResultRejectedAuth, http.StatusUnauthorized, errNoCredentials)
			return
		}
		if err := h.v.checkToken(tokenHeader[0]); err != nil {
			h.reject(w, event, ResultRejectedAuth, http.StatusUnauthorized, err)
			return
		}
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, h.maxBody))
	if err != nil {
		var tooLarge *http.MaxBytesError
		if errors.As(err, &tooLarge) {
			h.reject(w, event, ResultRejectedBody, http.StatusRequestEntityTooLarge, fmt.Errorf("body larger than %d bytes", h.maxBody))
			return
		}
		h.reject(w, event, ResultRejectedBody, http.StatusBadRequest, fmt.Errorf("reading the body: %w", err))
		return
	}
	if sigHeader != "" {
		if err := h.v.checkSignature(sigHeader, body); err != nil {
			var replay replayError
			if errors.As(err, &replay) {
				h.reject(w, event, ResultRejectedReplay, http.StatusUnauthorized, err)
				return
			}
			h.reject(w, event, ResultRejectedAuth, http.StatusUnauthorized, err)
			return
		}
	}
	// Authenticated from here on.
	d, err := decode(name, body)
	if err != nil {
		h.reject(w, event, ResultRejectedBody, http.StatusBadRequest, err)
		return
	}
	switch {
	case name == "ping":
		h.stats.count(event, ResultAccepted, received)
		level.Info(h.logger).Log("msg", "Received Buildkite's webhook ping: the notification service reaches the exporter")
		answer(w, http.StatusOK, "pong")
		return
	case !d.build:
		h.stats.count(event, ResultIgnored, received)
		answer(w, http.StatusAccepted, "ignored: the exporter reads build events only")
		return
	case !h.sink.Linked(d.org, d.pipeline):
		h.stats.count(event, ResultIgnored, received)
		answer(w, http.StatusAccepted, "ignored: no component of the catalog links this pipeline")
		return
	}
	b, err := d.decodeBuild()
	if err != nil {
		h.reject(w, event, ResultRejectedBody, http.StatusBadRequest, err)
		return
	}
	if !h.sink.Offer(name, d.org, b, received) {
		h.stats.dropped()
		h.stats.count(event, ResultIgnored, received)
		answer(w, http.StatusAccepted, "ignored: the queue is full; the next poll reads this build")
		return
	}
	h.stats.count(event, ResultAccepted, received)
	answer(w, http.StatusAccepted, "accepted")
}

// reject answers and counts a refused delivery and logs it, once a minute per result at most:
// a flood of forged deliveries must not flood the log. Nothing of the credentials is logged.
func (h *Handler) reject(w http.ResponseWriter, event, result string, code int, err error) {
	h.stats.count(event, result, time.Time{})
	h.logMu.Lock()
	now := h.now()
	logIt := now.Sub(h.lastLoged[result]) >= time.Minute
	if logIt {
		h.lastLoged[result] = now
	}
	h.logMu.Unlock()
	if logIt {
		level.Warn(h.logger).Log("msg", "Refused a webhook delivery (logged once a minute per result; see buildkite_exporter_webhook_events_total)",
			"event", event, "result", result, "status", code, "err", err)
	}
	msg := err.Error()
	if result == ResultRejectedAuth {
		msg = "unauthorized: check the webhook token of the notification service"
	}
	answer(w, code, msg)
}

func answer(w http.ResponseWriter, code int, msg string) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(code)
	io.WriteString(w, msg+"\n")
}

// delivery is what decode read of a body: the envelope, the build left encoded.
type delivery struct {
	build         bool // a build.* event
	org, pipeline string
	raw           json.RawMessage
}

// envelope is the documented shape (reference §12): {"event", "build", "pipeline", "sender"}
// for build and job events, {"event", "service", "organization", "sender"} for ping. Only what
// is needed to route is decoded; the build is decoded once its pipeline is known to be linked,
// and the pipeline's configuration and steps, the large part, never.
type envelope struct {
	Event    string          `json:"event"`
	Build    json.RawMessage `json:"build"`
	Pipeline *struct {
		Slug string `json:"slug"`
		URL  string `json:"url"`
	} `json:"pipeline"`
}

// decode checks that body is one JSON object of the documented shape for the event name.
func decode(name string, body []byte) (*delivery, error) {
	dec := json.NewDecoder(bytes.NewReader(body))
	var env envelope
	if err := dec.Decode(&env); err != nil {
		return nil, fmt.Errorf("the body is not a JSON object: %w", err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, errors.New("the body has data after its JSON object")
	}
	if bytes.TrimSpace(body)[0] != '{' {
		return nil, errors.New("the body is not a JSON object")
	}
	if env.Event != "" && env.Event != name {
		return nil, fmt.Errorf("the body's event %q is not the X-Buildkite-Event header's %q", truncate(env.Event), truncate(name))
	}
	d := &delivery{}
	if EventLabel(name) == EventOther || name == "ping" {
		return d, nil // ignored, or a ping: the object is all there is to check
	}
	if len(env.Build) == 0 || env.Build[0] != '{' {
		return nil, errors.New(`a build or job event without a "build" object`)
	}
	if !strings.HasPrefix(name, "build.") {
		return d, nil // a job event: ignored
	}
	if env.Pipeline == nil || env.Pipeline.Slug == "" {
		return nil, errors.New(`a build event without a "pipeline" object naming its slug`)
	}
	org := orgFromURL(env.Pipeline.URL)
	if org == "" {
		// The pipeline's url is the API's; else the build's tells.
		var b struct {
			URL string `json:"url"`
		}
		if json.Unmarshal(env.Build, &b) == nil {
			org = orgFromURL(b.URL)
		}
	}
	if org == "" {
		return nil, errors.New("a build event whose pipeline and build urls name no organization (…/organizations/<org>/pipelines/…)")
	}
	d.build, d.org, d.pipeline, d.raw = true, org, env.Pipeline.Slug, env.Build
	return d, nil
}

// decodeBuild decodes the build of a build event, and checks what the collector relies on.
func (d *delivery) decodeBuild() (*buildkite.Build, error) {
	var b buildkite.Build
	if err := json.Unmarshal(d.raw, &b); err != nil {
		return nil, fmt.Errorf("the build is not a build object: %w", err)
	}
	switch {
	case b.ID == "":
		return nil, errors.New("the build has no id")
	case b.Number <= 0:
		return nil, errors.New("the build has no number")
	case b.State == "":
		return nil, errors.New("the build has no state")
	}
	// The build's own pipeline is the envelope's: the slug a poll groups it by.
	b.Pipeline = &buildkite.Pipeline{Slug: d.pipeline}
	return &b, nil
}

// orgFromURL reads <org> from an API url …/v2/organizations/<org>/pipelines/….
func orgFromURL(u string) string {
	_, rest, ok := strings.Cut(u, "/organizations/")
	if !ok {
		return ""
	}
	org, _, ok := strings.Cut(rest, "/")
	if !ok || org == "" || len(org) > 100 {
		return ""
	}
	return org
}

func truncate(s string) string {
	if len(s) > 64 {
		return s[:64] + "…"
	}
	return s
}
