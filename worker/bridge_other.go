//go:build !unix

package worker

import "os/exec"

// killGroup: without process groups only the program itself is killed;
// exec's WaitDelay still bounds waiting for its output.
func killGroup(*exec.Cmd) {}
