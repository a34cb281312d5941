package suggest

import "testing"

func TestClosest(t *testing.T) {
	slugs := []string{"shop-deploy", "shop-deploy-eu", "api-deploy"}
	for s, want := range map[string]string{
		"shop-deploi": "shop-deploy", "shop-deploy-e": "shop-deploy-eu", "api-deplyo": "api-deploy",
		"billing": "", "": "",
	} {
		if got := Closest(s, slugs); got != want {
			t.Errorf("Closest(%q) = %q, want %q", s, got, want)
		}
	}
	if got := Closest("ab", []string{"ba", "aa"}); got != "aa" {
		t.Errorf("tie: %q, want the smaller, aa", got)
	}
	for _, c := range []struct {
		a, b string
		d    int
	}{{"", "abc", 3}, {"kitten", "sitting", 3}, {"same", "same", 0}, {"objectivs", "objectives", 1}} {
		if got := Distance(c.a, c.b); got != c.d {
			t.Errorf("Distance(%q, %q) = %d, want %d", c.a, c.b, got, c.d)
		}
	}
}
