package engine_test

import (
	"context"
	"errors"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/pulsaga/pulsaga/bus/memory"
	"github.com/pulsaga/pulsaga/engine"
)

// A call step's definition must be registered first; a directory is
// registered callees first.
func TestRegistryChecksCalls(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	b := memory.New(memory.Options{})
	defer b.Close()
	reg := engine.NewRegistry(b, "definitions", nil)
	defer reg.Close()
	parent, err := os.ReadFile(repoFile(t, "testdata/shop-order.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	_, err = reg.Register(ctx, "shop-order.yaml", parent)
	if !errors.Is(err, engine.ErrUnknownDefinition) || !strings.Contains(err.Error(), `step "pay" calls definition "charge-card", which is not registered`) {
		t.Fatalf("parent before its children: %v", err)
	}
	defs, err := reg.RegisterPath(ctx, repoFile(t, "testdata"))
	if err != nil {
		t.Fatalf("the directory: %v", err)
	}
	pos := map[string]int{}
	for i, d := range defs {
		pos[d.Name] = i
	}
	if pos["shop-order"] < pos["charge-card"] || pos["shop-order"] < pos["ship-parcel"] {
		t.Fatalf("registered in the order %v", pos)
	}
}
