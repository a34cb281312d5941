// Command bench measures what issue 8 asks of the exporter at scale: the cost of /metrics, the
// memory and start-up replay of a large deployment log, and it prints the table of every figure.
// The API-economy figures need fake time (testing/synctest), so they are a test of this package:
// go test ./bench -run TestEconomy -args -scale=1 -out=figures.jsonl. scripts/bench.sh (make
// bench) runs everything in order; BENCHMARKS.md explains the method and quotes a run.
//
//	bench render  -components 1000,10000 -out figures.jsonl
//	bench mkstore -dir DIR -components 10000 -records 1000000
//	bench memory  -dir DIR -components 10000 -out figures.jsonl
//	bench deployreport -dir DIR [-window 168h] -out figures.jsonl
//	bench storesize -dir DIR -days 365 -batch 30m -retention 400d,30d -out figures.jsonl
//	bench report  -in figures.jsonl [-md table.md]
package main

import (
	"errors"
	"flag"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/common/model"
)

func main() {
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

var errUsage = errors.New("usage: bench render|mkstore|memory|deployreport|storesize|report [flags]; bench <command> -h lists the flags")

func run(args []string) error {
	if len(args) == 0 {
		return errUsage
	}
	fs := flag.NewFlagSet("bench "+args[0], flag.ContinueOnError)
	out := fs.String("out", "", "append the figures as JSON lines to this file")
	switch args[0] {
	case "render":
		comps := fs.String("components", "1000,10000", "comma-separated numbers of components (× 3 environments)")
		fs.StringVar(&coldProfile, "coldprofile", "", "write a CPU profile of 20 more cold encodes of each format to this file")
		if err := fs.Parse(args[1:]); err != nil {
			return err
		}
		sizes, err := parseSizes(*comps)
		if err != nil {
			return err
		}
		figs := newFigures(*out)
		for _, n := range sizes {
			if err := renderFigures(figs, n); err != nil {
				return err
			}
			if err := exemplarFigures(figs, n); err != nil {
				return err
			}
			if err := figs.flush(); err != nil {
				return err
			}
		}
		return nil
	case "mkstore":
		dir := fs.String("dir", "", "storage path to create (must not hold a store yet)")
		comps := fs.Int("components", 10000, "components (× 3 environments) the records belong to")
		records := fs.Int("records", 1_000_000, "deployments to store")
		if err := fs.Parse(args[1:]); err != nil {
			return err
		}
		if *dir == "" {
			return errors.New("mkstore: -dir is required")
		}
		return makeStore(*dir, *comps, *records)
	case "memory":
		dir := fs.String("dir", "", "storage path made by bench mkstore")
		comps := fs.Int("components", 10000, "components in the catalog (as given to mkstore)")
		profile := fs.String("memprofile", "", "write a heap profile after the replay and first snapshot to this file")
		if err := fs.Parse(args[1:]); err != nil {
			return err
		}
		if *dir == "" {
			return errors.New("memory: -dir is required")
		}
		figs := newFigures(*out)
		if err := memoryFigures(figs, *dir, *comps, *profile); err != nil {
			return err
		}
		return figs.flush()
	case "deployreport":
		dir := fs.String("dir", "", "storage path made by bench mkstore")
		window := fs.Duration("window", 7*24*time.Hour, "report window, ending now")
		cpuProfile := fs.String("cpuprofile", "", "write a CPU profile of the report to this file")
		if err := fs.Parse(args[1:]); err != nil {
			return err
		}
		if *dir == "" {
			return errors.New("deployreport: -dir is required")
		}
		figs := newFigures(*out)
		if err := reportFigures(figs, *dir, *window, *cpuProfile); err != nil {
			return err
		}
		return figs.flush()
	case "storesize":
		dir := fs.String("dir", "", "directory to write the logs in, one per retention (must not hold them yet)")
		scale := fs.Float64("scale", 1, "organization size relative to the issue's (1 = 2,000 annotated pipelines among 20,000, 20,000 builds/day: about 2,000 deployments a day)")
		days := fs.Int("days", 365, "days of deployments to store")
		batch := fs.Duration("batch", 30*time.Second, "time between two Appends (the poll interval, or longer for a cheaper year): one per period that finished a build")
		rets := fs.String("retention", "400d,30d", "comma-separated --storage.retention values, one simulated log each")
		if err := fs.Parse(args[1:]); err != nil {
			return err
		}
		if *dir == "" {
			return errors.New("storesize: -dir is required")
		}
		var retentions []time.Duration
		for _, part := range strings.Split(*rets, ",") {
			d, err := model.ParseDuration(strings.TrimSpace(part))
			if err != nil || d <= 0 {
				return fmt.Errorf("-retention: %q is not a positive duration such as 400d", part)
			}
			retentions = append(retentions, time.Duration(d))
		}
		return storeSizeFigures(newFigures(*out), *dir, *scale, *days, *batch, retentions)
	case "report":
		in := fs.String("in", "", "figures file (JSON lines)")
		md := fs.String("md", "", "also write the table as Markdown to this file")
		if err := fs.Parse(args[1:]); err != nil {
			return err
		}
		if *in == "" {
			return errors.New("report: -in is required")
		}
		return report(*in, *md, os.Stdout)
	}
	return errUsage
}

func parseSizes(s string) ([]int, error) {
	var out []int
	for _, part := range strings.Split(s, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(part))
		if err != nil || n <= 0 {
			return nil, fmt.Errorf("-components: %q is not a positive number", part)
		}
		out = append(out, n)
	}
	return out, nil
}
