package report

import (
	"context"
	"math/rand/v2"
	"testing"
	"time"
)

// BenchmarkBuild: a report over 100,000 in-memory records of the random shape (the figure at
// scale, over the bbolt log of make bench, is bench deployreport's).
func BenchmarkBuild(b *testing.B) {
	recs := randomLog(rand.New(rand.NewPCG(1, 2)), 100_000)
	log := memoryLog(b, recs)
	end := recs[len(recs)-1].FinishedAt
	o := Options{Since: end.Add(-7 * 24 * time.Hour), Until: end}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Build(context.Background(), log, o); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/float64(len(recs)), "ns/record")
}
