package report

import (
	"bytes"
	"context"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/chromedp/cdproto/cdp"
	"github.com/chromedp/cdproto/emulation"
	"github.com/chromedp/cdproto/page"
	"github.com/chromedp/chromedp"

	"github.com/buildkite-deployments-exporter/buildkite_deployments_exporter/internal/browsertest"
)

// TestBrowser renders the HTML report in headless Chromium and reads what it drew: both charts
// with their bars and line, the tables with a row per component and owner, no script, the
// hostile component name as text. It keeps a screenshot of the page on screen and as printed
// (REPORT_SCREENSHOT_DIR, or a new temporary directory), named in the test log, for a person
// to look at.
func TestBrowser(t *testing.T) {
	rep := fixtureReport(t)
	var page0 bytes.Buffer
	if err := rep.WriteHTML(&page0); err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		// The file must stand alone: no request may leave the page for anything.
		w.Header().Set("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'; img-src data:")
		w.Write(page0.Bytes())
	}))
	defer srv.Close()

	br := browsertest.Start(t, chromedp.WindowSize(1536, 960))
	br.Check("load the report", chromedp.Do(br.Ctx, chromedp.Navigate(srv.URL+"/report.html"), chromedp.WaitReady(chromedp.CSS("footer"))))
	eval := func(js string) int {
		t.Helper()
		n, err := chromedp.Run(br.Ctx, chromedp.Evaluate[int](js))
		br.Check(js, err)
		return n
	}
	text, err := chromedp.Run(br.Ctx, chromedp.Text(chromedp.CSS("body")))
	br.Check("text", err)

	if n := eval(`document.querySelectorAll("svg.chart").length`); n != 2 {
		t.Errorf("%d charts, want 2", n)
	}
	var bars int
	for _, b := range rep.Series.Buckets {
		for _, v := range []int{b.Passed, b.Failed, b.Canceled} {
			if v > 0 {
				bars++
			}
		}
	}
	if n := eval(`document.querySelectorAll("#chart-deployments svg rect").length`); n != bars || bars == 0 {
		t.Errorf("%d bars drawn, the series has %d non-zero layers", n, bars)
	}
	// The bars have a size on the page: the SVG was drawn, not only parsed.
	if n := eval(`Math.round(document.querySelector("#chart-deployments svg rect").getBoundingClientRect().height)`); n <= 0 {
		t.Errorf("the first bar is %d px high", n)
	}
	if n := eval(`document.querySelectorAll("#chart-lead-time svg path.line").length`); n != 1 {
		t.Errorf("%d lead time lines, want 1", n)
	}
	if n := eval(`document.querySelectorAll("#components tbody tr").length`); n != len(rep.Rows) {
		t.Errorf("%d component rows, want %d", n, len(rep.Rows))
	}
	if n := eval(`document.querySelectorAll("#totals tbody tr").length`); n != len(rep.Totals) {
		t.Errorf("%d summary rows, want %d", n, len(rep.Totals))
	}
	if n := eval(`document.querySelectorAll("#owners tbody tr").length`); n != len(rep.Groups) {
		t.Errorf("%d owner rows, want %d", n, len(rep.Groups))
	}
	if n := eval(`document.querySelectorAll("script").length`); n != 0 {
		t.Errorf("the DOM has %d script elements", n)
	}
	if n := eval(`document.querySelectorAll(".lvl.elite").length`); n == 0 {
		t.Error("no Elite level badge")
	}
	for _, want := range []string{"x<script>alert(1)</script>|y", "team-payments", "Elite", "histogram_quantile", "2023 Accelerate State of DevOps"} {
		if !strings.Contains(text, want) {
			t.Errorf("the rendered page lacks %q", want)
		}
	}
	if t.Failed() {
		return
	}

	dir := os.Getenv("REPORT_SCREENSHOT_DIR")
	if dir == "" {
		dir, err = os.MkdirTemp("", "report-screenshot-")
		br.Check("screenshot directory", err)
	}
	shot, err := chromedp.Run(br.Ctx, chromedp.FullScreenshot(100))
	br.Check("screenshot", err)
	screen := filepath.Join(dir, "report-screen.png")
	br.Check("write screenshot", os.WriteFile(screen, shot, 0o644))

	printMedia := func(ctx context.Context, tg *chromedp.Target) (chromedp.Void, error) {
		_, err := cdp.Call(ctx, tg, emulation.SetEmulatedMedia, emulation.SetEmulatedMediaParams{Media: "print"})
		return chromedp.Void{}, err
	}
	br.Check("print media", chromedp.Do(br.Ctx, printMedia))
	shot, err = chromedp.Run(br.Ctx, chromedp.FullScreenshot(100))
	br.Check("print screenshot", err)
	printed := filepath.Join(dir, "report-print.png")
	br.Check("write print screenshot", os.WriteFile(printed, shot, 0o644))
	pdf, err := chromedp.Run(br.Ctx, func(ctx context.Context, tg *chromedp.Target) ([]byte, error) {
		res, err := cdp.Call(ctx, tg, page.PrintToPDF, page.PrintToPDFParams{})
		return res.Data, err
	})
	br.Check("print to PDF", err)
	if !bytes.HasPrefix(pdf, []byte("%PDF-")) {
		t.Errorf("printing made %d bytes that are not a PDF", len(pdf))
	}
	pdfPath := filepath.Join(dir, "report.pdf")
	br.Check("write PDF", os.WriteFile(pdfPath, pdf, 0o644))
	t.Logf("screenshots: %s (screen), %s (print media); printed: %s", screen, printed, pdfPath)
}
