package pulsartest

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// failedT stands in for a failed test in diagnoseFailure.
type failedT struct{ logs []string }

func (*failedT) Failed() bool   { return true }
func (f *failedT) Log(a ...any) { f.logs = append(f.logs, fmt.Sprint(a...)) }

func resetWedge() {
	wedge.Lock()
	defer wedge.Unlock()
	wedge.probedAt, wedge.deaf, wedge.probe, wedge.dump, wedge.summary, wedge.told = time.Time{}, false, "", "", "", false
}

// fakeBroker listens on loopback; answer says whether it answers a
// CONNECT with a CONNECTED frame or, like a broker whose IO threads are
// stuck, accepts the connection and stays silent.
func fakeBroker(t *testing.T, answer bool) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				buf := make([]byte, 21)
				if _, err := io.ReadFull(c, buf); err != nil || !answer {
					time.Sleep(10 * time.Second)
					return
				}
				// CONNECTED: sizes, then BaseCommand{type: CONNECTED}.
				_, _ = c.Write([]byte{0, 0, 0, 6, 0, 0, 0, 2, 0x08, 0x03})
			}()
		}
	}()
	return "pulsar://" + ln.Addr().String()
}

func TestWedgedBrokerGetsOneThreadDump(t *testing.T) {
	t.Setenv("PULSAGA_PULSAR_PROBE_TIMEOUT", "1")
	resetWedge()
	t.Cleanup(resetWedge)
	// The "broker": a JVM whose threads named like Pulsar's deadlock
	// (threaddump/testdata/Demo.java; java runs a source file itself).
	home := t.TempDir()
	if err := os.MkdirAll(filepath.Join(home, "logs"), 0o755); err != nil {
		t.Fatal(err)
	}
	jvm := exec.Command("java", "-Xmx64m", filepath.Join("threaddump", "testdata", "Demo.java"))
	out, err := jvm.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := jvm.Start(); err != nil {
		t.Fatalf("java (a JDK 17+, as the broker needs): %v", err)
	}
	t.Cleanup(func() { _ = jvm.Process.Kill(); _ = jvm.Wait() })
	if line, err := bufio.NewReader(out).ReadString('\n'); err != nil || line != "deadlocked\n" {
		t.Fatalf("Demo.java printed %q, %v", line, err)
	}
	if err := os.WriteFile(filepath.Join(home, "pid"), []byte(strconv.Itoa(jvm.Process.Pid)), 0o644); err != nil {
		t.Fatal(err)
	}
	b := &Broker{ServiceURL: fakeBroker(t, false), AdminURL: "http://127.0.0.1:1", Origin: "script", Home: home}

	ft := &failedT{}
	diagnoseFailure(ft, b)
	if len(ft.logs) != 1 {
		t.Fatalf("logs = %q, want one note", ft.logs)
	}
	note := ft.logs[0]
	for _, want := range []string{
		"binary port: NO ANSWER within 1s",
		"Java-level DEADLOCK of 2 threads",
		`"pulsar-io-4-1" waits for "metadata-store-10-1"`,
		`"pulsar-io-4-2" BLOCKED (on object monitor): waiting to lock <`,
		"at Demo.lookupTopic(Demo.java:",
	} {
		if !strings.Contains(note, want) {
			t.Errorf("note lacks %q:\n%s", want, note)
		}
	}
	if n := strings.Count(note, "\n"); n > 16 {
		t.Errorf("note has %d lines:\n%s", n+1, note)
	}
	dumps, _ := filepath.Glob(filepath.Join(home, "logs", "threads-*.txt"))
	if len(dumps) != 1 || !strings.Contains(note, "thread dump: "+dumps[0]) {
		t.Fatalf("dumps %v; note:\n%s", dumps, note)
	}
	if _, err := os.Stat(dumps[0] + ".summary"); err != nil {
		t.Errorf("no summary next to the dump (pulsar.sh health prints it): %v", err)
	}

	// Another failed test of this process: one line, no new probe or dump.
	ft2 := &failedT{}
	diagnoseFailure(ft2, b)
	if len(ft2.logs) != 1 || strings.Contains(ft2.logs[0], "\n") || !strings.Contains(ft2.logs[0], dumps[0]) {
		t.Errorf("second note = %q, want one line naming %s", ft2.logs, dumps[0])
	}
	// Another test process: the broker process already has its dump.
	resetWedge()
	diagnoseFailure(&failedT{}, b)
	if again, _ := filepath.Glob(filepath.Join(home, "logs", "threads-*.txt")); len(again) != 1 {
		t.Errorf("dumps after a second process: %v, want one per broker process", again)
	}

	// A later broker process with the same pid (pids are reused): its
	// pid file is newer than the marker, so it gets a dump of its own.
	past := time.Now().Add(-time.Hour)
	marker := filepath.Join(home, "logs", "threads-pid"+strconv.Itoa(jvm.Process.Pid)+".last")
	if err := os.Chtimes(marker, past, past); err != nil {
		t.Fatal(err)
	}
	time.Sleep(1100 * time.Millisecond) // dump names have a second's resolution
	if _, err := pulsarScript(t.Context(), home, b.ServiceURL, b.AdminURL, "threads"); err != nil {
		t.Fatal(err)
	}
	if again, _ := filepath.Glob(filepath.Join(home, "logs", "threads-*.txt")); len(again) != 2 {
		t.Errorf("dumps after the pid file got newer than the marker: %v, want 2", again)
	}
	// Back to the first dump for the health check below.
	if err := os.WriteFile(marker, []byte(dumps[0]+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}

	// make test's last lines.
	h, err := pulsarScript(t.Context(), home, b.ServiceURL, b.AdminURL, "health")
	if err != nil {
		t.Fatal(err)
	}
	if first, _, _ := strings.Cut(h, "\n"); !strings.Contains(first, "binary handshake: NO ANSWER") || !strings.Contains(first, "thread dump: "+dumps[0]) ||
		!strings.Contains(h, "Java-level DEADLOCK") {
		t.Errorf("health:\n%s", h)
	}
}

func TestAnsweringBrokerIsNotDumped(t *testing.T) {
	resetWedge()
	t.Cleanup(resetWedge)
	home := t.TempDir()
	// The pid of a live process that is not a JVM: a dump would fail loudly.
	if err := os.WriteFile(filepath.Join(home, "pid"), []byte(strconv.Itoa(os.Getpid())), 0o644); err != nil {
		t.Fatal(err)
	}
	b := &Broker{ServiceURL: fakeBroker(t, true), AdminURL: "http://127.0.0.1:1", Origin: "script", Home: home}
	ft := &failedT{}
	diagnoseFailure(ft, b)
	if len(ft.logs) != 0 {
		t.Errorf("logs = %q, want none: the broker answers", ft.logs)
	}
	if wedge.probe == "" || !strings.HasPrefix(wedge.probe, "answered CONNECTED") {
		t.Errorf("probe = %q", wedge.probe)
	}
	if dumps, _ := filepath.Glob(filepath.Join(home, "logs", "threads-*")); len(dumps) != 0 {
		t.Errorf("dumps %v of an answering broker", dumps)
	}
}
