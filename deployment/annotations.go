package deployment

import (
	"fmt"
	"slices"
	"strings"
	"unicode/utf8"

	"github.com/buildkite-deployments-exporter/buildkite_deployments_exporter/buildkite"
)

// Deployment annotations (--buildkite.read-annotations): a pipeline that follows Buildkite's
// deployment-visibility guide runs
//
//	buildkite-agent annotate "Deployed version ${VERSION} to ${ENVIRONMENT}" --style success --context deployment-${ENVIRONMENT}
//
// so an annotation whose context is deployment-<env> says the build deployed to <env>. It is
// rule 3 of the environment rules, after the build's meta-data (rules 1 and 2) and before the
// pipeline slug and the default environment (now rules 4 and 5):
//
//   - meta-data first, because it comes with the build in every listing and webhook payload:
//     a build that names its environment there is classified alike whether or not annotations
//     are read, read yet, or readable at all. An annotation that disagrees is a finding
//     (annotation_mismatch), never a second series.
//   - before the slug and the default, because those are guesses and the annotation is the
//     pipeline's own word.
//
// Rules 3 to 5 are pinned once a build's outcome is committed: an annotation read later (the
// option turned on, a restart re-reading the overlap, an annotation added after the finish)
// never moves a committed record to another series; it is a finding instead. The style
// cross-checks the outcome: success on a failed build, or error on a passed one, is a finding
// too; the build's state decides.

// AnnotationContextPrefix starts the context of a deployment annotation.
const AnnotationContextPrefix = "deployment-"

// Kinds of AnnotationFinding.
const (
	// FindingMetaData: the annotation names other environments than the build's meta-data,
	// which wins.
	FindingMetaData = "meta_data"
	// FindingOutcome: the annotation's style contradicts the build's state, which wins.
	FindingOutcome = "outcome"
	// FindingAfterCommit: the annotation was read after the build's outcome was committed to
	// other environments, where it stays.
	FindingAfterCommit = "after_commit"
)

// AnnotationFinding is a build whose deployment annotations disagree with what counted it.
type AnnotationFinding struct {
	Pipeline    string // slug
	BuildNumber int
	WebURL      string
	Kind        string // FindingMetaData, FindingOutcome or FindingAfterCommit
	Detail      string
}

// AnnotationEnvironments returns the environment names (as written, before the alias table) of
// the deployment annotations among anns, in context order, each once.
func AnnotationEnvironments(anns []buildkite.Annotation) []string {
	var out []string
	for _, a := range anns {
		env, ok := strings.CutPrefix(a.Context, AnnotationContextPrefix)
		env = strings.TrimSpace(env)
		if !ok || env == "" || slices.Contains(out, env) {
			continue
		}
		out = append(out, env)
	}
	slices.Sort(out)
	return out
}

// outcomeContradiction says why a deployment annotation's style contradicts state, or "".
func outcomeContradiction(anns []buildkite.Annotation, state string) string {
	for _, a := range anns {
		if !strings.HasPrefix(a.Context, AnnotationContextPrefix) {
			continue
		}
		switch {
		case a.Style == buildkite.AnnotationStyleSuccess && state == stateFailed:
			return fmt.Sprintf("annotation %s has style success but the build failed", labelValue(a.Context))
		case a.Style == buildkite.AnnotationStyleError && state == statePassed:
			return fmt.Sprintf("annotation %s has style error but the build passed", labelValue(a.Context))
		}
	}
	return ""
}

// envSet is the sorted, de-duplicated environments of targets.
func envSet(ts []target) []string {
	out := make([]string, 0, len(ts))
	for _, t := range ts {
		if !slices.Contains(out, t.Environment) {
			out = append(out, t.Environment)
		}
	}
	slices.Sort(out)
	return out
}

