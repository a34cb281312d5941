package buildkite

// RateLimit is what the latest answer said about one rate-limit scope.
type RateLimit struct {
	Scope     string // "rest" (the organization's) or "rest_user" (the token owner's)
	Remaining int
	Limit     int
}

// RateLimits returns the budgets the latest answers reported, the tighter first (the one with
// fewer requests left); empty before any answer carried RateLimit headers. For status pages.
func (c *Client) RateLimits() []RateLimit {
	c.budget.mu.Lock()
	defer c.budget.mu.Unlock()
	var out []RateLimit
	for _, scope := range []string{scopeOrg, scopeUser} {
		if bk := c.budget.buckets[scope]; bk != nil && bk.known {
			out = append(out, RateLimit{Scope: scope, Remaining: bk.remaining, Limit: bk.limit})
		}
	}
	if len(out) == 2 && out[1].Remaining < out[0].Remaining {
		out[0], out[1] = out[1], out[0]
	}
	return out
}
