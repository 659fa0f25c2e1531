package pulsarbus

import (
	"context"
	"errors"
)

// RefuseTransactionListing makes b's listing of open transactions fail, as
// the broker's does when an open transaction touched a topic that is gone.
func RefuseTransactionListing(b *Bus) {
	b.listTx = func(context.Context) ([]txMetadata, error) { return nil, errors.New("listing refused by the test") }
}
