package admin

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/cdproto/page"
	"github.com/chromedp/chromedp"

	"github.com/pulsaga/pulsaga/bus"
	"github.com/pulsaga/pulsaga/workflow"
)

// chromium finds Debian's chromium (or another Chrome) for the browser
// test; `make test` installs it when missing.
func chromium(t *testing.T) string {
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome", "google-chrome-stable"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	if testing.Short() {
		t.Skip("no chromium; the dashboard test runs without -short")
	}
	t.Fatal("no chromium on PATH: apt-get install -y chromium (make test installs it)")
	return ""
}

// TestDashboard drives the dashboard in headless Chromium against a live
// engine: it finds a paused saga in the list, opens it, retries the failed
// step, approves the wait step and watches the saga complete; then it
// replays a dead letter from the dead-letter page.
//
// With PULSAGA_SCREENSHOTS=DIR it saves the list and process pages as PNG.
func TestDashboard(t *testing.T) {
	bin := chromium(t)
	h := newHarness(t)
	// Some history for the list: one finished, one compensated, one paused.
	h.startPaused("car-5")
	if code, body, _ := h.do("POST", "/api/v1/processes/car-5/skip", opSecret, `{"step_id":"repair","output":{"by":"hand"}}`); code != 202 {
		t.Fatalf("skip: %d %s", code, body)
	}
	h.waitStep("car-5", "approval", workflow.StepWaiting)
	h.do("POST", "/api/v1/processes/car-5/signals", opSecret, `{"name":"approve"}`)
	h.waitStatus("car-5", workflow.StatusCompleted)
	h.startPaused("car-6")
	h.do("POST", "/api/v1/processes/car-6/cancel", opSecret, `{"reason":"customer left"}`)
	h.waitStatus("car-6", workflow.StatusCompensated)
	h.startPaused("car-7")

	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	opts := []chromedp.ExecAllocatorOption{
		chromedp.ExecPath(bin), chromedp.UserDataDir(t.TempDir()), chromedp.WindowSize(1280, 860),
		chromedp.Flag("headless", true), chromedp.Flag("no-sandbox", true), chromedp.Flag("disable-gpu", true),
		chromedp.Flag("disable-quic", true), chromedp.Flag("no-first-run", true), chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true), chromedp.Flag("disable-sync", true),
	}
	actx, acancel := chromedp.NewExecAllocator(ctx, opts...)
	defer acancel()
	bctx, bcancel := chromedp.NewContext(actx)
	defer bcancel()
	// Accept the dead-letter page's confirm() dialogs.
	if err := chromedp.Listen(bctx, func(ev any) {
		if _, ok := ev.(*page.EventJavascriptDialogOpening); ok {
			go func() {
				_, _ = chromedp.Call(bctx, page.HandleJavaScriptDialog, page.HandleJavaScriptDialogParams{Accept: true})
			}()
		}
	}); err != nil {
		t.Fatalf("start chromium: %v", err)
	}
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
		sctx, scancel := context.WithTimeout(bctx, 25*time.Second)
		defer scancel()
		if err := chromedp.Do(sctx, actions...); err != nil {
			html, _ := chromedp.Run(bctx, chromedp.OuterHTML(css("main")))
			t.Fatalf("%s: %v\npage: %.3000s", name, err, html)
		}
	}
	base := h.http.URL + "/ui/"

	step("a read-only token sees the actions disabled",
		chromedp.Navigate(h.http.URL+"/healthz"),
		chromedp.Evaluate[chromedp.Void](fmt.Sprintf(`localStorage.setItem(%q, %q)`, "pulsaga-token", readSecret)),
		chromedp.Navigate(base+"#/p/car-7"),
		chromedp.WaitVisible(css(`#graph g.node[data-step="repair"][data-status="failed"]`)),
		chromedp.Poll[chromedp.Void](`document.body.dataset.role === "read" && ["retry", "skip", "cancel", "terminate"].every(a =>
			document.querySelector('button[data-action="' + a + '"]').disabled &&
			document.querySelector('button[data-action="' + a + '"]').title.includes("read-only"))`, chromedp.WithPollingTimeout(10*time.Second)),
	)
	step("open the list with a token",
		// The token goes to the origin's local storage first, so the
		// dashboard does not start by asking for one.
		chromedp.Navigate(h.http.URL+"/healthz"),
		chromedp.Evaluate[chromedp.Void](fmt.Sprintf(`localStorage.setItem(%q, %q)`, "pulsaga-token", opSecret)),
		chromedp.Navigate(base+"#/processes"),
		chromedp.WaitVisible(css(`#processes tr[data-id="car-7"] .badge[data-status="paused"]`)),
		chromedp.WaitVisible(css(`#processes tr[data-id="car-5"] .badge[data-status="completed"]`)),
		chromedp.WaitVisible(css(`#processes tr[data-id="car-6"] .badge[data-status="compensated"]`)),
		chromedp.WaitVisible(css(`#who`)),
		shot("dashboard-list.png"),
	)
	step("filter the stuck ones",
		chromedp.Click(css(`#f-stuck`)),
		chromedp.Poll[chromedp.Void](`document.querySelectorAll("#processes tr.row").length === 1 && document.querySelector('#processes tr.row').dataset.id === "car-7"`, chromedp.WithPollingTimeout(10*time.Second)),
		chromedp.Click(css(`#f-stuck`)),
		chromedp.SendKeys(css(`#f-q`), "car-6"),
		chromedp.Poll[chromedp.Void](`document.querySelectorAll("#processes tr.row").length === 1 && document.querySelector('#processes tr.row').dataset.id === "car-6"`, chromedp.WithPollingTimeout(10*time.Second)),
	)
	step("go to the paused saga by id",
		chromedp.SendKeys(css(`#search-id`), "car-7\n"),
		chromedp.WaitVisible(css(`#graph g.node[data-step="repair"][data-status="failed"]`)),
		chromedp.WaitVisible(css(`#graph g.node[data-step="polish"][data-status="completed"]`)),
		chromedp.WaitVisible(css(`#timeline .tl-row[data-step="repair"] .bar[data-outcome="failed"]`)),
		chromedp.WaitVisible(css(`#events tr[data-kind="start"]`)),
		shot("dashboard-process-paused.png"),
	)
	disabled, err := chromedp.Run(bctx, chromedp.Evaluate[bool](`document.querySelector('button[data-action="signal"]').disabled && !document.querySelector('button[data-action="cancel"]').disabled`))
	if err != nil {
		t.Fatal(err)
	}
	if !disabled {
		t.Error("a paused saga without a waiting step offers signal, or no cancel")
	}
	step("retry with a confirmation",
		chromedp.Click(css(`button[data-action="retry"]`)),
		chromedp.WaitVisible(css(`#confirm[open] #confirm-reason`)),
		chromedp.SetValue(css(`#confirm-step`), "repair"),
		chromedp.SendKeys(css(`#confirm-reason`), "part arrived"),
		chromedp.Click(css(`#confirm-ok`)),
		chromedp.WaitNotPresent(css(`#confirm[open]`)),
		chromedp.WaitVisible(css(`#graph g.node[data-step="approval"][data-status="waiting"]`)),
		chromedp.WaitVisible(css(`#timeline .tl-row[data-step="repair"] .bar[data-outcome="completed"]`)),
	)
	step("approve it and watch it complete",
		chromedp.Click(css(`button[data-action="signal"]`)),
		chromedp.WaitVisible(css(`#confirm[open] #confirm-signal`)),
		chromedp.SendKeys(css(`#confirm-signal`), "approve"),
		chromedp.Click(css(`#confirm-ok`)),
		chromedp.WaitVisible(css(`#status .badge[data-status="completed"]`)),
		chromedp.WaitVisible(css(`#graph g.node[data-step="deliver"][data-status="completed"]`)),
		shot("dashboard-process.png"),
	)
	retryText, err := chromedp.Run(bctx, chromedp.Text(css(`#events tr[data-kind="retry"]`)))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(retryText, "by alice — part arrived") {
		t.Errorf("retry record %q", retryText)
	}
	if got := strings.Join(h.garage.ran("car-7"), ","); strings.Count(got, "Repair") != 2 || !strings.HasSuffix(got, "Deliver") {
		t.Errorf("commands run for car-7: %s", got)
	}

	// A dead-lettered start, replayed from the dead-letter page.
	start, err := bus.NewEnvelope("start", "start:car-8", "car-8", time.Now(), map[string]any{"process_id": "car-8", "definition": "repair", "input": map[string]string{}})
	if err != nil {
		t.Fatal(err)
	}
	payload, _ := start.Encode()
	dp, err := h.bus.Producer(ctx, bus.ProducerOptions{Topic: "events-orchestrator-DLQ"})
	if err != nil {
		t.Fatal(err)
	}
	defer dp.Close()
	if _, err := dp.Send(ctx, &bus.OutMessage{Key: "car-8", Payload: payload, Properties: map[string]string{
		bus.PropDLQReason: "cannot start car-8: unknown definition", bus.PropDLQOriginTopic: h.topics.Events,
	}}); err != nil {
		t.Fatal(err)
	}
	// And garbage after it, purged from the same page.
	if _, err := dp.Send(ctx, &bus.OutMessage{Key: "junk", Payload: []byte("not json"), Properties: map[string]string{
		bus.PropDLQReason: "undecodable", bus.PropDLQOriginTopic: h.topics.Events,
	}}); err != nil {
		t.Fatal(err)
	}
	step("replay a dead letter",
		chromedp.Navigate(base+"#/dlq"),
		chromedp.Click(css(`#dlq-topics tr[data-topic="events-orchestrator-DLQ"]`)),
		chromedp.WaitVisible(css(`#dlq-messages tbody tr:nth-child(2) button.purge`)),
		shot("dashboard-dlq.png"),
		chromedp.Click(css(`#dlq-messages tbody tr:first-child button.replay`)),
		chromedp.WaitNotPresent(css(`#dlq-messages tbody tr:nth-child(2)`)),
	)
	h.waitStatus("car-8", workflow.StatusPaused)
	step("purge a dead letter",
		chromedp.Click(css(`#dlq-messages tbody tr:first-child button.purge`)),
		chromedp.WaitNotPresent(css(`#dlq-messages button.purge`)),
	)
	if _, n, err := h.bus.(bus.Backlogs).Backlog(ctx, "events-orchestrator-DLQ", DLQSubscription, 0); err != nil || n != 0 {
		t.Errorf("dead letters left after replay and purge: %d, %v", n, err)
	}
}
