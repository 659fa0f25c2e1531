// Package threaddump reads a JVM thread dump (jcmd <pid> Thread.print -l,
// jstack -l, or the SIGQUIT print) and summarises what a wedged Pulsar
// broker's dump needs to show in a few lines: the JVM's own deadlock report,
// and the broker threads that serve the binary protocol and the metadata
// store when they are blocked or waiting on something other than new work,
// with their top frames, the lock they wait on and who holds it, and the
// netty event loops that run outside their epoll wait.
//
// It only reads the text: the dump is taken by scripts/pulsar/pulsar.sh
// threads (internal/pulsartest calls it when a test finds the broker deaf).
package threaddump

import (
	"bufio"
	"fmt"
	"os"
	"regexp"
	"strings"
)

// Thread is one thread of a dump.
type Thread struct {
	Name string
	// State is java.lang.Thread.State's line: "BLOCKED (on object monitor)",
	// "WAITING (parking)", "RUNNABLE"...
	State string
	// Frames are the "at ..." lines, top first, without the "at " and the
	// module ("java.base@17.0.15/").
	Frames []string
	// WaitsOn is the lock line of the top frame: "waiting to lock <0x…> (a
	// java.lang.Object)", "parking to wait for <0x…> (a …)", "waiting on
	// <0x…> (a …)"; empty when none.
	WaitsOn string
	// Holds are the addresses of the monitors ("- locked <0x…>") and ownable
	// synchronizers it holds.
	Holds []string
}

// Dump is a parsed thread dump.
type Dump struct {
	Threads []Thread
	// Deadlock is the JVM's "Found one Java-level deadlock" report: one
	// entry per thread of a cycle, "\"name\": waiting to lock … which is
	// held by \"other\"" (several cycles follow each other).
	Deadlock []string
}

var (
	threadHead = regexp.MustCompile(`^"((?:[^"\\]|\\.)*)"`)
	addrRe     = regexp.MustCompile(`<(0x[0-9a-f]+)>`)
	moduleRe   = regexp.MustCompile(`\((?:[\w.\-]+@[\w.\-]+/)`)
	spacesRe   = regexp.MustCompile(`\s+`)
	heldByRe   = regexp.MustCompile(`which is held by "((?:[^"\\]|\\.)*)"`)
)

// Parse reads a thread dump's text.
func Parse(text string) Dump {
	var d Dump
	var cur *Thread
	inDeadlock, inOwnable := false, false
	var entry strings.Builder
	flushEntry := func() {
		if entry.Len() > 0 {
			d.Deadlock = append(d.Deadlock, spacesRe.ReplaceAllString(strings.TrimSpace(entry.String()), " "))
			entry.Reset()
		}
	}
	sc := bufio.NewScanner(strings.NewReader(text))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		trimmed := strings.TrimSpace(line)
		switch {
		case strings.HasPrefix(trimmed, "Found one Java-level deadlock"):
			inDeadlock, cur = true, nil
			continue
		case inDeadlock:
			switch {
			case strings.HasPrefix(trimmed, "Java stack information for the threads listed above"):
				flushEntry()
				inDeadlock = false
			case strings.HasPrefix(trimmed, "====="):
			case trimmed == "":
				flushEntry()
			default:
				entry.WriteString(trimmed + " ")
			}
			continue
		}
		if m := threadHead.FindStringSubmatch(line); m != nil {
			if strings.HasSuffix(trimmed, `":`) {
				// The deadlock report's own copy of a stack: already seen.
				cur = nil
				continue
			}
			d.Threads = append(d.Threads, Thread{Name: m[1]})
			cur, inOwnable = &d.Threads[len(d.Threads)-1], false
			continue
		}
		if cur == nil {
			continue
		}
		switch {
		case strings.HasPrefix(trimmed, "java.lang.Thread.State:"):
			cur.State = strings.TrimSpace(strings.TrimPrefix(trimmed, "java.lang.Thread.State:"))
		case strings.HasPrefix(trimmed, "at "):
			cur.Frames = append(cur.Frames, moduleRe.ReplaceAllString(strings.TrimPrefix(trimmed, "at "), "("))
		case strings.HasPrefix(trimmed, "- locked "):
			if a := addrRe.FindStringSubmatch(trimmed); a != nil {
				cur.Holds = append(cur.Holds, a[1])
			}
		case strings.HasPrefix(trimmed, "- waiting to lock"), strings.HasPrefix(trimmed, "- parking to wait for"),
			strings.HasPrefix(trimmed, "- waiting on"), strings.HasPrefix(trimmed, "- waiting to re-lock"):
			if cur.WaitsOn == "" && len(cur.Frames) <= 1 {
				cur.WaitsOn = spacesRe.ReplaceAllString(strings.TrimPrefix(trimmed, "- "), " ")
			}
		case strings.HasPrefix(trimmed, "Locked ownable synchronizers:"):
			inOwnable = true
		case inOwnable && strings.HasPrefix(trimmed, "- <"):
			if a := addrRe.FindStringSubmatch(trimmed); a != nil {
				cur.Holds = append(cur.Holds, a[1])
			}
		}
	}
	flushEntry()
	return d
}

