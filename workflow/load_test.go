package workflow

import (
	"bytes"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/goccy/go-yaml"
	"github.com/santhosh-tekuri/jsonschema/v6"
)

const schemaComment = "# yaml-language-server: $schema="

func languageSchema(t *testing.T) *jsonschema.Schema {
	t.Helper()
	c := jsonschema.NewCompiler()
	sch, err := c.Compile("../docs/schemas/workflow.schema.json")
	if err != nil {
		t.Fatalf("compile the language schema: %v", err)
	}
	return sch
}

func yamlAsJSON(t *testing.T, data []byte) any {
	t.Helper()
	var v any
	if err := yaml.Unmarshal(data, &v); err != nil {
		t.Fatalf("yaml: %v", err)
	}
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatalf("json: %v", err)
	}
	doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	return doc
}

// Every testdata definition loads, names the schema on its first line and
// validates against the published JSON Schema of the language.
func TestTestdataDefinitions(t *testing.T) {
	sch := languageSchema(t)
	files, _ := filepath.Glob("../testdata/*.yaml")
	if len(files) < 6 {
		t.Fatalf("want at least 6 definitions, got %d", len(files))
	}
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			data, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			first, _, _ := strings.Cut(string(data), "\n")
			if first != schemaComment+"../docs/schemas/workflow.schema.json" {
				t.Errorf("first line %q does not name the schema", first)
			}
			if _, err := Load(f, data); err != nil {
				t.Errorf("loader: %v", err)
			}
			if err := sch.Validate(yamlAsJSON(t, data)); err != nil {
				t.Errorf("schema: %v", err)
			}
		})
	}
}

// The schema is not vacuous: definitions with unknown keys or wrong types
// fail it too.
func TestSchemaRejects(t *testing.T) {
	sch := languageSchema(t)
	for _, name := range []string{"unknown-keys", "bad-steps", "bad-durations", "bad-ids", "not-a-workflow"} {
		t.Run(name, func(t *testing.T) {
			data, err := os.ReadFile("../testdata/invalid/" + name + ".yaml")
			if err != nil {
				t.Fatal(err)
			}
			if err := sch.Validate(yamlAsJSON(t, data)); err == nil {
				t.Error("the schema accepts it")
			}
		})
	}
}

// Each invalid definition reports exactly the errors written next to it
// (file:line:col: message (hint)), all at once.
func TestInvalidDefinitions(t *testing.T) {
	files, _ := filepath.Glob("../testdata/invalid/*.yaml")
	if len(files) < 8 {
		t.Fatalf("want at least 8 invalid definitions, got %d", len(files))
	}
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			rel := "testdata/invalid/" + filepath.Base(f)
			data, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			want, err := os.ReadFile(strings.TrimSuffix(f, ".yaml") + ".errors")
			if err != nil {
				t.Fatal(err)
			}
			def, err := Load(rel, data)
			if def != nil || err == nil {
				t.Fatal("loaded an invalid definition")
			}
			if !errors.Is(err, ErrInvalidDefinition) {
				t.Errorf("error does not wrap ErrInvalidDefinition: %v", err)
			}
			var verrs ValidationErrors
			if !errors.As(err, &verrs) {
				t.Fatalf("error is not ValidationErrors: %T", err)
			}
			var ve *ValidationError
			if !errors.As(err, &ve) || ve.Pos.Line == 0 {
				t.Errorf("no positioned *ValidationError inside")
			}
			got := strings.TrimSpace(err.Error())
			if got != strings.TrimSpace(string(want)) {
				t.Errorf("errors\n got:\n%s\nwant:\n%s", got, want)
			}
		})
	}
}

const tripYAML = `name: t
defaults:
  retry: {max_attempts: 4, initial_interval: 2s, jitter: 0.1, non_retryable: [Bad]}
  timeout: 10s
on_failure: compensate
steps:
  - id: a
    service: s
    command: A
    compensate: {command: UndoA, retry: {max_attempts: 9}}
  - id: b
    service: s
    command: B
    needs: a
    retry: {initial_interval: 5s, non_retryable: []}
    timeout: 1m
    on_failure: continue
`

