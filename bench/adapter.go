package bench

// Everything the harness knows of the engine's API and of its binaries'
// configuration is in this file, so that following a change of the engine
// (topic names, the status row's encoding, configuration keys, the decider
// modes) means editing here and nowhere else.

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os/exec"
	"strconv"
	"time"

	"github.com/rs/zerolog"

	"github.com/pulsaga/pulsaga/bus"
	"github.com/pulsaga/pulsaga/engine"
	"github.com/pulsaga/pulsaga/protocol"
	"github.com/pulsaga/pulsaga/worker"
	"github.com/pulsaga/pulsaga/workflow"
)

// Row is what the harness reads of a process's status row.
type Row struct {
	ProcessID string
	Status    string
	Terminal  bool
	Completed bool
	Steps     map[string]string // step id → step status
	LastError string            // "<step>: <type>: <message>" of the last failure
	Seq       int64
}

// StatusTopic is the engine's status topic (short name, in the namespace).
func StatusTopic() string { return protocol.StatusTopic }

// TimersTopic is the topic timers are armed on.
func TimersTopic() string { return protocol.TimersTopic }

// StartsTopic is the topic other systems publish start requests to.
func StartsTopic() string { return protocol.StartsTopic }

// decodeStatus decodes a status-topic message; ok is false for anything
// that is not a status row (tombstones included).
func decodeStatus(m *bus.Message) (Row, bool) {
	if len(m.Payload) == 0 {
		return Row{}, false
	}
	r, err := engine.DecodeStatus(m.Payload)
	if err != nil || r == nil {
		return Row{}, false
	}
	return Row{ProcessID: r.ProcessID, Status: string(r.Status), Terminal: r.Status.Terminal(), Completed: r.Status == "completed", Steps: r.Steps, LastError: r.LastError, Seq: r.Seq}, true
}

// Client is the engine's Go client as the benchmarks use it.
type Client struct{ c *engine.Client }

// NewClient is a Go client of the engine on b.
func NewClient(b bus.Bus) *Client { return &Client{c: engine.NewClient(b, protocol.DefaultTopics())} }

// Start starts a process.
func (c *Client) Start(ctx context.Context, pid, def string, input json.RawMessage) error {
	return c.c.Start(ctx, protocol.StartRequest{ProcessID: pid, Definition: def, Input: input})
}

// ErrNotOffered: this engine has no such entrance.
var ErrNotOffered = errors.New("not offered by this engine")

// StartMany starts processes with one call of the client (engine.Client.
// StartMany: checked, then sent together).
func (c *Client) StartMany(ctx context.Context, pids []string, def string, input json.RawMessage) error {
	reqs := make([]protocol.StartRequest, len(pids))
	for i, pid := range pids {
		reqs[i] = protocol.StartRequest{ProcessID: pid, Definition: def, Input: input}
	}
	return c.c.StartMany(ctx, reqs)
}

// Signal sends a signal to a process.
func (c *Client) Signal(ctx context.Context, pid, name, id string, data json.RawMessage) error {
	return c.c.Signal(ctx, pid, name, id, data)
}

// Close releases the client.
func (c *Client) Close() error { return c.c.Close() }

// StartMessage is a start request as another system publishes it on the
// starts topic (docs/protocol.md).
func StartMessage(pid, def string, input json.RawMessage) (*bus.OutMessage, error) {
	env, err := bus.NewEnvelope(protocol.TypeStart, protocol.StartEnvelopeID(pid), pid, time.Now(), protocol.StartRequest{ProcessID: pid, Definition: def, Input: input})
	if err != nil {
		return nil, err
	}
	b, err := env.Encode()
	if err != nil {
		return nil, err
	}
	return &bus.OutMessage{Key: pid, Payload: b}, nil
}

// Decider modes of the engine: where workflow.Decide runs.
const (
	Inline = "inline" // inside the orchestrator's batch (the default)
	Remote = "remote" // cmd/decider, over the decisions topic
)

