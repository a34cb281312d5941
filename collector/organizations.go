package collector

import "time"

// OrganizationStatus is what the poller knows of one organization of the catalog now, for the
// status page.
type OrganizationStatus struct {
	Name        string
	LastPoll    time.Time // when the last poll ended, successful or not; zero before the first
	LastSuccess time.Time
	NextPoll    time.Time // about when the next poll starts; zero before the first
	LastError   string    // of the last poll when it failed
	// Backfilling is set while the history backfill runs; the counts say how far it got:
	// listings (one per pipeline, or one for the organization) done of their total, and the
	// estimated requests left and the time they take at the request budget.
	Backfilling               bool
	BackfillListingsDone      int
	BackfillListingsTotal     int
	BackfillRemainingRequests int
	BackfillETA               time.Duration
}

// Organizations returns the status of every organization the latest catalog names, sorted.
func (c *Collector) Organizations() []OrganizationStatus {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []OrganizationStatus
	for _, name := range sortedKeys(c.orgs) {
		o := c.orgs[name]
		if !o.active {
			continue
		}
		s := OrganizationStatus{Name: name, LastPoll: o.health.LastAttempt, LastSuccess: o.health.LastSuccess, LastError: o.health.LastError}
		if !s.LastPoll.IsZero() {
			s.NextPoll = s.LastPoll.Add(c.pollInterval)
		}
		if p := o.progress.Load(); p != nil {
			s.Backfilling = true
			s.BackfillListingsDone, s.BackfillListingsTotal = int(p.listingsDone.Load()), int(p.listingsTotal.Load())
			s.BackfillRemainingRequests, s.BackfillETA = int(p.remaining()), p.eta(c.requestsPerMinute)
		}
		out = append(out, s)
	}
	return out
}
