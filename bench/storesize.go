package main

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"time"

	"github.com/go-kit/log"
	bolt "go.etcd.io/bbolt"

	"github.com/buildkite-deployments-exporter/buildkite_deployments_exporter/backstage"
	"github.com/buildkite-deployments-exporter/buildkite_deployments_exporter/buildkite"
	"github.com/buildkite-deployments-exporter/buildkite_deployments_exporter/deployment"
	"github.com/buildkite-deployments-exporter/buildkite_deployments_exporter/internal/cputime"
	"github.com/buildkite-deployments-exporter/buildkite_deployments_exporter/store"
)

// yearSim writes a year of the benchmark organization's deployments into a bbolt log the way the
// collector does: the annotated pipelines' builds of the data set (buildGen: arrivals, run
// times, states, a third of the failures retried once finished), classified by the real
// deployment.Classifier into the records and commit first-seen times a cycle stores, one
// store.Append per batch period that finished a build (the poll interval, or longer to make a
// year affordable; an empty cycle stores only its watermark, which does not grow the file), and
// a store.Compact with deployment.Fold once a day with the cutoff now − retention, as
// collector.compact does. The non-annotated pipelines' builds never reach the store, so they
// are not generated.
type yearSim struct {
	m         orgModel
	days      int
	batch     time.Duration
	retention time.Duration
}

// yearResult is what a simulated year left in the store.
type yearResult struct {
	deployments, appends, compactions   int
	records, keys, commits              int
	file, hwm, free, compacted, base    int64 // bytes: the file, bbolt's high-water mark, its free pages, a bbolt-compacted copy, the compacted base
	baseChunks                          int   // the chunks the base is stored in (store format 3)
	appendCPU, compactCPU, compactedCPU time.Duration
	// fileAt is the file's size after each day's compaction.
	fileAt []int64
}

const storeDay = 24 * time.Hour

// yearStart is where the simulated year begins (any time would do; the data set's epoch).
var yearStart = time.Date(2000, 1, 1, 0, 0, 0, 0, time.UTC)

// yearBuild is a build of an annotated pipeline, listed once it has finished for the last time
// (after its retry, for a retried failure): its outcomes are then all in its jobs.
type yearBuild struct {
	b      buildkite.Build
	finish time.Time
}