// Watched says whether a thread is one whose blocking stops the broker's
// binary protocol or its metadata: the netty IO and acceptor threads, the
// metadata store's, the ordered executors topics run on, the bookie client.
func Watched(name string) bool {
	for _, p := range []string{"pulsar-io-", "pulsar-acceptor-", "metadata-store-", "pulsar-ordered-",
		"broker-topic-workers-", "BookKeeperClientWorker-", "bookie-io-"} {
		if strings.HasPrefix(name, p) {
			return true
		}
	}
	return false
}

// idleMarks are frames of a thread that waits for new work, not on a lock.
var idleMarks = []string{
	"ThreadPoolExecutor.getTask(", "takeTask(", "epollWait", "EPoll.wait(", "SelectorImpl.select(",
	"Queue.take(", "Queue.poll(", "ServerSocket.accept(", ".accept0(",
}

// Stuck says whether a thread is blocked on a monitor, or waiting or
// sleeping somewhere that is not an idle pool's "wait for the next task".
func (t Thread) Stuck() bool {
	switch {
	case strings.HasPrefix(t.State, "BLOCKED"):
		return true
	case strings.HasPrefix(t.State, "WAITING"), strings.HasPrefix(t.State, "TIMED_WAITING"):
		return !t.idle()
	}
	return false
}

func (t Thread) idle() bool {
	for _, f := range t.Frames {
		for _, m := range idleMarks {
			if strings.Contains(f, m) {
				return true
			}
		}
	}
	return false
}

// Busy says whether a netty event loop thread (pulsar-io, pulsar-acceptor)
// runs outside its epoll wait: one dump cannot tell a long task from a
// spinning one, but on a deaf broker either holds its connections up.
func (t Thread) Busy() bool {
	return (strings.HasPrefix(t.Name, "pulsar-io-") || strings.HasPrefix(t.Name, "pulsar-acceptor-")) &&
		t.State == "RUNNABLE" && !t.idle()
}

// TopFrames are the first n frames outside the JDK's own packages (the
// park/lock/future plumbing), or the top frames when there are none.
func (t Thread) TopFrames(n int) []string {
	if n <= 0 {
		return nil
	}
	var out []string
	for _, f := range t.Frames {
		if strings.HasPrefix(f, "java.") || strings.HasPrefix(f, "jdk.") || strings.HasPrefix(f, "sun.") ||
			strings.Contains(f, "$$Lambda") {
			continue
		}
		if out = append(out, f); len(out) == n {
			return out
		}
	}
	if len(out) == 0 && len(t.Frames) > 0 {
		return t.Frames[:min(n, len(t.Frames))]
	}
	return out
}

// holders maps a lock address to the thread holding it.
func (d Dump) holders() map[string]string {
	h := map[string]string{}
	for _, t := range d.Threads {
		for _, a := range t.Holds {
			h[a] = t.Name
		}
	}
	return h
}

