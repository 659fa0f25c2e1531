package threaddump

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// The deadlock dumps are real jcmd / jstack output of testdata/Demo.java.txt
// (threads named like a broker's, in the shapes of apache/pulsar#18988);
// jcmd-busy.txt is testdata/Busy.java's (an IO thread that spins); the
// healthy one is jcmd Thread.print -l of a Pulsar 4.0.7 standalone started
// by scripts/pulsar/pulsar.sh, under test load.
func read(t *testing.T, name string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestParse(t *testing.T) {
	d := Parse(read(t, "jcmd-deadlock.txt"))
	if len(d.Threads) != 24 {
		t.Errorf("threads = %d, want 24 (the deadlock report's copies are not threads)", len(d.Threads))
	}
	want := []string{
		`"pulsar-io-4-1": waiting for ownable synchronizer 0x000000069ec19a40, (a java.util.concurrent.locks.ReentrantLock$NonfairSync), which is held by "metadata-store-10-1"`,
		`"metadata-store-10-1": waiting to lock monitor 0x00007fc4c00015a0 (object 0x000000069ec198d8, a java.lang.Object), which is held by "pulsar-io-4-1"`,
	}
	if strings.Join(d.Deadlock, "\n") != strings.Join(want, "\n") {
		t.Errorf("deadlock report:\n%s\nwant:\n%s", strings.Join(d.Deadlock, "\n"), strings.Join(want, "\n"))
	}
	byName := map[string]Thread{}
	for _, th := range d.Threads {
		byName[th.Name] = th
	}
	io2 := byName["pulsar-io-4-2"]
	if io2.State != "BLOCKED (on object monitor)" || io2.WaitsOn != "waiting to lock <0x000000069ec198d8> (a java.lang.Object)" ||
		len(io2.Frames) == 0 || io2.Frames[0] != "Demo.lookupTopic(Demo.java:20)" {
		t.Errorf("pulsar-io-4-2 = %+v", io2)
	}
	if ms := byName["metadata-store-10-1"]; len(ms.Holds) != 1 || ms.Holds[0] != "0x000000069ec19a40" {
		t.Errorf("metadata-store-10-1 holds %v, want its ReentrantLock (an ownable synchronizer)", ms.Holds)
	}
	if f := byName["pulsar-io-4-3"].Frames; len(f) == 0 || strings.Contains(f[0], "java.base@") {
		t.Errorf("frames keep the module: %v", f)
	}
}

func TestSummarize(t *testing.T) {
	deadlock := []string{
		`24 threads; Java-level DEADLOCK of 2 threads; pulsar-io threads stuck: 4 of 4; stuck broker threads: 5; busy event loops: 0`,
		`Found one Java-level deadlock: "pulsar-io-4-1" waits for "metadata-store-10-1", "metadata-store-10-1" waits for "pulsar-io-4-1"`,
		`"pulsar-io-4-1" WAITING (parking): parking to wait for <0x000000069ec19a40> (a java.util.concurrent.locks.ReentrantLock$NonfairSync) held by "metadata-store-10-1"`,
		`    at Demo.readMetadata(Demo.java:17)`,
		`    at Demo.handleConnect(Demo.java:16)`,
		`"metadata-store-10-1" BLOCKED (on object monitor): waiting to lock <0x000000069ec198d8> (a java.lang.Object) held by "pulsar-io-4-1"`,
		`    at Demo.updateTopic(Demo.java:19)`,
		`    at Demo.notifyWatchers(Demo.java:18)`,
		`"pulsar-io-4-2" BLOCKED (on object monitor): waiting to lock <0x000000069ec198d8> (a java.lang.Object) held by "pulsar-io-4-1"`,
		`    at Demo.lookupTopic(Demo.java:20)`,
		`"pulsar-io-4-3" WAITING (parking): parking to wait for <0x000000069ecf9858> (a java.util.concurrent.CompletableFuture$Signaller)`,
		`    at Demo.waitForPolicies(Demo.java:21)`,
		`"pulsar-io-4-4" TIMED_WAITING (sleeping)`,
		`    at Demo.idle(Demo.java:22)`,
	}
	tests := []struct {
		name, file string
		max        int
		want       []string
	}{
		{"jcmd deadlock", "jcmd-deadlock.txt", MaxLines, deadlock},
		{"jstack deadlock", "jstack-deadlock.txt", MaxLines, deadlock},
		{"short budget keeps the deadlock and says what is left out", "jcmd-deadlock.txt", 6, []string{
			deadlock[0], deadlock[1], deadlock[2], deadlock[3],
			`"metadata-store-10-1" BLOCKED (on object monitor): waiting to lock <0x000000069ec198d8> (a java.lang.Object) held by "pulsar-io-4-1"`,
			`… 3 more stuck broker threads (see the dump)`,
		}},
		{"healthy Pulsar broker: idle pools and epoll are not stuck", "jcmd-pulsar-4.0.7-healthy.txt", MaxLines, []string{
			`105 threads; no Java-level deadlock; pulsar-io threads stuck: 0 of 2; stuck broker threads: 0; busy event loops: 0`,
		}},
	}
	tests = append(tests, struct {
		name, file string
		max        int
		want       []string
	}{"an IO thread outside its event loop is shown busy", "jcmd-busy.txt", MaxLines, []string{
		`20 threads; no Java-level deadlock; pulsar-io threads stuck: 0 of 1; stuck broker threads: 0; busy event loops: 1`,
		`"pulsar-io-7-1" RUNNABLE outside epoll (busy)`,
		`    at Busy.decodeFrame(Busy.java:6)`,
		`    at Busy$$Lambda$1/0x00007f3ab8000a08.run(Unknown Source)`,
	}})
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := Summarize(Parse(read(t, tt.file)), tt.max)
			if got != strings.Join(tt.want, "\n") {
				t.Errorf("summary:\n%s\nwant:\n%s", got, strings.Join(tt.want, "\n"))
			}
			if n := strings.Count(got, "\n") + 1; n > tt.max {
				t.Errorf("%d lines, more than %d", n, tt.max)
			}
		})
	}
}

func TestSummarizeFileWritesOnce(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "threads.txt")
	if err := os.WriteFile(path, []byte(read(t, "jstack-deadlock.txt")), 0o644); err != nil {
		t.Fatal(err)
	}
	s, err := SummarizeFile(path)
	if err != nil || !strings.Contains(s, "Java-level DEADLOCK") {
		t.Fatalf("SummarizeFile = %q, %v", s, err)
	}
	b, err := os.ReadFile(path + ".summary")
	if err != nil || string(b) != s+"\n" {
		t.Fatalf("summary file = %q, %v", b, err)
	}
	// A second caller (another test process) gets the same text back.
	if err := os.WriteFile(path, []byte("garbage"), 0o644); err != nil {
		t.Fatal(err)
	}
	if s2, err := SummarizeFile(path); err != nil || s2 != s {
		t.Errorf("second SummarizeFile = %q, %v", s2, err)
	}
}
