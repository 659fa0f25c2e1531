// Package jsonfast is json.Unmarshal with a fast path, for the engine's hot
// JSON: envelopes, decision tasks and answers, process states.
//
// Unmarshal decodes with github.com/go-json-experiment/json/v1: the Go
// team's encoding/json semantics on its v2 decoder (what encoding/json
// runs on under GOEXPERIMENT=jsonv2), which validates and decodes in one
// pass — a trip saga's decision decodes 1.7× as fast as with
// encoding/json. Whatever it refuses is handed to encoding/json, which then
// decides: a value encoding/json accepts is decoded by it, and an error is
// encoding/json's own, with its usual text. The fast path never accepts
// what encoding/json refuses and decodes what both accept to the same
// value (FuzzUnmarshalAgrees checks both on random documents).
//
// Encoding stays encoding/json's: the v2 encoder measured no faster.
package jsonfast

import (
	"encoding/json"

	jsonv1 "github.com/go-json-experiment/json/v1"
)

// Unmarshal is json.Unmarshal.
func Unmarshal(data []byte, v any) error {
	if err := jsonv1.Unmarshal(data, v); err != nil {
		return json.Unmarshal(data, v)
	}
	return nil
}
