package pulsarbus

import (
	"context"
	"errors"

	"github.com/pulsaga/pulsaga/bus"
)

// RefuseTransactionListing makes b's listing of open transactions fail, as
// the broker's does when an open transaction touched a topic that is gone.
func RefuseTransactionListing(b *Bus) {
	b.listTx = func(context.Context) ([]txMetadata, error) { return nil, errors.New("listing refused by the test") }
}

// TxID is the client transaction id of a pulsarbus transaction (tests
// end it through the admin API behind the client's back).
func TxID(t bus.Tx) (most, least uint64) {
	id := t.(*tx).t.GetTxnID()
	return id.MostSigBits, id.LeastSigBits
}