func TestLoadResolvesDefaults(t *testing.T) {
	def, err := Load("t.yaml", []byte(tripYAML))
	if err != nil {
		t.Fatal(err)
	}
	a, _ := def.Step("a")
	b, _ := def.Step("b")
	tests := []struct {
		name string
		got  any
		want any
	}{
		{"version defaults to 1", def.Version, 1},
		{"workflow policy", def.OnFailure, OnFailureCompensate},
		{"step inherits the workflow policy", a.OnFailure, OnFailureCompensate},
		{"step overrides the policy", b.OnFailure, OnFailureContinue},
		{"defaults.retry over the built-in defaults", a.Retry, RetryPolicy{MaxAttempts: 4, InitialInterval: 2 * time.Second, BackoffCoefficient: 2, MaxInterval: time.Minute, Jitter: 0.1, NonRetryable: []string{"Bad"}}},
		{"step retry overrides field by field", b.Retry, RetryPolicy{MaxAttempts: 4, InitialInterval: 5 * time.Second, BackoffCoefficient: 2, MaxInterval: time.Minute, Jitter: 0.1}},
		{"defaults.timeout", a.Timeout, 10 * time.Second},
		{"step timeout", b.Timeout, time.Minute},
		{"compensation service defaults to the step's", a.Compensate.Service, "s"},
		{"compensation retry over defaults", a.Compensate.Retry.MaxAttempts, 9},
		{"compensation timeout defaults", a.Compensate.Timeout, 10 * time.Second},
		{"needs as a single string", b.Needs, []string{"a"}},
		{"kind", b.Kind, KindTask},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if !reflect.DeepEqual(tt.got, tt.want) {
				t.Errorf("got %#v, want %#v", tt.got, tt.want)
			}
		})
	}
}

func TestLoadRules(t *testing.T) {
	tests := []struct {
		name string
		yaml string
		want []string // substrings of the errors, in order; none: valid
	}{
		{"minimal valid", "name: x\nsteps:\n  - {id: a, sleep: 1s}\n", nil},
		{"days duration", "name: x\nsteps:\n  - {id: a, sleep: 2d}\n", nil},
		{"empty file", "", []string{"1:1: the file is empty"}},
		{"no steps", "name: x\n", []string{"1:1: the workflow has no steps"}},
		{"no name", "steps:\n  - {id: a, sleep: 1s}\n", []string{"1:1: the workflow has no name"}},
		{"two documents", "name: x\nsteps: [{id: a, sleep: 1s}]\n---\nname: y\n", []string{"4:1: only one YAML document"}},
		{"unknown top key with suggestion", "name: x\nstep: []\nsteps: [{id: a, sleep: 1s}]\n", []string{`2:1: unknown key "step" in the workflow (did you mean steps?)`}},
		{"unknown key without suggestion", "name: x\nsteps: [{id: a, sleep: 1s, zzzzzz: 1}]\n", []string{`unknown key "zzzzzz" in a step (allowed keys: id,`}},
		{"duplicate key", "name: x\nname: y\nsteps: [{id: a, sleep: 1s}]\n", []string{"2:1:"}},
		{"self need", "name: x\nsteps: [{id: a, sleep: 1s, needs: [a]}]\n", []string{`step "a" needs itself`}},
		{"need listed twice", "name: x\nsteps: [{id: a, sleep: 1s}, {id: b, sleep: 1s, needs: [a, a]}]\n", []string{`step "b" needs "a" twice`}},
		{"reference to a non-ancestor", "name: x\nsteps:\n  - {id: a, service: s, command: A}\n  - {id: b, service: s, command: B, input: '${{ steps.a.output }}'}\n", []string{`4:44: step "b" uses steps.a in input but does not need "a"`}},
		{"transitive ancestor is fine", "name: x\nsteps:\n  - {id: a, service: s, command: A}\n  - {id: b, sleep: 1s, needs: [a]}\n  - {id: c, service: s, command: C, needs: [b], input: '${{ steps.a.output.x }}'}\n", nil},
		{"compensation may read its own step", "name: x\nsteps:\n  - {id: a, service: s, command: A, compensate: {command: U, input: '${{ steps.a.output }}'}}\n  - {id: b, service: s, command: B, needs: [a]}\n", nil},
		{"output may read any step", "name: x\nsteps:\n  - {id: a, sleep: 1s}\noutput: '${{ steps.a.status }}'\n", nil},
		{"when needs a boolean expression", "name: x\nsteps: [{id: a, sleep: 1s, when: 3}]\n", []string{"when must be exactly one expression"}},
		{"when true literal", "name: x\nsteps: [{id: a, sleep: 1s, when: true}]\n", nil},
		{"for_each literal list", "name: x\nsteps: [{id: a, service: s, command: A, for_each: [1, 2], input: '${{ item }}'}]\n", nil},
		{"index only in for_each", "name: x\nsteps: [{id: a, service: s, command: A, input: '${{ index }}'}]\n", []string{"item and index exist only in steps with for_each"}},
		{"until literal time", "name: x\nsteps: [{id: a, until: '2030-01-01T00:00:00Z'}]\n", nil},
		{"retry on a sleep step", "name: x\nsteps: [{id: a, sleep: 1s, retry: {max_attempts: 2}}]\n", []string{"retry is not allowed on a sleep step"}},
		{"max_interval below initial_interval", "name: x\nsteps: [{id: a, service: s, command: A, retry: {initial_interval: 2m}}]\n", []string{"initial_interval 2m0s is longer than max_interval 1m0s"}},
		{"steps not a list", "name: x\nsteps: {a: 1}\n", []string{"steps must be a list, not a mapping"}},
		{"step not a mapping", "name: x\nsteps: [hello]\n", []string{"a step must be a mapping, not a string"}},
		{"merge keys refused", "name: x\nbase: &b {sleep: 1s}\nsteps: [{id: a, <<: *b}]\n", []string{`unknown key "base"`, `step "a" has nothing to do`, "merge key << is not allowed"}},
		{"anchors and aliases", "name: x\nsteps:\n  - id: a\n    service: s\n    command: A\n    retry: &r {max_attempts: 5}\n  - id: b\n    service: s\n    command: B\n    retry: *r\n", nil},
		{"NaN refused in values", "name: x\nsteps: [{id: a, service: s, command: A, input: {x: .nan}}]\n", []string{"NaN cannot be represented in JSON"}},
		{"all errors at once", "name: x\nsteps:\n  - {id: a, sleep: bad}\n  - {id: a, sleep: 1s}\n  - {id: c, sleep: 1s, needs: [zz]}\n",
			[]string{"3:20: sleep: invalid duration", `4:10: duplicate step id "a"`, `5:32: step "c" needs unknown step "zz"`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Load("x.yaml", []byte(tt.yaml))
			if len(tt.want) == 0 {
				if err != nil {
					t.Fatalf("unexpected error: %v", err)
				}
				return
			}
			if err == nil {
				t.Fatalf("no error, want %v", tt.want)
			}
			var verrs ValidationErrors
			if !errors.As(err, &verrs) {
				t.Fatalf("not ValidationErrors: %v", err)
			}
			if len(verrs) != len(tt.want) {
				t.Errorf("got %d errors, want %d:\n%v", len(verrs), len(tt.want), err)
			}
			for i, w := range tt.want {
				if i < len(verrs) && !strings.Contains(verrs[i].Error(), w) {
					t.Errorf("error %d = %q, want it to contain %q", i, verrs[i].Error(), w)
				}
			}
		})
	}
}

