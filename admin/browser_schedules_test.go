package admin

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/chromedp/cdproto/page"
	"github.com/chromedp/chromedp"

	"github.com/pulsaga/pulsaga/schedule"
)

// newBrowser starts a headless Chromium for a dashboard test; confirm()
// dialogs are accepted. It lives until ctx ends.
func newBrowser(t *testing.T, ctx context.Context) context.Context {
	t.Helper()
	bin := chromium(t)
	opts := []chromedp.ExecAllocatorOption{
		chromedp.ExecPath(bin), chromedp.UserDataDir(t.TempDir()), chromedp.WindowSize(1280, 860),
		chromedp.Flag("headless", true), chromedp.Flag("no-sandbox", true), chromedp.Flag("disable-gpu", true),
		chromedp.Flag("disable-quic", true), chromedp.Flag("no-first-run", true), chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true), chromedp.Flag("disable-sync", true),
	}
	actx, acancel := chromedp.NewExecAllocator(ctx, opts...)
	t.Cleanup(acancel)
	bctx, bcancel := chromedp.NewContext(actx)
	t.Cleanup(bcancel)
	if err := chromedp.Listen(bctx, func(ev any) {
		if _, ok := ev.(*page.EventJavascriptDialogOpening); ok {
			go func() {
				_, _ = chromedp.Call(bctx, page.HandleJavaScriptDialog, page.HandleJavaScriptDialogParams{Accept: true})
			}()
		}
	}); err != nil {
		t.Fatalf("start chromium: %v", err)
	}
	return bctx
}

// TestDashboardSchedules creates a schedule from the dashboard's form,
// pauses, resumes and deletes it from its row.
//
// With PULSAGA_SCREENSHOTS=DIR it saves the page as dashboard-schedules.png.
func TestDashboardSchedules(t *testing.T) {
	h := newHarness(t)
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	bctx := newBrowser(t, ctx)
	sctx, stopSched := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() {
		done <- schedule.NewScheduler(h.bus, schedule.Options{Topics: h.topics, Registry: h.stack.Registry}, testLogger(t)).Run(sctx)
	}()
	defer func() { stopSched(); <-done }()

	css := func(sel string) chromedp.CSS { return chromedp.CSS(sel) }
	step := func(name string, actions ...chromedp.Action[chromedp.Void]) {
		t.Helper()
		sctx, scancel := context.WithTimeout(bctx, 25*time.Second)
		defer scancel()
		if err := chromedp.Do(sctx, actions...); err != nil {
			html, _ := chromedp.Run(bctx, chromedp.OuterHTML(css("main")))
			t.Fatalf("%s: %v\npage: %.3000s", name, err, html)
		}
	}
	row := `#schedules tr[data-schedule="nightly"]`
	step("open the schedules page",
		chromedp.Navigate(h.http.URL+"/healthz"),
		chromedp.Evaluate[chromedp.Void](fmt.Sprintf(`localStorage.setItem(%q, %q)`, "pulsaga-token", opSecret)),
		chromedp.Navigate(h.http.URL+"/ui/#/schedules"),
		chromedp.WaitReady(css(`#schedule-form select[name="definition"] option`)),
	)
	step("create a schedule",
		chromedp.SendKeys(css(`#schedule-form [name="name"]`), "nightly"),
		chromedp.SendKeys(css(`#schedule-form [name="cron"]`), "0 2 * * *"),
		chromedp.SendKeys(css(`#schedule-form [name="timezone"]`), "Europe/Paris"),
		chromedp.SendKeys(css(`#schedule-form [name="input"]`), `{"ticket": "${{ schedule.time }}"}`),
		chromedp.Click(css(`#schedule-create`)),
		chromedp.WaitVisible(css(row+` .badge[data-status="active"]`)),
		chromedp.WaitVisible(css(`#triggers`)),
	)
	if shots := os.Getenv("PULSAGA_SCREENSHOTS"); shots != "" {
		png, err := chromedp.Run(bctx, chromedp.FullScreenshot(100))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(shots, "dashboard-schedules.png"), png, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	rec := h.record(t, "nightly")
	if rec.Spec.Cron != "0 2 * * *" || rec.Spec.Timezone != "Europe/Paris" || string(rec.Spec.Input) != `{"ticket":"${{ schedule.time }}"}` {
		t.Fatalf("created %+v", rec.Spec)
	}
	step("pause it", chromedp.Click(css(row+` button.pause`)), chromedp.WaitVisible(css(row+` .badge[data-status="paused"]`)))
	if !h.record(t, "nightly").Spec.Paused {
		t.Fatal("not paused")
	}
	step("resume it", chromedp.Click(css(row+` button.resume`)), chromedp.WaitVisible(css(row+` .badge[data-status="active"]`)))
	step("delete it", chromedp.Click(css(row+` button.delete`)),
		chromedp.Poll[chromedp.Void](`document.querySelector('`+row+`') === null`, chromedp.WithPollingTimeout(10*time.Second)))
	if r := h.record(t, "nightly"); r != nil {
		t.Fatalf("still there: %+v", r)
	}
}

// record reads a schedule from the table (nil: none).
func (h *harness) record(t *testing.T, name string) *schedule.Record {
	t.Helper()
	tb := schedule.NewTable(h.bus)
	defer tb.Close()
	if err := tb.Refresh(context.Background()); err != nil {
		t.Fatal(err)
	}
	r, _ := tb.Get(name)
	return r
}