// Summarize writes at most maxLines lines (at least 3): a count line, the
// JVM's deadlock report, then the stuck watched threads (every thread of a
// deadlock first), each with its state, lock, lock holder and top frames.
func Summarize(d Dump, maxLines int) string {
	maxLines = max(maxLines, 3)
	var stuck, watched []Thread
	inCycle := map[string]bool{}
	for _, e := range d.Deadlock {
		if m := threadHead.FindStringSubmatch(e); m != nil {
			inCycle[m[1]] = true
		}
	}
	var busy []Thread
	ioTotal, ioStuck := 0, 0
	for _, t := range d.Threads {
		if strings.HasPrefix(t.Name, "pulsar-io-") {
			ioTotal++
			if t.Stuck() {
				ioStuck++
			}
		}
		switch {
		case inCycle[t.Name]:
			stuck = append(stuck, t)
		case Watched(t.Name) && t.Stuck():
			watched = append(watched, t)
		case t.Busy():
			busy = append(busy, t)
		}
	}
	cycleLen := len(stuck)
	stuck = append(append(stuck, watched...), busy...)
	dl := "no Java-level deadlock"
	if len(d.Deadlock) > 0 {
		dl = fmt.Sprintf("Java-level DEADLOCK of %d threads", len(d.Deadlock))
	}
	lines := []string{fmt.Sprintf("%d threads; %s; pulsar-io threads stuck: %d of %d; stuck broker threads: %d; busy event loops: %d",
		len(d.Threads), dl, ioStuck, ioTotal, len(stuck)-len(busy), len(busy))}
	room := func() int { return maxLines - len(lines) }
	if len(d.Deadlock) > 0 {
		// One line: who waits for whom (each thread's line below says on what).
		var cycle []string
		for _, e := range d.Deadlock {
			who := threadHead.FindStringSubmatch(e)
			by := heldByRe.FindStringSubmatch(e)
			if who != nil && by != nil {
				cycle = append(cycle, fmt.Sprintf("%q waits for %q", who[1], by[1]))
			}
		}
		lines = append(lines, "Found one Java-level deadlock: "+strings.Join(cycle, ", "))
	}
	holder := d.holders()
	for i, t := range stuck {
		avail := room()
		if left := len(stuck) - i; left > 1 {
			avail-- // a line for "… N more"
		}
		if avail < 1 {
			if room() > 0 {
				lines = append(lines, fmt.Sprintf("… %d more stuck broker threads (see the dump)", len(stuck)-i))
			}
			break
		}
		head := fmt.Sprintf("%q %s", t.Name, t.State)
		frames := t.TopFrames(min(2, avail-1-max(cycleLen-i-1, 0)))
		if t.Busy() {
			// What it runs, JDK frames included.
			head += " outside epoll (busy)"
			frames = t.Frames[:min(len(t.Frames), max(min(2, avail-1), 0))]
		}
		if t.WaitsOn != "" {
			head += ": " + t.WaitsOn
			if a := addrRe.FindStringSubmatch(t.WaitsOn); a != nil && holder[a[1]] != "" && holder[a[1]] != t.Name {
				head += fmt.Sprintf(" held by %q", holder[a[1]])
			}
		}
		lines = append(lines, head)
		// Frames only where the heads of the rest of a deadlock still fit.
		for _, f := range frames {
			lines = append(lines, "    at "+f)
		}
	}
	return strings.Join(lines, "\n")
}

// MaxLines is the summary's length in test output and in make test's last
// lines.
const MaxLines = 15

// SummarizeFile summarises the dump in path and writes the summary to
// path+".summary" (once: a summary already there is returned as it is).
func SummarizeFile(path string) (string, error) {
	if b, err := os.ReadFile(path + ".summary"); err == nil && len(b) > 0 {
		return strings.TrimRight(string(b), "\n"), nil
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return "", err
	}
	s := Summarize(Parse(string(b)), MaxLines)
	tmp := fmt.Sprintf("%s.summary.%d", path, os.Getpid())
	if err := os.WriteFile(tmp, []byte(s+"\n"), 0o644); err != nil {
		return s, err
	}
	return s, os.Rename(tmp, path+".summary")
}
