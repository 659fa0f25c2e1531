package pulsarbus

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/apache/pulsar-client-go/pulsar"
	"github.com/apache/pulsar-client-go/pulsaradmin/pkg/rest"

	"github.com/pulsaga/pulsaga/bus"
)

// wrap turns a pulsar-client-go error into a bus error: it wraps the bus
// sentinel that fits (ErrUnavailable for everything transient, ErrTooLarge,
// ErrClosed, ErrTxFailed) and says what was being done. Context errors stay
// as they are (the caller's deadline, not the broker's fault).
func wrap(err error, format string, args ...any) error {
	if err == nil {
		return nil
	}
	what := fmt.Sprintf(format, args...)
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return fmt.Errorf("pulsarbus: %s: %w", what, err)
	}
	if s := sentinel(err); s != nil && !errors.Is(err, s) {
		return fmt.Errorf("pulsarbus: %s: %w: %w", what, s, err)
	}
	return fmt.Errorf("pulsarbus: %s: %w", what, err)
}

// sentinel picks the bus error for a client error, nil when none fits.
func sentinel(err error) error {
	for _, s := range []error{bus.ErrUnavailable, bus.ErrTooLarge, bus.ErrClosed, bus.ErrTxFailed, bus.ErrBadOptions} {
		if errors.Is(err, s) {
			return s
		}
	}
	if errors.Is(err, pulsar.ErrTransaction) {
		return bus.ErrTxFailed
	}
	var pe *pulsar.Error
	if errors.As(err, &pe) {
		switch pe.Result() {
		case pulsar.TimeoutError, pulsar.LookupError, pulsar.ConnectError, pulsar.ReadError,
			pulsar.NotConnectedError, pulsar.TooManyLookupRequestException, pulsar.ServiceUnitNotReady,
			pulsar.ProducerQueueIsFull, pulsar.ClientMemoryBufferIsFull, pulsar.BrokerPersistenceError,
			pulsar.BrokerMetadataError, pulsar.MaxConcurrentOperationsReached, pulsar.UnknownError:
			return bus.ErrUnavailable
		case pulsar.MessageTooBig:
			return bus.ErrTooLarge
		case pulsar.ProducerClosed, pulsar.ConsumerClosed, pulsar.AlreadyClosedError:
			return bus.ErrClosed
		case pulsar.TransactionNoFoundError, pulsar.InvalidStatus:
			return bus.ErrTxFailed
		case pulsar.InvalidTopicName, pulsar.InvalidConfiguration, pulsar.InvalidURL, pulsar.InvalidBatchBuilderType:
			return bus.ErrBadOptions
		}
		return nil
	}
	var re rest.Error
	if errors.As(err, &re) {
		if re.Code >= 500 || re.Code == 0 || re.Code == 429 || re.Code == 307 {
			return bus.ErrUnavailable
		}
		return nil
	}
	// Errors from the client's connection layer are plain strings.
	msg := strings.ToLower(err.Error())
	for _, s := range []string{
		"timed out", "timeout", "connection closed", "connection error", "connection refused",
		"connection reset", "broken pipe", "no such host", "i/o timeout", "eof",
		"servicenotready", "service not ready", "too many requests", "toomanyrequests",
		"producerbusy", "consumerbusy", "metadataerror", "persistenceerror",
		"when con closed", // the connection closed while a consumer or reader was being made
	} {
		if strings.Contains(msg, s) {
			return bus.ErrUnavailable
		}
	}
	return nil
}

// fencedError is err as a bus.ErrFenced when the broker refused a producer
// exclusive access (ProducerFenced, or ProducerBusy because an exclusive
// producer holds the topic) or fenced it out; nil otherwise.
func fencedError(err error) error {
	if errors.Is(err, bus.ErrFenced) {
		return err
	}
	msg := strings.ToLower(err.Error())
	if errors.Is(err, pulsar.ErrProducerFenced) || strings.Contains(msg, "producerfenced") ||
		(strings.Contains(msg, "producerbusy") && strings.Contains(msg, "exclusive")) {
		return fmt.Errorf("%w: %w", bus.ErrFenced, err)
	}
	var pe *pulsar.Error
	if errors.As(err, &pe) && pe.Result() == pulsar.ProducerFenced {
		return fmt.Errorf("%w: %w", bus.ErrFenced, err)
	}
	return nil
}

// isTimeout says whether err is a client timeout.
func isTimeout(err error) bool {
	var pe *pulsar.Error
	if errors.As(err, &pe) && pe.Result() == pulsar.TimeoutError {
		return true
	}
	return strings.Contains(strings.ToLower(err.Error()), "timeout") || strings.Contains(strings.ToLower(err.Error()), "timed out")
}
