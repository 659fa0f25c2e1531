// Package enginepb holds the protobuf schema of the engine's internal
// records (records.proto) and its generated Go code. The engine encodes and
// decodes them in engine/codec.go; nothing else should need this package.
package enginepb

//go:generate protoc --go_out=. --go_opt=paths=source_relative records.proto
