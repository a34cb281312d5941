package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/alecthomas/kingpin/v2"
	"github.com/go-kit/log"
	"github.com/prometheus/common/version"

	"github.com/buildkite-deployments-exporter/buildkite_deployments_exporter/backstage"
	"github.com/buildkite-deployments-exporter/buildkite_deployments_exporter/buildkite"
	"github.com/buildkite-deployments-exporter/buildkite_deployments_exporter/config"
	"github.com/buildkite-deployments-exporter/buildkite_deployments_exporter/internal/secret"
	"github.com/buildkite-deployments-exporter/buildkite_deployments_exporter/rebuild"
)

// rebuildFlags are the arguments and flags of the rebuild command.
type rebuildFlags struct {
	component, environment string
	tokenFile              string
	yes                    bool
}

func registerRebuild(app *kingpin.Application) (*kingpin.CmdClause, *rebuildFlags) {
	r := &rebuildFlags{}
	cmd := app.Command("rebuild", "Rebuild the failing deployment of a component's environment through the Buildkite API, only while it is failing (its latest finished, non-canceled deployment failed): a rebuild replays that build's commit, so after a later pass it would be a rollback and is refused. Prints the build, version and commit and asks first (or --yes). Exits 0 once Buildkite accepted the rebuild, 1 on a refusal or error.")
	cmd.Arg("component", "The component label: its name, or namespace/name outside the default namespace.").Required().StringVar(&r.component)
	cmd.Arg("environment", "The environment, e.g. production (aliases such as prod are accepted).").Required().StringVar(&r.environment)
	cmd.Flag("rebuild.token-file", "File holding a Buildkite API token with the write_builds scope, used only to send the rebuild. Keep it separate from --buildkite.token-file: the exporter's own token is read-only and never needs write_builds. Without it the token is read from $BUILDKITE_REBUILD_TOKEN.").
		PlaceHolder("FILE").StringVar(&r.tokenFile)
	cmd.Flag("yes", "Rebuild without asking.").BoolVar(&r.yes)
	return cmd, r
}

// runRebuild finds the failing build with the read token (the rebuild token when no read token
// is given), confirms, and rebuilds it with the rebuild token.
func runRebuild(cfg *config.Config, f *flags, r *rebuildFlags, stdin io.Reader, stdinIsTerminal bool, stdout, stderr io.Writer) int {
	fail := func(format string, args ...any) int {
		fmt.Fprintf(stderr, "%s rebuild: "+format+"\n", append([]any{exporterName}, args...)...)
		return 1
	}
	writeToken, err := secret.Load(r.tokenFile, "BUILDKITE_REBUILD_TOKEN")
	if err != nil {
		return fail("no rebuild token: create a Buildkite API token with the %s scope and pass it with --rebuild.token-file or $BUILDKITE_REBUILD_TOKEN (%v)", buildkite.ScopeWriteBuilds, err)
	}
	readToken, err := secret.Load(f.tokenFile, "BUILDKITE_API_TOKEN")
	if errors.Is(err, secret.ErrMissing) {
		readToken = writeToken
	} else if err != nil {
		return fail("%v", err)
	}
	newClient := func(tok secret.Secret) (*buildkite.Client, error) {
		return buildkite.NewClient(buildkite.Config{
			BaseURL: f.apiURL, Token: tok, RequestsPerMinute: f.requestsPerMinute,
			UserAgent: version.ComponentUserAgent(exporterName), Logger: log.NewNopLogger(),
		})
	}
	reader, err := newClient(readToken)
	if err != nil {
		return fail("%v", err)
	}
	writer, err := newClient(writeToken)
	if err != nil {
		return fail("%v", err)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if err := rebuild.CheckToken(ctx, writer); err != nil {
		return fail("%v", err)
	}
	res, err := loadCatalog(ctx, f, log.NewNopLogger())
	if err != nil {
		return fail("cannot read the catalog: %v", err)
	}
	var comp *backstage.Component
	for i := range res.Components {
		if res.Components[i].Label == r.component {
			comp = &res.Components[i]
		}
	}
	if comp == nil {
		return fail("no component %q with a Buildkite pipeline in the catalog (give its label: name, or namespace/name)", r.component)
	}
	plan, err := rebuild.Find(ctx, reader, cfg, *comp, r.environment, time.Now())
	if err != nil {
		return fail("%v", err)
	}
	b := plan.Build
	shown := plan.Version
	if shown == "" {
		shown = "(none)"
	}
	fmt.Fprintf(stdout, "The latest deployment of %s to %s failed:\n  build    #%d of %s, %s\n  version  %s\n  commit   %s (branch %s)\n  finished %s\n",
		plan.Component, plan.Environment, b.Number, plan.Pipeline, plan.WebURL(), shown, b.Commit, b.Branch,
		b.FinishedAt.UTC().Format(time.RFC3339))
	if !r.yes {
		if !stdinIsTerminal {
			return fail("not rebuilding: standard input is not a terminal to ask on; add --yes to rebuild without asking")
		}
		fmt.Fprintf(stdout, "Rebuild build #%d (same commit, branch and environment)? [y/N] ", b.Number)
		line, _ := bufio.NewReader(io.LimitReader(stdin, 1024)).ReadString('\n')
		if a := strings.ToLower(strings.TrimSpace(line)); a != "y" && a != "yes" {
			fmt.Fprintln(stdout, "Not rebuilt (answer y to rebuild, or pass --yes).")
			return 1
		}
	}
	nb, err := rebuild.Do(ctx, writer, plan)
	if err != nil {
		return fail("%v", err)
	}
	url := nb.WebURL
	if url == "" {
		url = fmt.Sprintf("https://buildkite.com/%s/builds/%d", plan.Pipeline, nb.Number)
	}
	fmt.Fprintf(stdout, "Rebuilding: build #%d of %s, %s\n", nb.Number, plan.Pipeline, url)
	return 0
}

// isTerminal says whether f is a character device, without a dependency: a terminal, or
// /dev/null, whose empty answer reads as no.
func isTerminal(f *os.File) bool {
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}
