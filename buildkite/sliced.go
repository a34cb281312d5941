package buildkite

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/go-kit/log/level"
)

// MaxPerPage is the API's largest page (reference §3).
const MaxPerPage = 100

// MaxPagesPerSlice bounds how deep ListBuildsSliced pages before it narrows its time window. The
// API refuses deep pages at an undocumented depth (reference §1); ten pages of MaxPerPage stay
// shallow while costing one extra request per thousand builds.
const MaxPagesPerSlice = 10

// ListBuildsSliced lists the builds of org (pipeline "" = the organization-wide endpoint, else that
// pipeline's endpoint) matching opts, newest created first, never paging deeper than the API allows.
// visit sees every build once. seen (may be nil) holds ids (with created_at) already visited, e.g. a
// probe page the caller read; ListBuildsSliced adds to it and prunes it as it goes.
//
// Past MaxPagesPerSlice pages, or when the API refuses a page as too deep, the listing starts again
// with created_to set just above the oldest build read, so every request stays shallow. Builds of
// that boundary second come again and are skipped; only their ids are kept across slices, so
// memory does not grow with the listing. opts.PerPage is always MaxPerPage.
//
// Every page is held to the limits and checked against opts' window as in ListOrganizationBuilds:
// a build outside finished_from, created_from, created_to (the slice's too) or state[] is dropped,
// and a page of nothing else ends the listing with an error matching ErrFilterIgnored, so an API
// that ignores the filters cannot make it page through the whole history.
func (c *Client) ListBuildsSliced(ctx context.Context, org, pipeline string, opts ListBuildsOptions,
	seen map[string]time.Time, visit func(*Build),
) error {
	if pipeline != "" {
		if err := checkSlug("pipeline", pipeline); err != nil {
			return err
		}
	}
	opts.PerPage = MaxPerPage
	limit := int(c.maxPages.Load())
	if seen == nil {
		seen = map[string]time.Time{}
	}
	for {
		n, full := 0, false
		var oldest time.Time
		err := c.listBuilds(ctx, org, pipeline, opts, func(page buildPage) error {
			n++
			for i := range page.builds {
				b := &page.builds[i]
				if _, ok := seen[b.ID]; !ok {
					seen[b.ID] = b.CreatedAt.Time
					visit(b)
				}
				if oldest.IsZero() || b.CreatedAt.Before(oldest) {
					oldest = b.CreatedAt.Time
				}
			}
			// Fullness is the answer's: builds dropped as outside the window do not make a
			// full page look like the last one.
			if n >= limit && page.received >= MaxPerPage {
				full = true
				return ErrStopPaging
			}
			return nil
		})
		switch {
		case errors.Is(err, ErrTooDeep) && n > 0:
			// The n pages read are kept; the refused one is read again in the next slice.
			full = true
			if n < limit {
				limit = n
				c.lowerMaxPages(n, org, pipeline)
			}
		case err != nil:
			return err
		}
		if !full {
			return nil
		}
		// The API filters by whole seconds; created_to is exclusive.
		boundary := oldest.Truncate(time.Second)
		next := boundary.Add(time.Second)
		if !opts.CreatedTo.IsZero() && !next.Before(opts.CreatedTo) {
			return fmt.Errorf("more than %d builds were created within the second before %s; cannot narrow the listing further", limit*MaxPerPage, opts.CreatedTo.Format(time.RFC3339))
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		opts.CreatedTo = next
		// Only builds of the boundary second can come again: the next slice lists none created
		// at or after next. (Every id in seen is at or after the boundary, so pruning those
		// before it, as collector.sliced does, would keep them all.)
		for id, created := range seen {
			if !created.Before(next) {
				delete(seen, id)
			}
		}
	}
}

// lowerMaxPages remembers that the API refused page n+1, so that later listings stop before it.
// It only ever lowers the depth: a concurrent listing that saw a deeper refusal must not raise it
// again.
func (c *Client) lowerMaxPages(n int, org, pipeline string) {
	for {
		cur := c.maxPages.Load()
		if int32(n) >= cur {
			return
		}
		if c.maxPages.CompareAndSwap(cur, int32(n)) {
			level.Debug(c.logger).Log("msg", "The API refused a deep page; narrowing time slices",
				"organization", org, "pipeline", pipeline, "pages_per_slice", n)
			return
		}
	}
}