func TestTemplates(t *testing.T) {
	def, err := Load("t.yaml", []byte(`name: t
steps:
  - id: a
    service: s
    command: A
    input:
      typed: "${{ input.n * 2 }}"
      text: "n=${{ input.n }}, ok=${{ input.ok }}, obj=${{ input.obj }}"
      list: ["${{ input.ok }}", plain, 3]
      nested: {deep: "${{ process.id }}", none: null}
      constant: {a: [1, 2.5, true]}
      date: "${{ date('2026-01-02T03:04:05Z') + duration('1h') }}"
`))
	if err != nil {
		t.Fatal(err)
	}
	a, _ := def.Step("a")
	v, err := a.Input.Eval(Env{Input: map[string]any{"n": 21.0, "ok": true, "obj": map[string]any{"k": "v"}}, Process: map[string]any{"id": "p-1"}})
	if err != nil {
		t.Fatal(err)
	}
	got, _ := json.Marshal(v)
	want := `{"constant":{"a":[1,2.5,true]},"date":"2026-01-02T04:04:05Z","list":[true,"plain",3],"nested":{"deep":"p-1","none":null},"text":"n=21, ok=true, obj={\"k\":\"v\"}","typed":42}`
	if string(got) != want {
		t.Errorf("got  %s\nwant %s", got, want)
	}
	// a run-time error names the expression and position
	_, err = a.Input.Eval(Env{Input: nil})
	if err == nil || !strings.Contains(err.Error(), "t.yaml:7:14") {
		t.Errorf("run-time error %v lacks the position", err)
	}
}

func TestSuggest(t *testing.T) {
	tests := []struct{ word, want string }{
		{"retyr", "retry"},
		{"max_attempt", "max_attempts"},
		{"on_failur", "on_failure"},
		{"comand", "command"},
		{"xyz", ""},
		{"id", "id"},
	}
	for _, tt := range tests {
		t.Run(tt.word, func(t *testing.T) {
			if got := suggest(tt.word, append(append([]string(nil), stepKeys...), retryKeys...)); got != tt.want {
				t.Errorf("suggest(%q) = %q, want %q", tt.word, got, tt.want)
			}
		})
	}
}
