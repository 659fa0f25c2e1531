package admin

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/pulsaga/pulsaga/workflow"
)

// TestDashboardOperators drives the overview, the definitions page, a bulk
// action from the list and its progress page in headless Chromium, and
// checks that the step graph fits a narrow window and that every page's
// URL restores what it showed.
//
// With PULSAGA_SCREENSHOTS=DIR it saves dashboard-overview.png,
// dashboard-bulk.png (a job in progress), dashboard-definition.png and
// dashboard-narrow.png.
func TestDashboardOperators(t *testing.T) {
	h := newHarness(t)
	for i := 1; i <= 6; i++ {
		h.startPaused(fmt.Sprintf("car-%d", i))
	}
	h.startPaused("car-7")
	h.do("POST", "/api/v1/processes/car-7/skip", opSecret, `{"step_id":"repair","output":{}}`)
	h.waitStep("car-7", "approval", workflow.StepWaiting)
	h.do("POST", "/api/v1/processes/car-7/signals", opSecret, `{"name":"approve"}`)
	h.waitStatus("car-7", workflow.StatusCompleted)
	h.startPaused("car-8")
	h.do("POST", "/api/v1/processes/car-8/cancel", opSecret, `{"reason":"customer left"}`)
	h.waitStatus("car-8", workflow.StatusCompensated)
	h.startPaused("car-9")
	h.do("POST", "/api/v1/processes/car-9/terminate", opSecret, `{"reason":"duplicate"}`)
	h.waitStatus("car-9", workflow.StatusTerminated)
	for _, pid := range []string{"bike-1", "bike-2"} {
		h.startPaused(pid)
		h.do("POST", "/api/v1/processes/"+pid+"/skip", opSecret, `{"step_id":"repair","output":{}}`)
		h.waitStep(pid, "approval", workflow.StepWaiting)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	bctx := newBrowser(t, ctx)
	shots := os.Getenv("PULSAGA_SCREENSHOTS")
	shot := func(name string) chromedp.Action[chromedp.Void] {
		return chromedp.Func(func(ctx context.Context, tg *chromedp.Target) error {
			if shots == "" {
				return nil
			}
			png, err := chromedp.FullScreenshot(100)(ctx, tg)
			if err != nil {
				return err
			}
			return os.WriteFile(filepath.Join(shots, name), png, 0o644)
		})
	}
	css := func(sel string) chromedp.CSS { return chromedp.CSS(sel) }
	step := func(name string, actions ...chromedp.Action[chromedp.Void]) {
		t.Helper()
		sctx, scancel := context.WithTimeout(bctx, 30*time.Second)
		defer scancel()
		if err := chromedp.Do(sctx, actions...); err != nil {
			html, _ := chromedp.Run(bctx, chromedp.OuterHTML(css("main")))
			t.Fatalf("%s: %v\npage: %.3000s", name, err, html)
		}
	}
	poll := func(js string) chromedp.Action[chromedp.Void] {
		return chromedp.Poll[chromedp.Void](js, chromedp.WithPollingTimeout(25*time.Second))
	}
	eval := func(js string) string {
		t.Helper()
		v, err := chromedp.Run(bctx, chromedp.Evaluate[string](js))
		if err != nil {
			t.Fatalf("%s: %v", js, err)
		}
		return v
	}
	base := h.http.URL + "/ui/"

	step("the overview",
		chromedp.Navigate(h.http.URL+"/healthz"),
		chromedp.Evaluate[chromedp.Void](fmt.Sprintf(`localStorage.setItem(%q, %q)`, "pulsaga-token", opSecret)),
		chromedp.EmulateViewport(1280, 900),
		chromedp.Navigate(base),
		chromedp.WaitVisible(css(`#status-cards`)),
		poll(`document.querySelector('#status-cards [data-status="all"] .n').textContent === "11"`),
		poll(`document.querySelector('#status-cards [data-status="paused"] .n').textContent === "6"`),
		poll(`document.querySelector('#status-cards [data-status="stuck"] .n').textContent === "6"`),
		poll(`document.querySelector('#status-cards [data-status="running"] .n').textContent === "2"`),
		poll(`document.querySelector('#throughput-totals').textContent.includes("11 started") &&
			document.querySelector('#throughput-totals').textContent.includes("1 completed") &&
			document.querySelector('#throughput-totals').textContent.includes("2 failed")`),
		poll(`[...document.querySelectorAll('#throughput .bucket')].reduce((n, b) => n + +b.dataset.started, 0) === 11`),
		chromedp.WaitVisible(css(`#by-definition tr[data-definition="repair"]`)),
		chromedp.WaitVisible(css(`#error-types tr[data-error-type="NoParts"]`)),
		poll(`document.querySelectorAll('#stuck tr.row').length === 6`),
	)
	step("a shareable overview URL",
		chromedp.SetValue(css(`#o-window`), "15m"),
		chromedp.Evaluate[chromedp.Void](`document.querySelector('#o-window').dispatchEvent(new Event('change', {bubbles: true}))`),
		poll(`location.hash === "#/?window=15m"`),
		chromedp.Reload(),
		poll(`document.querySelector('#o-window') && document.querySelector('#o-window').value === "15m"`),
		poll(`document.querySelectorAll('#stuck tr.row').length === 6 && document.querySelector('#status-cards [data-status="all"] .n').textContent === "11"`),
		shot("dashboard-overview.png"),
	)
	step("from a status card to the list, filtered",
		chromedp.Click(css(`#status-cards [data-status="paused"]`)),
		poll(`location.hash === "#/processes?status=paused"`),
		poll(`document.querySelectorAll("#processes tr.row").length === 6`),
		chromedp.SendKeys(css(`#f-error_type`), "NoParts"),
		poll(`location.hash === "#/processes?status=paused&error_type=NoParts" && document.querySelectorAll("#processes tr.row").length === 6`),
		chromedp.Reload(),
		poll(`document.querySelector('#f-status') && document.querySelector('#f-status').value === "paused" && document.querySelector('#f-error_type').value === "NoParts"`),
		poll(`document.querySelectorAll("#processes tr.row").length === 6`),
	)
	step("a bulk retry of the six, confirmed with the count",
		chromedp.Click(css(`#bulk-open`)),
		chromedp.WaitVisible(css(`#bulk-dialog[open] #bulk-action`)),
		poll(`document.querySelector('#bulk-filter').textContent === "status=paused · error_type=NoParts"`),
		poll(`document.querySelector('#bulk-start').disabled`),
		chromedp.Click(css(`#bulk-count`)),
		poll(`document.querySelector('#bulk-counts') && document.querySelector('#bulk-counts').dataset.applicable === "6"`),
		poll(`document.querySelector('#bulk-start').textContent === "Retry 6 processes" && !document.querySelector('#bulk-start').disabled`),
		chromedp.SendKeys(css(`#bulk-reason`), "parts arrived"),
		chromedp.SetValue(css(`#bulk-rate`), "1"),
		chromedp.Click(css(`#bulk-start`)),
		poll(`location.hash.startsWith("#/bulk/bulk-")`),
		poll(`document.querySelector('#job-counts') && +document.querySelector('#job-counts').dataset.done >= 2 && +document.querySelector('#job-counts').dataset.remaining >= 1`),
		shot("dashboard-bulk.png"),
		poll(`document.querySelector('#job-state [data-state="completed"]') !== null && document.querySelector('#job-counts').dataset.done === "6"`),
		poll(`document.querySelector('#bulk-stop').disabled`),
	)
	jobID := strings.TrimPrefix(eval(`location.hash`), "#/bulk/")
	for i := 1; i <= 6; i++ {
		pid := fmt.Sprintf("car-%d", i)
		h.waitStep(pid, "approval", workflow.StepWaiting)
		if n := h.recordsBy(pid, workflow.EventRetry, jobID); n != 1 {
			t.Errorf("%s: %d retries by %s", pid, n, jobID)
		}
	}
	step("the bulk jobs page",
		chromedp.Click(css(`header [data-nav="bulk"]`)),
		chromedp.WaitVisible(css(`#bulk-jobs tr[data-job="`+jobID+`"] .badge[data-state="completed"]`)),
	)
	step("the definitions page",
		chromedp.Click(css(`header [data-nav="definitions"]`)),
		chromedp.WaitVisible(css(`#definitions tr[data-definition="repair"]`)),
		chromedp.Click(css(`#definitions tr[data-definition="repair"] a`)),
		chromedp.WaitVisible(css(`#graph svg[data-layout="lr"] g.node[data-step="approval"]`)),
		chromedp.WaitVisible(css(`#versions .version.active[data-version="1"]`)),
		chromedp.WaitVisible(css(`#yaml .line[data-line="1"]`)),
		chromedp.Click(css(`#graph g.node[data-step="repair"] rect`)),
		chromedp.WaitVisible(css(`#step-detail[data-step="repair"]`)),
		poll(`location.hash === "#/d/repair?step=repair"`),
		poll(`document.querySelector('#yaml .line.hl').textContent.includes("id: repair") &&
			[...document.querySelectorAll('#yaml .line.hl')].some(l => l.textContent.includes("command: Repair")) &&
			![...document.querySelectorAll('#yaml .line.hl')].some(l => l.textContent.includes("id: polish"))`),
		shot("dashboard-definition.png"),
	)
	// The graph fits any width: rows top to bottom in a narrow window,
	// nothing outside the panel; columns again when it is wide.
	fits := `(() => {
		const box = document.querySelector('#graph .graph-box'), svg = box && box.querySelector('svg');
		if (!svg) return false;
		const b = box.getBoundingClientRect(), s = svg.getBoundingClientRect();
		return s.width <= b.width + 1 && s.width > 0 && [...svg.querySelectorAll('g.node')].every(g => {
			const r = g.getBoundingClientRect();
			return r.left >= b.left - 1 && r.right <= b.right + 1;
		}) && document.documentElement.scrollWidth <= window.innerWidth + 1;
	})()`
	step("a narrow window",
		chromedp.EmulateViewport(400, 900),
		poll(`document.querySelector('#graph svg[data-layout="tb"]') !== null`),
		poll(fits),
		shot("dashboard-narrow.png"),
		chromedp.Navigate(base+"#/p/car-1"),
		poll(`document.querySelector('#graph svg[data-layout="tb"] g.node[data-step="repair"][data-status="completed"]') !== null`),
		poll(fits),
		chromedp.EmulateViewport(1280, 900),
		poll(`document.querySelector('#graph svg[data-layout="lr"]') !== null`),
		poll(fits),
	)
}
