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
	"time"

	"github.com/chromedp/cdproto/cdp"
	"github.com/chromedp/cdproto/emulation"
	"github.com/chromedp/cdproto/page"
	"github.com/chromedp/chromedp"

	"github.com/buildkite-deployments-exporter/buildkite_deployments_exporter/internal/testenv"
)

// chromium returns Debian's chromium, or skips the test (fails it in CI) when it is missing.
func chromium(t *testing.T) string {
	t.Helper()
	if _, err := os.Stat("/usr/bin/chromium"); err == nil {
		return "/usr/bin/chromium"
	}
	return testenv.Binary(t, "chromium", "chromium")
}

// TestBrowser renders the HTML report in headless Chromium and reads what it drew: both charts
// with their bars and line, the tables with a row per component and owner, no script, the
// hostile component name as text. It keeps a screenshot of the page on screen and as printed
// (REPORT_SCREENSHOT_DIR, or a new temporary directory), named in the test log, for a person
// to look at.
func TestBrowser(t *testing.T) {
	exec := chromium(t)
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

	var output testenv.LogBuffer
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	actx, cancelAlloc := chromedp.NewExecAllocator(ctx,
		chromedp.ExecPath(exec),
		chromedp.Headless, chromedp.NoSandbox, chromedp.DisableGPU, chromedp.NoFirstRun,
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.WindowSize(1536, 960),
		chromedp.UserDataDir(userDataDir(t)),
		chromedp.CombinedOutput(&output),
	)
	defer cancelAlloc()
	bctx, cancelBrowser := chromedp.NewContext(actx)
	defer cancelBrowser()
	fail := func(what string, err error) {
		t.Helper()
		if err != nil {
			t.Fatalf("%s: %v\nchromium's output:\n%s", what, err, output.String())
		}
	}
	fail("load the report", chromedp.Do(bctx, chromedp.Navigate(srv.URL+"/report.html"), chromedp.WaitReady(chromedp.CSS("footer"))))
	eval := func(js string) int {
		t.Helper()
		n, err := chromedp.Run(bctx, chromedp.Evaluate[int](js))
		fail(js, err)
		return n
	}
	text, err := chromedp.Run(bctx, chromedp.Text(chromedp.CSS("body")))
	fail("text", err)

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
		fail("screenshot directory", err)
	}
	shot, err := chromedp.Run(bctx, chromedp.FullScreenshot(100))
	fail("screenshot", err)
	screen := filepath.Join(dir, "report-screen.png")
	fail("write screenshot", os.WriteFile(screen, shot, 0o644))

	printMedia := func(ctx context.Context, tg *chromedp.Target) (chromedp.Void, error) {
		_, err := cdp.Call(ctx, tg, emulation.SetEmulatedMedia, emulation.SetEmulatedMediaParams{Media: "print"})
		return chromedp.Void{}, err
	}
	fail("print media", chromedp.Do(bctx, printMedia))
	shot, err = chromedp.Run(bctx, chromedp.FullScreenshot(100))
	fail("print screenshot", err)
	printed := filepath.Join(dir, "report-print.png")
	fail("write print screenshot", os.WriteFile(printed, shot, 0o644))
	pdf, err := chromedp.Run(bctx, func(ctx context.Context, tg *chromedp.Target) ([]byte, error) {
		res, err := cdp.Call(ctx, tg, page.PrintToPDF, page.PrintToPDFParams{})
		return res.Data, err
	})
	fail("print to PDF", err)
	if !bytes.HasPrefix(pdf, []byte("%PDF-")) {
		t.Errorf("printing made %d bytes that are not a PDF", len(pdf))
	}
	pdfPath := filepath.Join(dir, "report.pdf")
	fail("write PDF", os.WriteFile(pdfPath, pdf, 0o644))
	t.Logf("screenshots: %s (screen), %s (print media); printed: %s", screen, printed, pdfPath)
}

// userDataDir is a fresh profile directory. Chromium's child processes may still write to it
// for a moment after the browser exits, so its removal retries rather than fail the test.
func userDataDir(t *testing.T) string {
	dir, err := os.MkdirTemp("", "report-chromium-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		for range 50 {
			if err = os.RemoveAll(dir); err == nil {
				return
			}
			time.Sleep(100 * time.Millisecond)
		}
		t.Logf("removing %s: %v", dir, err)
	})
	return dir
}
