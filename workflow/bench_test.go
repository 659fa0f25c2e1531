package workflow

import (
	"encoding/json"
	"testing"
	"time"
)

// midSaga returns the trip saga with the payment done and flight and hotel
// in flight, the flight completed: the next realistic decision folds the
// hotel's result and dispatches notify.
func midSaga(b *testing.B) (*Definition, *State) {
	def, err := LoadFile("../testdata/trip-booking.yaml")
	if err != nil {
		b.Fatal(err)
	}
	d, err := Decide(def, nil, []Event{{Type: EventStart, ProcessID: "trip-42", Input: json.RawMessage(`{"customer":"ann","amount":120}`)}}, t0)
	if err != nil {
		b.Fatal(err)
	}
	d, _ = Decide(def, d.State, []Event{okEv("trip-42/payment/1", `{"payment_id":"pay-1"}`)}, at(time.Second))
	d, _ = Decide(def, d.State, []Event{okEv("trip-42/flight/1", `{"booking":"F1"}`)}, at(2*time.Second))
	return def, roundTrip(b, d.State)
}

// BenchmarkDecideTripResult: one decision = fold one result event into a
// mid-saga state (hotel booked → notify dispatched). Run with
// go test -run '^$' -bench BenchmarkDecide -benchmem -cpu 1 ./workflow/
func BenchmarkDecideTripResult(b *testing.B) {
	def, st := midSaga(b)
	evs := []Event{okEv("trip-42/hotel/1", `{"booking":"H1"}`)}
	now := at(3 * time.Second)
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		d, err := Decide(def, st, evs, now)
		if err != nil || len(d.Commands) != 1 {
			b.Fatal(err, d.Commands)
		}
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "decisions/s")
}

// BenchmarkDecideTripRetry: fold a retryable failure (a delayed retry
// command with jitter).
func BenchmarkDecideTripRetry(b *testing.B) {
	def, st := midSaga(b)
	evs := []Event{errEv("trip-42/hotel/1", "Busy", true)}
	now := at(3 * time.Second)
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		if _, err := Decide(def, st, evs, now); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "decisions/s")
}

// BenchmarkDecideTripFullRun: a whole saga, five decisions.
func BenchmarkDecideTripFullRun(b *testing.B) {
	def, err := LoadFile("../testdata/trip-booking.yaml")
	if err != nil {
		b.Fatal(err)
	}
	start := []Event{{Type: EventStart, ProcessID: "trip-42", Input: json.RawMessage(`{"customer":"ann","amount":120}`)}}
	steps := [][]Event{
		{okEv("trip-42/payment/1", `{"payment_id":"pay-1"}`)},
		{okEv("trip-42/flight/1", `{"booking":"F1"}`)},
		{okEv("trip-42/hotel/1", `{"booking":"H1"}`)},
		{okEv("trip-42/notify/1", `{}`)},
	}
	b.ReportAllocs()
	for b.Loop() {
		d, _ := Decide(def, nil, start, t0)
		for i, evs := range steps {
			d, _ = Decide(def, d.State, evs, at(time.Duration(i+1)*time.Second))
		}
		if d.Status != StatusCompleted {
			b.Fatal(d.Status)
		}
	}
}
