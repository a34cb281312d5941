package status

import (
	"slices"
	"time"
)

// page selects what filter keeps from the model and adds the per-request parts: the time and
// the organizations. It copies no component (the Page shares the model's, read-only), so a
// request costs a pass over the component list, not a copy of it.
func (m *model) page(f Filter, orgs []Organization, now time.Time) *Page {
	p := &Page{
		SchemaVersion:       SchemaVersion,
		GeneratedAt:         now.UTC(),
		Filter:              f,
		Snapshot:            m.info,
		Catalog:             m.catalog,
		ComponentsTotal:     len(m.components),
		Organizations:       []OrganizationStatus{},
		UnknownEnvironments: m.unknownEnvs,
	}
	narrowed := f.Component != "" || f.Owner != ""

	switch {
	case f.Component != "":
		// An exact label: one map lookup, whatever the catalog's size.
		p.Components = []*Component{}
		if c := m.byLabel[f.Component]; c != nil && f.keeps(c) {
			p.Components = append(p.Components, c)
		}
	case narrowed || f.Problems:
		p.Components = []*Component{}
		for _, c := range m.components {
			if f.keeps(c) {
				p.Components = append(p.Components, c)
			}
		}
	default:
		p.Components = m.components
	}
	if p.Components == nil {
		p.Components = []*Component{}
	}

	if narrowed {
		p.Catalog.Problems = []CatalogProblem{}
		for i, cp := range m.catalog.Problems {
			if f.keepsLabel(m.problemLabel[i], m.byLabel) {
				p.Catalog.Problems = append(p.Catalog.Problems, cp)
			}
		}
		p.UnownedPipelineProblems = []PipelineProblem{}
	} else {
		p.UnownedPipelineProblems = m.unowned
	}

	for _, o := range orgs {
		if f.Problems && !o.HasProblem() {
			continue
		}
		p.Organizations = append(p.Organizations, organization(o))
	}
	return p
}

// keeps reports whether the filter lists component c.
func (f Filter) keeps(c *Component) bool {
	return (f.Component == "" || c.Label == f.Component) &&
		(f.Owner == "" || c.Owner == f.Owner) &&
		(!f.Problems || c.HasProblems)
}

// keepsLabel reports whether a catalog problem about the component labelled label is listed
// under a component or owner filter. A component filter also finds the problems of an entity
// the catalog dropped (that is why it is missing); an owner filter cannot, as a dropped entity
// has no known owner.
func (f Filter) keepsLabel(label string, byLabel map[string]*Component) bool {
	if label == "" || (f.Component != "" && label != f.Component) {
		return false
	}
	if f.Owner == "" {
		return true
	}
	c := byLabel[label]
	return c != nil && c.Owner == f.Owner
}

func organization(o Organization) OrganizationStatus {
	return OrganizationStatus{
		Name: o.Name, LastPoll: o.LastPoll.UTC(), LastSuccess: o.LastSuccess.UTC(), NextPoll: o.NextPoll.UTC(),
		LastError: o.LastError, APIBudgetRemaining: o.APIBudgetRemaining, APIBudgetLimit: o.APIBudgetLimit,
		Backfill: Backfill{
			Active: o.Backfilling, ListingsDone: o.BackfillDone, ListingsTotal: o.BackfillTotal,
			RemainingRequests: o.BackfillRemainingRequests, ETASeconds: o.BackfillETA.Seconds(),
		},
	}
}

// webhooksStatus groups the receiver's counts by event; nil when webhooks are off.
func webhooksStatus(w *Webhooks) *WebhooksStatus {
	if w == nil {
		return nil
	}
	out := &WebhooksStatus{LastEventAt: w.LastEvent.UTC(), Events: []WebhookEventStatus{}, Dropped: w.Dropped}
	if w.LastEvent.IsZero() {
		out.LastEventAt = time.Time{}
	}
	byEvent := map[string]*WebhookEventStatus{}
	var order []string
	for _, c := range w.Counts {
		if c.Count == 0 {
			continue
		}
		e := byEvent[c.Event]
		if e == nil {
			e = &WebhookEventStatus{Event: c.Event}
			byEvent[c.Event] = e
			order = append(order, c.Event)
		}
		switch c.Result {
		case "accepted":
			e.Accepted += c.Count
		case "ignored":
			e.Ignored += c.Count
		case "rejected_auth":
			e.RejectedAuth += c.Count
		case "rejected_replay":
			e.RejectedReplay += c.Count
		case "rejected_body":
			e.RejectedBody += c.Count
		}
	}
	slices.Sort(order)
	for _, ev := range order {
		out.Events = append(out.Events, *byEvent[ev])
	}
	return out
}