func (y yearSim) run(dir string) (yearResult, error) {
	var res yearResult
	st, err := store.OpenBolt(dir, store.BoltOptions{Logger: log.NewNopLogger()})
	if err != nil {
		return res, err
	}
	defer func() {
		if st != nil {
			st.Close()
		}
	}()
	m := y.m
	comps := m.components()
	pipelines := map[string]backstage.Component{}
	var annotated []int
	for p := range m.Pipelines {
		if m.annotated(p) {
			annotated = append(annotated, p)
		}
	}
	for _, c := range comps {
		pipelines[c.Pipelines[0].Pipeline] = c
	}
	cls := deployment.NewClassifier(nil)
	gen := newBuildGen(m.Seed + 2)
	gen.space = 2
	perDay := m.BuildsPerDay * float64(len(annotated)) / float64(m.Pipelines)
	gap := func() time.Duration { return time.Duration(gen.rng.ExpFloat64() * float64(storeDay) / perDay) }
	numbers := map[int]int{}
	start := yearStart
	next := start.Add(gap())
	var pending []yearBuild // by finish
	for t := start.Add(y.batch); !t.After(start.Add(time.Duration(y.days) * storeDay)); t = t.Add(y.batch) {
		for next.Before(t) {
			p := annotated[gen.rng.IntN(len(annotated))]
			numbers[p]++
			b, finish, state := gen.next(next.Truncate(time.Second))
			slug := m.slug(p)
			b.Number = numbers[p]
			b.ID = fmt.Sprintf("0192%04x-0000-4000-8000-%012x", gen.space, gen.n)
			b.WebURL = fmt.Sprintf("https://buildkite.com/%s/%s/builds/%d", m.Org, slug, b.Number)
			b.URL = fmt.Sprintf("https://api.buildkite.com/v2/organizations/%s/pipelines/%s/builds/%d", m.Org, slug, b.Number)
			b.Pipeline = &buildkite.Pipeline{Slug: slug}
			b.State, b.FinishedAt = state, ts(finish)
			// A failed build is read with its jobs (Classifier.NeedsJobs): the failed deploy
			// job, and its retry when someone retried it once the build had finished.
			if state == buildkite.StateFailed {
				b.FailingAt = ts(finish)
				if r := gen.retryAfter(finish); r.retrying {
					b.Jobs = gen.retriedJobs(b.CreatedAt.Time, b.StartedAt.Time, finish, r)
					b.State, b.FinishedAt = r.state, ts(r.finish)
					finish = r.finish
				} else {
					j := deployJob(gen.jobID(gen.n, 0), b.CreatedAt.Time)
					j.State, j.StartedAt, j.FinishedAt = state, b.StartedAt, b.FinishedAt
					b.Jobs = []buildkite.Job{j}
				}
			}
			i, _ := slices.BinarySearchFunc(pending, finish, func(e yearBuild, t time.Time) int { return e.finish.Compare(t) })
			pending = slices.Insert(pending, i, yearBuild{b: b, finish: finish})
			next = next.Add(gap())
		}
		n := 0
		for n < len(pending) && !pending[n].finish.After(t) {
			n++
		}
		if n > 0 {
			builds := make([]buildkite.Build, n)
			for i := range n {
				builds[i] = pending[i].b
			}
			pending = slices.Delete(pending, 0, n)
			out := cls.Classify(deployment.Input{Organization: m.Org, Pipelines: pipelines, Finished: builds, Now: t})
			cpu := cputime.Process()
			added, err := st.Append(store.Batch{
				Records:          out.Records,
				CommitsFirstSeen: out.Commits,
				Watermarks:       map[string]store.Watermark{m.Org: {FinishedFrom: t, BackfillDone: true}},
			})
			res.appendCPU += cputime.Process() - cpu
			if err != nil {
				return res, err
			}
			if len(added) != len(out.Records) {
				return res, fmt.Errorf("store size: %d of the %d records of a cycle were new; the simulation never repeats one", len(added), len(out.Records))
			}
			res.deployments += len(added)
			res.appends++
		}
		if t.Sub(start)%storeDay == 0 {
			cpu := cputime.Process()
			if err := st.Compact(t.Add(-y.retention), deployment.Fold); err != nil {
				return res, err
			}
			res.compactCPU += cputime.Process() - cpu
			res.compactions++
			fi, err := os.Stat(filepath.Join(dir, store.DBFileName))
			if err != nil {
				return res, err
			}
			res.fileAt = append(res.fileAt, fi.Size())
		}
	}
	if err := st.Close(); err != nil {
		return res, err
	}
	st = nil
	path := filepath.Join(dir, store.DBFileName)
	fi, err := os.Stat(path)
	if err != nil {
		return res, err
	}
	res.file = fi.Size()
	// Read-write, with the store's freelist type: a read-only bbolt does not load the freelist.
	db, err := bolt.Open(path, 0o600, &bolt.Options{FreelistType: bolt.FreelistMapType})
	if err != nil {
		return res, err
	}
	defer db.Close()
	err = db.View(func(tx *bolt.Tx) error {
		res.hwm = tx.Size()
		for name, n := range map[string]*int{"records": &res.records, "keys": &res.keys, "commits": &res.commits} {
			b := tx.Bucket([]byte(name))
			if b == nil {
				return fmt.Errorf("store size: the log has no bucket %q", name)
			}
			*n = b.Stats().KeyN
		}
		// The base: chunks of the bucket base since store format 3, one value meta/base before.
		if bk := tx.Bucket([]byte("base")); bk != nil {
			if err := bk.ForEach(func(_, v []byte) error { res.base += int64(len(v)); res.baseChunks++; return nil }); err != nil {
				return err
			}
		} else {
			res.base = int64(len(tx.Bucket([]byte("meta")).Get([]byte("base"))))
		}
		return nil
	})
	if err != nil {
		return res, err
	}
	s := db.Stats()
	res.free = int64(s.FreePageN+s.PendingPageN) * int64(db.Info().PageSize)
	// What `bbolt compact -o new.db deployments.db` makes of it (store/README.md: the way to
	// shrink the file): the same bolt.Compact, with the command's default --tx-max-size. The
	// store must then open the copy and replay every record.
	shrunk := filepath.Join(dir, "compacted")
	if err := os.Mkdir(shrunk, 0o750); err != nil {
		return res, err
	}
	dst := filepath.Join(shrunk, store.DBFileName)
	out, err := bolt.Open(dst, 0o600, nil)
	if err != nil {
		return res, err
	}
	cpu := cputime.Process()
	err = bolt.Compact(out, db, 65536)
	res.compactedCPU = cputime.Process() - cpu
	if cerr := out.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return res, err
	}
	if fi, err = os.Stat(dst); err != nil {
		return res, err
	}
	res.compacted = fi.Size()
	cst, err := store.OpenBolt(shrunk, store.BoltOptions{Logger: log.NewNopLogger()})
	if err != nil {
		return res, fmt.Errorf("store size: the store does not open the compacted copy: %w", err)
	}
	defer cst.Close()
	if _, err := cst.Load(); err != nil {
		return res, fmt.Errorf("store size: loading the compacted copy: %w", err)
	}
	n := 0
	if err := cst.Replay(func(store.Record) error { n++; return nil }); err != nil {
		return res, fmt.Errorf("store size: replaying the compacted copy: %w", err)
	}
	if n != res.records {
		return res, fmt.Errorf("store size: the compacted copy replays %d records, the log holds %d", n, res.records)
	}
	if err := cst.Close(); err != nil {
		return res, err
	}
	return res, os.RemoveAll(shrunk)
}

