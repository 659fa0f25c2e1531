package pulsartest

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/apache/pulsar-client-go/pulsar"
)

// BrokerMaxMessageSize is the dev broker's maxMessageSize
// (scripts/pulsar/standalone.conf).
const BrokerMaxMessageSize = 5 * 1024 * 1024

// SendLargest sends one message of the broker's maxMessageSize, the largest
// a client may send (the bus itself stays 64 KiB below it), with Pulsar's
// own Go client, unbatched, as a worker in another language would. The
// entry the broker writes to its bookie is a little larger than the
// message. tokenFile is the token to connect with ("" for none).
func SendLargest(ctx context.Context, serviceURL, tokenFile, topic string) error {
	opts := pulsar.ClientOptions{URL: serviceURL, OperationTimeout: time.Minute, ConnectionTimeout: 30 * time.Second}
	if tokenFile != "" {
		opts.Authentication = pulsar.NewAuthenticationTokenFromFile(tokenFile)
	}
	c, err := pulsar.NewClient(opts)
	if err != nil {
		return err
	}
	defer c.Close()
	p, err := c.CreateProducer(pulsar.ProducerOptions{Topic: topic, DisableBatching: true, SendTimeout: time.Minute})
	if err != nil {
		return fmt.Errorf("producer: %w", err)
	}
	defer p.Close()
	payload := make([]byte, BrokerMaxMessageSize)
	for i := range payload {
		payload[i] = byte('a' + i%26)
	}
	// The Go client counts the message's metadata in the limit; other
	// clients (the C++ one under Python's) count the payload alone. Send
	// the largest this client takes: as large as any client's once framed.
	for range 4 {
		_, err := p.Send(ctx, &pulsar.ProducerMessage{Key: "largest", Payload: payload})
		if err == nil {
			return nil
		}
		var size int
		if _, serr := fmt.Sscanf(afterLast(err.Error(), "size: "), "%d", &size); serr != nil || size <= BrokerMaxMessageSize {
			return fmt.Errorf("send %d bytes: %w", len(payload), err)
		}
		payload = payload[:len(payload)-(size-BrokerMaxMessageSize)]
	}
	return fmt.Errorf("no payload near %d bytes was taken", BrokerMaxMessageSize)
}

func afterLast(s, sep string) string {
	if i := strings.LastIndex(s, sep); i >= 0 {
		return s[i+len(sep):]
	}
	return ""
}
