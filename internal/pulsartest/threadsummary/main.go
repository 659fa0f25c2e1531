// Command threadsummary prints the summary of a JVM thread dump (package
// threaddump) and writes it next to the dump as <dump>.summary, where
// scripts/pulsar/pulsar.sh health finds it:
//
//	go run ./internal/pulsartest/threadsummary .pulsar/logs/threads-….txt
package main

import (
	"fmt"
	"os"

	"github.com/pulsaga/pulsaga/internal/pulsartest/threaddump"
)

func main() {
	if len(os.Args) != 2 {
		fmt.Fprintln(os.Stderr, "usage: threadsummary <thread dump file>")
		os.Exit(2)
	}
	s, err := threaddump.SummarizeFile(os.Args[1])
	if err != nil {
		fmt.Fprintln(os.Stderr, "threadsummary:", err)
		os.Exit(1)
	}
	fmt.Println(s)
}