// finishedTargets are the environments a finished build deploys to, with the annotation rule
// and the pin, and the findings of its annotations (once per build and kind).
func (c Classifier) finishedTargets(in Input, res *Result, b *buildkite.Build, slug, state string) []target {
	md := b.MetaData
	anns, read := in.Annotations[b.ID]
	find := func(kind, detail string) {
		// Once per build and kind: a build's outcomes are classified one after the other, so
		// its findings so far are the last ones.
		for i := len(res.Annotations) - 1; i >= 0 && res.Annotations[i].Pipeline == slug && res.Annotations[i].BuildNumber == b.Number; i-- {
			if res.Annotations[i].Kind == kind {
				return
			}
		}
		res.Annotations = append(res.Annotations, AnnotationFinding{Pipeline: slug, BuildNumber: b.Number, WebURL: b.WebURL, Kind: kind, Detail: detail})
	}
	annEnvs := AnnotationEnvironments(anns)
	if read && len(annEnvs) > 0 {
		if why := outcomeContradiction(anns, state); why != "" {
			find(FindingOutcome, why+"; the build's state counts")
		}
	}
	if len(MetaDataEnvironments(md)) > 0 {
		ts := c.targets(b, slug)
		if len(annEnvs) > 0 {
			if got, want := c.normalized(annEnvs), envSet(ts); !slices.Equal(got, want) {
				find(FindingMetaData, fmt.Sprintf("annotations say %s, meta-data says %s; the meta-data counts",
					strings.Join(got, ", "), strings.Join(want, ", ")))
			}
		}
		return ts
	}
	var ts []target
	if len(annEnvs) > 0 {
		for _, env := range annEnvs {
			t := c.target(env, c.version(md, b, "", env))
			if !slices.ContainsFunc(ts, func(o target) bool { return o.Environment == t.Environment }) {
				ts = append(ts, t)
			}
		}
	} else {
		ts = c.targets(b, slug)
	}
	if in.Committed == nil {
		return ts
	}
	committed := in.Committed(b.ID)
	if len(committed) == 0 || slices.Equal(committed, envSet(ts)) {
		return ts
	}
	// Committed elsewhere: keep that series.
	if len(annEnvs) > 0 {
		find(FindingAfterCommit, fmt.Sprintf("annotations say %s, read after the deployment was counted in %s, where it stays",
			strings.Join(c.normalized(annEnvs), ", "), strings.Join(committed, ", ")))
	}
	pinned := make([]target, 0, len(committed))
	for _, env := range committed {
		t := c.target(env, c.version(md, b, "", env))
		t.Fallback = len(annEnvs) == 0
		pinned = append(pinned, t)
	}
	return pinned
}

// normalized is envs through the alias table, as labels, sorted and de-duplicated.
func (c Classifier) normalized(envs []string) []string {
	out := make([]string, 0, len(envs))
	for _, e := range envs {
		if n := labelValue(c.cfg.NormalizeEnvironment(e)); !slices.Contains(out, n) {
			out = append(out, n)
		}
	}
	slices.Sort(out)
	return out
}

// People and release notes (keep_people_and_notes).
const (
	// DeployedByKey is the meta-data key naming who deployed.
	DeployedByKey = "deployed_by"
	// MaxDeployedByLen caps a deployed_by value: a name, not a document.
	MaxDeployedByLen = 256
	// MaxReleaseNotesLen caps the release notes a record keeps, the cut mark included.
	MaxReleaseNotesLen = 4 << 10
	// ReleaseNotesCutMark ends release notes that were cut.
	ReleaseNotesCutMark = "\n[release notes cut at 4 KiB]"
)

// deployedBy is the deployed_by meta-data, else the name of the build's creator (null for
// builds a webhook triggered: then "").
func deployedBy(b *buildkite.Build) string {
	s := strings.TrimSpace(b.MetaData[DeployedByKey])
	if s == "" && b.Creator != nil {
		s = strings.TrimSpace(b.Creator.Name)
	}
	return cutValid(s, MaxDeployedByLen)
}

// releaseNotes is the build's release-notes meta-data (the block step field of that key), at
// most MaxReleaseNotesLen bytes of valid UTF-8, a cut marked with ReleaseNotesCutMark.
func releaseNotes(b *buildkite.Build) string {
	s := strings.TrimSpace(strings.ToValidUTF8(b.MetaData[buildkite.ReleaseNotesKey], "\uFFFD"))
	if len(s) <= MaxReleaseNotesLen {
		return s
	}
	return cutValid(s, MaxReleaseNotesLen-len(ReleaseNotesCutMark)) + ReleaseNotesCutMark
}

// cutValid makes s valid UTF-8 and cuts it to at most n bytes on a rune boundary.
func cutValid(s string, n int) string {
	s = strings.ToValidUTF8(s, "\uFFFD")
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n]
}
