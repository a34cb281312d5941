// Package check is the exporter's troubleshooting checklist, the `check` command: it validates
// --config.file, --web.config.file and the catalog and then, unless offline, asks the Buildkite
// API whether the exporter will be able to count what the catalog names: the token and its
// scopes, each organization, each annotated pipeline (in bulk, from the organization's pipeline
// listing), recent builds within the backfill window and their environment meta-data. It spends
// at most Options.MaxRequests API requests and says what it did not check.
//
// Every finding has a severity: SeverityError when the exporter cannot count something (no
// token, a missing scope, an unreachable organization, a pipeline Buildkite does not show, any
// catalog or configuration problem), SeverityWarning when a fallback applies (no environment
// meta-data, an environment name the alias table does not know, the placeholder Grafana URL),
// and SeverityOK for a checklist item that passed. Report.ExitCode is 1 on any error.
package check

import (
	"encoding/json"
	"fmt"
	"io"
	"sort"
	"strings"
	"text/tabwriter"
)

// SchemaVersion is the version of the JSON document Report.WriteJSON writes. It changes only
// when a field is removed or changes meaning; new fields may appear within a version.
const SchemaVersion = 1

// Severity ranks a finding.
type Severity string

// Severities, from worst to best.
const (
	// SeverityError: the exporter cannot count something (or will not start). Exit status 1.
	SeverityError Severity = "error"
	// SeverityWarning: the exporter counts, but a fallback applies that may not be what is meant.
	SeverityWarning Severity = "warning"
	// SeverityOK: a checklist item that passed.
	SeverityOK Severity = "ok"
)

// The checks, the values of Finding.Check and NotChecked.Check, in the order they run.
const (
	CheckConfigFile   = "config_file"  // --config.file
	CheckWebConfig    = "web_config"   // --web.config.file
	CheckCatalog      = "catalog"      // the Backstage catalog: files, API, entities
	CheckGrafanaURL   = "grafana_url"  // --grafana.url, the links of the backstage command
	CheckToken        = "token"        // the Buildkite API token: present, accepted, scopes, expiry
	CheckOrganization = "organization" // each organization the catalog names is reachable
	CheckPipeline     = "pipeline"     // each annotated pipeline exists and is visible
	CheckBuilds       = "builds"       // builds within --history.backfill
	CheckEnvironment  = "environment"  // recent deployments name a known environment
)

// checkOrder is the order of the checklist, and of the report.
var checkOrder = []string{CheckConfigFile, CheckWebConfig, CheckCatalog, CheckGrafanaURL, CheckToken,
	CheckOrganization, CheckPipeline, CheckBuilds, CheckEnvironment}

// Finding is one line of the checklist.
type Finding struct {
	// Severity is "error", "warning" or "ok".
	Severity Severity `json:"severity"`
	// Check is which item of the checklist this is (CheckConfigFile, …).
	Check string `json:"check"`
	// Subject is what the finding is about: a file (with ":line" when known), "token", an
	// organization slug, or a pipeline as "<org>/<pipeline>".
	Subject string `json:"subject"`
	// Message says what was found, in words.
	Message string `json:"message"`
	// Fix says how to fix it; empty for SeverityOK.
	Fix string `json:"fix,omitempty"`
}

// NotChecked is something the checklist skipped, and why: --offline, the request cap, a token
// that cannot be used, a missing scope.
type NotChecked struct {
	// Check is the checklist item that was skipped (CheckToken, CheckPipeline, …).
	Check string `json:"check"`
	// Subject is what was not checked: "token", an organization slug, or a pipeline.
	Subject string `json:"subject"`
	// Reason says why.
	Reason string `json:"reason"`
}

// Summary counts the findings and what was checked.
type Summary struct {
	// Errors, Warnings and OK count the findings of each severity.
	Errors   int `json:"errors"`
	Warnings int `json:"warnings"`
	OK       int `json:"ok"`
	// Components is the number of valid catalog components linked to a pipeline; Pipelines and
	// Organizations count the distinct pipelines and organizations they name.
	Components    int `json:"components"`
	Pipelines     int `json:"pipelines"`
	Organizations int `json:"organizations"`
	// APIRequests is how many HTTP requests were sent to the Buildkite API (retries included);
	// MaxRequests is the cap (--check.max-requests).
	APIRequests int `json:"api_requests"`
	MaxRequests int `json:"max_requests"`
	// Offline is true when the API was not asked (--offline).
	Offline bool `json:"offline"`
	// HistoryBackfill is the window builds were looked for in (--history.backfill), e.g. "30d".
	HistoryBackfill string `json:"history_backfill"`
}