// Info is what the harness reads of the engine's orchestrator binary from
// its --help.
type Info struct {
	// Modes are the decider modes it offers, its default first: with a
	// --decider flag, inline (the default) and remote; without (the engine
	// before issue #9), remote only (that orchestrator always sends decision
	// tasks to cmd/decider).
	Modes []string
	// Pprof: it can serve /debug/pprof on its admin listener (a
	// --debug-pprof flag).
	Pprof bool
}

// Probe reads Info from the orchestrator binary.
func Probe(orchestratorBin string) (Info, error) {
	out, err := exec.Command(orchestratorBin, "--help").CombinedOutput()
	if !bytes.Contains(out, []byte("--pulsar-url")) {
		return Info{}, fmt.Errorf("%s --help: %v: %s", orchestratorBin, err, out)
	}
	info := Info{Modes: []string{Remote}, Pprof: bytes.Contains(out, []byte("--debug-pprof"))}
	if bytes.Contains(out, []byte("--decider ")) {
		info.Modes = []string{Inline, Remote}
	}
	return info, nil
}

// EngineConfig is what the harness sets of the engine's binaries.
type EngineConfig struct {
	ServiceURL, AdminURL string
	Namespace            bus.Namespace
	Name                 string // instance name prefix
	Partitions           int
	Definitions          string // a directory of definitions registered at start
	AdminListen          string // host:port of the orchestrator's admin API
	DeciderMode          string
	// DeciderSwitch says whether the orchestrator has the decider key
	// (Probe found a --decider flag).
	DeciderSwitch bool
	// Pprof turns on the orchestrator's /debug/pprof (Probe found it).
	Pprof    bool
	LogLevel string
}

func (c EngineConfig) base() []string {
	lvl := c.LogLevel
	if lvl == "" {
		lvl = "warn"
	}
	return []string{
		"PULSAGA_PULSAR_URL=" + c.ServiceURL, "PULSAGA_PULSAR_ADMIN_URL=" + c.AdminURL,
		"PULSAR_URL=" + c.ServiceURL, "PULSAR_ADMIN_URL=" + c.AdminURL,
		"PULSAGA_PULSAR_TENANT=" + c.Namespace.Tenant, "PULSAGA_PULSAR_NAMESPACE=" + c.Namespace.Namespace,
		"PULSAGA_PARTITIONS=" + strconv.Itoa(c.Partitions), "PULSAGA_LOG_LEVEL=" + lvl,
	}
}

// OrchestratorEnv is cmd/orchestrator's environment (it runs the timer
// relay and the start relay as well, and serves the admin API).
func OrchestratorEnv(c EngineConfig) []string {
	env := append(c.base(), "PULSAGA_NAME="+c.Name+"-orchestrator", "PULSAGA_DEFINITIONS="+c.Definitions,
		"PULSAGA_ADMIN_LISTEN="+c.AdminListen, "PULSAGA_TIMER_RELAY=true")
	if c.DeciderSwitch {
		env = append(env, "PULSAGA_DECIDER="+c.DeciderMode)
	}
	if c.Pprof {
		env = append(env, "PULSAGA_DEBUG_PPROF=true")
	}
	return env
}

// NeedsDecider says whether a mode runs cmd/decider.
func NeedsDecider(mode string) bool { return mode == Remote }

// DeciderEnv is cmd/decider's environment.
func DeciderEnv(c EngineConfig) []string {
	return append(c.base(), "PULSAGA_NAME="+c.Name+"-decider")
}

// ReadyPath is the orchestrator's readiness endpoint on its admin address.
const ReadyPath = "/readyz"

// HTTPStartPath and HTTPStartBody are the admin API's start request.
const HTTPStartPath = "/api/v1/processes"

// HTTPStartBody is the JSON body of a start through the admin API.
func HTTPStartBody(pid, def string, input json.RawMessage) ([]byte, error) {
	return json.Marshal(map[string]any{"process_id": pid, "definition": def, "input": input})
}

// HTTPBatchStartPath is the admin API's batch start (up to 1,000 a request).
const HTTPBatchStartPath = "/api/v1/processes/batch"

// HTTPBatchStartBody is the JSON body of a batch start.
func HTTPBatchStartBody(pids []string, def string, input json.RawMessage) ([]byte, error) {
	starts := make([]map[string]any, len(pids))
	for i, pid := range pids {
		starts[i] = map[string]any{"process_id": pid, "definition": def, "input": input}
	}
	return json.Marshal(map[string]any{"starts": starts})
}

