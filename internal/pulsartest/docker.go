package pulsartest

import (
	"context"
	"fmt"
	"net"
	"os"
	"strings"
	"time"

	"github.com/moby/moby/client"
	"github.com/testcontainers/testcontainers-go"
	tcpulsar "github.com/testcontainers/testcontainers-go/modules/pulsar"
)

// dockerImage matches the broker version of scripts/pulsar/pom.xml.
const dockerImage = "apachepulsar/pulsar:4.0.7"

// dockerAvailable says whether a Docker engine answers (DOCKER_HOST or the
// default socket). It is checked before asking testcontainers, which would
// otherwise take its time failing.
func dockerAvailable(ctx context.Context) bool {
	host := os.Getenv("DOCKER_HOST")
	if host == "" {
		if _, err := os.Stat("/var/run/docker.sock"); err != nil {
			return false
		}
		host = "unix:///var/run/docker.sock"
	}
	network, addr, ok := strings.Cut(host, "://")
	if !ok || (network != "unix" && network != "tcp") {
		return false
	}
	c, err := net.DialTimeout(network, addr, 2*time.Second)
	if err != nil {
		return false
	}
	c.Close()
	cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	dc, err := testcontainers.NewDockerClientWithOpts(cctx)
	if err != nil {
		return false
	}
	defer dc.Close()
	_, err = dc.Ping(cctx, client.PingOptions{})
	return err == nil
}

// startContainer runs Pulsar with the broker settings of
// scripts/pulsar/standalone.conf that the engine depends on. The container
// lives as long as the test binary (testcontainers' reaper removes it).
func startContainer(ctx context.Context) (*Broker, error) {
	env := map[string]string{
		"brokerDeduplicationEnabled":            "true",
		"isDelayedDeliveryDeliverAtTimeStrict":  "true",
		"delayedDeliveryTickTimeMillis":         "50",
		"subscriptionRedeliveryTrackerEnabled":  "true",
		"activeConsumerFailoverDelayTimeMillis": "200",
		"topicLevelPoliciesEnabled":             "true",
		"systemTopicEnabled":                    "true",
	}
	opts := []testcontainers.ContainerCustomizer{tcpulsar.WithTransactions()}
	for k, v := range env {
		opts = append(opts, tcpulsar.WithPulsarEnv(k, v))
	}
	c, err := tcpulsar.Run(ctx, dockerImage, opts...)
	if err != nil {
		return nil, fmt.Errorf("pulsartest: start the Pulsar container: %w", err)
	}
	svc, err := c.BrokerURL(ctx)
	if err != nil {
		return nil, fmt.Errorf("pulsartest: Pulsar container broker URL: %w", err)
	}
	adm, err := c.HTTPServiceURL(ctx)
	if err != nil {
		return nil, fmt.Errorf("pulsartest: Pulsar container admin URL: %w", err)
	}
	freeze := func(ctx context.Context, stop bool) error {
		sig := "CONT"
		if stop {
			sig = "STOP"
		}
		code, _, err := c.Exec(ctx, []string{"sh", "-c", "kill -" + sig + " $(pgrep -f PulsarStandaloneStarter)"})
		if err == nil && code != 0 {
			err = fmt.Errorf("exit code %d", code)
		}
		if err != nil {
			return fmt.Errorf("signal %s to the broker in its container: %w", sig, err)
		}
		return nil
	}
	return &Broker{ServiceURL: svc, AdminURL: adm, Origin: "docker", freeze: freeze}, nil
}