// Report is the whole checklist. Its JSON form (WriteJSON) is the versioned schema of
// `check --output=json`:
//
//	{
//	  "schema_version": 1,
//	  "findings": [{"severity": "error|warning|ok", "check": "pipeline", "subject": "acme/shop",
//	                "message": "…", "fix": "…"}],
//	  "not_checked": [{"check": "builds", "subject": "acme", "reason": "…"}],
//	  "summary": {"errors": 1, "warnings": 0, "ok": 5, "components": 4, "pipelines": 5,
//	              "organizations": 1, "api_requests": 3, "max_requests": 50, "offline": false,
//	              "history_backfill": "30d"}
//	}
//
// findings and not_checked are arrays, empty rather than null; findings come in checklist order
// (config_file, web_config, catalog, grafana_url, token, organization, pipeline, builds,
// environment). The token is never part of the report.
type Report struct {
	SchemaVersion int          `json:"schema_version"`
	Findings      []Finding    `json:"findings"`
	NotChecked    []NotChecked `json:"not_checked"`
	Summary       Summary      `json:"summary"`
}

// ExitCode is 1 when any finding is an error, else 0.
func (r *Report) ExitCode() int {
	for _, f := range r.Findings {
		if f.Severity == SeverityError {
			return 1
		}
	}
	return 0
}

func (r *Report) add(sev Severity, check, subject, fix, format string, args ...any) {
	r.Findings = append(r.Findings, Finding{Severity: sev, Check: check, Subject: subject,
		Message: fmt.Sprintf(format, args...), Fix: fix})
}

func (r *Report) skip(check, subject, format string, args ...any) {
	r.NotChecked = append(r.NotChecked, NotChecked{Check: check, Subject: subject, Reason: fmt.Sprintf(format, args...)})
}

// finish counts the findings and replaces every occurrence of the token (belt and braces: no
// message is built from it).
func (r *Report) finish(token string) {
	r.Summary.Errors, r.Summary.Warnings, r.Summary.OK = 0, 0, 0
	scrub := func(s string) string {
		if len(token) >= 4 {
			return strings.ReplaceAll(s, token, "<token>")
		}
		return s
	}
	for i := range r.Findings {
		f := &r.Findings[i]
		f.Subject, f.Message, f.Fix = scrub(f.Subject), scrub(f.Message), scrub(f.Fix)
		switch f.Severity {
		case SeverityError:
			r.Summary.Errors++
		case SeverityWarning:
			r.Summary.Warnings++
		case SeverityOK:
			r.Summary.OK++
		}
	}
	for i := range r.NotChecked {
		n := &r.NotChecked[i]
		n.Subject, n.Reason = scrub(n.Subject), scrub(n.Reason)
	}
	rank := map[string]int{}
	for i, c := range checkOrder {
		rank[c] = i
	}
	sort.SliceStable(r.Findings, func(i, j int) bool { return rank[r.Findings[i].Check] < rank[r.Findings[j].Check] })
	sort.SliceStable(r.NotChecked, func(i, j int) bool { return rank[r.NotChecked[i].Check] < rank[r.NotChecked[j].Check] })
	if r.Findings == nil {
		r.Findings = []Finding{}
	}
	if r.NotChecked == nil {
		r.NotChecked = []NotChecked{}
	}
}

// WriteJSON writes the report as the documented JSON document (see Report), indented.
func (r *Report) WriteJSON(w io.Writer) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.SetEscapeHTML(false)
	return enc.Encode(r)
}

// WriteTable writes the report for a person: one row per finding (severity, check, subject,
// finding, with the fix on the row below), then what was not checked, then the verdict.
func (r *Report) WriteTable(w io.Writer) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "SEVERITY\tCHECK\tSUBJECT\tFINDING")
	for _, f := range r.Findings {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", f.Severity, f.Check, oneLine(f.Subject), oneLine(f.Message))
		if f.Fix != "" {
			fmt.Fprintf(tw, "\t\t\tfix: %s\n", oneLine(f.Fix))
		}
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if len(r.NotChecked) > 0 {
		fmt.Fprintln(w, "\nNot checked:")
		tw = tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
		for _, n := range r.NotChecked {
			fmt.Fprintf(tw, "  %s\t%s\t%s\n", n.Check, oneLine(n.Subject), oneLine(n.Reason))
		}
		if err := tw.Flush(); err != nil {
			return err
		}
	}
	s := r.Summary
	api := fmt.Sprintf(", builds of the last %s; %d Buildkite API requests (at most %d)", s.HistoryBackfill, s.APIRequests, s.MaxRequests)
	if s.Offline {
		api = "; offline: the Buildkite API was not asked"
	}
	fmt.Fprintf(w, "\nChecked %s, %s in %s%s.\n",
		plural(s.Components, "component"), plural(s.Pipelines, "pipeline"), plural(s.Organizations, "organization"), api)
	var verdict string
	switch {
	case s.Errors > 0:
		verdict = fmt.Sprintf("FAILED: %s, %s. The exporter cannot count everything the catalog names; fix the errors above.",
			plural(s.Errors, "error"), plural(s.Warnings, "warning"))
	case s.Warnings > 0:
		verdict = fmt.Sprintf("OK with %s: fallbacks apply, see above.", plural(s.Warnings, "warning"))
	default:
		verdict = "OK: no problems found."
	}
	_, err := fmt.Fprintln(w, verdict)
	return err
}

// oneLine keeps a table cell on its row.
func oneLine(s string) string {
	return strings.Join(strings.Fields(s), " ")
}

func plural(n int, word string) string {
	if n == 1 {
		return "1 " + word
	}
	return fmt.Sprintf("%d %ss", n, word)
}
