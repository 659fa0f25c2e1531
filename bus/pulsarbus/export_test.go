package pulsarbus

import "github.com/pulsaga/pulsaga/bus"

// TxID is the client transaction id of a pulsarbus transaction (tests
// end it through the admin API behind the client's back).
func TxID(t bus.Tx) (most, least uint64) {
	id := t.(*tx).t.GetTxnID()
	return id.MostSigBits, id.LeastSigBits
}