// storeSizeFigures measures the log of a simulated year at the benchmark organization's rate, at
// each retention, in directories under dir.
func storeSizeFigures(figs *figures, dir string, scale float64, days int, batch time.Duration, retentions []time.Duration) error {
	if days <= 0 || batch <= 0 || len(retentions) == 0 {
		return errors.New("storesize: -days, -batch and -retention must be positive")
	}
	m := issueScale(scale, days)
	for _, r := range retentions {
		began, cpu := time.Now(), cputime.Process()
		res, err := yearSim{m: m, days: days, batch: batch, retention: r}.run(filepath.Join(dir, fmt.Sprintf("retention-%dd", r/storeDay)))
		if err != nil {
			return err
		}
		took, cpu := time.Since(began), cputime.Process()-cpu
		sec := fmt.Sprintf("store size, %d days, --storage.retention=%dd, an append per %v", days, r/storeDay, batch)
		if scale != 1 {
			sec += fmt.Sprintf(" (scale %g)", scale)
		}
		fmt.Fprintf(os.Stderr, "storesize: retention %v: %d deployments in %d appends, %d compactions; %d records, %d keys, %d commits; file %d, high-water %d, free %d, compacted copy %d bytes; %v (%v CPU)\n",
			r, res.deployments, res.appends, res.compactions, res.records, res.keys, res.commits, res.file, res.hwm, res.free, res.compacted, took.Round(time.Millisecond), cpu.Round(time.Millisecond))
		mb := func(b int64) float64 { return float64(b) / 1e6 }
		figs.info(sec, "deployments stored", float64(res.deployments), "records",
			fmt.Sprintf("about %.0f a day: the %d annotated pipelines' builds of the data set (%.0f builds a day in all), a retried failure twice; %d appends (one per %v that finished a build), %d daily compactions", m.BuildsPerDay*float64(m.Annotated)/float64(m.Pipelines), m.Annotated, m.BuildsPerDay, res.appends, batch, res.compactions))
		figs.info(sec, "records, keys, commit first-seen times kept", float64(res.records), "records",
			fmt.Sprintf("%d keys, %d commits: what the retention keeps after the last compaction", res.keys, res.commits))
		growth := ""
		for _, d := range []int{30, 60, 90, 180, 270, 365} {
			if d <= len(res.fileAt) {
				growth += fmt.Sprintf("; day %d %.0f MB", d, mb(res.fileAt[d-1]))
			}
		}
		figs.info(sec, "file", mb(res.file), "MB", "deployments.db on disk after the last compaction: bbolt grows it ahead of its data and never shrinks it"+growth)
		figs.info(sec, "bbolt high-water mark (used)", mb(res.hwm), "MB", fmt.Sprintf("pages ever allocated; %.1f MB of them free (reused by later appends)", mb(res.free)))
		figs.info(sec, "data (used less free pages)", mb(res.hwm-res.free), "MB", fmt.Sprintf("of which the compacted base (the deployment.Aggregate JSON, rewritten at each compaction that folds records) %.2f MB in %d page-sized chunks", mb(res.base), res.baseChunks))
		figs.info(sec, "file after bbolt compact", mb(res.compacted), "MB", fmt.Sprintf("a copy by bolt.Compact, as `bbolt compact -o new.db deployments.db` makes (store/README.md), which the store opens and replays whole; %v CPU", res.compactedCPU.Round(time.Millisecond)))
		if res.records > 0 {
			figs.info(sec, "per 1,000 deployments kept", float64(res.hwm-res.free)/float64(res.records), "kB",
				fmt.Sprintf("data (high-water mark less free pages) / records kept, keys and commits included; %.0f kB in the compacted copy, %.0f kB of file", float64(res.compacted)/float64(res.records), float64(res.file)/float64(res.records)))
		}
		figs.info(sec, "append CPU (mean)", (res.appendCPU/time.Duration(max(1, res.appends))).Seconds()*1e3, "cpu-ms",
			fmt.Sprintf("per Append, fsync excluded (CPU only); compaction %v CPU a day (mean); the year took %v, %v CPU", (res.compactCPU/time.Duration(max(1, res.compactions))).Round(time.Millisecond), took.Round(time.Second), cpu.Round(time.Second)))
		if err := figs.flush(); err != nil {
			return err
		}
	}
	return nil
}
