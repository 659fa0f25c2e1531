package schedule

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/goccy/go-yaml"
	"github.com/santhosh-tekuri/jsonschema/v6"

	"github.com/pulsaga/pulsaga/workflow"
)

// Every example schedule in testdata/schedules validates against the
// published schema, is a valid spec, names a definition of testdata, and
// gives it an input its schema accepts.
func TestTestdataSchedules(t *testing.T) {
	sch, err := jsonschema.NewCompiler().Compile("../docs/schemas/schedule.schema.json")
	if err != nil {
		t.Fatal(err)
	}
	files, _ := filepath.Glob("../testdata/schedules/*.yaml")
	if len(files) < 2 {
		t.Fatalf("want example schedules, got %d", len(files))
	}
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			src, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			j, err := yaml.YAMLToJSON(src)
			if err != nil {
				t.Fatal(err)
			}
			doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(j))
			if err != nil {
				t.Fatal(err)
			}
			if err := sch.Validate(doc); err != nil {
				t.Fatalf("schema: %v", err)
			}
			var spec Spec
			dec := json.NewDecoder(bytes.NewReader(j))
			dec.DisallowUnknownFields()
			if err := dec.Decode(&spec); err != nil {
				t.Fatal(err)
			}
			if err := spec.Normalize(); err != nil {
				t.Fatal(err)
			}
			def, err := workflow.LoadFile("../testdata/" + spec.Definition + ".yaml")
			if err != nil {
				t.Fatal(err)
			}
			if spec.Version != 0 && spec.Version != def.Version {
				t.Fatalf("version %d, testdata has %d", spec.Version, def.Version)
			}
			tick := spec.Next(time.Date(2026, 12, 3, 15, 0, 0, 0, time.UTC))
			input, err := spec.input(tick, tick)
			if err != nil {
				t.Fatal(err)
			}
			if err := def.ValidateInput(input); err != nil {
				t.Fatalf("input %s: %v", input, err)
			}
			if !strings.Contains(string(input), tick.Format(time.RFC3339)) {
				t.Fatalf("input %s does not carry the tick", input)
			}
		})
	}
	// the schema is not vacuous
	bad, _ := jsonschema.UnmarshalJSON(strings.NewReader(`{"name":"x","definition":"d","cron":"@daily","every":"1h","overlap":"queue"}`))
	if sch.Validate(bad) == nil {
		t.Fatal("the schema accepts cron and every together and an unknown overlap")
	}
}