// CheckHTTPBatchStart checks a batch start's answer: every start accepted.
func CheckHTTPBatchStart(body []byte, n int) error {
	var res struct {
		Accepted int `json:"accepted"`
		Failed   int `json:"failed"`
	}
	if err := json.Unmarshal(body, &res); err != nil {
		return fmt.Errorf("batch start answer: %w: %s", err, body)
	}
	if res.Accepted != n || res.Failed != 0 {
		return fmt.Errorf("batch start: %d of %d accepted, %d failed: %.500s", res.Accepted, n, res.Failed, body)
	}
	return nil
}

// StartLines are start requests as `pulsaga start --from` reads them, one
// JSON object per line.
func StartLines(pids []string, def string, input json.RawMessage) []byte {
	var b bytes.Buffer
	for _, pid := range pids {
		line, _ := json.Marshal(map[string]any{"process_id": pid, "definition": def, "input": input})
		b.Write(line)
		b.WriteByte('\n')
	}
	return b.Bytes()
}

// CLIStartFromArgs are the arguments of `pulsaga start --from FILE`.
func CLIStartFromArgs(c EngineConfig, server, file, def string) []string {
	args := []string{"start", "--from", file}
	if server != "" {
		args = append(args, "--server", server)
	} else {
		args = append(args, "--pulsar-namespace", c.Namespace.Namespace, "--partitions", strconv.Itoa(c.Partitions))
	}
	return append(args, def)
}

// CLIStartArgs are the arguments of `pulsaga start` for one process; server
// is the admin API's URL, or "" to send straight to Pulsar (the namespace
// of c, whose PULSAR_URL the environment carries).
func CLIStartArgs(c EngineConfig, server, pid, def string, input json.RawMessage) []string {
	args := []string{"start", "--id", pid, "--input", string(input)}
	if server != "" {
		args = append(args, "--server", server)
	} else {
		args = append(args, "--pulsar-namespace", c.Namespace.Namespace, "--partitions", strconv.Itoa(c.Partitions))
	}
	return append(args, def)
}

// String names a configuration in logs.
func (c EngineConfig) String() string {
	return fmt.Sprintf("%s on %s/%s (%d partitions, decider %s)", c.Name, c.Namespace.Tenant, c.Namespace.Namespace, c.Partitions, c.DeciderMode)
}

// InProcessEngine is the whole engine run inside the benchmark's process (what
// `pulsaga dev --pulsar` runs), for the figures read from this process's
// own heap or hooks (memory per waiting process, timer lateness).
type InProcessEngine struct{ st *engine.Stack }

// StartInProcess starts the engine on b with these workers; observe, when
// set, receives every fired timer's kind and lateness.
func StartInProcess(ctx context.Context, b bus.Bus, services map[string]map[string]worker.Handler, workerConcurrency int,
	observe func(kind string, lateness time.Duration), log zerolog.Logger) (*InProcessEngine, error) {
	st, err := engine.StartStack(ctx, b, engine.StackOptions{Name: "bench", Services: services, WorkerConcurrency: workerConcurrency, ObserveTimer: observe}, log)
	if err != nil {
		return nil, err
	}
	return &InProcessEngine{st: st}, nil
}

// Register registers a definition (YAML source).
func (e *InProcessEngine) Register(ctx context.Context, name string, src []byte) error {
	_, err := e.st.Registry.Register(ctx, name, src)
	return err
}

// Err returns the errors of components that stopped on their own.
func (e *InProcessEngine) Err() error { return e.st.Err() }

// Stop stops the engine.
func (e *InProcessEngine) Stop() error { return e.st.Stop() }

// SleepTimer says whether a fired timer (ObserveTimer's kind) is the one
// of a sleep step: the sleep timer itself, or, in an engine that keeps one
// physical timer per process, its "wake" timer (a process of sleeps only
// has no other deadline).
func SleepTimer(kind string) bool { return kind == string(workflow.TimerSleep) || kind == "wake" }
