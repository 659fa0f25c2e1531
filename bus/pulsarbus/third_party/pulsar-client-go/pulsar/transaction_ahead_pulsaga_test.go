// Licensed to the Apache Software Foundation (ASF) under one
// or more contributor license agreements.  See the NOTICE file
// distributed with this work for additional information
// regarding copyright ownership.  The ASF licenses this file
// to you under the Apache License, Version 2.0 (the
// "License"); you may not use this file except in compliance
// with the License.  You may obtain a copy of the License at
//
//   http://www.apache.org/licenses/LICENSE-2.0
//
// Unless required by applicable law or agreed to in writing,
// software distributed under the License is distributed on an
// "AS IS" BASIS, WITHOUT WARRANTIES OR CONDITIONS OF ANY
// KIND, either express or implied.  See the License for the
// specific language governing permissions and limitations
// under the License.

package pulsar

// pulsaga patch: tests of registering ahead (claim and settle,
// transaction_ahead_pulsaga.go); they need no broker.

import (
	"errors"
	"slices"
	"testing"
	"time"
)

func TestClaimTakesEachNewKeyOnce(t *testing.T) {
	txn := &transaction{}
	m := map[string]*registration{}
	mine, regs := claim(txn, m, []string{"a", "b", "a"})
	if !slices.Equal(mine, []string{"a", "b"}) || len(regs) != 2 {
		t.Fatalf("first claim took %v, want [a b] once each", mine)
	}
	again, _ := claim(txn, m, []string{"b", "c"})
	if !slices.Equal(again, []string{"c"}) {
		t.Fatalf("second claim took %v, want only the new key c", again)
	}
}

// A send registering a partition being registered ahead waits for that
// registration and makes no request of its own; after a failure the key is
// forgotten and the next send registers it itself.
func TestSendsWaitForTheRegistrationAhead(t *testing.T) {
	for _, tc := range []struct {
		name    string
		outcome error
	}{
		{"registered", nil},
		{"refused", errors.New("refused by the coordinator")},
	} {
		t.Run(tc.name, func(t *testing.T) {
			txn := &transaction{}
			m := map[string]*registration{}
			keys, regs := claim(txn, m, []string{"p-0", "p-1"})
			got := make(chan error, 2)
			for _, k := range keys {
				go func() {
					got <- registerOnce(txn, m, k, func() error {
						t.Errorf("the send registered %s itself while it was being registered ahead", k)
						return nil
					})
				}()
			}
			select {
			case err := <-got:
				t.Fatalf("a send went on (%v) before the registration ahead was answered", err)
			case <-time.After(50 * time.Millisecond):
			}
			settle(txn, m, keys, regs, tc.outcome)
			for range keys {
				if err := <-got; !errors.Is(err, tc.outcome) {
					t.Fatalf("the waiting send got %v, want %v", err, tc.outcome)
				}
			}
			registered := false
			if err := registerOnce(txn, m, "p-0", func() error { registered = true; return nil }); err != nil {
				t.Fatal(err)
			}
			if want := tc.outcome != nil; registered != want {
				t.Fatalf("the next send registered p-0 itself: %v, want %v", registered, want)
			}
		})
	}
}
